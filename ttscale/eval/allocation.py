"""Compute-optimal allocation (Snell et al. 2024, Eq. 1) and the policy file `ttscale search --strategy auto` reads.

For each difficulty bin and budget N, choose the configuration θ (strategy + beam width / lookahead k /
revision length + aggregation + voting) that maximises accuracy; any configuration whose nominal budget is
<= N is allowed (spending less is within budget). Ties go to the cheaper, then the earlier-listed one.
Honest accuracy comes from k-fold cross-validation over the problems, as in the paper: choose on k-1
folds, score the choice on the held-out fold, and average over all problems. The exported allocation is the
choice made on all problems.

compute_optimal_efficiency = B_baseline(a) / B_optimal(a): how many times the budget best-of-N needs to reach
accuracy a versus the compute-optimal curve, where B(a) is the smallest budget at which the curve's running
maximum reaches a, interpolated linearly in log2(budget) between measured budgets, and a is the highest
accuracy the baseline reaches. None when the compute-optimal curve never reaches a (or a curve is empty).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from ttscale.search.allocation_file import ALLOCATION_VERSION, Binning
from ttscale.eval.metrics import Point

@dataclass
class Allocation:
    budgets: list[int]
    curve: dict[int, float]                            # held-out (k-fold) compute-optimal accuracy per budget
    by_bin: dict[str, dict[int, float]]                # the same per difficulty bin
    choices: dict[str, dict[int, dict[str, Any]]]      # bin -> budget -> config chosen on all problems
    fallback: dict[int, dict[str, Any]]                # budget -> best config ignoring bins
    problems: int = 0
    folds: int = 0
    notes: list[str] = field(default_factory=list)


def _matrix(points: Sequence[Point], bins: Mapping[str, str]) -> tuple[list[Point], list[str], np.ndarray]:
    """Points sorted cheapest first, the problems every point and the binning cover, [points × problems]."""
    pts = sorted(points, key=lambda p: p.budget)      # stable: keeps the given order within a budget
    common = set(bins)
    for p in pts:
        common &= set(p.ids)
    ids = sorted(common)
    if not ids:
        raise ValueError("no problem is graded in every run and binned; evaluate runs over the same problems")
    mat = np.stack([p.per_problem()[[p.ids.index(i) for i in ids]] for p in pts])
    return pts, ids, mat


def _choose(mat: np.ndarray, pts: Sequence[Point], budget: int, cols: np.ndarray) -> int:
    allowed = [i for i, p in enumerate(pts) if p.budget <= budget]
    return allowed[int(np.argmax(mat[allowed][:, cols].mean(axis=1)))]   # argmax: first of equals = cheapest


def _config(pt: Point, accuracy: float) -> dict[str, Any]:
    return {**pt.config, "method": pt.method, "accuracy": round(float(accuracy), 6)}


def allocate(points: Sequence[Point], bins: Mapping[str, str], folds: int = 5, seed: int = 0) -> Allocation:
    """Per-bin compute-optimal choice, k-fold held-out accuracy, and the policy chosen on all problems."""
    pts, ids, mat = _matrix(points, bins)
    labels = np.array([bins[i] for i in ids])
    label_set = sorted({str(x) for x in labels})      # plain str: the policy file is YAML
    budgets = sorted({p.budget for p in pts})
    everyone = np.arange(len(ids))
    notes = []
    k = min(folds, len(ids))
    held = np.zeros((len(budgets), len(ids)))
    if k >= 2:
        perm = np.random.default_rng(seed).permutation(len(ids))
        for test in np.array_split(perm, k):
            train = np.setdiff1d(everyone, test)
            for b_i, budget in enumerate(budgets):
                for label in sorted(set(labels[test])):
                    fit = train[labels[train] == label]
                    if len(fit) == 0:   # no training problem in this bin: fall back to the overall best
                        fit = train
                    chosen = _choose(mat, pts, budget, fit)
                    cols = test[labels[test] == label]
                    held[b_i, cols] = mat[chosen, cols]
    else:
        notes.append(f"only {len(ids)} problem(s): no cross-validation, accuracies are in-sample")
        for b_i, budget in enumerate(budgets):
            for label in label_set:
                cols = everyone[labels == label]
                held[b_i, cols] = mat[_choose(mat, pts, budget, cols), cols]
    curve = {b: float(held[i].mean()) for i, b in enumerate(budgets)}
    by_bin = {lab: {b: float(held[i, labels == lab].mean()) for i, b in enumerate(budgets)}
              for lab in label_set}
    choices: dict[str, dict[int, dict[str, Any]]] = {}
    for lab in label_set:
        cols = everyone[labels == lab]
        choices[lab] = {}
        for b in budgets:
            c = _choose(mat, pts, b, cols)
            choices[lab][b] = _config(pts[c], mat[c, cols].mean())
    fallback = {}
    for b in budgets:
        c = _choose(mat, pts, b, everyone)
        fallback[b] = _config(pts[c], mat[c].mean())
    return Allocation(budgets=budgets, curve=curve, by_bin=by_bin, choices=choices, fallback=fallback,
                      problems=len(ids), folds=k if k >= 2 else 0, notes=notes)


# ---------------------------------------------------------------- allocation file (read by search.allocation_file)


def allocation_dict(alloc: Allocation, binning: Binning, measure: str) -> dict[str, Any]:
    return {
        "version": ALLOCATION_VERSION,
        "difficulty": {"measure": measure, **binning.to_dict(),
                       "how": "mean final-step PRM score over samples" if measure == "predicted"
                       else "pass@1 of the policy (needs gold; not available at test time)"},
        "budgets": list(alloc.budgets),
        "bins": {lab: {str(b): cfg for b, cfg in per.items()} for lab, per in alloc.choices.items()},
        "fallback": {str(b): cfg for b, cfg in alloc.fallback.items()},
    }


def write_allocation(allocation: Mapping[str, Any], path: str | Path) -> Path:
    path = Path(path)
    text = json.dumps(allocation, indent=1) if path.suffix.lower() == ".json" else yaml.safe_dump(dict(allocation),
                                                                                             sort_keys=False)
    path.write_text(text)
    return path


# ---------------------------------------------------------------- efficiency


def budget_to_reach(curve: Mapping[int, float], target: float) -> float | None:
    """Smallest budget at which the curve's running maximum reaches `target` (log2-linear interpolation)."""
    if not curve:
        return None
    budgets = sorted(curve)
    env = np.maximum.accumulate([curve[b] for b in budgets])
    hit = np.nonzero(env >= target - 1e-12)[0]
    if len(hit) == 0:
        return None
    i = int(hit[0])
    if i == 0:
        return float(budgets[0])
    lo, hi = np.log2(budgets[i - 1]), np.log2(budgets[i])
    t = (target - env[i - 1]) / (env[i] - env[i - 1])
    return float(2 ** (lo + t * (hi - lo)))


def compute_optimal_efficiency(baseline: Mapping[int, float], optimal: Mapping[int, float],
                               target: float | None = None) -> float | None:
    """B_baseline(a) / B_optimal(a) at a = the baseline's best accuracy (or `target`); see module docstring."""
    if not baseline or not optimal:
        return None
    a = max(baseline.values()) if target is None else target
    b_base, b_opt = budget_to_reach(baseline, a), budget_to_reach(optimal, a)
    if b_base is None or b_opt is None:
        return None
    return b_base / b_opt
