"""Does compute-optimal allocation hold up on problems it was not fitted on?

`evaluate` fits the allocation file on one problem set (its k-fold curve is what it *predicts* the allocation
achieves at each budget). `search --strategy auto` then runs that file on a fresh set, next to the baseline
(weighted best-of-N) on the same fresh problems. This compares, per auto budget:
  achieved   auto's accuracy on the fresh problems (with its interval)
  predicted  the fitted curve's held-out accuracy at that budget
  baseline   the baseline's accuracy on the fresh problems at auto's *measured* cost on the chosen axis
             (log2-linear interpolation between the baseline's measured points; None outside them), and its
             best measured point that spent no more than auto (what the same compute buys without allocation)
  paired     auto minus the baseline at that point, on the same fresh problems, with a paired interval
             (from the fresh evaluation's `paired_vs_baseline`, when its budget matches)
  tuned      the tuned baseline as deployed: the selection (aggregation, voting, N') the fitted evaluation's
             k-fold procedure chose for parallel sampling at that budget, applied to the fresh baseline run,
             with auto minus it paired on the same problems (needs the fresh evaluation's points)
Inputs are two `evaluate` summary.json dicts (and the fresh points), so any two evaluations compare this way;
`evaluate --deployment-of FITTED/summary.json` writes it into the fresh evaluation's summary.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from ttscale.eval.metrics import Point, paired_difference


def accuracy_at_cost(points: Mapping[float, float], cost: float) -> float | None:
    """Accuracy of a curve {cost: accuracy} at `cost`, log2-linear between its points; None outside them."""
    xs = sorted(c for c in points if c and c > 0)
    if not xs or cost is None or not xs[0] <= cost <= xs[-1]:
        return None
    for lo, hi in zip(xs, xs[1:] + xs[-1:]):
        if lo <= cost <= hi:
            if hi == lo:
                return float(points[lo])
            t = (math.log2(cost) - math.log2(lo)) / (math.log2(hi) - math.log2(lo))
            return float(points[lo] + t * (points[hi] - points[lo]))
    return None


def deployment(fitted: Mapping[str, Any], fresh: Mapping[str, Any], points: Sequence[Point] = (),
               method: str = "auto", baseline: str = "weighted-best-of-n") -> dict[str, Any]:
    """Predicted vs achieved accuracy of `method` (auto) on fresh problems, and the baseline at equal measured
    cost there (see the module doc); `fitted` and `fresh` are `evaluate` summaries."""
    co = fitted.get("compute_optimal") or {}
    axis = co.get("cost_axis") or "flops"
    if axis == "n":
        axis = "run_tokens"     # equal *measured* cost: nominal N says nothing about what auto ran
    curve = {int(b): a for b, a in (co.get("curve") or {}).items()}
    # what the held-out choices spent on the fitted split, on the same axis (none for nominal N)
    predicted_cost = {int(b): c for b, c in (co.get("curve_cost") or {}).items()} if co.get("cost_axis") != "n" else {}
    acc, ci, cost = (fresh.get(k, {}).get(method, {}) for k in ("accuracy", "accuracy_ci", "cost"))
    base_acc, base_cost = fresh.get("accuracy", {}).get(baseline, {}), fresh.get("cost", {}).get(baseline, {})
    base = {base_cost[b][axis]: a for b, a in base_acc.items() if base_cost.get(b, {}).get(axis)}
    rows = {}
    for b, achieved in acc.items():
        spent = (cost.get(b) or {}).get(axis)
        cheaper = [(c, b2) for b2, bc in base_cost.items() if (c := (bc or {}).get(axis)) and spent and c <= spent]
        at_most = max(cheaper, key=lambda cb: (base_acc[cb[1]], -cb[0]), default=None)
        rows[str(b)] = {"achieved": achieved, "achieved_ci": ci.get(b), "predicted": curve.get(int(b)),
                        "cost": spent, "predicted_cost": predicted_cost.get(int(b)),
                        "baseline_at_equal_cost": accuracy_at_cost(base, spent),
                        "baseline_at_most_cost": None if at_most is None else {
                            "budget": at_most[1], "cost": at_most[0], "accuracy": base_acc[at_most[1]]},
                        "paired_vs_baseline": (fresh.get("paired_vs_baseline", {}).get(method) or {}).get(b),
                        "tuned_baseline": _tuned(co, points, method, int(b), axis)}
    return {"method": method, "baseline": baseline, "cost_axis": axis, "problems": _problems(fresh, method),
            "budgets": rows}


def _tuned(co: Mapping[str, Any], points: Sequence[Point], method: str, budget: int, axis: str
           ) -> dict[str, Any] | None:
    """The fitted tuned baseline's choice at `budget`, scored on the fresh points, and auto minus it (paired)."""
    choice = ((co.get("tuned_baseline") or {}).get("chosen") or {}).get(str(budget))
    if not choice:
        return None
    find = {pt.key: pt for pt in points}
    base = find.get((choice["method"], choice["aggregation"], choice["voting"], int(choice["budget"])))
    auto = next((pt for pt in points if pt.method == method and pt.budget == budget), None)
    out = {k: choice[k] for k in ("method", "aggregation", "voting", "budget")}
    if base is None or auto is None:
        return {**out, "accuracy": None, "paired": None}
    cost = base.cost("tokens" if axis == "run_tokens" else axis)
    return {**out, "accuracy": base.accuracy()[0], "cost": cost, "paired": list(paired_difference(auto, base))}


def _problems(summary: Mapping[str, Any], method: str) -> int | None:
    rows = [r for r in summary.get("sweep", []) if r.get("method") == method]
    return rows[0]["problems"] if rows else None
