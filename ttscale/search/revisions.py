"""Revision strategies: chains of attempts by the revision model, each conditioned on the chain's last attempts.

`revisions` is one sequential chain of N attempts; `parallel-revisions` runs C chains of length L with
C × L = N (L from --revision-length, or from --sequential-ratio r = L / C, Snell et al.'s sequential:parallel
ratio). Attempt t of every chain of every problem is ONE generate call; prompts come from
ttscale.data.revision_format.revision_prompt with the chain's last `revision_max_attempts` attempts (the
format the revision model was trained on). Chains whose prompts are identical (all chains at their first
attempt) share one prompt with n = number of such chains, so they still get different samples.

--first-attempt says who writes a chain's first attempt: the revision model from an empty context (`reviser`,
the default) or the policy (`policy`: a reviser improving a given policy's samples; that attempt is charged to
the policy). Chains of length 1 (`--revision-length 1`) are the revision model's own parallel baseline, what
Snell et al. set every sequential:parallel ratio beside.

Selection: hierarchical (default: best attempt per chain by PRM, then PRM-weighted vote across chains),
or majority / prm-max / prm-vote over all attempts. Only finished attempts are voted on.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from ttscale.config import field
from ttscale.data.revision_format import revision_prompt
from ttscale.data.steps import join_steps, split_steps
from ttscale.inference.base import Completion, SamplingParams
from ttscale.search.candidates import make_candidate, policy_prompt
from ttscale.search.meter import Meter
from ttscale.search.results import build_results, score_finished
from ttscale.search.strategy import Strategy
from ttscale.search.types import Candidate, ProblemResult, SearchContext


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


FIRST_ATTEMPTS = ("reviser", "policy")


def generate_distinct(meter: Meter, generator, prompts: Sequence[str], owners: Sequence[int],
                      params: SamplingParams, role: str) -> list[Completion]:
    """One completion per prompt; repeated prompts get different completions (the j-th copy takes completion j).

    Each distinct prompt asks for exactly as many completions as it has copies, so none is drawn unused.
    """
    keys = list(zip(owners, prompts))   # per problem, so each problem is charged for its own prompts
    unique: dict[tuple[int, str], int] = {}
    copies: Counter = Counter()
    slot = []
    for key in keys:
        slot.append(copies[key])
        copies[key] += 1
        unique.setdefault(key, len(unique))
    outs = meter.generate(generator, [p for _, p in unique], [o for o, _ in unique], params, role=role,
                          n=[copies[k] for k in unique])
    return [outs[unique[k]][j] for k, j in zip(keys, slot)]


@dataclass(frozen=True)
class RevisionParams:
    first_attempt: str = field("reviser", choices=list(FIRST_ATTEMPTS),
                               help="revision strategies: who writes each chain's first attempt: the revision model "
                               "from an empty context, or the policy (then --policy is needed, and the reviser "
                               "revises the policy's samples)")


class RevisionChains(Strategy):
    name = "revisions"
    family = "revision"
    label = "sequential revisions"
    budget_meaning = "N attempts in one chain (the first by --first-attempt, the rest by the revision model)"
    Params = RevisionParams
    default_voting = "hierarchical"
    needs_reviser = True

    @property
    def needs_policy(self) -> bool:      # type: ignore[override]
        return self.params.first_attempt == "policy"

    def shape(self, budget: int) -> tuple[int, int]:
        """(chains, length)."""
        return 1, budget

    def method(self, budget: int) -> str:
        chains, length = self.shape(budget)
        start = ",first=policy" if self.params.first_attempt == "policy" else ""
        return f"{self.name}(L={length},C={chains}{start})"

    def config(self, budget: int) -> dict:
        return {"first_attempt": self.params.first_attempt}

    def validate(self, budget: int, ctx: SearchContext) -> None:
        super().validate(budget, ctx)
        self.shape(budget)

    def run(self, problems: Sequence[dict], ctx: SearchContext, budget: int) -> list[ProblemResult]:
        self.validate(budget, ctx)
        st = ctx.settings
        chains, length = self.shape(budget)
        meter = Meter(len(problems))
        candidates: list[list[Candidate]] = [[] for _ in problems]
        last = [[-1] * chains for _ in problems]         # index of each chain's latest attempt
        for t in range(length):
            owners = [p for p in range(len(problems)) for _ in range(chains)]
            by_policy = t == 0 and self.params.first_attempt == "policy"
            if by_policy:   # the policy's own samples, as a plain best-of-N run would draw them
                prompts = [policy_prompt(problems[p]["problem"], [], ctx.generator.tokenizer, st)
                           for p in range(len(problems)) for _ in range(chains)]
            else:
                prompts = [revision_prompt(problems[p]["problem"],
                                           self._history(candidates[p], last[p][c], st.delimiter),
                                           ctx.reviser.tokenizer, max_attempts=st.revision_max_attempts, system=st.system)
                           for p in range(len(problems)) for c in range(chains)]
            params = SamplingParams(n=1, temperature=st.temperature, top_p=st.top_p,
                                    max_new_tokens=st.max_new_tokens, seed=st.seed + t)
            comps = generate_distinct(meter, ctx.generator if by_policy else ctx.reviser, prompts, owners, params,
                                      role="policy" if by_policy else "reviser")
            for k, comp in enumerate(comps):
                p, c = divmod(k, chains)
                cand = make_candidate(split_steps(comp.text, st.delimiter), comp.finish_reason, comp.num_tokens,
                                      chain=c, previous=last[p][c])
                candidates[p].append(cand)
                last[p][c] = len(candidates[p]) - 1
        score_finished(meter, ctx.scorer, problems, candidates)
        return build_results(self, ctx, problems, candidates, meter)

    @staticmethod
    def _history(cands: list[Candidate], idx: int, delimiter: str) -> list[str]:
        """The chain's attempts, oldest first (revision_prompt keeps the last few)."""
        out = []
        while idx >= 0:
            out.append(join_steps(cands[idx].steps, delimiter))
            idx = cands[idx].previous
        return out[::-1]


@dataclass(frozen=True)
class ChainParams(RevisionParams):
    revision_length: int = field(0, help="parallel-revisions: attempts per chain (chains = N / length)", ge=0)
    sequential_ratio: float = field(0.0, help="parallel-revisions: length / chains, used when --revision-length "
                                    "is 0", ge=0)


class ParallelRevisions(RevisionChains):
    name = "parallel-revisions"
    label = "parallel revision chains"
    budget_meaning = "C chains x L attempts = N (L from --revision-length or --sequential-ratio L/C)"
    Params = ChainParams

    def config(self, budget: int) -> dict:
        return {"revision_length": self.shape(budget)[1], **super().config(budget)}

    def shape(self, budget: int) -> tuple[int, int]:
        cp = self.params
        valid = ", ".join(map(str, _divisors(budget)))
        if cp.revision_length:
            length = cp.revision_length
        elif cp.sequential_ratio:
            length = math.sqrt(budget * cp.sequential_ratio)   # L / C = r and L · C = N
            if abs(length - round(length)) > 1e-9:
                raise ValueError(f"{self.name}: --sequential-ratio {cp.sequential_ratio} gives chain length "
                                 f"{length:.3g} for budget {budget}, not a whole number; pick a ratio L²/N with L in "
                                 f"{{{valid}}}, or set --revision-length")
            length = round(length)
        else:
            raise ValueError(f"{self.name}: set --revision-length L (one of {valid}) or --sequential-ratio r")
        if budget % length:
            raise ValueError(f"{self.name}: --revision-length {length} does not divide budget {budget}; "
                             f"use one of {valid}")
        return budget // length, length
