"""Scoring ProcessBench rows one bad row at a time, and the metrics a row's first-error label implies.

A row that cannot be scored (longer than the PRM's max length, a step the tokenizer cannot place, a model
failure on that row) is skipped with its id and the reason, truncated to the longest step prefix that
fits (`on_error="truncate"`, only for over-long rows), or stops the job (`on_error="fail"`).

Step labels a ProcessBench row implies: steps before the first error are correct, the first error is
wrong, steps after it carry no label; a label -1 row has every step correct.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ttscale.errors import UserError
from ttscale.inference.prm_inputs import SequenceTooLongError, StepAlignmentError

ON_ERROR = ("skip", "truncate", "fail")


class RowError(UserError):
    """A row that could not be scored, under --on-error fail; names the file and the row id."""


def implied_step_labels(label: int, n_steps: int) -> list[int]:
    """1 = correct, 0 = wrong, for the steps a first-error label speaks about (the rest are unlabelled)."""
    return [1] * n_steps if label < 0 else [1] * label + [0]


def _fitting_prefix(scorer: Any, row: dict) -> int:
    """Most leading steps of `row` whose encoding fits max_length (0: not even the first step)."""
    lo, hi = 0, len(row["steps"]) - 1  # the full row is known not to fit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            scorer.encode(row["problem"], row["steps"][:mid])
            lo = mid
        except SequenceTooLongError:
            hi = mid - 1
    return lo


def _encode_or_reason(scorer: Any, row: dict, on_error: str, source: str) -> tuple[int, str | None]:
    """(steps to score, reason it was cut or skipped or None); raises RowError under on_error=fail."""
    try:
        scorer.encode(row["problem"], row["steps"], label=f"row {row['id']}")
        return len(row["steps"]), None
    except StepAlignmentError as e:
        if on_error == "fail":
            raise RowError(f"{source}: {e} (--on-error skip skips such rows)") from e
        if on_error == "truncate" and isinstance(e, SequenceTooLongError):
            k = _fitting_prefix(scorer, row)
            return k, str(e)
        return 0, str(e)


def score_rows(scorer: Any, rows: list[dict], on_error: str = "skip", source: str = "") -> list[dict]:
    """Score every row in place (`scores`, `scored_steps`, `truncated`); returns {file, id, reason} per skipped row.

    Encoding is checked row by row first, so one bad row never reaches the batched forward pass; if a batch
    still fails, its rows are retried one at a time so only the failing row is lost.
    """
    if on_error not in ON_ERROR:
        raise UserError(f"--on-error {on_error!r}: choose one of {', '.join(ON_ERROR)}")
    skipped: list[dict] = []
    todo: list[dict] = []
    for row in rows:
        k, reason = _encode_or_reason(scorer, row, on_error, source)
        row["scores"], row["scored_steps"], row["truncated"] = None, k, k < len(row["steps"])
        if k == 0:
            skipped.append({"file": source, "id": row["id"], "reason": reason})
        else:
            if reason:
                row["truncation_reason"] = reason
            todo.append(row)
    items = [(r["problem"], r["steps"][:r["scored_steps"]]) for r in todo]
    try:
        results = scorer.score(items)
    except Exception:  # noqa: BLE001 - find the row(s) that fail
        results = []
        for row, item in zip(todo, items):
            try:
                results.append(scorer.score([item])[0])
            except Exception as e:  # noqa: BLE001 - one row's model failure must not end the job
                if on_error == "fail":
                    raise RowError(f"{source}: row {row['id']}: scoring failed: {type(e).__name__}: {e}") from e
                results.append(None)
                skipped.append({"file": source, "id": row["id"], "reason": f"scoring failed: {type(e).__name__}: {e}"})
        if all(r is None for r in results):
            raise  # every row fails alike: a setup problem or a bug, not a bad row
    for row, scores in zip(todo, results):
        row["scores"] = scores
    if not todo:
        raise UserError(f"{source}: no row could be scored (first reason: {skipped[0]['reason']})")
    return skipped


def step_metrics(rows: Sequence[dict], threshold: float) -> dict[str, Any]:
    """Step ROC AUC and step accuracy (score > threshold = predicted correct) over the implied step labels."""
    from sklearn.metrics import roc_auc_score

    scores, labels = [], []
    for r in rows:
        y = implied_step_labels(r["label"], len(r["steps"]))[:r["scored_steps"]]
        scores += r["scores"][:len(y)]
        labels += y
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    if not len(s):
        return {"step_auc": None, "step_accuracy": None, "steps": 0}
    auc = float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None  # undefined with one class
    return {"step_auc": auc, "step_accuracy": float(((s > threshold) == y).mean()), "steps": int(len(s)),
            "steps_wrong": int((~y).sum())}


def first_error_judgeable(row: dict) -> bool:
    """Whether the row's first-error verdict is known: whole row scored, or its first error within the scored part."""
    return not row["truncated"] or 0 <= row["label"] < row["scored_steps"]
