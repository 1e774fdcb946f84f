"""The transformers backend's decode engine: continuous batching over one growing KV buffer.

What it saves over decoding fixed chunks with a `DynamicCache` (the demo's policy, one thread: about 2x the
generated tokens per CPU-second, `benchmarks/throughput.py generate`):
  - a decode step writes one KV column into a preallocated buffer instead of `torch.cat`-ing the whole
    cache (the copy was about 60% of a step);
  - a finished row's slot is refilled from the queue (its prompt prefilled, its KV placed beside the running
    rows) instead of the batch shrinking while it waits for its longest row; rows leave and join in one
    copy, done when a slice of the batch has freed up, not on every finish;
  - sampling is one vectorised inverse-CDF draw for the whole batch, from a counter-based generator keyed
    by (row seed, token index), so a row's tokens still depend only on its prompt, params and j
    (the Generator contract), never on its neighbours;
  - only tokens that can complete a stop string (they hold its last character) trigger the text check.
Rows are right-aligned to a shared column: a row's real tokens are the last ones before the current column,
older columns are masked, and RoPE positions are per row, so moving a row's KV between columns is exact.
Each row carries its call's sampling parameters, so one loop can serve the calls of several threads at
once (`TransformersGenerator.serve()`, what `ttscale serve` uses).
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer


def _signed(x: int) -> int:
    return x - (1 << 64) if x >= 1 << 63 else x


_GOLDEN, _MIX1, _MIX2 = (_signed(c) for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))


def _shr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def uniforms(seeds: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
    """One uniform in [0, 1) per row: splitmix64 of (seed, counter), int64 arithmetic wrapping mod 2^64.
    A pure function of its inputs, so a row's draw never depends on which rows share its batch."""
    x = seeds + (counters + 1) * _GOLDEN
    x = (x ^ _shr(x, 30)) * _MIX1
    x = (x ^ _shr(x, 27)) * _MIX2
    x = x ^ _shr(x, 31)
    return _shr(x, 11).double() / float(1 << 53)


def sample(logits: torch.Tensor, u: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling of one token per row with uniforms `u`, each row at its own temperature and
    top-p (greedy where the temperature is 0). A row's token depends only on its own logits and uniform."""
    greedy = temperature <= 0
    probs = torch.softmax(logits.double() / temperature.clamp(min=1e-6)[:, None].double(), dim=-1)
    order = None
    if bool((top_p < 1.0).any()):
        probs, order = probs.sort(dim=-1, descending=True)
        # Drop tokens whose preceding mass already reaches top_p (the top token always stays).
        cut = torch.where(top_p < 1.0, top_p.double(), torch.full_like(top_p, float("inf"), dtype=torch.double))
        probs = probs.masked_fill(probs.cumsum(-1) - probs >= cut[:, None], 0.0)
    cdf = probs.cumsum(-1)
    idx = torch.searchsorted(cdf, (u.to(cdf.dtype) * cdf[:, -1])[:, None], right=True)
    idx = idx.clamp(max=probs.shape[-1] - 1)
    if order is not None:
        idx = order.gather(-1, idx)
    return torch.where(greedy, logits.argmax(-1), idx[:, 0])


class _BufferLayer(DynamicLayer):
    """A `DynamicLayer` whose KV lives in a preallocated [rows, heads, capacity, head_dim] buffer, the first
    `n` columns in use: a decode step writes one column instead of concatenating the whole cache."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, n: int):
        super().__init__()
        self.k, self.v, self.n = k, v, n
        self._views()

    def _views(self) -> None:
        self.keys, self.values = self.k[:, :, :self.n], self.v[:, :, :self.n]
        self.device, self.is_initialized = self.k.device, True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        new = key_states.shape[-2]
        if self.n + new > self.k.shape[-2]:   # grow by doubling: amortised O(1) copies per column
            cap = max(2 * self.k.shape[-2], self.n + new)
            self.k, self.v = _widen(self.k[:, :, :self.n], cap), _widen(self.v[:, :, :self.n], cap)
        self.k[:, :, self.n:self.n + new] = key_states
        self.v[:, :, self.n:self.n + new] = value_states
        self.n += new
        self._views()
        return self.keys, self.values


def _widen(x: torch.Tensor, cap: int) -> torch.Tensor:
    out = x.new_zeros((*x.shape[:2], cap, x.shape[3]))
    out[:, :, :x.shape[2]] = x
    return out


def new_cache(layers: list | None = None) -> DynamicCache:
    """A cache of full-attention layers (a sliding-window model still masks by distance: a row's tokens sit in
    adjacent columns); `layers` given: those buffers."""
    cache = DynamicCache()
    if layers is not None:
        cache.layers, cache.layer_class_to_replicate = layers, None
    return cache


class Call:
    """One `generate` call's rows: their sampling parameters, how a token ends a row (`finish(row, token)`
    appends it to row.out and returns a result once the row is done, else None), and where results and
    prefilled prompt tokens go. `wait()` blocks until every row is done (or the engine failed)."""

    def __init__(self, n_prompts: int, n_rows: int, temperature: float, top_p: float,
                 finish: Callable[["Row", int], Any], on_done: Callable[[int], None] = lambda k: None):
        self.temperature, self.top_p, self.finish, self.on_done = temperature, top_p, finish, on_done
        self.prefilled = [0] * n_prompts      # per prompt: prompt tokens run
        self.results: list[Any] = [None] * n_rows
        self.left, self.error = n_rows, None
        self.event = threading.Event()
        if n_rows == 0:
            self.event.set()

    def deliver(self, row: "Row", result: Any) -> None:
        self.results[row.index] = result
        self.on_done(1)
        self.left -= 1
        if self.left == 0:
            self.event.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.event.set()

    def wait(self) -> list[Any]:
        self.event.wait()
        if self.error is not None:
            raise self.error
        return self.results


@dataclass(eq=False)
class Row:
    call: Call
    index: int               # position in the call's results
    prompt: int              # index of its prompt in the call
    seed: int
    ids: list[int]           # prompt token ids
    out: list[int] = field(default_factory=list)   # generated so far


class Rows:
    """The queue the engine admits rows from: filled by one call (`Rows(rows)`: the engine stops when it
    drains), or by many threads (`Rows(shared=True)`: put() from any thread, the engine waits for more)."""

    def __init__(self, rows: list[Row] = (), shared: bool = False):
        self.queue, self.shared = deque(rows), shared
        self.cond = threading.Condition()

    def put(self, rows: list[Row]) -> None:
        with self.cond:
            self.queue.extend(rows)
            self.cond.notify()

    def __len__(self) -> int:
        return len(self.queue)

    def take(self, k: int) -> list[Row]:
        with self.cond:
            return [self.queue.popleft() for _ in range(min(k, len(self.queue)))]

    def wait(self) -> bool:
        """Block until rows are queued; False when no more can come (a single call's rows are all taken)."""
        if not self.shared:
            return False
        with self.cond:
            self.cond.wait_for(lambda: len(self.queue) > 0)
        return True

    def fail_all(self, error: BaseException) -> None:
        with self.cond:
            calls = {row.call for row in self.queue}
            self.queue.clear()
        for call in calls:
            call.fail(error)


@dataclass
class Engine:
    """Decode the rows of `source` over a model, at most `batch_size` at once (module doc). forward(cache,
    **inputs) runs the model over a cache and returns the last position's logits."""
    forward: Callable[..., torch.Tensor]
    pad_id: int
    batch_size: int
    device: str = "cpu"

    def run(self, source: Rows) -> None:
        active: list[Row] = []        # one per batch position
        alive: list[bool] = []        # finished rows stay in the batch until a rebuild drops them
        cache = buffers = mask = pos = logits = seeds = temps = top_ps = None
        refill = max(1, self.batch_size // 8)   # free slots that pay for a rebuild while rows still queue
        try:
            while True:
                free = self.batch_size - sum(alive)
                if len(source) and (not any(alive) or free >= min(refill, len(source))):
                    admit = source.take(free)
                    keep = [k for k, a in enumerate(alive) if a]
                    new_logits, new_kv, new_mask, new_pos = self._prefill(admit)
                    cache, buffers, mask = self._rebuild(buffers, mask, keep, new_kv, new_mask)
                    sel = torch.tensor(keep, dtype=torch.long)
                    logits = torch.cat([logits[sel], new_logits]) if keep else new_logits
                    pos = torch.cat([pos[sel], new_pos]) if keep else new_pos
                    active = [active[k] for k in keep] + admit
                    alive = [True] * len(active)
                    seeds = torch.tensor([r.seed for r in active], dtype=torch.long)
                    temps = torch.tensor([r.call.temperature for r in active], dtype=torch.float)
                    top_ps = torch.tensor([r.call.top_p for r in active], dtype=torch.float)
                elif not any(alive):
                    cache = buffers = mask = pos = logits = None   # idle: hold no KV
                    if not source.wait():
                        return
                    continue
                step_no = torch.tensor([len(r.out) for r in active], dtype=torch.long)
                tokens = sample(logits, uniforms(seeds, step_no), temps, top_ps).tolist()
                for k, (row, t) in enumerate(zip(active, tokens)):
                    if alive[k] and (out := row.call.finish(row, t)) is not None:
                        alive[k] = False
                        row.call.deliver(row, out)
                if not any(alive):
                    continue
                if not len(source) and not all(alive) and alive.count(False) >= refill:   # drain: shrink
                    keep = [k for k, a in enumerate(alive) if a]
                    sel = torch.tensor(keep, dtype=torch.long)
                    cache, buffers, mask = self._rebuild(buffers, mask, keep, None, None)
                    pos, seeds, temps, top_ps = pos[sel], seeds[sel], temps[sel], top_ps[sel]
                    tokens = [tokens[k] for k in keep]
                    active, alive = [active[k] for k in keep], [True] * len(keep)
                mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
                pos = pos + 1
                ids = torch.tensor(tokens, device=self.device)[:, None]
                logits = self.forward(cache, input_ids=ids, attention_mask=mask, position_ids=pos[:, None])
        except BaseException as e:   # every call with a row in flight or queued gets the error
            for row in active:
                row.call.fail(e)
            source.fail_all(e)
            if not source.shared:
                raise

    def _prefill(self, rows: list[Row]):
        """Run each distinct prompt of `rows` once (left-padded), then give every row its prompt's KV."""
        uniq: dict[tuple, int] = {}
        for r in rows:
            uniq.setdefault((id(r.call), r.prompt), len(uniq))
        firsts = {key: next(r for r in rows if (id(r.call), r.prompt) == key) for key in uniq}
        width = max(len(r.ids) for r in rows)
        ids = torch.full((len(uniq), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(uniq), width), dtype=torch.long)
        for key, k in uniq.items():
            r = firsts[key]
            ids[k, width - len(r.ids):] = torch.tensor(r.ids)
            mask[k, width - len(r.ids):] = 1
            r.call.prefilled[r.prompt] += len(r.ids)
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = new_cache()
        logits = self.forward(cache, input_ids=ids, attention_mask=mask, position_ids=pos)
        src = torch.tensor([uniq[(id(r.call), r.prompt)] for r in rows], device=self.device)
        kv = [(layer.keys[src], layer.values[src]) for layer in cache.layers]
        return logits[src], kv, mask[src], pos[src, -1]

    def _rebuild(self, buffers, mask, keep: list[int], new_kv, new_mask):
        """A fresh cache holding the kept rows then the new ones, right-aligned to a shared column and only as
        wide as the longest live row (older, fully masked columns are dropped). Returns (cache, buffers, mask)."""
        width = new_mask.shape[1] if new_mask is not None else 1
        sel = torch.tensor(keep, dtype=torch.long, device=self.device)
        if keep:  # a row's live span runs from its first unmasked column to the end
            first = (mask[sel].cumsum(-1) == 0).sum(-1)
            width = max(width, int(mask.shape[1] - first.min()))
        n_old, n_new = len(keep), (new_mask.shape[0] if new_mask is not None else 0)
        out_mask = torch.zeros((n_old + n_new, width), dtype=torch.long, device=self.device)
        bufs = []
        for i in range(len(buffers) if buffers is not None else len(new_kv)):
            ref = buffers[i].k if buffers is not None else new_kv[i][0]
            k = ref.new_zeros((n_old + n_new, ref.shape[1], width + 64, ref.shape[3]))
            v = torch.zeros_like(k)
            if n_old:
                b = buffers[i]
                w = min(width, b.n)
                k[:n_old, :, width - w:width] = b.k[sel, :, b.n - w:b.n]
                v[:n_old, :, width - w:width] = b.v[sel, :, b.n - w:b.n]
            if n_new:
                nk, nv = new_kv[i]
                k[n_old:, :, width - nk.shape[2]:width] = nk
                v[n_old:, :, width - nv.shape[2]:width] = nv
            bufs.append(_BufferLayer(k, v, width))
        if n_old:
            w = min(width, mask.shape[1])
            out_mask[:n_old, width - w:] = mask[sel, mask.shape[1] - w:]
        if n_new:
            out_mask[n_old:, width - new_mask.shape[1]:] = new_mask
        return new_cache(bufs), bufs, out_mask
