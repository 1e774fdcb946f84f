"""Meter: the only way strategies call models, so every strategy counts compute the same way, per problem.

Counting rules:
- A batched call counts as ONE call for every problem that has at least one prompt/item in it.
- Generated tokens are Completion.num_tokens, all of them — including completions a strategy then discards.
  Strategies ask each prompt for exactly the completions they keep (per-prompt counts, `n=`), so nothing is
  drawn to be thrown away; a run's summary compares tokens generated with tokens kept (search.output). A
  caller that holds a prompt's first k samples asks for the ones after them (`start=`); a generator without
  that option draws all k + n and keeps the last n, and every one drawn is charged.
- Prompt tokens per prompt: what the generator reports it ran (attribute `last_prompt_tokens` after a call,
  one count per prompt, prefill actually computed; `last_cached_tokens`, where the backend knows them, the
  prompt tokens served from its prefix cache instead). A generator that reports nothing (or None for a
  prompt) is charged its tokenizer's length of the prompt, once per call (all backends share one prefill
  between the n samples of a prompt); with no tokenizer either, 0, and a warning says so.
- Each `generate` call is charged to a role, the policy's or the reviser's (revision strategies), so their
  tokens and FLOPs are kept apart.
- PRM tokens per item: when the scorer reports per-item counts (attribute `last_item_tokens` after a call;
  ttscale's PRMScorer does, counting only tokens run, so cached prefixes cost nothing), those are used;
  otherwise the call's usage delta is split across items in proportion to their text length
  (largest-remainder rounding, so per-problem tokens sum to the delta).
- FLOPs ≈ 2 · params · tokens run (prompt run + generated), policy, reviser and PRM separately. A model of
  unknown size (num_params 0) counts 0 FLOPs; Spent.unknown_flops() and the reports say so.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

from ttscale.inference.base import Completion, Generator, SamplingParams, Scorer, counts_per_prompt, starts_per_prompt, takes
from ttscale.search.types import Spent

logger = logging.getLogger(__name__)


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


_warned: set[str] = set()


def _prompt_tokens(generator: Generator, prompts: Sequence[str]) -> tuple[list[int], list[int]]:
    """(prompt tokens run, prompt tokens served from cache) per prompt of the call just made (module doc)."""
    run = getattr(generator, "last_prompt_tokens", None)
    cached = getattr(generator, "last_cached_tokens", None)
    run = list(run) if run is not None and len(run) == len(prompts) else [None] * len(prompts)
    cached = list(cached) if cached is not None and len(cached) == len(prompts) else [0] * len(prompts)
    tok = getattr(generator, "tokenizer", None)
    for i, n in enumerate(run):
        if n is not None:
            continue
        if callable(tok):
            run[i] = len(tok(prompts[i])["input_ids"])
        else:
            run[i] = 0
            name = type(generator).__name__
            if name not in _warned:
                _warned.add(name)
                logger.warning("%s reports no prompt tokens and has no tokenizer: its prompts count 0 tokens "
                               "and 0 FLOPs", name)
    return [int(x) for x in run], [int(x or 0) for x in cached]


class Meter:
    """Wraps generate/score calls and attributes what they spend to the problems (owners) behind each input."""

    def __init__(self, n_problems: int) -> None:
        self.spent = [Spent() for _ in range(n_problems)]
        self.generate_calls = 0         # batched calls actually made (what batching tests count)
        self.score_calls = 0

    def generate(self, generator: Generator, prompts: Sequence[str], owners: Sequence[int],
                 params: SamplingParams, role: str = "policy", n: Sequence[int] | None = None,
                 start: Sequence[int] | None = None) -> list[list[Completion]]:
        """`params.n` completions per prompt (or n[i] for prompt i; from index start[i] on), charged to `role`
        ("policy" or "reviser") of each prompt's owner."""
        if role not in ("policy", "reviser"):
            raise ValueError(f"role must be policy or reviser, got {role!r}")
        counts, starts = counts_per_prompt(prompts, params, n), starts_per_prompt(prompts, start)
        if not prompts:
            return []
        if any(starts) and not takes(generator, "start"):
            drawn = self.generate(generator, prompts, owners, params, role, [k + j for k, j in zip(counts, starts)])
            return [d[j:] for d, j in zip(drawn, starts)]
        if n is not None and not takes(generator, "n"):
            return self._by_count(generator, prompts, owners, params, role, counts)
        kwargs = {"start": starts} if any(starts) else {}
        out = generator.generate(list(prompts), params, n=counts, **kwargs) if n is not None or kwargs else \
            generator.generate(list(prompts), params)
        if len(out) != len(prompts) or any(len(c) != k for c, k in zip(out, counts)):
            raise RuntimeError(f"{type(generator).__name__}.generate returned {[len(c) for c in out]} completions "
                               f"for {len(prompts)} prompts asked for {counts}; it breaks the Generator protocol")
        run, cached = _prompt_tokens(generator, prompts)
        self.generate_calls += 1
        for owner in set(owners):
            setattr(self.spent[owner], f"{role}_calls", getattr(self.spent[owner], f"{role}_calls") + 1)
        generated_field = "generated_tokens" if role == "policy" else "reviser_generated_tokens"
        for owner, comps, prompt_run, prompt_cached in zip(owners, out, run, cached):
            spent, tokens = self.spent[owner], sum(c.num_tokens for c in comps)
            setattr(spent, generated_field, getattr(spent, generated_field) + tokens)
            setattr(spent, f"{role}_prompt_tokens", getattr(spent, f"{role}_prompt_tokens") + prompt_run)
            setattr(spent, f"{role}_cached_tokens", getattr(spent, f"{role}_cached_tokens") + prompt_cached)
            setattr(spent, f"{role}_flops",
                    getattr(spent, f"{role}_flops") + 2.0 * generator.num_params * (prompt_run + tokens))
        return out

    def _by_count(self, generator: Generator, prompts: Sequence[str], owners: Sequence[int], params: SamplingParams,
                  role: str, counts: list[int]) -> list[list[Completion]]:
        """Per-prompt counts for a generator without `n=`: one call per distinct count (same completions, by
        the Generator contract; more calls, each charged as made)."""
        out: list[list[Completion]] = [[] for _ in prompts]
        for k in sorted(set(counts) - {0}):
            idx = [i for i, c in enumerate(counts) if c == k]
            got = self.generate(generator, [prompts[i] for i in idx], [owners[i] for i in idx],
                                dataclasses.replace(params, n=k), role)
            for i, comps in zip(idx, got):
                out[i] = comps
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
