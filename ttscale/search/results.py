"""Shared ends of every strategy: score the finished candidates once, pick the prediction, build results."""
from __future__ import annotations

from typing import Sequence

from ttscale.inference.base import Scorer
from ttscale.search.meter import Meter
from ttscale.search.strategy import Strategy
from ttscale.search.types import Candidate, Node, ProblemResult, SearchContext
from ttscale.search.voting import select


def score_finished(meter: Meter, scorer: Scorer | None, problems: Sequence[dict],
                   candidates: Sequence[Sequence[Candidate]]) -> None:
    """One batched PRM call over every finished, not yet scored candidate of every problem (in place)."""
    if scorer is None:
        return
    todo = [(p, c) for p, cands in enumerate(candidates) for c in cands
            if c.finished and c.steps and not c.step_scores]
    scores = meter.score(scorer, [(problems[p]["problem"], c.steps) for p, c in todo], [p for p, _ in todo])
    for (_, cand), s in zip(todo, scores):
        cand.step_scores = [float(x) for x in s]


def build_results(strategy: Strategy, ctx: SearchContext, problems: Sequence[dict],
                  candidates: Sequence[list[Candidate]], meter: Meter,
                  trees: Sequence[list[Node]] | None = None) -> list[ProblemResult]:
    voting = strategy.voting(ctx)
    out = []
    for i, (problem, cands) in enumerate(zip(problems, candidates)):
        prediction, chosen = select(cands, voting, ctx.settings.aggregation)
        out.append(ProblemResult(problem=dict(problem), candidates=list(cands), spent=meter.spent[i],
                                 prediction=prediction, chosen=chosen, tree=list(trees[i]) if trees else []))
    return out
