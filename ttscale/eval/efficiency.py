"""How much compute compute-optimal allocation saves, against a baseline tuned as carefully as it is.

Efficiency (Snell et al.): B_baseline(a) / B_optimal(a), the cost the baseline needs to reach accuracy a over
the cost compute-optimal allocation needs, on the allocation's cost axis, where B(a) is the smallest cost at
which the curve's running maximum reaches a, interpolated linearly in log2(cost) between measured points, and
a is the highest accuracy the baseline reaches. None when the compute-optimal curve never reaches a.

The baseline (`tuned_baseline`): parallel sampling with its aggregation and voting chosen by the same k-fold
procedure as the allocation (one bin, the same budgets, the same folds), so the figure measures what choosing
a strategy per difficulty buys, not what choosing an aggregation buys. Both curves are held-out curves at
the held-out choices' measured cost.

Interval (`efficiency_refit`): a percentile bootstrap over problems in which each replicate refits both the
allocation and the tuned baseline on its resample (copies of a problem stay in one fold), so the variance of
choosing among many configurations is in it. The same replicates give the efficiency curve: at each budget
N of the baseline's grid, B_baseline(N) / B_optimal(a_N), a_N the tuned baseline's accuracy at N (its running
maximum), so the headline is the curve's value where the baseline peaks. `efficiency` keeps the older, narrower reading against one
fixed default curve (choices held fixed per replicate), reported beside it for each parallel baseline.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ttscale.eval.allocation import Allocation, allocate
from ttscale.eval.metrics import Point, default_curves

TUNED = "best-of-N (selection tuned)"   # how reports name the tuned baseline


def budget_to_reach(curve: Mapping[float, float], target: float) -> float | None:
    """Smallest cost at which the curve's running maximum reaches `target` (log2-linear interpolation)."""
    if not curve:
        return None
    budgets = sorted(curve)
    env = np.maximum.accumulate([curve[b] for b in budgets])
    hit = np.nonzero(env >= target - 1e-12)[0]
    if len(hit) == 0:
        return None
    i = int(hit[0])
    if i == 0 or budgets[i - 1] <= 0:   # nothing below to interpolate from (log2 needs a positive cost)
        return float(budgets[i])
    lo, hi = np.log2(budgets[i - 1]), np.log2(budgets[i])
    t = (target - env[i - 1]) / (env[i] - env[i - 1])
    return float(2 ** (lo + t * (hi - lo)))


def compute_optimal_efficiency(baseline: Mapping[float, float], optimal: Mapping[float, float],
                               target: float | None = None) -> float | None:
    """B_baseline(a) / B_optimal(a) at a = the baseline's best accuracy (or `target`); curves map cost ->
    accuracy. See module docstring."""
    if not baseline or not optimal:
        return None
    a = max(baseline.values()) if target is None else target
    b_base, b_opt = budget_to_reach(baseline, a), budget_to_reach(optimal, a)
    if b_base is None or b_opt is None or b_opt <= 0:
        return None
    return b_base / b_opt


def _curve(costs: Sequence[float], accuracies: Sequence[float]) -> dict[float, float]:
    out: dict[float, float] = {}
    for c, a in zip(costs, accuracies):     # two budgets that cost the same: the better accuracy counts
        out[float(c)] = max(out.get(float(c), -1.0), float(a))
    return out


def held_curve(held: np.ndarray, held_cost: np.ndarray) -> dict[float, float]:
    return _curve(held_cost.mean(axis=1), held.mean(axis=1))


def _bootstrap(value: Callable[[np.ndarray], Any], n: int, replicates: int, seed: int) -> dict[str, Any]:
    """Percentile bootstrap over problems of `value` (a number or None, or an array with NaN for undefined): each
    element's interval from the replicates where it is defined, None where fewer than half are."""
    def arr(v: Any) -> np.ndarray:
        return np.atleast_1d(np.array(np.nan if v is None else v, dtype=float))

    point = value(np.arange(n))
    rng = np.random.default_rng(seed)
    boots = np.stack([arr(value(rng.integers(0, n, size=n))) for _ in range(replicates)])
    out = []
    for j, v in enumerate(arr(point)):
        defined = boots[~np.isnan(boots[:, j]), j]
        low = high = None
        if len(defined) >= replicates / 2:
            low, high = (float(x) for x in np.percentile(defined, [2.5, 97.5]))
        out.append({"value": None if np.isnan(v) else float(v), "low": low, "high": high,
                    "replicates_defined": len(defined)})
    return out[0] if np.ndim(point) == 0 or point is None else out


def efficiency(alloc: Allocation, points: Sequence[Point], method: str, replicates: int = 1000,
               seed: int = 0) -> dict[str, Any] | None:
    """Efficiency against `method`'s default curve (its own aggregation and voting) on the allocation's axis:
    {"value", "low", "high", "axis", "replicates_defined"}; None without that curve. The interval resamples
    problems with the held-out choices fixed; replicates where a curve does not reach the target are left out,
    and with fewer than half defined the interval is None."""
    curve = default_curves(points).get(method, {})
    if not curve or alloc.held is None:
        return None
    budgets = sorted(curve)
    base_hits = np.stack([curve[b].per_problem()[[curve[b].ids.index(i) for i in alloc.ids]] for b in budgets])
    base_cost = [curve[b].cost(alloc.axis) for b in budgets]

    def value(cols: np.ndarray) -> float | None:
        return compute_optimal_efficiency(_curve(base_cost, base_hits[:, cols].mean(axis=1)),
                                          held_curve(alloc.held[:, cols], alloc.held_cost[:, cols]))

    return {**_bootstrap(value, len(alloc.ids), replicates, seed), "axis": alloc.axis}


def tuned_baseline(points: Sequence[Point], alloc: Allocation, seed: int = 0) -> Allocation:
    """Parallel sampling with aggregation and voting chosen k-fold, on the allocation's problems, budgets,
    axis and folds (one bin: a baseline knows no difficulty; no probe: it predicts none)."""
    parallel = [p for p in points if p.family == "parallel"]
    return allocate(parallel, {i: "all" for i in alloc.ids}, alloc.folds or 1, seed, axis=alloc.axis,
                    baseline=alloc.baseline)


def efficiency_curve(costs: Sequence[float], accuracies: Sequence[float],
                     optimal: Mapping[float, float]) -> list[float | None]:
    """Per baseline budget (costs ascending with N): its cost over what the optimal curve needs to reach the
    baseline's running-maximum accuracy there (None where it never does)."""
    env = np.maximum.accumulate(np.asarray(accuracies, dtype=float))
    need = [budget_to_reach(optimal, a) for a in env]
    return [c / b if b else None for c, b in zip(costs, need)]


def efficiency_refit(alloc: Allocation, tuned: Allocation, replicates: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Efficiency of the allocation's held-out curve against the tuned baseline's, with an interval whose every
    replicate refits both on a resample of the problems (module docstring); "curve": the same per budget N of
    the baseline (its N, the baseline's cost and accuracy there, the efficiency and its interval)."""
    if tuned.ids != alloc.ids:
        raise ValueError("the tuned baseline must be fitted on the allocation's problems")
    if alloc.fit is None or tuned.fit is None or alloc.folds < 2:   # in-sample fits have nothing to refit
        return {"value": None, "low": None, "high": None, "replicates_defined": 0, "axis": alloc.axis, "refit": True,
                "curve": []}

    def value(cols: np.ndarray) -> np.ndarray:   # on all columns this reproduces the reported held-out curves
        held, held_cost = tuned.fit.held_out(cols)
        opt = held_curve(*alloc.fit.held_out(cols))
        head = compute_optimal_efficiency(held_curve(held, held_cost), opt)
        per = efficiency_curve(held_cost.mean(axis=1), held.mean(axis=1), opt)
        return np.array([np.nan if v is None else v for v in [head, *per]])

    head, *per = _bootstrap(value, len(alloc.ids), replicates, seed)
    curve = [{"budget": b, "cost": tuned.curve_cost[b], "accuracy": tuned.curve[b], **e}
             for b, e in zip(tuned.budgets, per)]
    return {**head, "axis": alloc.axis, "refit": True, "curve": curve}
