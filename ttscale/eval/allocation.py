"""Compute-optimal allocation (Snell et al. 2024, Eq. 1) and the policy file `ttscale search --strategy auto` reads.

Configurations are compared at equal *measured* cost, on the axis the user picks (`evaluate --cost`):
flops (default; policy + reviser + PRM, prompts included), tokens (every token run through any model) or n
(the nominal budget N, the old rule). The budget grid is the baseline's (weighted best-of-N by default):
budget N stands for B_N = the baseline's measured mean cost per problem at N (for axis n, B_N = N). At
budget N a configuration θ (strategy + beam width / lookahead k / revision length + aggregation + voting) is
allowed only if its measured mean cost per problem is <= B_N — so lookahead's rollouts and every prompt
count against it — and the most accurate allowed one is chosen; among equally accurate ones the cheaper
(then the earlier-listed). That is rule `per-bin` (Snell et al.: every bin capped at B_N). Rule `mean` caps
the mean cost over problems instead: each bin's θ (with its own N) is chosen jointly, a knapsack over bins,
so what an easy bin does not need buys a hard bin more. Costs are per problem (Point.costs): under `mean`
a configuration is charged what it spent on the bin's own problems, so an adaptive-stopping run that stops
early on easy problems is cheap there, and the mean over problems of what the choices spent is exactly what
the rule caps. `max_budget` N bounds any one bin: no configuration costing more there than B_N per problem.
With bins on predicted difficulty, `probe` is the cost of the samples auto draws to predict it, charged as
auto spends it, per problem: on top of a configuration's own cost, except that one whose samples are the
seed's plain sequence (Strategy.extends: parallel sampling, adaptive stopping) takes the probe's samples as
its first ones (cost max(own, probe)). Where nothing fits B_N once the probe is paid (budgets below the
probe's own), the cheapest configurations compete. Without a baseline curve the grid is every nominal N and
the axis n, and a note says so; FLOPs of unknown size (a served model without --policy-params) fall back to
tokens.
Honest accuracy comes from k-fold cross-validation over the problems, as in the paper: choose on k-1
folds, score the choice on the held-out fold, and average over all problems; the held-out choices' own
measured cost is what the compute-optimal curve spent. The exported allocation is the choice made on all
problems, keyed by the baseline's N.

Efficiency, the tuned baseline and the refit interval are in eval/efficiency.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from ttscale.search.allocation_file import ALLOCATION_VERSION, Binning
from ttscale.eval.metrics import COST_AXES, Point, default_curves

_TOLERANCE = 1e-9      # relative: a configuration costing the baseline's own cost (to rounding) fits
RULES = ("per-bin", "mean")


@dataclass
class Allocation:
    budgets: list[int]                                 # the grid: the baseline's nominal N
    curve: dict[int, float]                            # held-out (k-fold) compute-optimal accuracy per budget
    by_bin: dict[str, dict[int, float]]                # the same per difficulty bin
    choices: dict[str, dict[int, dict[str, Any]]]      # bin -> budget -> config chosen on all problems
    fallback: dict[int, dict[str, Any]]                # budget -> best config ignoring bins
    problems: int = 0
    folds: int = 0
    notes: list[str] = field(default_factory=list)
    axis: str = "n"                                    # the cost axis configurations were compared on
    baseline: str | None = None                        # whose measured cost defines the budget grid
    budget_cost: dict[int, float] = field(default_factory=dict)   # N -> B_N on the axis
    curve_cost: dict[int, float] = field(default_factory=dict)    # N -> mean cost of the held-out choices
    ids: list[str] = field(default_factory=list)       # the problems the matrices below cover
    held: np.ndarray | None = None                     # [budgets × problems] held-out hits
    held_cost: np.ndarray | None = None                # [budgets × problems] cost of the config chosen for each
    fit: "Fit | None" = None                           # what the held-out curve was fitted from (refits use it)
    max_budget: int | None = None                      # --max-budget: the per-problem cap, as a baseline N


def _matrix(points: Sequence[Point], bins: Mapping[str, str], axis: str, probe: Any = 0.0
            ) -> tuple[list[Point], list[str], np.ndarray, np.ndarray]:
    """Points sorted cheapest first as charged, the problems every point and the binning cover, [points × problems]
    hits and [points × problems] charged costs. `probe`: a cost for every problem, or id -> cost."""
    common = set(bins)
    for p in points:
        common &= set(p.ids)
    ids = sorted(common)
    if not ids:
        raise ValueError("no problem is graded in every run and binned; evaluate runs over the same problems")
    if isinstance(probe, Mapping):
        mean = float(np.mean(list(probe.values()))) if probe else 0.0
        probe = np.array([float(probe.get(i, mean)) for i in ids])
    cost = charged(points, ids, axis, probe)
    mean = cost.mean(axis=1)     # sorted stably: the given order among equals
    order = sorted(range(len(points)), key=lambda i: (mean[i], points[i].cost(axis), points[i].budget))
    pts = [points[i] for i in order]
    mat = np.stack([p.per_problem()[[p.ids.index(i) for i in ids]] for p in pts])
    return pts, ids, mat, cost[order]


def budget_grid(points: Sequence[Point], axis: str, baseline: str | None) -> tuple[dict[int, float], str, list[str]]:
    """(N -> budget on the axis, the axis actually used, notes): see the module docstring."""
    if axis not in COST_AXES:
        raise ValueError(f"cost axis {axis!r} is unknown; choose one of {', '.join(COST_AXES)}")
    notes = []
    if axis == "flops" and not all(p.flops_known for p in points):
        notes.append("FLOPs are unknown for some run (a model of unknown size): configurations are compared on "
                     "tokens run instead; rerun the search with --policy-params / --reviser-params to compare FLOPs")
        axis = "tokens"
    curve = default_curves(points).get(baseline or "", {})
    if not curve:
        if axis != "n":
            notes.append(f"no {baseline or 'baseline'} curve to measure budgets against: configurations are "
                         f"compared by nominal N, not by measured {axis}")
        return {b: float(b) for b in sorted({p.budget for p in points})}, "n", notes
    return {b: curve[b].cost(axis) for b in sorted(curve)}, axis, notes


def charged(pts: Sequence[Point], ids: Sequence[str], axis: str, probe: Any = 0.0) -> np.ndarray:
    """[points × problems] each problem's cost as auto would spend it after a probe costing `probe` (a number, or
    one per problem): see the module docstring."""
    own = np.stack([p.costs(axis, ids) for p in pts])
    paid = np.broadcast_to(np.asarray(probe, dtype=float), own.shape[1:])
    reuse = np.array([p.extends for p in pts])[:, None]
    return np.where(reuse, np.maximum(own, paid), own + paid)


def _choose(mat: np.ndarray, cost: np.ndarray, limit: float, cols: np.ndarray,
            pool: np.ndarray | None = None, pooling: float = 0.0) -> int:
    """The allowed configuration with the best accuracy on the bin's problems `cols`, each accuracy shrunk
    toward the configuration's accuracy on `pool` (all bins) by `pooling` pseudo-problems."""
    # nothing fits: the budget is below the probe's cost, or the baseline is not among the points
    allowed = np.nonzero(cost <= max(limit, cost.min()) * (1 + _TOLERANCE))[0]
    prior = mat[allowed][:, pool].mean(axis=1) if pool is not None and pooling > 0 else 0.0
    score = (mat[allowed][:, cols].sum(axis=1) + pooling * prior) / max(len(cols) + pooling, 1)
    return int(allowed[int(np.argmax(score))])   # argmax: first of equals = cheapest


def _choose_mean(mat: np.ndarray, cost: np.ndarray, limit: float, labels: np.ndarray, cols: np.ndarray,
                 bins: Sequence[str], pooling: float = 0.0, cap: float = np.inf) -> dict[str, int]:
    """Per bin of `bins`, the configuration maximising the expected accuracy over `cols` subject to a MEAN cost
    per problem <= limit, each bin's cost and accuracy measured on its own problems and weighted by its share of
    `cols` (a multiple-choice knapsack, solved exactly: bins are added one at a time and only (cost, accuracy)
    partial sums no other partial sum beats on both are kept, which never drops an optimum). A configuration
    whose mean cost on a bin's problems is over `cap` is not offered there (the cheapest always is). A bin with
    no problem in `cols` gets the choice made on all of them."""
    cols = np.asarray(cols)
    every = _choose(mat, cost[:, cols].mean(axis=1), min(limit, cap), cols)
    prior = mat[:, cols].mean(axis=1) if pooling > 0 else 0.0
    present, options = [], []
    for lab in bins:
        where = cols[labels[cols] == lab]
        if len(where):
            w = len(where) / len(cols)   # a bin's share of the mean cost and of the expected accuracy
            own = cost[:, where].mean(axis=1)
            own = np.where(own <= max(cap, own.min()) * (1 + _TOLERANCE), own, np.inf)
            present.append(lab)
            options.append((w * own, w * (mat[:, where].sum(axis=1) + pooling * prior) / (len(where) + pooling)))
    total_cap = max(limit, sum(c.min() for c, _ in options)) * (1 + _TOLERANCE)
    front_cost, front_acc, picks = np.zeros(1), np.zeros(1), np.zeros((1, 0), dtype=int)
    for opt_cost, opt_acc in options:
        keep = _pareto(opt_cost, opt_acc, total_cap)   # a configuration beaten on both in this bin never helps
        total_cost = (front_cost[:, None] + opt_cost[keep][None, :]).ravel()
        total_acc = (front_acc[:, None] + opt_acc[keep][None, :]).ravel()
        both = np.column_stack([np.repeat(picks, len(keep), axis=0), np.tile(keep, len(front_cost))])
        kept = _pareto(total_cost, total_acc, total_cap)
        front_cost, front_acc, picks = total_cost[kept], total_acc[kept], both[kept]
    chosen = dict(zip(present, picks[-1]))   # along the frontier accuracy rises with cost: the last is the best
    return {lab: int(chosen.get(lab, every)) for lab in bins}


def _pareto(cost: np.ndarray, acc: np.ndarray, cap: float) -> np.ndarray:
    """Indices of the items within `cap` that no other beats on both cost and accuracy, cheapest first (of
    equal ones, the first listed)."""
    order = np.lexsort((-acc, cost))      # by cost, the most accurate first at equal cost; stable
    c, a = cost[order], acc[order]
    before = np.maximum.accumulate(np.concatenate([[-np.inf], a[:-1]]))
    return order[(c <= cap) & (a > before + 1e-12)]


def _config(pt: Point, accuracy: float, cost: float) -> dict[str, Any]:
    """An allocation entry: what runs it, its accuracy and its mean charged cost on the problems it was chosen for
    (what auto and serve report a problem was given)."""
    return {**pt.config, "method": pt.method, "accuracy": round(float(accuracy), 6), "cost": float(f"{cost:.6g}")}


@dataclass
class Fit:
    """What a held-out fit reads, problems as columns: [configurations × problems] expected hits and charged
    costs, each problem's bin, the budget limits B_N and the fitting knobs. `held_out` runs the k-fold procedure
    on any multiset of columns (a bootstrap resample refits it)."""
    mat: np.ndarray
    cost: np.ndarray
    labels: np.ndarray
    limits: list[float]
    folds: int
    seed: int = 0
    pooling: float = 0.0
    rule: str = "per-bin"     # per-bin: every bin capped at B_N (Snell); mean: the mean cost over problems <= B_N
    cap: float = np.inf       # --max-budget: no bin is given a configuration costing more per problem

    def choose_all(self, mat: np.ndarray, cost: np.ndarray, labels: np.ndarray, limit: float, train: np.ndarray,
                   bins: Sequence[str]) -> dict[str, int]:
        """Each bin's configuration at budget `limit`, fitted on the columns `train` of `mat` and `cost`."""
        if self.rule == "mean":
            return _choose_mean(mat, cost, limit, labels, train, bins, self.pooling, self.cap)
        mean = cost[:, train].mean(axis=1)   # Snell: a configuration's cost at N, the same for every bin
        out = {}
        for label in bins:
            fit = train[labels[train] == label]
            out[label] = _choose(mat, mean, min(limit, self.cap), fit if len(fit) else train, train, self.pooling)
        return out   # a bin with no training problem falls back to the overall best

    def held_out(self, cols: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """[budgets × columns] held-out hits and the cost the configuration chosen for each column spent on it:
        the columns are split into `folds` folds (copies of one problem, as a bootstrap draws them, stay in one
        fold), each bin's choice is made on the other folds and scored on the held-out one."""
        cols = np.arange(self.mat.shape[1]) if cols is None else np.asarray(cols)
        mat, cost, labels = self.mat[:, cols], self.cost[:, cols], self.labels[cols]
        held = np.zeros((len(self.limits), len(cols)))
        held_cost = np.zeros((len(self.limits), len(cols)))
        groups, group_of = np.unique(cols, return_inverse=True)
        perm = np.random.default_rng(self.seed).permutation(len(groups))
        everyone = np.arange(len(cols))
        for test_groups in np.array_split(perm, min(self.folds, len(groups))):
            test = np.nonzero(np.isin(group_of, test_groups))[0]
            train = np.setdiff1d(everyone, test)
            for b_i, limit in enumerate(self.limits):
                for label, chosen in self.choose_all(mat, cost, labels, limit, train,
                                                     sorted(set(labels[test]))).items():
                    where = test[labels[test] == label]
                    held[b_i, where], held_cost[b_i, where] = mat[chosen, where], cost[chosen, where]
        return held, held_cost


def _cap(grid: Mapping[int, float], max_budget: int | None) -> float:
    """--max-budget N as a cost: the baseline's measured cost at the largest grid budget <= N."""
    if not max_budget:
        return np.inf
    usable = [b for b in grid if b <= max_budget]
    if not usable:
        raise ValueError(f"--max-budget {max_budget} is below the smallest budget measured ({min(grid)})")
    return grid[max(usable)]


def allocate(points: Sequence[Point], bins: Mapping[str, str], folds: int = 5, seed: int = 0, axis: str = "flops",
             baseline: str | None = "weighted-best-of-n", pooling: float = 0.0,
             probe: Mapping[str, Any] | None = None, rule: str = "per-bin",
             max_budget: int | None = None) -> Allocation:
    """Per-bin compute-optimal choice at equal measured cost, k-fold held-out accuracy, and the policy chosen on
    all problems. `pooling` > 0 shrinks each bin's accuracies toward all bins' (partial pooling): with a few
    problems per bin and many configurations, the raw per-bin best is mostly the luckiest one. `probe`: per axis,
    the difficulty probe's cost per problem, a number or id -> cost (metrics.probe_cost; none for oracle bins).
    `rule`: per-bin (every bin's choice costs <= B_N, Snell et al.) or mean (the mean over problems of what the
    choices spend on them <= B_N, so an easy bin's savings buy a hard bin more: a knapsack over bins).
    `max_budget` N: no bin is given a configuration whose cost per problem there exceeds B_N."""
    if rule not in RULES:
        raise ValueError(f"allocation rule {rule!r} is unknown; choose one of {', '.join(RULES)}")
    grid, axis, notes = budget_grid(points, axis, baseline)
    pts, ids, mat, cost = _matrix(points, bins, axis, (probe or {}).get(axis, 0.0))
    labels = np.array([bins[i] for i in ids])
    label_set = sorted({str(x) for x in labels})      # plain str: the policy file is YAML
    budgets = sorted(grid)
    everyone = np.arange(len(ids))
    k = min(folds, len(ids))
    fit = Fit(mat, cost, labels, [grid[b] for b in budgets], k, seed, pooling, rule, _cap(grid, max_budget))
    if k >= 2:
        held, held_cost = fit.held_out()
    else:
        notes.append(f"only {len(ids)} problem(s): no cross-validation, accuracies are in-sample")
        held, held_cost = np.zeros((len(budgets), len(ids))), np.zeros((len(budgets), len(ids)))
        for b_i, limit in enumerate(fit.limits):
            for label, chosen in fit.choose_all(mat, cost, labels, limit, everyone, label_set).items():
                cols = everyone[labels == label]
                held[b_i, cols], held_cost[b_i, cols] = mat[chosen, cols], cost[chosen, cols]
    curve = {b: float(held[i].mean()) for i, b in enumerate(budgets)}
    by_bin = {lab: {b: float(held[i, labels == lab].mean()) for i, b in enumerate(budgets)}
              for lab in label_set}
    choices: dict[str, dict[int, dict[str, Any]]] = {lab: {} for lab in label_set}
    for b in budgets:
        for lab, c in fit.choose_all(mat, cost, labels, grid[b], everyone, label_set).items():
            choices[lab][b] = _config(pts[c], mat[c, labels == lab].mean(), cost[c, labels == lab].mean())
    fallback = {}
    for b in budgets:
        c = _choose(mat, cost.mean(axis=1), min(grid[b], fit.cap), everyone)
        fallback[b] = _config(pts[c], mat[c].mean(), cost[c].mean())
    return Allocation(budgets=budgets, curve=curve, by_bin=by_bin, choices=choices, fallback=fallback,
                      problems=len(ids), folds=k if k >= 2 else 0, notes=notes, axis=axis,
                      baseline=baseline if axis != "n" or default_curves(points).get(baseline or "") else None,
                      budget_cost=dict(grid), curve_cost={b: float(held_cost[i].mean()) for i, b in enumerate(budgets)},
                      ids=ids, held=held, held_cost=held_cost, fit=fit, max_budget=max_budget)


# ---------------------------------------------------------------- allocation file (read by search.allocation_file)


def allocation_dict(alloc: Allocation, binning: Binning, measure: str, samples: int = 0) -> dict[str, Any]:
    return {
        "version": ALLOCATION_VERSION,
        "difficulty": {"measure": measure, **binning.to_dict(),
                       "how": "mean final-step PRM score over samples" if measure == "predicted"
                       else "pass@1 of the policy (needs gold; not available at test time)",
                       # auto's probe draws this many samples, so its means spread like the binned ones
                       **({"samples": samples} if measure == "predicted" and samples > 0 else {})},
        "budgets": list(alloc.budgets),
        # budget N = the baseline's measured cost at N on this axis (what auto's --budget N means)
        # rule per-bin: each bin's choice costs at most that; mean: the choices' mean over problems does
        "cost": {"axis": alloc.axis, "baseline": alloc.baseline,
                 "budgets": {str(b): alloc.budget_cost.get(b) for b in alloc.budgets},
                 "rule": alloc.fit.rule if alloc.fit else "per-bin", "max_budget": alloc.max_budget},
        "bins": {lab: {str(b): cfg for b, cfg in per.items()} for lab, per in alloc.choices.items()},
        "fallback": {str(b): cfg for b, cfg in alloc.fallback.items()},
    }


def write_allocation(allocation: Mapping[str, Any], path: str | Path) -> Path:
    path = Path(path)
    text = json.dumps(allocation, indent=1) if path.suffix.lower() == ".json" else yaml.safe_dump(dict(allocation),
                                                                                             sort_keys=False)
    path.write_text(text)
    return path
