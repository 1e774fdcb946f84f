"""Adaptive-stopping self-consistency (Adaptive-Consistency, Aggarwal et al. 2023; ESC, Li et al. 2024).

Samples come in rounds of --round-size full samples per problem (ONE generate call per round for every
problem still sampling; round r draws samples r·round_size onwards of the seed, so its samples are those of a
plain N-sample run, and a sample store serves them back). After each round a problem stops as soon as its vote is
settled: with a = votes of the leading answer and b = votes of the runner-up among its finished samples, the
posterior probability that the leader is the true mode, P(p_a > p_b) for p_a/(p_a+p_b) ~ Beta(1 + a, 1 + b),
exceeds --stop-threshold. It is computed exactly: P(Beta(a+1, b+1) > 1/2) = P(Binomial(a+b+1, 1/2) <= a).
N is the cap; what a problem actually drew is what the Meter charges, so accuracy-vs-cost shows the saving.

Family "adaptive": the candidates of a stopped problem are not N independent samples, so `evaluate` scores
a run at its own budget and measured cost instead of re-voting subsets as it does for "parallel" runs.
Default selection: majority (with a PRM, finished samples are scored once at the end, so --voting prm-vote
gives PRM-weighted voting under the same stopping rule; the rule itself counts votes).
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from ttscale.config import field
from ttscale.data.steps import split_steps
from ttscale.inference.base import SamplingParams
from ttscale.search.candidates import drawn_count, make_candidate, policy_prompt
from ttscale.search.meter import Meter
from ttscale.search.results import build_results, score_finished
from ttscale.search.strategy import Strategy
from ttscale.search.types import Candidate, ProblemResult, SearchContext


def leader_probability(a: int, b: int) -> float:
    """P(p_leader > p_runner_up) under Beta(1 + a, 1 + b), exactly: P(Binomial(a + b + 1, 1/2) <= a)."""
    n = a + b + 1
    return sum(math.comb(n, j) for j in range(a + 1)) / 2 ** n


def settled(candidates: Sequence[Candidate], threshold: float) -> bool:
    """Whether the finished candidates' vote is settled (no finished candidate: never)."""
    counts = Counter(c.answer_key for c in candidates if c.finished and c.answer_key is not None).most_common(2)
    if not counts:
        return False
    a, b = counts[0][1], counts[1][1] if len(counts) > 1 else 0
    return leader_probability(a, b) > threshold


@dataclass(frozen=True)
class AdaptiveParams:
    round_size: int = field(4, help="adaptive-majority: samples per problem per round", ge=1, short="r")
    stop_threshold: float = field(0.95, help="adaptive-majority: stop a problem once P(leading answer is the "
                                  "mode) under a Beta posterior exceeds this", ge=0.5, le=1, short="t")


class AdaptiveMajority(Strategy):
    name = "adaptive-majority"
    family = "adaptive"
    extends = True
    label = "adaptive-stopping majority"
    budget_meaning = "at most N full samples per problem, drawn in rounds until the vote is settled"
    Params = AdaptiveParams
    default_voting = "majority"

    def run(self, problems: Sequence[dict], ctx: SearchContext, budget: int) -> list[ProblemResult]:
        return self.extend(problems, ctx, budget, [[] for _ in problems])

    def extend(self, problems: Sequence[dict], ctx: SearchContext, budget: int,
               drawn: Sequence[Sequence[Candidate]]) -> list[ProblemResult]:
        """The plain run's rounds and stops, with the first `drawn` samples per problem (the same count for each,
        from the same prompt and settings: auto's probe) taken instead of generated, so only the rest is charged
        here. A problem that stops before it used all of them selects among the ones its rounds reached."""
        self.validate(budget, ctx)
        k = drawn_count(problems, drawn)
        st, gen, size = ctx.settings, ctx.generator, self.params.round_size
        meter = Meter(len(problems))
        candidates: list[list[Candidate]] = [[] for _ in problems]
        live = list(range(len(problems)))
        prompts = [policy_prompt(p["problem"], [], gen.tokenizer, st) for p in problems]
        for r in range(math.ceil(budget / size)):
            if not live:
                break
            lo, hi = r * size, min((r + 1) * size, budget)     # this round's samples of the seed's sequence
            for i in live:
                candidates[i] += [dataclasses.replace(c) for c in drawn[i][lo:hi]]
            if hi > max(lo, k):                                  # all live problems draw alike
                start = max(lo, k)
                outs = meter.generate(gen, [prompts[i] for i in live], live, SamplingParams(
                    n=hi - start, temperature=st.temperature, top_p=st.top_p, max_new_tokens=st.max_new_tokens,
                    seed=st.seed), start=[start] * len(live))
                for i, comps in zip(live, outs):
                    candidates[i] += [make_candidate(split_steps(c.text, st.delimiter), c.finish_reason, c.num_tokens)
                                      for c in comps]
            live = [i for i in live if not settled(candidates[i], self.params.stop_threshold)]
        score_finished(meter, ctx.scorer, problems, candidates)   # the drawn ones keep their scores
        return build_results(self, ctx, problems, candidates, meter)
