"""Difficulty of each problem and its bin.

Two measures, both higher = easier:
  oracle     pass@1 of the base policy = fraction of a parallel run's samples graded correct (needs gold).
  predicted  mean PRM final-step score over the same samples (needs no gold, so usable at test time).
Two binnings, both thresholds on the measure (so a new problem can be binned the same way):
  quantile   Snell et al.: edges at the 20/40/60/80% quantiles -> levels "1" (easiest) … "5" (hardest).
  fixed      Liu et al. 2025: pass@1 in [0.5, 1] easy, [0.1, 0.5) medium, [0, 0.1) hard.
A value equal to an edge goes to the easier bin.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ttscale.eval.runs import Run
from ttscale.search.allocation_file import LIU_LABELS, LIU_THRESHOLDS, Binning, predicted_difficulty_of

def quantile_binning(values: Sequence[float], n_bins: int = 5) -> Binning:
    """Snell et al. levels: equal-count bins by quantile; level 1 = highest values = easiest."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if len(values) == 0:
        raise ValueError("quantile binning needs at least one difficulty value")
    edges = tuple(float(e) for e in np.quantile(np.asarray(values, dtype=float), np.arange(1, n_bins) / n_bins))
    return Binning("quantile", edges, tuple(str(n_bins - i) for i in range(n_bins)))


def fixed_binning(thresholds: Sequence[float] = LIU_THRESHOLDS, labels: Sequence[str] = LIU_LABELS) -> Binning:
    return Binning("fixed", tuple(float(t) for t in thresholds), tuple(labels))


def make_binning(kind: str, values: Sequence[float], n_bins: int = 5,
                 thresholds: Sequence[float] = LIU_THRESHOLDS) -> Binning:
    if kind == "quantile":
        return quantile_binning(values, n_bins)
    if kind == "fixed":
        labels = LIU_LABELS if len(thresholds) == 2 else tuple(f"bin{i}" for i in range(len(thresholds) + 1))
        return fixed_binning(thresholds, labels)
    raise ValueError(f"binning {kind!r} is unknown; choose quantile or fixed")


def oracle_difficulty(run: Run) -> dict[str, float]:
    """id -> pass@1 (share of correct samples) for every graded problem of a parallel-sample run."""
    return {p.id: float(np.mean(p.correct)) if p.correct else 0.0 for p in run.graded}


def predicted_difficulty(run: Run, samples: int = 0) -> dict[str, float]:
    """id -> mean final-step PRM score over the first `samples` samples (0 = all); problems without any scored
    sample are left out. `auto` bins a new problem on its probe's few samples, and a mean over 4 spreads wider
    than one over 16, so the bin edges must come from means over as many samples as the probe draws."""
    out = {}
    for p in run.problems:
        v = predicted_difficulty_of(p.candidates[:samples] if samples > 0 else p.candidates)
        if v is not None:
            out[p.id] = v
    return out


def difficulty_run(runs: Sequence[Run], path: str | None = None) -> Run:
    """The run difficulties come from: the one named, else the parallel run with the most samples."""
    if path is not None:
        for r in runs:
            if r.path == str(path):
                return r
        raise ValueError(f"--difficulty-run {path} is not one of the evaluated runs: {[r.path for r in runs]}")
    parallel = [r for r in runs if r.parallel and r.graded]
    if not parallel:
        raise ValueError("difficulty bins need a graded majority/best-of-n run (many samples per problem); "
                         "add one, or pass --bins none")
    return max(parallel, key=lambda r: r.budget)
