"""Step labels: derive them from Monte Carlo evidence, find the first error, validate native rows.

One convention everywhere: a step is correct when its value is strictly greater than the threshold.
With Monte Carlo evidence the value is the fraction of rollouts that reached the gold answer, so
threshold 0 means "any rollout correct" (Math-Shepherd's hard label) and the soft label is the
fraction itself (Snell et al.).

The native step-labelled row (format `ttscale`) is what labeling writes and the PRM trainer reads:
  id str, problem str, steps list[str], labels list[float] in [0, 1] (may be shorter than steps:
  the steps past len(labels) are unlabelled), optional answer str, mc_correct / mc_total list[int]
  (one per labelled step), method str, rollouts int, source str.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from ttscale.errors import UserError

REQUIRED_FIELDS = ("id", "problem", "steps", "labels")
OPTIONAL_FIELDS = ("answer", "mc_correct", "mc_total", "method", "rollouts", "source")
NATIVE_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS


def derive_labels(mc_correct: Sequence[int], mc_total: Sequence[int], mode: str = "hard",
                  threshold: float = 0.0) -> list[float]:
    """Per-step labels from rollout counts.

    hard: 1.0 if correct/total > threshold else 0.0 (threshold 0 = any rollout correct);
    soft: correct/total, never rounded. A step with 0/0 was never probed: binary search (OmegaPRM) leaves
    such steps only before the first error it found, so they are correct (1.0) in both modes.
    """
    if mode not in ("hard", "soft"):
        raise UserError(f"derive_labels: mode must be 'hard' or 'soft', got {mode!r}")
    if len(mc_correct) != len(mc_total):
        raise UserError(f"derive_labels: mc_correct has {len(mc_correct)} entries but mc_total has "
                         f"{len(mc_total)}; they must have one entry per labelled step")
    labels = []
    for i, (c, t) in enumerate(zip(mc_correct, mc_total)):
        if c < 0 or c > t:
            raise UserError(f"derive_labels: step {i} has mc_correct={c}, mc_total={t}; "
                             "need 0 <= mc_correct <= mc_total")
        if t == 0:
            labels.append(1.0)
            continue
        frac = c / t
        labels.append(frac if mode == "soft" else (1.0 if frac > threshold else 0.0))
    return labels


def harden(labels: Sequence[float], threshold: float = 0.0) -> list[float]:
    """Soft labels -> 0.0/1.0 with the same `> threshold` rule as derive_labels."""
    return [1.0 if float(v) > threshold else 0.0 for v in labels]


def is_hard(labels: Sequence[float]) -> bool:
    return all(float(v) in (0.0, 1.0) for v in labels)


def first_error_index(labels: Sequence[float], threshold: float = 0.5) -> int:
    """Index of the first step whose label is not above `threshold`, or -1 if every step is correct."""
    for i, v in enumerate(labels):
        if not float(v) > threshold:
            return i
    return -1


def _fail(where: str, row_id: Any, field: str, msg: str) -> UserError:
    rid = f" (id {row_id!r})" if row_id not in (None, "") else ""
    return UserError(f"{where}{rid}: field {field!r}: {msg}")


def _int_list(row: dict, field: str, where: str) -> list[int]:
    value = row[field]
    if not isinstance(value, (list, tuple)):
        raise _fail(where, row.get("id"), field, f"expected a list of integers, got {type(value).__name__}")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or float(v) != int(v):
            raise _fail(where, row.get("id"), field, f"entry {i} is {v!r}; expected an integer")
        out.append(int(v))
    return out


def validate_row(row: dict, where: str = "row") -> dict:
    """Check a native row and return a clean copy (labels as floats, null optional fields dropped).

    `where` prefixes every error (e.g. "data.jsonl: row 7") so a message names the file, row and field.
    """
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected an object with fields {', '.join(REQUIRED_FIELDS)}, "
                         f"got {type(row).__name__}")
    rid = row.get("id")
    for name in REQUIRED_FIELDS:
        if row.get(name) is None:
            raise _fail(where, rid, name, f"missing; a step-labelled row needs {', '.join(REQUIRED_FIELDS)}")
    clean = {k: v for k, v in row.items() if not (k in OPTIONAL_FIELDS and v is None)}
    if not isinstance(rid, str) or not rid:
        raise _fail(where, rid, "id", f"expected a non-empty string, got {rid!r}")
    if not isinstance(row["problem"], str):
        raise _fail(where, rid, "problem", f"expected a string, got {type(row['problem']).__name__}")
    steps = row["steps"]
    if not isinstance(steps, (list, tuple)) or not steps:
        raise _fail(where, rid, "steps", "expected a non-empty list of strings")
    for i, s in enumerate(steps):
        if not isinstance(s, str):
            raise _fail(where, rid, "steps", f"step {i} is {type(s).__name__}, expected a string")
    labels = row["labels"]
    if not isinstance(labels, (list, tuple)):
        raise _fail(where, rid, "labels", f"expected a list of numbers in [0, 1], got {type(labels).__name__}")
    if len(labels) > len(steps):
        raise _fail(where, rid, "labels", f"{len(labels)} labels for {len(steps)} steps; "
                    "labels may be shorter than steps (unlabelled tail) but never longer")
    floats = []
    for i, v in enumerate(labels):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or not 0.0 <= v <= 1.0:
            raise _fail(where, rid, "labels", f"label {i} is {v!r}; expected a number in [0, 1] (1 = correct step)")
        floats.append(float(v))
    clean["steps"] = list(steps)
    clean["labels"] = floats
    if ("mc_correct" in clean) != ("mc_total" in clean):
        missing = "mc_total" if "mc_correct" in clean else "mc_correct"
        raise _fail(where, rid, missing, "mc_correct and mc_total come together (Monte Carlo evidence per step)")
    if "mc_correct" in clean:
        correct, total = _int_list(clean, "mc_correct", where), _int_list(clean, "mc_total", where)
        for name, vals in (("mc_correct", correct), ("mc_total", total)):
            if len(vals) != len(floats):
                raise _fail(where, rid, name, f"{len(vals)} entries for {len(floats)} labels; "
                            "one entry per labelled step")
        for i, (c, t) in enumerate(zip(correct, total)):
            if not 0 <= c <= t:
                raise _fail(where, rid, "mc_correct", f"step {i}: {c} correct of {t} rollouts; "
                            "need 0 <= mc_correct <= mc_total (0 of 0 = step not probed)")
        clean["mc_correct"], clean["mc_total"] = correct, total
    for name in ("answer", "method", "source"):
        if name in clean and not isinstance(clean[name], str):
            raise _fail(where, rid, name, f"expected a string, got {type(clean[name]).__name__}")
    if "rollouts" in clean:
        r = clean["rollouts"]
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            raise _fail(where, rid, "rollouts", f"expected a non-negative integer, got {r!r}")
    return clean


def relabel(row: dict, mode: str, threshold: float = 0.0) -> dict:
    """A copy of a native row whose labels are re-derived from its mc_correct/mc_total evidence."""
    if "mc_correct" not in row or "mc_total" not in row:
        raise UserError(f"row {row.get('id')!r}: cannot re-derive labels without mc_correct and mc_total "
                         "(only rows written by Monte Carlo labeling carry them)")
    return {**row, "labels": derive_labels(row["mc_correct"], row["mc_total"], mode, threshold)}
