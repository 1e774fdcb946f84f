"""Step-labelled data in other tools' formats <-> native rows (format `ttscale`, see ttscale.data.labels).

One reader and one writer per format in FORMATS; `read_rows` / `write_rows` do the file I/O through
ttscale.data.io (.jsonl, .parquet, or a save_to_disk directory, by extension). Formats that carry the
same information round-trip exactly. A conversion that loses information (soft labels written as
+/-, unlabelled steps dropped, ProcessBench keeping only the first error, PRM800K neutral ratings)
warns once per kind with the number of affected rows (ConversionWarning). Bad rows raise a
ValueError naming the file, the row and the field.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from tqdm.auto import tqdm

from ttscale.errors import UserError
from ttscale.data.formats_prm800k import read_prm800k, write_prm800k
from ttscale.data.io import read_jsonl_numbered, read_table, table_kind, write_table
from ttscale.data.labels import first_error_index, harden, is_hard, validate_row

TAG = "ки"  # Math-Shepherd's step tag: every step ends with it in `input`, replaced by +/- in `label`
_STEP_PREFIX = re.compile(r"^\s*Step \d+:\s*")


class ConversionWarning(UserWarning):
    """Information lost in a conversion; the message says what and for how many rows."""


@dataclass
class Context:
    """Per-file state a row converter sees: options, the current row (for errors) and losses."""

    fmt: str
    path: str
    neutral: str = "correct"
    hard_threshold: float = 0.0
    alternatives: bool = False
    index: int = 0
    losses: dict[str, set[int]] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.path}: row {self.index + 1}"

    def fail(self, field_name: str, msg: str) -> UserError:
        return UserError(f"{self.where} ({self.fmt}): field {field_name!r}: {msg}")

    def lose(self, what: str) -> None:
        """Record that the current row lost information of kind `what` (counted once per row)."""
        self.losses.setdefault(what, set()).add(self.index)

    def default_id(self) -> str:
        return f"{Path(self.path).stem}-{self.index}"

    def need(self, rec: Any, dotted: str, kind: type | tuple[type, ...], prefix: str = "") -> Any:
        """rec["a"]["b"] for dotted "a.b", checked against `kind`; a missing or mistyped value fails by name."""
        value = rec
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None or not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            got = "missing" if value is None else f"got {type(value).__name__}"
            raise self.fail(prefix + dotted, f"expected {names}, {got}")
        return value

    def warn_losses(self, total: int, direction: str) -> None:
        for what, rows in self.losses.items():
            warnings.warn(f"{direction} {self.fmt} ({self.path}): {len(rows)} of {total} rows: {what}",
                          ConversionWarning, stacklevel=3)


@dataclass(frozen=True)
class Format:
    name: str
    columns: str  # what a row looks like, for --help
    read: Callable[[dict, Context], list[dict]]
    write: Callable[[dict, Context], dict | None] | None  # None: read-only


def _strip_prefix(text: str) -> str:
    return _STEP_PREFIX.sub("", text, count=1).strip()


def _id(rec: dict, ctx: Context) -> str:
    rid = rec.get("id")
    return str(rid) if rid not in (None, "") else ctx.default_id()


def _hard_labelled(row: dict, ctx: Context) -> tuple[list[str], list[float]]:
    """Steps and 0/1 labels for formats that label every step with a hard label."""
    steps, labels = row["steps"], row["labels"]
    if len(labels) < len(steps):
        ctx.lose("unlabelled steps dropped (this format labels every step)")
    if not is_hard(labels):
        ctx.lose(f"soft labels made hard: label > {ctx.hard_threshold} counts as correct (--hard-threshold)")
    return steps[:len(labels)], harden(labels, ctx.hard_threshold)


def _split_question(text: str, end: int, ctx: Context, field_name: str) -> int:
    """Where step 1 starts: the last "Step 1:" before `end` (a question may itself mention "Step 1:")."""
    start = text.rfind("Step 1:", 0, end)
    if start < 0:
        raise ctx.fail(field_name, "no 'Step 1:' found; the question is everything before 'Step 1:'")
    return start


# --- native ---------------------------------------------------------------------------------------

def read_native(rec: dict, ctx: Context) -> list[dict]:
    return [rec]  # read_rows validates every row


def write_native(row: dict, ctx: Context) -> dict:
    return row


# --- Math-Shepherd: {input, label, task}; "question Step 1: ... ки\nStep 2: ... ки" -----------------

def read_math_shepherd(rec: dict, ctx: Context) -> list[dict]:
    text, label_text = ctx.need(rec, "input", str), ctx.need(rec, "label", str)
    tags = [m.start() for m in re.finditer(TAG, text)]
    if not tags:
        raise ctx.fail("input", f"no step tag {TAG!r}; Math-Shepherd ends every step with it")
    if text[tags[-1] + len(TAG):].strip():
        raise ctx.fail("input", f"text after the last step tag {TAG!r}; every step must end with it")
    start = _split_question(text, tags[0], ctx, "input")
    bounds = [start] + [t + len(TAG) for t in tags[:-1]]
    steps = [_strip_prefix(text[b:t]) for b, t in zip(bounds, tags)]
    shrink = len(TAG) - 1  # each tag becomes one sign character in `label`
    if len(label_text) != len(text) - shrink * len(tags):
        raise ctx.fail("label", f"expected `input` with each of its {len(tags)} tags replaced by '+' or '-' "
                       f"({len(text) - shrink * len(tags)} characters), got {len(label_text)} characters")
    signs = [label_text[t - shrink * k] for k, t in enumerate(tags)]
    for k, s in enumerate(signs):
        if s not in "+-":
            raise ctx.fail("label", f"step {k + 1}: expected '+' or '-' where `input` has the tag, found {s!r}")
    pieces = re.split(TAG, text)
    rebuilt = "".join(p + (signs[k] if k < len(signs) else "") for k, p in enumerate(pieces))
    if rebuilt != label_text:
        at = next(i for i, (a, b) in enumerate(zip(rebuilt, label_text)) if a != b)
        raise ctx.fail("label", f"differs from `input` apart from the step tags (first at character {at})")
    row = {"id": _id(rec, ctx), "problem": text[:start].strip(), "steps": steps,
           "labels": [1.0 if s == "+" else 0.0 for s in signs]}
    if rec.get("task"):
        row["source"] = str(rec["task"])
    return [row]


def _tagged_text(problem: str, steps: list[str], marks: list[str]) -> str:
    return problem + " " + "\n".join(f"Step {i + 1}: {s} {m}" for i, (s, m) in enumerate(zip(steps, marks)))


def write_math_shepherd(row: dict, ctx: Context) -> dict | None:
    steps, labels = _hard_labelled(row, ctx)
    if not steps:
        ctx.lose("skipped: no labelled step")
        return None
    for i, s in enumerate(steps):
        if TAG in s:
            raise ctx.fail("steps", f"step {i} contains the Math-Shepherd step tag {TAG!r}; it cannot be tagged")
    signs = ["+" if v else "-" for v in labels]
    return {"input": _tagged_text(row["problem"], steps, [TAG] * len(steps)),
            "label": _tagged_text(row["problem"], steps, signs), "task": row.get("source", "")}


# --- TRL stepwise supervision: {prompt, completions, labels: list[bool]} ---------------------------

def read_trl_stepwise(rec: dict, ctx: Context) -> list[dict]:
    prompt, steps = ctx.need(rec, "prompt", str), ctx.need(rec, "completions", list)
    labels = ctx.need(rec, "labels", list)
    if len(labels) != len(steps):
        raise ctx.fail("labels", f"{len(labels)} labels for {len(steps)} completions; TRL needs one per step")
    if not all(v in (True, False) for v in labels):
        raise ctx.fail("labels", "expected booleans (true = correct step)")
    return [{"id": _id(rec, ctx), "problem": prompt, "steps": steps, "labels": [float(bool(v)) for v in labels]}]


def write_trl_stepwise(row: dict, ctx: Context) -> dict | None:
    steps, labels = _hard_labelled(row, ctx)
    if not steps:
        ctx.lose("skipped: no labelled step")
        return None
    return {"prompt": row["problem"], "completions": steps, "labels": [bool(v) for v in labels]}


# --- ProcessBench: {id, problem, steps, label = index of the first wrong step or -1} -----------------

def read_processbench(rec: dict, ctx: Context) -> list[dict]:
    problem, steps = ctx.need(rec, "problem", str), ctx.need(rec, "steps", list)
    k = ctx.need(rec, "label", int)
    if not -1 <= k < len(steps):
        raise ctx.fail("label", f"{k} is not -1 or a step index (the row has {len(steps)} steps)")
    labels = [1.0] * len(steps) if k == -1 else [1.0] * k + [0.0]
    return [{"id": _id(rec, ctx), "problem": problem, "steps": steps, "labels": labels}]


def write_processbench(row: dict, ctx: Context) -> dict | None:
    steps, labels = row["steps"], row["labels"]
    if not is_hard(labels):
        ctx.lose(f"soft labels made hard: label > {ctx.hard_threshold} counts as correct (--hard-threshold)")
    k = first_error_index(harden(labels, ctx.hard_threshold), threshold=0.5)
    if k == -1 and len(labels) < len(steps):
        ctx.lose("unlabelled steps dropped (ProcessBench label -1 would call them correct)")
        steps = steps[:len(labels)]
    if k >= 0 and len(labels) > k + 1:
        ctx.lose("labels after the first error dropped (ProcessBench keeps only the first error)")
    if not steps:
        ctx.lose("skipped: no labelled step")
        return None
    return {"id": row["id"], "problem": row["problem"], "steps": steps, "label": k}


# --- RLHFlow (Mistral/Deepseek-PRM-Data): {conversations: [user step, assistant "+"/"-", ...]} -------

def read_rlhflow(rec: dict, ctx: Context) -> list[dict]:
    conv = ctx.need(rec, "conversations", list)
    turns = []
    for t, msg in enumerate(conv):
        role = ctx.need(msg, "role", str, f"conversations[{t}].")
        content = ctx.need(msg, "content", str, f"conversations[{t}].")
        expected = "user" if t % 2 == 0 else "assistant"
        if role != expected:
            raise ctx.fail(f"conversations[{t}].role", f"expected {expected!r} (user step, assistant +/-, ...), "
                           f"got {role!r}")
        if role == "assistant" and content.strip() not in ("+", "-"):
            raise ctx.fail(f"conversations[{t}].content", f"expected '+' or '-', got {content!r}")
        turns.append(content)
    if not turns:
        raise ctx.fail("conversations", "empty; expected user/assistant turns")
    first, known = turns[0], rec.get("problem") or rec.get("prompt")
    if "Step 1:" not in first and isinstance(known, str) and first.startswith(known):
        problem, step1 = known.strip(), first[len(known):].strip()
    else:
        start = _split_question(first, len(first), ctx, "conversations[0].content")
        problem, step1 = first[:start].strip(), _strip_prefix(first[start:])
    steps = [step1] + [_strip_prefix(c) for c in turns[2::2]]
    labels = [1.0 if c.strip() == "+" else 0.0 for c in turns[1::2]]  # a trailing user turn stays unlabelled
    return [{"id": _id(rec, ctx), "problem": problem, "steps": steps, "labels": labels}]


def write_rlhflow(row: dict, ctx: Context) -> dict | None:
    steps, labels = _hard_labelled(row, ctx)
    if not steps:
        ctx.lose("skipped: no labelled step")
        return None
    conv = []
    for i, (s, v) in enumerate(zip(steps, labels)):
        text = f"Step {i + 1}: {s}"
        conv.append({"role": "user", "content": f"{row['problem']} {text}" if i == 0 else text})
        conv.append({"role": "assistant", "content": "+" if v else "-"})
    return {"conversations": conv}


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("ttscale", "native rows {id, problem, steps, labels (0..1, may be shorter than steps), answer?, "
           "mc_correct?, mc_total?, method?, rollouts?, source?}", read_native, write_native),
    Format("math-shepherd", "{input, label, task}: 'question Step 1: ... ки\\nStep 2: ... ки', label = input "
           "with each ки replaced by +/-; task <-> source", read_math_shepherd, write_math_shepherd),
    Format("trl-stepwise", "TRL stepwise supervision {prompt, completions, labels: list[bool]}",
           read_trl_stepwise, write_trl_stepwise),
    Format("prm800k", "raw PRM800K lines {question.problem, label.steps[*].completions[*].rating, ...}; "
           "follows the chosen trajectory to the first -1; id <-> top-level id", read_prm800k, write_prm800k),
    Format("processbench", "{id, problem, steps, label = index of the first wrong step or -1}",
           read_processbench, write_processbench),
    Format("rlhflow", "RLHFlow PRM data {conversations: [{role: user, content: 'problem Step 1: ...'}, "
           "{role: assistant, content: '+'/'-'}, ...]}", read_rlhflow, write_rlhflow),
)}


def _format(name: str) -> Format:
    if name not in FORMATS:
        raise UserError(f"unknown format {name!r}; choose one of: {', '.join(FORMATS)}")
    return FORMATS[name]


def _records(path: str | Path, skip_invalid: bool = False, skipped: list[dict] | None = None) -> list[dict]:
    # JSON lines are read as plain dicts: raw dumps (PRM800K) mix types that Arrow cannot infer one schema for
    if table_kind(path) != "jsonl":
        return read_table(path).to_list()
    numbered, bad = read_jsonl_numbered(path, skip_invalid)
    if skipped is not None:   # a line that is not JSON has no id: its line number stands in the reason
        skipped.extend({"id": None, "stage": "convert", "reason": msg} for msg in bad)
    return [row for _, row in numbered]


def _convert_all(items: Iterable[Any], total: int, ctx: Context, convert: Callable[[Any], list[dict]],
                 skip_invalid: bool, desc: str, skipped: list[dict] | None = None) -> list[dict]:
    """Converted rows; with skip_invalid a row that fails is left out, and listed in `skipped` with its id."""
    out: list[dict] = []
    reasons: list[str] = []
    for i, item in enumerate(tqdm(items, total=total, desc=desc, disable=None, leave=False)):
        ctx.index = i
        try:
            out.extend(convert(item))
        except ValueError as e:
            if not skip_invalid:
                raise
            reasons.append(str(e))
            if skipped is not None:
                rid = item.get("id") if isinstance(item, dict) else None
                skipped.append({"id": str(rid) if rid not in (None, "") else ctx.default_id(), "stage": "convert",
                                "reason": " ".join(str(e).split())})
    if reasons:
        ctx.losses[f"invalid rows skipped (--skip-invalid); first: {reasons[0]}"] = set(range(len(reasons)))
    return out


def read_rows(fmt: str, path: str | Path, *, neutral: str = "correct", alternatives: bool = False,
              skip_invalid: bool = False, skipped: list[dict] | None = None) -> list[dict]:
    """Native rows from a file in format `fmt` (every row validated).

    neutral: PRM800K rating 0 counts as "correct" or "incorrect". alternatives: PRM800K also yields one
    row per rated alternative completion (trajectory prefix + that completion). skip_invalid: skip bad
    rows and lines that are not JSON (counted in a warning; {id, stage, reason} each appended to `skipped`)
    instead of raising.
    """
    spec = _format(fmt)
    if neutral not in ("correct", "incorrect"):
        raise UserError(f"neutral must be 'correct' or 'incorrect', got {neutral!r}")
    ctx = Context(fmt, str(path), neutral=neutral, alternatives=alternatives)
    records = _records(path, skip_invalid, skipped)

    def convert(rec: Any) -> list[dict]:
        if not isinstance(rec, dict):
            raise UserError(f"{ctx.where}: expected an object, got {type(rec).__name__}")
        return [validate_row(r, ctx.where) for r in spec.read(rec, ctx)]

    rows = _convert_all(records, len(records), ctx, convert, skip_invalid, f"read {fmt}", skipped)
    ctx.warn_losses(len(records), "reading")
    return rows


def write_rows(fmt: str, rows: Iterable[dict], path: str | Path, *, hard_threshold: float = 0.0,
               skip_invalid: bool = False, skipped: list[dict] | None = None) -> int:
    """Write native rows in format `fmt` to `path` (.jsonl, .parquet or a directory); returns rows written.

    hard_threshold: formats with hard labels write a soft label as correct when it is > this value.
    skip_invalid: leave out rows that cannot be written (each appended to `skipped`) instead of raising.
    """
    spec = _format(fmt)
    if spec.write is None:
        raise UserError(f"format {fmt!r} is read-only; write one of: "
                         + ", ".join(n for n, f in FORMATS.items() if f.write))
    rows = list(rows)
    ctx = Context(fmt, str(path), hard_threshold=hard_threshold)

    def convert(row: Any) -> list[dict]:
        rec = spec.write(validate_row(row, f"writing {ctx.where}"), ctx)
        return [] if rec is None else [rec]

    out = _convert_all(rows, len(rows), ctx, convert, skip_invalid, f"write {fmt}", skipped)
    if not out:
        raise UserError(f"{path}: nothing to write ({len(rows)} input rows, none convertible to {fmt})")
    write_table(out, path)
    ctx.warn_losses(len(rows), "writing")
    return len(out)
