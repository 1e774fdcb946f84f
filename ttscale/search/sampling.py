"""Parallel sampling strategies: N full samples per problem, finished ones scored once, then a selection.

majority, best-of-n and weighted-best-of-n run the same search and differ only in their default selection
(majority / prm-max / prm-vote); any of them can be re-voted offline from the stored candidates, and `evaluate`
re-votes a run of N samples at every N' <= N (the family "parallel" says so).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from ttscale.data.steps import split_steps
from ttscale.inference.base import SamplingParams
from ttscale.search.candidates import drawn_count, make_candidate, policy_prompt
from ttscale.search.meter import Meter
from ttscale.search.results import build_results, score_finished
from ttscale.search.strategy import Strategy
from ttscale.search.types import Candidate, ProblemResult, SearchContext

class SampleAndSelect(Strategy):
    """N samples per problem from ONE generate call (n=N) covering all problems."""

    family = "parallel"
    extends = True
    budget_meaning = "N full samples per problem"

    def run(self, problems: Sequence[dict], ctx: SearchContext, budget: int) -> list[ProblemResult]:
        return self.extend(problems, ctx, budget, [[] for _ in problems])

    def extend(self, problems: Sequence[dict], ctx: SearchContext, budget: int,
               drawn: Sequence[Sequence[Candidate]]) -> list[ProblemResult]:
        """N = `budget` samples per problem of which `drawn` (the same count per problem, sampled from the same
        prompt and settings: auto's probe) come first; only the rest are generated and charged here: samples
        k .. N-1 of the same seed, so the result is the plain N-sample run's. With `budget` <= drawn, the
        first `budget` drawn are selected from and nothing is generated."""
        self.validate(budget, ctx)
        k = drawn_count(problems, drawn)
        st, gen = ctx.settings, ctx.generator
        meter = Meter(len(problems))
        candidates = [[dataclasses.replace(c) for c in d[:budget]] for d in drawn]
        if budget > k:
            prompts = [policy_prompt(p["problem"], [], gen.tokenizer, st) for p in problems]
            params = SamplingParams(n=budget - k, temperature=st.temperature, top_p=st.top_p,
                                    max_new_tokens=st.max_new_tokens, seed=st.seed)
            outs = meter.generate(gen, prompts, list(range(len(problems))), params, start=[k] * len(problems))
            for cands, comps in zip(candidates, outs):
                cands += [make_candidate(split_steps(c.text, st.delimiter), c.finish_reason, c.num_tokens)
                          for c in comps]
        score_finished(meter, ctx.scorer, problems, candidates)   # the drawn ones keep their scores
        return build_results(self, ctx, problems, candidates, meter)


class Majority(SampleAndSelect):
    name = "majority"
    label = "majority vote"
    default_voting = "majority"


class BestOfN(SampleAndSelect):
    name = "best-of-n"
    label = "best-of-N (PRM-max)"
    default_voting = "prm-max"
    needs_scorer = True


class WeightedBestOfN(SampleAndSelect):
    name = "weighted-best-of-n"
    label = "weighted best-of-N (PRM-vote)"
    default_voting = "prm-vote"
    needs_scorer = True
