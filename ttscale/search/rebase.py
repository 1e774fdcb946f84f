"""REBASE, reward-balanced search (Wu et al. 2024), on the step engine.

At every depth the expansion budget — the finished solutions still needed, N - finished — is split across
the frontier (every unfinished child of the last step) in proportion to softmax(score / --rebase-temperature),
score = the path's PRM step scores aggregated per --aggregation, with largest-remainder rounding so the
children sum exactly to the budget: good nodes get more children, poor ones none. A finished child is a
candidate and lowers the next step's budget, so at most N come back. It stops when N are finished, nothing
unfinished is left, or at --max-depth (unfinished children then reported, never voted on).
Default selection: prm-vote (the paper's weighted majority).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ttscale.config import field
from ttscale.search.meter import _split as largest_remainder
from ttscale.search.stepwise import StepEngine, StepParams, softmax


def allocate(scores: Sequence[float], budget: int, temperature: float) -> list[int]:
    """Children per node: budget · softmax(score / T), rounded by largest remainder (sums to budget exactly)."""
    return largest_remainder(budget, softmax(scores, temperature)) if scores else []


@dataclass(frozen=True)
class RebaseParams(StepParams):
    rebase_temperature: float = field(0.1, help="rebase: a node gets children in proportion to softmax(PRM "
                                      "score / T) (small T: concentrate on the best nodes)", gt=0, short="T")


class Rebase(StepEngine):
    name = "rebase"
    label = "REBASE"
    budget_meaning = "N finished solutions; each step's N - finished children split by softmax of PRM score"
    Params = RebaseParams

    def next_frontier(self, tree, open_, ctx, problem, depth):
        counts = allocate([c.key for c in open_], tree.budget - tree.finished, self.params.rebase_temperature)
        return [(c.cand.node, k) for c, k in zip(open_, counts)]
