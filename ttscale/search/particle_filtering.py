"""Particle filtering (Puri et al. 2025, its_hub): N particles advance one step at a time on the step engine.

After each step every unfinished particle gets a weight softmax(score / --pf-temperature) over its problem's
unfinished particles (score: the path's PRM step scores aggregated per --aggregation), and the N - finished
particle slots are refilled by resampling from those weights (--resampling systematic | multinomial, seeded
from the run seed, the problem text and the depth, so batching never changes a result). A particle drawn k
times gets k children at the next step. A particle that finishes leaves the pool as a candidate and costs
nothing more; the pool shrinks, so at most N finished candidates come back. Particles resampled away stay in
the run's `tree` (with their scores) and were charged when generated. Unfinished particles at --max-depth
are reported, never voted on. Default selection: prm-vote (any voting works offline).

Particle Gibbs (several sweeps, each conditioned on a reference particle) is not offered: a reference
particle must be replayed step by step inside the next sweep's resampling, which the engine's
one-call-per-step frontier does not model without a second code path.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ttscale.config import field
from ttscale.inference.backend_rules import derive_seed
from ttscale.search.stepwise import StepEngine, StepParams, softmax

RESAMPLING = ("systematic", "multinomial")


def resample(weights: Sequence[float], k: int, scheme: str, rng: np.random.Generator) -> list[int]:
    """k indices drawn in proportion to `weights` (sorted). Systematic: one uniform offset, k evenly spaced
    points on the cumulative weights (lower variance: each index gets floor or ceil of k·w); multinomial: k
    independent draws."""
    w = np.asarray(weights, dtype=float)
    w = w / w.sum()
    if scheme == "systematic":
        points = (rng.uniform() + np.arange(k)) / k
        cdf = np.cumsum(w)
        cdf[-1] = 1.0   # rounding must not push the last point past the end
        return [int(i) for i in np.searchsorted(cdf, points, side="right")]
    if scheme == "multinomial":
        return sorted(int(i) for i in rng.choice(len(w), size=k, p=w))
    raise ValueError(f"resampling {scheme!r} is unknown; choose one of {', '.join(RESAMPLING)}")


@dataclass(frozen=True)
class ParticleParams(StepParams):
    pf_temperature: float = field(0.1, help="particle-filtering: weights are softmax(PRM score / T) over a "
                                  "problem's particles (small T: resample the best more often)", gt=0, short="T")
    resampling: str = field("systematic", choices=list(RESAMPLING),
                            help="particle-filtering: resampling scheme", short="resampling")


class ParticleFiltering(StepEngine):
    name = "particle-filtering"
    label = "particle filtering"
    budget_meaning = "N particles, each advanced one step at a time and resampled by PRM weight"
    Params = ParticleParams

    def next_frontier(self, tree, open_, ctx, problem, depth):
        weights = softmax([c.key for c in open_], self.params.pf_temperature)
        rng = np.random.default_rng(derive_seed(ctx.settings.seed, problem["problem"], depth))
        drawn = Counter(resample(weights, tree.budget - tree.finished, self.params.resampling, rng))
        return [(open_[i].cand.node, k) for i, k in sorted(drawn.items())]
