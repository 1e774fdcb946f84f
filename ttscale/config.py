"""Stage configs are dataclasses; this turns one into a CLI that also reads YAML (like TRL's scripts).

Precedence: dataclass default < `--config FILE.yaml` < explicit command-line flags.

Field metadata understood:
  help        text shown by --help (required for every field: --help must explain each option)
  flag        the command-line spelling when it differs from `--field-name` (e.g. "--from")
  positional  True for positional arguments (INPUT OUTPUT ...)
  choices     allowed values
"""
from __future__ import annotations

import argparse
import dataclasses
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


def build_parser(cls: type, prog: str | None = None, description: str | None = None) -> argparse.ArgumentParser:
    hints = typing.get_type_hints(cls)
    parser = argparse.ArgumentParser(
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
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                kwargs["nargs"] = "?"
            kwargs["default"] = argparse.SUPPRESS
            kwargs["metavar"] = f.name.upper()
            parser.add_argument(f.name, **kwargs)
        else:
            flag = meta.get("flag", "--" + f.name.replace("_", "-"))
            kwargs["help"] = kwargs["help"] + (f" (default: {default!r})" if default is not None else "")
            parser.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, **kwargs)
    # ArgumentDefaultsHelpFormatter would print "==SUPPRESS=="; defaults are in the help text instead.
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def parse_config(cls: type[T], argv: Sequence[str] | None = None, prog: str | None = None,
                 description: str | None = None) -> T:
    """Parse `argv` (default sys.argv[1:]) into an instance of the dataclass `cls`."""
    parser = build_parser(cls, prog=prog, description=description)
    ns = vars(parser.parse_intermixed_args(list(sys.argv[1:] if argv is None else argv)))
    values: dict[str, Any] = {}
    config_path = ns.pop("config", None)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    if config_path:
        data = yaml.safe_load(Path(config_path).read_text()) or {}
        if not isinstance(data, dict):
            parser.error(f"{config_path}: expected a mapping of option: value at the top level")
        for k, v in data.items():
            key = k.replace("-", "_")
            if key not in names:
                parser.error(f"{config_path}: unknown option {k!r} (valid: {', '.join(sorted(names))})")
            try:
                values[key] = _coerce(hints[key], v, key)
            except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
                parser.error(f"{config_path}: {e}")
    values.update(ns)
    missing = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]  # type: ignore[misc]
    if missing:
        parser.error("missing required option(s): " + ", ".join(missing))
    try:
        return cls(**values)
    except (ValueError, TypeError) as e:  # __post_init__ validation
        parser.error(str(e))
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
