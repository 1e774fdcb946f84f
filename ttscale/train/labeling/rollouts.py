"""Batched, stored, graded rollouts: the only place labeling touches a model.

Rollouts go through the sample store (inference.sample_store), keyed by (model, prompt, sampling params
incl. seed, j): since a generator's completion j depends only on (prompt, params, j), a retry, a resumed
run or a second labelling method reuses rollouts already generated instead of paying for them again. Each
batch is committed before its results are used, so a killed job loses at most the batch in flight.

Under the Ray executor the file keeps one writer, the driver: each replica reads through it (read-only,
when its node can open the file) and keeps what it generates in a `StoreOverlay`, shipped with the part's
result; the driver stores those rollouts before it writes the part. No shared filesystem is needed for
that (SQLite's locking is unreliable over NFS); a replica killed mid-part loses only that part's new
rollouts, which its retry regenerates identically.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ttscale.data.answers import is_correct
from ttscale.inference.base import Completion, Generator, SamplingParams
from ttscale.inference.sample_store import SampleStore, StoredGenerator, StoreOverlay


@dataclass
class RolloutStats:
    generated: int = 0          # completions actually generated
    cached: int = 0             # completions served from the store
    tokens: int = 0             # generated tokens (not counting store hits)


class RolloutEngine:
    """Run `params.n` rollouts for each prompt, through the store, and grade them against gold answers."""

    def __init__(self, generator: Generator, model_id: str, cache: SampleStore | StoreOverlay | None = None,
                 batch_prompts: int = 64, grade_timeout_s: float = 5.0):
        self.cache = cache
        self.stored = StoredGenerator(generator, cache, model_id)
        self.batch_prompts = batch_prompts
        self.grade_timeout_s = grade_timeout_s

    @property
    def stats(self) -> RolloutStats:
        s = self.stored.stats
        return RolloutStats(generated=s.generated, cached=s.stored, tokens=s.tokens)

    def complete(self, prompts: Sequence[str], params: SamplingParams, on_batch=None) -> list[list[Completion]]:
        uniq = list(dict.fromkeys(prompts))
        todo = self.stored.lacking(uniq, params)      # drawn in full batches; the rest is read back at once
        lacking = set(todo)
        held = [p for p in uniq if p not in lacking]
        done = dict(zip(held, self.stored.generate(held, params))) if held else {}
        for i in range(0, len(todo), self.batch_prompts):
            chunk = todo[i:i + self.batch_prompts]
            before = self.stored.stats.generated
            done.update(zip(chunk, self.stored.generate(chunk, params)))
            if on_batch:
                on_batch(self.stored.stats.generated - before)
        return [done[p] for p in prompts]

    def count_correct(self, prompts: Sequence[str], golds: Sequence[str], params: SamplingParams,
                      on_batch=None) -> list[int]:
        """Number of the params.n rollouts of each prompt whose final answer matches its gold answer."""
        outs = self.complete(prompts, params, on_batch=on_batch)
        return [sum(is_correct(c.text, gold, timeout_s=self.grade_timeout_s) for c in comps)
                for comps, gold in zip(outs, golds)]
