"""Incremental PRM scoring for step-wise search: reuse the KV cache of prefixes already scored.

In beam / DVTS / lookahead every new candidate is a scored parent plus one new step. A ttscale-native PRM
tokenizes piecewise (prompt ids, then each step's ids + the step tag id; see prm_inputs), so the parent's
ids are a prefix of the child's, and in a decoder-only model the parent's keys/values and step scores are
exactly those of the child's prefix. Only the new step's tokens need to run.

`PrefixCache` holds, per scored candidate, its keys/values and step probabilities, findable by a hash of
the ids up to any of its boundaries (end of the prompt, end of each step tag): one entry serves every
prefix of it. It is LRU-bounded by bytes and entries. `score_incremental` batches candidates with
different cached prefix lengths by LEFT-padding their caches to the longest (masked out) and right-padding
the new tokens; position ids continue each row's own prefix, so results equal a full forward (to fp error).
Candidates of one problem that have nothing cached share one prompt-only forward first.
"""
from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ttscale.inference.backend_rules import cache_kwarg

# Functions below take a scorers.PRMScorer (typed Any: scorers imports this module, not the reverse).


@dataclass
class _Entry:
    kv: list[tuple[torch.Tensor, torch.Tensor]]   # per layer (keys, values), each [heads, length, head_dim]
    probs: dict[int, float]                       # sequence index of a step tag -> P(correct) read there
    keys: list[bytes]                             # prefix hashes this entry answers
    nbytes: int = 0

    def __post_init__(self) -> None:
        self.nbytes = sum(k.nbytes + v.nbytes for k, v in self.kv)


class PrefixCache:
    """prefix hash -> (entry holding that prefix's KV and step scores); LRU-evicted by bytes and entries."""

    def __init__(self, max_bytes: int = 1 << 30, max_entries: int = 4096) -> None:
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self.clear()

    def clear(self) -> None:
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._index: dict[bytes, dict[int, None]] = {}   # hash -> ids of the entries holding it (newest last)
        self._next, self.nbytes = 0, 0
        self.prompt_lengths: dict[str, int] = {}           # problem -> tokens before its first step

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, keys: Sequence[bytes]) -> tuple[_Entry | None, int]:
        """The entry holding the longest cached prefix and that prefix's index in `keys` (-1: none)."""
        for j in range(len(keys) - 1, -1, -1):
            holders = self._index.get(keys[j])
            if holders:
                eid = next(reversed(holders))
                self._entries.move_to_end(eid)
                return self._entries[eid], j
        return None, -1

    def add(self, entry: _Entry) -> None:
        eid, self._next = self._next, self._next + 1
        self._entries[eid] = entry
        self.nbytes += entry.nbytes
        for key in entry.keys:
            self._index.setdefault(key, {})[eid] = None
        while self._entries and (self.nbytes > self.max_bytes or len(self._entries) > self.max_entries):
            old_id, old = self._entries.popitem(last=False)
            self.nbytes -= old.nbytes
            for key in old.keys:
                holders = self._index[key]
                holders.pop(old_id, None)
                if not holders:
                    del self._index[key]


def prefix_keys(ids: Sequence[int], bounds: Sequence[int]) -> list[bytes]:
    """A hash of ids[:b] for each boundary b (one running hash; 128 bits, so collisions are negligible)."""
    h, prev, out = hashlib.blake2b(digest_size=16), 0, []
    for b in bounds:
        h.update(array("q", ids[prev:b]).tobytes())
        out.append(h.copy().digest())
        prev = b
    return out


def supports_incremental(scorer: Any) -> bool:
    """Only ttscale-native inputs are prefix-stable, and the model must take and fill a full-attention cache."""
    from transformers import DynamicCache

    if scorer.spec.style != "ttscale" or cache_kwarg(scorer.model) is None:
        return False
    config = getattr(scorer.model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    try:
        cache = DynamicCache(config=config)
    except Exception:   # a model whose cache layout transformers cannot build from its config
        return False
    # Sliding-window layers drop old keys, so a left-padded cache would not mean what it says.
    return not any(getattr(cache, "is_sliding", []) or [])


@dataclass
class _Plan:
    item: int
    ids: list[int]
    positions: list[int]
    bounds: list[int]          # [end of prompt] + [each step tag + 1]
    keys: list[bytes]
    entry: _Entry | None = None
    cached: int = 0            # tokens taken from `entry`

    @property
    def new(self) -> list[int]:
        return self.ids[self.cached:]


def _bounds(cache: PrefixCache, scorer: Any, problem: str, positions: list[int]) -> list[int]:
    # The prompt's length (tokenized once per problem). Any value <= positions[0] (no step tag inside) is a
    # correct boundary, so a left-truncated prompt only costs reuse, never correctness.
    n = cache.prompt_lengths.get(problem)
    if n is None:
        text = scorer.spec.prompt_template.format(problem=problem.strip())
        n = cache.prompt_lengths[problem] = len(scorer.tokenizer(text)["input_ids"])
    return [min(n, positions[0])] + [p + 1 for p in positions]


@torch.no_grad()
def _forward(scorer: Any, rows: list[_Plan]) -> list[tuple[list[tuple[torch.Tensor, torch.Tensor]], dict]]:
    """One batched forward of each row's new tokens on top of its cached prefix -> (full-row KV, new probs)."""
    from transformers import DynamicCache

    dev = scorer.device
    past, new = max(r.cached for r in rows), max(len(r.new) for r in rows)
    input_ids = torch.full((len(rows), new), scorer.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), past + new), dtype=torch.long)
    position_ids = torch.zeros((len(rows), new), dtype=torch.long)
    for b, r in enumerate(rows):
        n = len(r.new)
        input_ids[b, :n] = torch.tensor(r.new)
        mask[b, past - r.cached:past + n] = 1
        position_ids[b] = r.cached + torch.arange(new)
    cache = DynamicCache(config=scorer.model.config)
    if past:
        ref = next(r.entry for r in rows if r.cached).kv
        for layer, (k0, v0) in enumerate(ref):
            keys = k0.new_zeros((len(rows), k0.shape[0], past, k0.shape[2]))
            values = v0.new_zeros((len(rows), v0.shape[0], past, v0.shape[2]))
            for b, r in enumerate(rows):
                if r.cached:
                    k, v = r.entry.kv[layer]
                    keys[b, :, past - r.cached:] = k[:, :r.cached]
                    values[b, :, past - r.cached:] = v[:, :r.cached]
            cache.update(keys, values, layer)
    # Score positions relative to the new tokens; a prompt-only row reads none (index 0 is read and dropped).
    rel = [[p - r.cached for p in r.positions if p >= r.cached] for r in rows]
    keep = sorted({p for ps in rel for p in ps}) or [0]
    probs = scorer._probs(input_ids.to(dev), mask.to(dev), torch.tensor(keep, device=dev),
                          **{cache_kwarg(scorer.model): cache}, position_ids=position_ids.to(dev),
                          use_cache=True).float().cpu()
    column = {p: k for k, p in enumerate(keep)}
    layers = [tuple(layer[:2]) for layer in cache]
    out = []
    for b, (r, ps) in enumerate(zip(rows, rel)):
        lo, hi = past - r.cached, past + len(r.new)
        kv = [(k[b, :, lo:hi].clone(), v[b, :, lo:hi].clone()) for k, v in layers]
        out.append((kv, {p + r.cached: float(probs[b, column[p]]) for p in ps}))
    return out


def score_incremental(scorer: Any, cache: PrefixCache,
                      items: Sequence[tuple[str, Sequence[str]]]) -> tuple[list[list[float]], list[int]]:
    """Per-step scores of `items` (as `scorer.score`) and the tokens run through the model for each item."""
    results: list[list[float]] = [[] for _ in items]
    tokens = [0] * len(items)
    plans: list[_Plan] = []
    for i, (problem, steps) in enumerate(items):
        ids, positions = scorer.encode(problem, steps, label=f"{scorer.name}: candidate {i}")
        if not positions:
            continue
        bounds = _bounds(cache, scorer, problem, positions)
        plan = _Plan(i, ids, positions, bounds, prefix_keys(ids, bounds))
        plan.entry, j = cache.lookup(plan.keys)
        plan.cached = bounds[j] if j >= 0 else 0
        if plan.cached == len(ids):        # scored before: nothing to run
            results[i] = [plan.entry.probs[p] for p in positions]
        else:
            plans.append(plan)

    # Cold candidates sharing a prompt (a problem's first steps) run that prompt once, as a cache entry.
    cold: dict[bytes, list[_Plan]] = {}
    for p in plans:
        if p.entry is None and p.bounds[0] > 0:
            cold.setdefault(p.keys[0], []).append(p)
    shared = [group for group in cold.values() if len(group) > 1]
    for start in range(0, len(shared), scorer.batch_size):
        chunk = shared[start:start + scorer.batch_size]
        heads = [_Plan(-1, g[0].ids[:g[0].bounds[0]], [], g[0].bounds[:1], g[0].keys[:1]) for g in chunk]
        for group, head, (kv, _) in zip(chunk, heads, _forward(scorer, heads)):
            entry = _Entry(kv, {}, head.keys)
            cache.add(entry)
            tokens[group[0].item] += len(head.ids)
            for p in group:
                p.entry, p.cached = entry, head.bounds[0]
        scorer.usage.calls += 1
        scorer.usage.tokens += sum(len(h.ids) for h in heads)

    plans.sort(key=lambda p: (-len(p.new), p.item))   # like lengths together: little padding
    for start in range(0, len(plans), scorer.batch_size):
        chunk = plans[start:start + scorer.batch_size]
        for p, (kv, new_probs) in zip(chunk, _forward(scorer, chunk)):
            probs = {q: p.entry.probs[q] for q in p.positions if q < p.cached} if p.entry else {}
            probs.update(new_probs)
            cache.add(_Entry(kv, probs, p.keys))
            results[p.item] = [probs[q] for q in p.positions]
            tokens[p.item] += len(p.new)
        scorer.usage.calls += 1
        scorer.usage.tokens += sum(len(p.new) for p in chunk)
    return results, tokens
