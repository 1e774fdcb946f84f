"""Stage configs are dataclasses; this turns one into a CLI that also reads YAML (like TRL's scripts).

Precedence: dataclass default < `--config FILE.yaml` < explicit command-line flags.

Field metadata understood:
  help        text shown by --help (required for every field: --help must explain each option)
  flag        the command-line spelling when it differs from `--field-name` (e.g. "--from")
  positional  True for positional arguments (INPUT OUTPUT ...)
  choices     allowed values
  gt ge lt le bounds, checked for command-line and YAML values alike ("--top-p must be in (0, 1], got 2")
  run_key     False for options that do not change a run's results (threads, batch sizes, devices, where
              outputs go): `run_identity` leaves them out of what a resumed run must match
  model_specific  True for options naming one model's own files (adapter, GGUF file): a `prefixed` copy
              of the group for a second model neither offers nor inherits them

Composition: stage configs inherit option groups (GeneratorArgs, SamplingArgs, ProblemArgs, ...);
`overrides` gives an inherited option a stage's own default without redeclaring it, and `prefixed`
derives a group for a second model (--reviser-*) whose unset options fall back to the first model's.
"""
from __future__ import annotations

import argparse
import dataclasses
import operator
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

T = TypeVar("T")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _str2bool(v: str | bool) -> bool:
    if isinstance(v, bool):
        return v
    s = v.strip().lower()
    if s in ("1", "true", "yes", "y", "on"):
        return True
    if s in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {v!r}")


def _coerce(tp: Any, value: Any, name: str) -> Any:
    """Coerce a YAML value to the field type so YAML and CLI give the same objects."""
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ValueError(f"config field {name!r} may not be null")
    origin = typing.get_origin(tp)
    if origin in (list, tuple, Sequence):
        (inner,) = typing.get_args(tp)[:1] or (str,)
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [_coerce(inner, v, name) for v in value]
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ValueError(f"config field {name!r}: {value!r} not in {typing.get_args(tp)}")
        return value
    if tp is bool:
        return _str2bool(value)
    if tp in (int, float, str):
        return tp(value)
    if tp is dict or typing.get_origin(tp) is dict:
        return dict(value)
    return value


def _flag(f: dataclasses.Field) -> str:
    """How --help and error messages name an option: its flag, or NAME for a positional argument."""
    if f.metadata.get("positional"):
        return f.name.upper()
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


_BOUNDS = {"gt": (operator.gt, ">", "("), "ge": (operator.ge, ">=", "["),
           "lt": (operator.lt, "<", ")"), "le": (operator.le, "<=", "]")}


def _violation(f: dataclasses.Field, value: Any) -> str | None:
    """Why `value` breaks the field's choices / gt ge lt le ("must be in (0, 1], got 2"); None if it fits.
    None (an unset optional) always fits; a list is checked item by item."""
    meta = f.metadata
    for v in value if isinstance(value, (list, tuple)) else [value]:
        if v is None:
            continue
        if "choices" in meta and v not in meta["choices"]:
            return f"must be one of {', '.join(map(str, meta['choices']))}, got {v!r}"
        limits = [(k, meta[k]) for k in _BOUNDS if k in meta]
        if all(_BOUNDS[k][0](v, bound) for k, bound in limits):
            continue
        lo = next(((k, b) for k, b in limits if k in ("gt", "ge")), None)
        hi = next(((k, b) for k, b in limits if k in ("lt", "le")), None)
        if lo and hi:
            rng = f"in {_BOUNDS[lo[0]][2]}{lo[1]}, {hi[1]}{_BOUNDS[hi[0]][2]}"
        else:
            k, bound = lo or hi  # type: ignore[misc]
            rng = f"{_BOUNDS[k][1]} {bound}"
        return f"must be {rng}, got {v!r}"
    return None


def check_value(f: dataclasses.Field, value: Any) -> str | None:
    """Why `value` breaks option `f`'s choices or bounds ("must be >= 1, got 0"); None if it fits. For values
    that arrive other ways than flags or YAML (a server request's fields)."""
    return _violation(f, value)


def check_options(obj: Any) -> None:
    """Check a config built in code (not by parse_config) against its fields' bounds; ValueError names the flag."""
    for f in dataclasses.fields(obj):
        why = _violation(f, getattr(obj, f.name)) if f.init else None
        if why:
            raise ValueError(f"{_flag(f)} {why}")


def run_identity(cfg: Any) -> dict[str, Any]:
    """The options a resumed run must share with the parts already written: every option except those
    marked run_key=False (they change how a run goes, not what it writes)."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
            if f.init and f.metadata.get("run_key", True)}


def build_parser(cls: type, prog: str | None = None, description: str | None = None) -> argparse.ArgumentParser:
    hints = typing.get_type_hints(cls)
    parser = _Parser(
        prog=prog, description=description or (cls.__doc__ or "").strip(),
        epilog="Options and positional arguments may come in any order; an option taking several values "
               "(--levels 1 2 3) takes all that follow it, so end its list with -- before a positional argument.",
    )
    parser.add_argument("--config", type=str, default=None,
                        help="YAML file with values for any of the options below (flags given here override it)")
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        meta = f.metadata
        if "help" not in meta:
            raise TypeError(f"{cls.__name__}.{f.name} needs metadata help= (every option must be explained)")
        tp, _ = _unwrap_optional(hints[f.name])
        kwargs: dict[str, Any] = {"help": meta["help"]}
        origin = typing.get_origin(tp)
        if origin in (list, tuple, Sequence):
            inner = (typing.get_args(tp) or (str,))[0]
            kwargs["type"] = inner if inner in (int, float, str) else str
            kwargs["nargs"] = "+"
        elif origin is typing.Literal:
            kwargs["choices"] = list(typing.get_args(tp))
            kwargs["type"] = type(typing.get_args(tp)[0])
        elif tp is bool:
            kwargs["type"] = _str2bool
            kwargs["nargs"] = "?"
            kwargs["const"] = True
            kwargs["metavar"] = "{true,false}"
        elif tp in (int, float, str):
            kwargs["type"] = tp
        else:
            kwargs["type"] = str
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        # Defaults are applied after YAML; argparse only shows them.
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        if meta.get("positional"):
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING \
                    or meta.get("deprecated_flag"):   # an old flag spelling may give it instead
                kwargs["nargs"] = "?"
            kwargs["default"] = argparse.SUPPRESS
            kwargs["metavar"] = f.name.upper()
            parser.add_argument(f.name, **kwargs)
            if meta.get("deprecated_flag"):
                parser.add_argument(meta["deprecated_flag"], dest=f.name + _OLD, default=argparse.SUPPRESS,
                                    help=argparse.SUPPRESS)
        else:
            flag = _flag(f)
            kwargs["help"] = kwargs["help"] + (f" (default: {default!r})" if default is not None else "")
            if "bare" in meta:   # the flag alone means this value (--resume-from-checkpoint: the latest)
                kwargs["nargs"], kwargs["const"] = "?", meta["bare"]
            parser.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, **kwargs)
    # ArgumentDefaultsHelpFormatter would print "==SUPPRESS=="; defaults are in the help text instead.
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def nearest(word: str, choices: Sequence[str]) -> str:
    """ " (did you mean X?)" for the valid choice closest to a mistyped one, or ""."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Parser(argparse.ArgumentParser):
    """argparse, but a value outside an option's choices is one line naming the nearest valid one, not the
    whole usage block with the error last."""

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is not None and value not in action.choices:
            flag = "/".join(action.option_strings) or action.metavar or action.dest
            valid = ", ".join(map(str, action.choices))
            self.exit(2, f"{self.prog}: error: {flag} {value!r} is not one of: {valid}{nearest(value, action.choices)}\n")
        super()._check_value(action, value)


def _bad_value(parser: argparse.ArgumentParser, message: str) -> typing.NoReturn:
    """A value outside its range or a bad config file: one line naming the option (the usage block that
    parser.error prints would bury it); syntax errors still get argparse's usage."""
    parser.exit(2, f"{parser.prog}: error: {message} (--help explains every option)\n")


def parse_config(cls: type[T], argv: Sequence[str] | None = None, prog: str | None = None,
                 description: str | None = None) -> T:
    """Parse `argv` (default sys.argv[1:]) into an instance of the dataclass `cls`."""
    parser = build_parser(cls, prog=prog, description=description)
    ns = vars(parser.parse_intermixed_args(list(sys.argv[1:] if argv is None else argv)))
    for f in dataclasses.fields(cls):   # old spellings work for one release, with a one-line notice
        old = ns.pop(f.name + _OLD, None)
        if old is not None:
            new = f"the positional {f.name.upper()}"
            if f.name in ns and ns[f.name] != old:
                _bad_value(parser, f"{f.metadata['deprecated_flag']} {old} and {new} {ns[f.name]} disagree; give only {new}")
            print(f"{parser.prog}: warning: {f.metadata['deprecated_flag']} is deprecated and goes in the next release; "
                  f"give the folder as {new}", file=sys.stderr)
            ns[f.name] = old
    values: dict[str, Any] = {}
    config_path = ns.pop("config", None)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    if config_path:
        try:
            data = yaml.safe_load(Path(config_path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:   # a missing file or broken YAML: the user's to fix, one line
            _bad_value(parser, f"--config {config_path}: cannot read it as YAML: {' '.join(str(e).split())}")
        if not isinstance(data, dict):
            _bad_value(parser, f"{config_path}: expected a mapping of option: value at the top level")
        for k, v in data.items():
            key = k.replace("-", "_")
            if key not in names:
                _bad_value(parser, f"{config_path}: unknown option {k!r} (valid: {', '.join(sorted(names))})")
            try:
                values[key] = _coerce(hints[key], v, key)
            except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
                _bad_value(parser, f"{config_path}: {e}")
    from_yaml = set(values) - set(ns)
    values.update(ns)
    for f in dataclasses.fields(cls):
        why = _violation(f, values[f.name]) if f.name in values else None
        if why:
            where = f"{config_path}: {f.name}: " if f.name in from_yaml else ""   # a YAML value: name the file
            _bad_value(parser, f"{where}{_flag(f)} {why}")
    missing = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]  # type: ignore[misc]
    if missing:
        parser.error("missing required option(s): " + ", ".join(missing))
    try:
        return cls(**values)
    except (ValueError, TypeError) as e:  # __post_init__ validation
        _bad_value(parser, str(e))
        raise  # unreachable


def field(default: Any = dataclasses.MISSING, *, help: str, default_factory: Any = dataclasses.MISSING,
          **meta: Any) -> Any:
    """`dataclasses.field` with the metadata above as keywords: field(4, help="beams kept")."""
    md = {"help": help, **meta}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=md)
    return dataclasses.field(default=default, metadata=md)


def to_yaml(obj: Any) -> str:
    """The resolved config of a run, written beside its outputs."""
    return yaml.safe_dump(dataclasses.asdict(obj), sort_keys=False)


class tweak:  # noqa: N801 - reads as a call inside overrides(...)
    """An `overrides` entry changing more than the default: tweak(256, help="...", ge=1)."""

    def __init__(self, default: Any = dataclasses.MISSING, **meta: Any):
        self.default, self.meta = default, meta


_OLD = "__deprecated_flag"   # the dest of a positional option's old flag spelling
OMIT = object()   # overrides(x=OMIT): the stage has no use for inherited option x; it keeps its default, unlisted


def _inherited(cls: type, name: str) -> tuple[dataclasses.Field, Any]:
    """(field, resolved type) of option `name` as the nearest dataclass base of `cls` declares it."""
    for base in cls.__mro__[1:]:
        f = getattr(base, "__dataclass_fields__", {}).get(name)
        if f is not None:
            return f, typing.get_type_hints(base)[name]
    raise TypeError(f"{cls.__name__} inherits no option {name!r} to override")


def overrides(**changes: Any):
    """Class decorator, placed under @dataclass: inherited options get this stage's default (a value),
    default and metadata (`tweak`), or are hidden (`OMIT`), keeping their help, bounds and place in --help:

        @dataclass(kw_only=True)
        @overrides(max_new_tokens=256, seed=tweak(help="..."))
        class Config(SamplingArgs, ...): ...
    """
    def apply(cls: type) -> type:
        if "__annotations__" not in cls.__dict__:   # else setting one would write into a base's dict
            cls.__annotations__ = {}
        for name, change in changes.items():
            old, tp = _inherited(cls, name)
            t = change if isinstance(change, tweak) else tweak(change)
            default = t.default
            if change is OMIT or default is dataclasses.MISSING:
                default = old.default if old.default_factory is dataclasses.MISSING else old.default_factory()
            kw: dict[str, Any] = {"default": default}
            if isinstance(default, (list, dict, set)):   # dataclasses refuse mutable defaults
                kw = {"default_factory": lambda d=default: type(d)(d)}
            cls.__annotations__[name] = tp
            setattr(cls, name, dataclasses.field(**kw, init=change is not OMIT, metadata={**old.metadata, **t.meta}))
        return cls
    return apply


def prefixed(cls: type, prefix: str, *, subject: str, rename: dict[str, str] | None = None,
             help: dict[str, str] | None = None, defaults: dict[str, Any] | None = None) -> type:
    """A copy of the option group `cls` for a second model: option x becomes `{prefix}x` (flag --{prefix}x,
    or the name `rename` gives it), with the same type, choices and bounds, defaulting to None = "the same
    as --x". Options marked model_specific are left out (the second model does not inherit the first's
    adapter or GGUF file). `help` replaces the derived help text of the named new fields; `defaults` gives a
    new field a default of its own instead (e.g. a GPU memory share that must not repeat the first model's).
    The copy's `resolve(base)` returns a `cls` holding `base`'s values with the ones given here in place."""
    rename, help, defaults = rename or {}, help or {}, defaults or {}
    hints = typing.get_type_hints(cls)
    names: dict[str, str] = {}   # option of cls -> its name in the copy
    specs = []
    for f in dataclasses.fields(cls):
        if not f.init or f.metadata.get("model_specific"):
            continue
        new = names[f.name] = rename.get(f.name, prefix + f.name)
        own = re.sub(r"\s*\(default: [^)]*\)$", "", f.metadata["help"])   # the copy's default is another
        same = f" (default: the same as {_flag(f)})" if new not in defaults else ""
        text = help.get(new, f"{subject}: {own}{same}")
        meta = {k: v for k, v in f.metadata.items() if k not in ("flag", "positional")}
        specs.append((new, typing.Optional[hints[f.name]],
                      dataclasses.field(default=defaults.get(new), kw_only=True, metadata={**meta, "help": text})))

    def resolve(self, base: Any) -> Any:
        values = {f.name: getattr(base, f.name) for f in dataclasses.fields(cls)
                  if f.init and not f.metadata.get("model_specific")}
        values.update({old: getattr(self, new) for old, new in names.items() if getattr(self, new) is not None})
        return cls(**values)

    name = prefix.strip("_").title() + cls.__name__
    return dataclasses.make_dataclass(name, specs, namespace={"resolve": resolve, "__module__": cls.__module__,
                                                             "__doc__": f"{cls.__name__} options for the {subject}"},
                                      kw_only=True)
