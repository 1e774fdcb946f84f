"""Meter: the only way strategies call models, so every strategy counts compute the same way, per problem.

Counting rules:
- A batched call counts as ONE call for every problem that has at least one prompt/item in it.
- Generated tokens are Completion.num_tokens, all of them — including completions a strategy then discards.
- PRM tokens per item: when the scorer reports per-item counts (attribute `last_item_tokens` after a call;
  ttscale's PRMScorer does, counting only tokens run, so cached prefixes cost nothing), those are used;
  otherwise the call's usage delta is split across items in proportion to their text length
  (largest-remainder rounding, so per-problem tokens sum to the delta).
- FLOPs ≈ 2 · params · tokens, policy (or revision model) and PRM separately.
"""
from __future__ import annotations

from typing import Sequence

from ttscale.inference.base import Completion, Generator, SamplingParams, Scorer
from ttscale.search.types import Spent


def _split(total: int, weights: Sequence[int]) -> list[int]:
    """Integers proportional to `weights` that sum exactly to `total` (largest remainder)."""
    wsum = sum(weights)
    if not weights:
        return []
    if wsum <= 0:
        weights, wsum = [1] * len(weights), len(weights)
    raw = [total * w / wsum for w in weights]
    out = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: (out[i] - raw[i], i))[:total - sum(out)]:
        out[i] += 1
    return out


class Meter:
    """Wraps generate/score calls and attributes what they spend to the problems (owners) behind each input."""

    def __init__(self, n_problems: int) -> None:
        self.spent = [Spent() for _ in range(n_problems)]
        self.generate_calls = 0         # batched calls actually made (what batching tests count)
        self.score_calls = 0

    def generate(self, generator: Generator, prompts: Sequence[str], owners: Sequence[int],
                 params: SamplingParams) -> list[list[Completion]]:
        if not prompts:
            return []
        out = generator.generate(list(prompts), params)
        if len(out) != len(prompts) or any(len(c) != params.n for c in out):
            raise RuntimeError(f"{type(generator).__name__}.generate returned {[len(c) for c in out]} completions "
                               f"for {len(prompts)} prompts with n={params.n}; it breaks the Generator protocol")
        self.generate_calls += 1
        for owner in set(owners):
            self.spent[owner].policy_calls += 1
        for owner, comps in zip(owners, out):
            tokens = sum(c.num_tokens for c in comps)
            self.spent[owner].generated_tokens += tokens
            self.spent[owner].policy_flops += 2.0 * generator.num_params * tokens
        return out

    def score(self, scorer: Scorer, items: Sequence[tuple[str, Sequence[str]]], owners: Sequence[int],
              incremental: bool = False) -> list[list[float]]:
        """Step scores for `items`. With `incremental`, a scorer's `score_incremental` (same signature; reuses
        the KV cache of prefixes it has seen) is used when it has one — step-wise search rescoring grown paths."""
        if not items:
            return []
        before = scorer.usage.snapshot()
        fn = getattr(scorer, "score_incremental", None) if incremental else None
        scores = (fn or scorer.score)(list(items))
        delta = scorer.usage - before
        per_item = getattr(scorer, "last_item_tokens", None)
        if per_item is None or len(per_item) != len(items):
            per_item = _split(delta.tokens, [len(p) + sum(len(s) for s in steps) for p, steps in items])
        self.score_calls += 1
        for owner in set(owners):
            self.spent[owner].prm_calls += 1
        for owner, tokens in zip(owners, per_item):
            self.spent[owner].prm_tokens += int(tokens)
            self.spent[owner].prm_flops += 2.0 * scorer.num_params * int(tokens)
        return scores
