"""Accuracy vs budget for every strategy × aggregation × voting, and the unbiased pass@k estimator.

Parallel-sample runs (majority / best-of-n / weighted-best-of-n at budget N) are evaluated at N' = 1, 2,
4, … N by drawing `subsamples` seeded subsets of N' candidates per problem (candidate order kept, so ties
break as in the search) and re-voting each subset with `search.voting.select`; at N' = N the run itself is
scored once (exact). One such run yields all three parallel strategies: majority voting is `majority`,
prm-max is `best-of-n`, prm-vote is `weighted-best-of-n`. Other strategies (adaptive-stopping ones included:
their samples are not N independent draws) are scored at their own budget.

Each evaluated point keeps a [subsamples × problems] matrix of hits, so accuracy on any subset of
problems (a difficulty bin, a fold) is a column slice. 95% interval: a percentile bootstrap over problems
and subsamples (`bootstrap_interval`), the same kind for subsampled and single evaluations.
Compute per point: nominal N, and from `spent` (search.types.Spent, measured by the search's meter) per
problem: generated tokens, tokens run (prompts run + generated, policy + reviser + PRM) and FLOPs (policy +
reviser + PRM, prompts included); a subsample is charged as a real run at N' would be: generated and PRM
tokens in the share of the run's candidate tokens it contains, the prompt once, in full. `Point.cost(axis)`
is what `evaluate --cost flops|tokens|n` compares.
A run in which some model ran tokens at 0 FLOPs (size unknown) has `flops_known` False.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from ttscale.eval.runs import Run
from ttscale.search.registry import STRATEGIES, parallel_by_voting
from ttscale.search.types import AGGREGATIONS, Spent
from ttscale.search.voting import select

PRM_VOTINGS = ("prm-max", "prm-vote")
COST_AXES = ("flops", "tokens", "n")   # measured FLOPs, measured tokens run, nominal budget N


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k)/C(n, k), as a stable product (no huge binomials)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k_curve(run: Run) -> dict[int, float]:
    """k -> mean unbiased pass@k over the graded problems of a parallel-sample run (coverage, an oracle bound)."""
    problems = [p for p in run.graded if p.correct]
    if not run.parallel or not problems:
        return {}
    n_min = min(len(p.correct) for p in problems)
    return {k: float(np.mean([pass_at_k(len(p.correct), sum(p.correct), k) for p in problems]))
            for k in parallel_budgets(n_min)}


def bootstrap_interval(hits: np.ndarray, replicates: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap of accuracy from a [subsamples × problems] hit matrix.

    Each replicate draws problems with replacement and one subsample per replicate, so the interval covers
    both which problems were asked and which samples were drawn (a single evaluation: problems only).
    """
    rng = np.random.default_rng(seed)
    s, p = hits.shape
    rows = rng.integers(0, s, size=(replicates, 1))
    cols = rng.integers(0, p, size=(replicates, p))
    lo, hi = np.percentile(hits[rows, cols].mean(axis=1), [2.5, 97.5])
    return float(lo), float(hi)


@dataclass
class Point:
    """One (method, aggregation, voting) at one budget, with its hits on every graded problem."""
    method: str                 # strategy plus its search hyperparameters, e.g. "beam(M=4)"
    config: dict[str, Any]      # what `ttscale search` needs to reproduce it (policy-file entry)
    budget: int
    ids: list[str]
    hits: np.ndarray            # [subsamples, problems] bool
    tokens: float               # mean generated tokens per problem
    flops: float                # mean policy + reviser + PRM FLOPs per problem, prompts included
    default: bool               # the strategy's own aggregation and voting
    source_budget: int = 0      # the budget of the run it came from (bigger runs win duplicates)
    seeds: int = 1              # runs pooled into it that differ only in their seed
    run_tokens: float = 0.0     # mean tokens run per problem: prompts (not cached) + generated, every model
    flops_known: bool = True    # False: some model's size was unknown, its FLOPs read 0
    problem_cost: np.ndarray | None = None   # [COST_AXES × problems] each problem's cost (None: the mean for all)
    source: str = ""            # the run it was read from
    source_own: bool = True     # that run's strategy is this point's own (majority read from a majority run)

    def cost(self, axis: str) -> float:
        """Mean cost per problem on a COST_AXES axis."""
        if axis not in COST_AXES:
            raise ValueError(f"cost axis {axis!r} is unknown; choose one of {', '.join(COST_AXES)}")
        return {"flops": self.flops, "tokens": self.run_tokens, "n": float(self.budget)}[axis]

    def costs(self, axis: str, ids: Sequence[str] | None = None) -> np.ndarray:
        """Each problem's cost on the axis (of `ids`, default all): an adaptive run spends less on an easy problem
        than on a hard one, and a mean-cost allocation must know which."""
        cols = np.arange(len(self.ids)) if ids is None else np.array([self.ids.index(i) for i in ids], dtype=int)
        if self.problem_cost is None:
            return np.full(len(cols), self.cost(axis))
        return self.problem_cost[COST_AXES.index(axis), cols]

    @property
    def strategy(self) -> str:
        return self.config["strategy"]

    @property
    def family(self) -> str:
        return STRATEGIES[self.strategy].family

    @property
    def extends(self) -> bool:
        """Whether the strategy can take auto's probe samples as its first ones (Strategy.extends)."""
        return STRATEGIES[self.strategy].extends

    @property
    def key(self) -> tuple:
        return self.method, self.config["aggregation"], self.config["voting"], self.budget

    def accuracy(self, columns: Sequence[int] | np.ndarray | None = None) -> tuple[float, float, float]:
        """(mean, low, high) over the given problem columns (all by default); see `bootstrap_interval`."""
        h = self.hits if columns is None else self.hits[:, np.asarray(columns, dtype=int)]
        if h.shape[1] == 0:
            return float("nan"), float("nan"), float("nan")
        return (float(h.mean()), *bootstrap_interval(h))

    def per_problem(self) -> np.ndarray:
        """Expected correctness of each problem (mean over subsamples)."""
        return self.hits.mean(axis=0)


@dataclass
class _Selection:
    method: str
    strategy: str
    extra: dict[str, Any] = field(default_factory=dict)


def method_of(run: Run) -> _Selection:
    """Name and search hyperparameters of a non-parallel run (the strategy class says which)."""
    strategy = run.search
    return _Selection(strategy.method(run.budget), run.strategy, strategy.config(run.budget))


def own_voting(run: Run) -> str:
    """The voting the run was made with: its --voting, or the strategy's default."""
    voting = run.params.get("voting")
    return run.search.default_voting if voting in (None, "default") else voting


def selections(run: Run) -> list[tuple[str, str]]:
    """(aggregation, voting) pairs worth evaluating: PRM votes only when candidates carry step scores."""
    own = own_voting(run)
    votings = ["majority"]
    if any(c.step_scores for p in run.problems for c in p.candidates):
        votings += list(PRM_VOTINGS) + (["hierarchical"] if run.search.family == "revision" else [])
    if own not in votings:
        votings.append(own)
    agg = run.params.get("aggregation", "last")
    pairs = [(agg, "majority")] if "majority" in votings else []  # aggregation does not change a plain vote
    pairs += [(a, v) for v in votings if v != "majority" for a in AGGREGATIONS]
    return pairs


def parallel_budgets(n: int) -> list[int]:
    out = [1 << i for i in range(n.bit_length()) if 1 << i <= n]
    return out + ([n] if out[-1] != n else [])


def _cost(run: Run, index: int, subset: Sequence[int] | None) -> tuple[float, float, float]:
    """(generated tokens, tokens run, FLOPs) of one problem, or of a subset of its candidates as a real run of
    that many samples would spend: the generated tokens and the PRM's in the subset's share of the candidates'
    tokens, the prompt in full (a run of N' samples prefills its prompt as the run of N did, not N'/N of it)."""
    p = run.graded[index]
    spent = Spent.from_dict(p.spent)
    if subset is None:
        return float(spent.generated_tokens + spent.reviser_generated_tokens), float(spent.tokens), spent.flops
    own = [c.tokens for c in p.candidates]
    frac = sum(own[i] for i in subset) / sum(own) if sum(own) else len(subset) / max(1, len(own))
    generated, run_tokens, flops = 0.0, spent.prm_tokens * frac, spent.prm_flops * frac
    for role, made in (("policy", spent.generated_tokens), ("reviser", spent.reviser_generated_tokens)):
        prompt, total = getattr(spent, f"{role}_prompt_tokens"), spent.run_tokens(role)
        per_token = getattr(spent, f"{role}_flops") / total if total else 0.0   # 2 · params
        generated += made * frac
        run_tokens += prompt + made * frac
        flops += per_token * (prompt + made * frac)
    return generated, run_tokens, flops


def probe_cost(run: Run, samples: int) -> dict[str, dict[str, float]]:
    """Per axis, problem id -> the cost of its first `samples` candidates of a parallel run (all when 0): what
    auto's difficulty probe spends on it, as `predicted_difficulty` reads those same samples."""
    out: dict[str, dict[str, float]] = {axis: {} for axis in COST_AXES}
    for j, p in enumerate(run.graded):
        _, run_tokens, flops = _cost(run, j, list(range(min(samples or len(p.candidates), len(p.candidates)))))
        out["flops"][p.id], out["tokens"][p.id], out["n"][p.id] = flops, run_tokens, float(samples or run.budget)
    return out


def unknown_flops(run: Run) -> list[str]:
    """Models (policy / reviser / prm) that ran tokens in this run at 0 FLOPs: their size was unknown."""
    found = {r for p in run.graded for r in Spent.from_dict(p.spent).unknown_flops()}
    return [r for r in ("policy", "reviser", "prm") if r in found]


def evaluate_run(run: Run, subsamples: int = 16, seed: int = 0) -> list[Point]:
    """Every (aggregation, voting) of the run at every budget it supports (see module docstring)."""
    problems = run.graded
    if not problems:
        raise ValueError(f"{run.path}: no problem has a gold answer, so accuracy cannot be measured")
    ids = [p.id for p in problems]
    if run.search.family == "meta":
        return [_own_selection(run, problems, ids)]
    pairs = selections(run)
    voting_of_run = own_voting(run)
    own_agg = run.params.get("aggregation", "last")
    budgets = parallel_budgets(run.budget) if run.parallel else [run.budget]
    flops_known = not unknown_flops(run)
    points = []
    by_voting = parallel_by_voting()
    for budget in tqdm(budgets, desc=f"evaluate {run.strategy}@{run.budget}", disable=len(budgets) < 3):
        exact = not run.parallel or budget >= run.budget
        draws = 1 if exact else subsamples
        rng = np.random.default_rng([seed, budget])
        subsets = [[None if exact else np.sort(rng.choice(len(p.candidates), min(budget, len(p.candidates)),
                                                          replace=False)) for p in problems] for _ in range(draws)]
        hits = {pair: np.zeros((draws, len(problems)), dtype=bool) for pair in pairs}
        cost = np.zeros((draws, len(problems), 3))
        for s, row in enumerate(subsets):
            for j, (p, sub) in enumerate(zip(problems, row)):
                idx = list(range(len(p.candidates))) if sub is None else [int(i) for i in sub]
                cands = [p.candidates[i] for i in idx]
                cost[s, j] = _cost(run, j, None if sub is None else idx)
                for pair in pairs:
                    _, chosen = select(cands, pair[1], pair[0])
                    hits[pair][s, j] = chosen >= 0 and p.correct[idx[chosen]]
        tokens, run_tokens, flops = cost.mean(axis=(0, 1))
        per_problem = _per_problem(cost.mean(axis=0), budget)
        for (agg, voting), h in hits.items():
            if run.parallel:
                sel = _Selection(by_voting.get(voting, run.strategy), by_voting.get(voting, run.strategy))
                default = agg == own_agg or voting == "majority"
            else:
                sel = method_of(run)
                default = voting == voting_of_run and agg == own_agg
            config = {"strategy": sel.strategy, "budget": budget, **sel.extra, "aggregation": agg, "voting": voting}
            points.append(Point(method=sel.method, config=config, budget=budget, ids=ids, hits=h,
                                tokens=float(tokens), flops=float(flops), default=default,
                                source_budget=run.budget, run_tokens=float(run_tokens), flops_known=flops_known,
                                problem_cost=per_problem, source=run.path, source_own=sel.strategy == run.strategy))
    return points


def _per_problem(cost: np.ndarray, budget: int) -> np.ndarray:
    """[problems × (generated, run tokens, FLOPs)] -> [COST_AXES × problems]."""
    return np.stack([cost[:, 2], cost[:, 1], np.full(len(cost), float(budget))])


def _own_selection(run: Run, problems: Sequence[Any], ids: list[str]) -> Point:
    """A meta strategy (auto) picks each problem's configuration, aggregation and voting at search time, so
    one (aggregation, voting) re-applied to every problem would score another method: its point is the
    candidate the search itself chose (`chosen`), at the run's budget."""
    hits = np.array([[p.chosen >= 0 and p.correct[p.chosen] for p in problems]], dtype=bool)
    cost = np.array([_cost(run, j, None) for j in range(len(problems))])
    tokens, run_tokens, flops = cost.mean(axis=0)
    sel = method_of(run)
    config = {"strategy": sel.strategy, "budget": run.budget, **sel.extra, "aggregation": "per-problem",
              "voting": "per-problem"}
    return Point(method=sel.method, config=config, budget=run.budget, ids=ids, hits=hits, tokens=float(tokens),
                 flops=float(flops), default=True, source_budget=run.budget, run_tokens=float(run_tokens),
                 flops_known=not unknown_flops(run), problem_cost=_per_problem(cost, run.budget))


def run_identity(run: Run) -> str:
    """What makes two runs the same experiment: strategy, budget and every option but the seed."""
    return json.dumps({"strategy": run.strategy, "budget": run.budget,
                       "params": {k: v for k, v in sorted(run.params.items()) if k != "seed"}}, default=str)


def pool_seeds(points: Sequence[Point]) -> Point:
    """One point from the same configuration run with several seeds: the hit rows of every seed stacked (so the
    interval covers problems × seeds), on the problems every seed graded; cost is the mean over seeds."""
    first = points[0]
    if len(points) == 1:
        return first
    ids = [i for i in first.ids if all(i in p.ids for p in points[1:])]
    hits = np.concatenate([p.hits[:, [p.ids.index(i) for i in ids]] for p in points], axis=0)
    per_problem = np.mean([np.stack([p.costs(a, ids) for a in COST_AXES]) for p in points], axis=0)
    return dataclasses.replace(first, ids=ids, hits=hits, problem_cost=per_problem, tokens=float(np.mean([p.tokens for p in points])),
                               flops=float(np.mean([p.flops for p in points])),
                               run_tokens=float(np.mean([p.run_tokens for p in points])),
                               flops_known=all(p.flops_known for p in points), seeds=sum(p.seeds for p in points))


def _disambiguate(runs: Sequence[Run]) -> dict[str, str]:
    """identity -> a suffix for its method label where two different experiments would share one label (e.g.
    two beam runs with other depth limits): the options in which they differ. Empty where labels are unique."""
    by_label: dict[tuple, dict[str, Run]] = {}
    for run in runs:
        by_label.setdefault((run.search.method(run.budget), run.budget), {})[run_identity(run)] = run
    out: dict[str, str] = {}
    for group in by_label.values():
        if len(group) < 2:
            continue
        keys = sorted({k for r in group.values() for k in r.params if k != "seed"})
        differ = [k for k in keys if len({json.dumps(r.params.get(k), default=str) for r in group.values()}) > 1]
        for ident, run in group.items():
            out[ident] = "[" + ",".join(f"{k}={run.params.get(k)}" for k in differ) + "]"
    return out


def evaluate_runs(runs: Sequence[Run], subsamples: int = 16, seed: int = 0,
                  notes: list[str] | None = None) -> list[Point]:
    """All runs' points. Runs that differ only in seed are pooled into one point per (method, aggregation,
    voting, budget), with the number of seeds kept; runs that differ in anything else get distinct labels.
    A point that several parallel runs give (N=4 from an N=8 and an N=16 run, or majority from a majority run and
    a best-of-N run) comes from the largest run, then from the run of its own strategy, and `notes` says so,
    one line per pair of runs — nothing is dropped silently."""
    suffix = _disambiguate(runs)
    pooled: dict[tuple, list[Point]] = {}
    for run in runs:
        ident = run_identity(run)
        for pt in evaluate_run(run, subsamples, seed):
            if ident in suffix:
                pt.method += suffix[ident]
            pooled.setdefault((ident, pt.key), []).append(pt)
    best: dict[tuple, Point] = {}
    shared: dict[tuple[str, str], list[tuple]] = {}
    for (ident, key), pts in pooled.items():
        pt = pool_seeds(pts)
        if key in best:
            rank = lambda p: (p.source_budget, p.source_own)   # noqa: E731
            keep, drop = (pt, best[key]) if rank(pt) > rank(best[key]) else (best[key], pt)
            shared.setdefault((keep.source, drop.source), []).append(key)
            pt = keep
        best[key] = pt
    if notes is not None:
        for (keep, drop), keys in shared.items():
            methods = sorted({k[0] for k in keys})
            notes.append(f"{len(keys)} points ({', '.join(methods)}, N={min(k[3] for k in keys)}..{max(k[3] for k in keys)}) "
                         f"are in both {keep} and {drop}: read from {keep} (the larger run, else the one of the "
                         f"method's own strategy)")
    return list(best.values())


def paired_difference(a: Point, b: Point, replicates: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Accuracy of `a` minus `b` on the problems both graded, with a 95% bootstrap interval that resamples
    problems jointly (paired: the same problems for both methods, so problem difficulty cancels out)."""
    ids = [i for i in a.ids if i in set(b.ids)]
    if not ids:
        return float("nan"), float("nan"), float("nan")
    da = a.per_problem()[[a.ids.index(i) for i in ids]]
    db = b.per_problem()[[b.ids.index(i) for i in ids]]
    diff = da - db
    rng = np.random.default_rng(seed)
    boots = diff[rng.integers(0, len(ids), size=(replicates, len(ids)))].mean(axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(diff.mean()), float(lo), float(hi)


def default_curves(points: Sequence[Point]) -> dict[str, dict[int, Point]]:
    """method -> budget -> its default point (the strategy's own aggregation and voting)."""
    out: dict[str, dict[int, Point]] = {}
    for pt in sorted(points, key=lambda p: (p.method, p.budget)):
        if pt.default:
            out.setdefault(pt.method, {})[pt.budget] = pt
    return out
