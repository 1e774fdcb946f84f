"""PRM quality metrics shared by training-time evaluation and `eval-prm`.

Conventions (the same as ttscale.data.labels): a step is correct when its value is strictly greater than
the threshold, so a PRM's predicted first error is the first step whose score is <= the threshold.

- step accuracy / ROC AUC: every labelled step on its own (AUC from scikit-learn; None with one class).
- first-error F1 as in ProcessBench: accuracy on erroneous rows (predicted first error == gold first
  error) and on correct rows (no step predicted wrong), then their harmonic mean.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

IGNORE = -100  # label value of positions that carry no step label


def first_error(values: Sequence[float], threshold: float = 0.5) -> int:
    """Index of the first value <= threshold (a wrong step), or -1 when every step is above it."""
    for i, v in enumerate(values):
        if not float(v) > threshold:
            return i
    return -1


def harmonic_mean(a: float, b: float) -> float:
    return 0.0 if a + b <= 0 else 2 * a * b / (a + b)


def first_error_scores(pred: Sequence[int], gold: Sequence[int]) -> dict[str, float]:
    """ProcessBench scores of predicted vs gold first-error indices (-1 = no error)."""
    pred, gold = np.asarray(pred, dtype=np.int64), np.asarray(gold, dtype=np.int64)
    err, ok = gold >= 0, gold < 0
    acc_error = float((pred[err] == gold[err]).mean()) if err.any() else float("nan")
    acc_correct = float((pred[ok] == -1).mean()) if ok.any() else float("nan")
    # A split with only one kind of row has an F1 of its one accuracy (ProcessBench splits have both).
    if np.isnan(acc_error) or np.isnan(acc_correct):
        f1 = acc_correct if np.isnan(acc_error) else acc_error
    else:
        f1 = harmonic_mean(acc_error, acc_correct)
    return {"n": int(len(gold)), "n_error": int(err.sum()), "n_correct": int(ok.sum()),
            "acc_error": acc_error, "acc_correct": acc_correct, "f1": float(f1)}


def step_scores(scores: Sequence[float], labels: Sequence[float], threshold: float = 0.5) -> dict[str, float | None]:
    """Per-step accuracy and ROC AUC; soft labels count as correct when > threshold."""
    from sklearn.metrics import roc_auc_score

    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64) > threshold
    if len(s) == 0:
        return {"step_accuracy": None, "step_auc": None, "steps": 0}
    auc = float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None
    return {"step_accuracy": float(((s > threshold) == y).mean()), "step_auc": auc, "steps": int(len(s))}


def rows_from_padded(scores: np.ndarray, labels: np.ndarray) -> list[tuple[list[float], list[float]]]:
    """[N, K] padded score/label arrays (IGNORE where no step) -> per row (scores, labels) in step order."""
    rows = []
    for s, y in zip(np.asarray(scores), np.asarray(labels)):
        keep = y != IGNORE
        rows.append((s[keep].astype(float).tolist(), y[keep].astype(float).tolist()))
    return rows


def prm_metrics(rows: Sequence[tuple[Sequence[float], Sequence[float]]], threshold: float = 0.5) -> dict:
    """All metrics over rows of (per-step scores, per-step labels)."""
    rows = [(s, y) for s, y in rows if len(y)]
    flat_s = [v for s, _ in rows for v in s]
    flat_y = [v for _, y in rows for v in y]
    out = step_scores(flat_s, flat_y, threshold)
    fe = first_error_scores([first_error(s, threshold) for s, _ in rows],
                            [first_error(y, threshold) for _, y in rows])
    out.update({"first_error_f1": fe["f1"], "acc_error": fe["acc_error"], "acc_correct": fe["acc_correct"]})
    return out


def compute_metrics(eval_pred) -> dict:
    """`transformers.Trainer` hook: predictions = per-step scores, label_ids = per-step labels (padded)."""
    scores, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(scores, (tuple, list)):
        scores = scores[0]
    # Trainer reports None/NaN poorly; a metric that cannot be computed is left out.
    return {k: v for k, v in prm_metrics(rows_from_padded(scores, labels)).items()
            if v is not None and not (isinstance(v, float) and np.isnan(v))}


def f1_by_threshold(step_scores_per_row: Sequence[Sequence[float]], gold: Sequence[int],
                    candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """First-error F1 at every candidate threshold at once (sorted candidates, F1 per candidate).

    Row with gold first error k is right iff score[k] <= t < min(score[:k]); a correct row iff t < min(score).
    Counting intervals with searchsorted makes this O((rows + candidates) log rows).
    """
    lo, hi, ok_min = [], [], []
    for s, k in zip(step_scores_per_row, gold):
        s = np.asarray(s, dtype=np.float64)
        if k >= 0:
            prefix_min = s[:k].min() if k > 0 else np.inf
            if s[k] < prefix_min:
                lo.append(s[k])
                hi.append(prefix_min)
        else:
            ok_min.append(s.min() if len(s) else np.inf)
    n_err = sum(1 for k in gold if k >= 0)
    n_ok = len(gold) - n_err
    if candidates is None:
        every = np.concatenate([np.asarray(s, dtype=np.float64) for s in step_scores_per_row] or [np.zeros(0)])
        candidates = np.unique(np.concatenate([every, [-np.inf]]))
    t = np.sort(np.asarray(candidates, dtype=np.float64))
    lo_s, hi_s, ok_s = np.sort(lo), np.sort(hi), np.sort(ok_min)
    right_err = np.searchsorted(lo_s, t, side="right") - np.searchsorted(hi_s, t, side="right")
    right_ok = len(ok_s) - np.searchsorted(ok_s, t, side="right")
    acc_err = right_err / n_err if n_err else np.full(len(t), np.nan)
    acc_ok = right_ok / n_ok if n_ok else np.full(len(t), np.nan)
    if not n_err or not n_ok:
        f1 = acc_ok if not n_err else acc_err
    else:
        denom = acc_err + acc_ok
        f1 = np.where(denom > 0, 2 * acc_err * acc_ok / np.where(denom > 0, denom, 1), 0.0)
    return t, f1


def best_threshold(step_scores_per_row: Sequence[Sequence[float]], gold: Sequence[int]) -> tuple[float, float]:
    """The threshold maximising first-error F1 (midway into its best interval, so it generalises) and that F1."""
    t, f1 = f1_by_threshold(step_scores_per_row, gold)
    if not np.isfinite(t).any():  # no scores at all
        return 0.5, float("nan")
    i = int(np.argmax(f1))
    # F1 is constant on [t_i, t_{i+1}); its middle is the most robust choice (t_0 = -inf: below every score).
    hi = t[i + 1] if i + 1 < len(t) else t[i] + 1e-6
    lo = t[i] if np.isfinite(t[i]) else hi - 1e-6
    return float((lo + hi) / 2), float(f1[i])
