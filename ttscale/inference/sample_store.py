"""Sample store: completions kept by (model, prompt, sampling params without n, j), so what one run drew
another reads back instead of drawing it again.

The Generator contract (completion j of a prompt depends only on prompt, params without n, and j) makes a
stored completion exactly the one a fresh call would return. `StoredGenerator` wraps any generator: for each
prompt it reads the completions it holds and asks the generator only for the ones after them (`start=`), so
a run of N samples after a run of 4 draws 4 .. N-1; adaptive rounds, auto's probe and its extension,
revision chains that share a prefix and labelling retries all read back what was drawn. One mechanism serves
`label` (its rollouts) and `search` (`--sample-store`).

Cost stays as if drawn: a stored completion keeps its token count, and a prompt served wholly from the store
reports the prompt tokens its first draw ran (`last_prompt_tokens` / `last_cached_tokens`), so a Meter
charges a run the same with or without the store; only the time is saved.

The file is SQLite (WAL, one transaction per call), so a killed job loses at most the call in flight and
two processes can share it (the demo's two workers). A model is identified by `model_id`: a local
checkpoint's path plus its fingerprint, so retraining into the same folder never serves the old model's
samples. Without a store (None) the wrapper only counts what it draws.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ttscale.data.rundir import fingerprint_model
from ttscale.inference.base import Completion, Generator, SamplingParams, counts_per_prompt, starts_per_prompt, takes


def model_id(model: str | Path) -> str:
    """A name for a model's samples: a hub or server name as given; a local checkpoint by its resolved path
    and fingerprint (its weight files' sizes and mtimes, its JSON files' content: data.rundir)."""
    path = Path(model)
    return f"{path.resolve()}@{fingerprint_model(str(path))}" if path.exists() else str(model)


@dataclass
class Held:
    """What a store holds for one key: completions by index j, and the prompt tokens its first draw ran."""
    completions: dict[int, Completion] = field(default_factory=dict)
    prompt_run: int | None = None
    prompt_cached: int = 0


class SampleStore:
    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), timeout=120, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        with self.conn:
            self.conn.execute("CREATE TABLE IF NOT EXISTS samples (key TEXT, j INTEGER, text TEXT, "
                              "num_tokens INTEGER, finish_reason TEXT, PRIMARY KEY (key, j))")
            self.conn.execute("CREATE TABLE IF NOT EXISTS prompts (key TEXT PRIMARY KEY, run INTEGER, "
                              "cached INTEGER)")

    @classmethod
    def open_readonly(cls, path: str | Path) -> "SampleStore | None":
        """The store at `path` opened read-only, or None where it does not exist or cannot be opened."""
        if not Path(path).exists():
            return None
        self = cls.__new__(cls)
        try:
            self.conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=120)
            self.conn.execute("SELECT 1 FROM samples LIMIT 1")
        except sqlite3.Error:
            return None
        return self

    @staticmethod
    def key(model: str, prompt: str, params: SamplingParams) -> str:
        blob = json.dumps([model, prompt, list(params.cache_key()[1:])], ensure_ascii=False)   # without n
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, Held]:
        found: dict[str, Held] = {}
        uniq = list(dict.fromkeys(keys))
        for i in range(0, len(uniq), 500):  # SQLite caps bound parameters per statement
            chunk, marks = uniq[i:i + 500], ",".join("?" * len(uniq[i:i + 500]))
            for k, j, text, tokens, reason in self.conn.execute(
                    f"SELECT key, j, text, num_tokens, finish_reason FROM samples WHERE key IN ({marks})", chunk):
                found.setdefault(k, Held()).completions[j] = Completion(text, tokens, reason)
            for k, run, cached in self.conn.execute(
                    f"SELECT key, run, cached FROM prompts WHERE key IN ({marks})", chunk):
                held = found.setdefault(k, Held())
                held.prompt_run, held.prompt_cached = run, cached
        return found

    def put_many(self, items: dict[str, Held]) -> None:
        with self.conn:
            self.conn.executemany(
                "INSERT OR IGNORE INTO samples (key, j, text, num_tokens, finish_reason) VALUES (?, ?, ?, ?, ?)",
                [(k, j, c.text, c.num_tokens, c.finish_reason) for k, h in items.items()
                 for j, c in h.completions.items()])
            self.conn.executemany("INSERT OR IGNORE INTO prompts (key, run, cached) VALUES (?, ?, ?)",
                                  [(k, h.prompt_run, h.prompt_cached) for k, h in items.items()
                                   if h.prompt_run is not None])

    def close(self) -> None:
        # fold the write-ahead log back into the file, so a finished run's store is one self-contained file;
        # a no-op read-only or while another process holds it
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self.conn.close()


class StoreOverlay:
    """A store that reads through `base` (read-only, may be None) and keeps what is put in memory; `drain`
    hands that to the one writer (a Ray replica's samples go back to the driver with its result, since
    SQLite's locking is unreliable over NFS)."""

    def __init__(self, base: SampleStore | None):
        self.base, self.fresh = base, {}

    def get_many(self, keys: Sequence[str]) -> dict[str, Held]:
        found = self.base.get_many(keys) if self.base else {}
        for k in keys:
            if k in self.fresh:
                held = found.setdefault(k, Held())
                held.completions.update(self.fresh[k].completions)
                if held.prompt_run is None:
                    held.prompt_run, held.prompt_cached = self.fresh[k].prompt_run, self.fresh[k].prompt_cached
        return found

    def put_many(self, items: dict[str, Held]) -> None:
        for k, h in items.items():
            mine = self.fresh.setdefault(k, Held(prompt_run=h.prompt_run, prompt_cached=h.prompt_cached))
            mine.completions.update(h.completions)

    def drain(self) -> dict[str, Held]:
        out, self.fresh = self.fresh, {}
        return out

    def close(self) -> None:
        if self.base:
            self.base.close()


def _first_missing(held: Held | None, lo: int, hi: int) -> int | None:
    """The first index in [lo, hi) that `held` lacks, or None."""
    return next((j for j in range(lo, hi) if held is None or j not in held.completions), None)


@dataclass
class StoreStats:
    generated: int = 0          # completions drawn from the model
    stored: int = 0             # completions read back from the store
    tokens: int = 0             # generated tokens drawn (not counting those read back)


class StoredGenerator:
    """A Generator that serves what `store` holds and draws only the rest from `generator` (module doc)."""

    def __init__(self, generator: Generator, store: SampleStore | StoreOverlay | None, model: str):
        self.generator, self.store, self.model = generator, store, model
        self.stats = StoreStats()
        self.last_prompt_tokens: list[int | None] | None = None
        self.last_cached_tokens: list[int] | None = None

    def __getattr__(self, name: str) -> Any:    # num_params, tokenizer, batch_size... are the generator's
        if name == "generator":
            raise AttributeError(name)
        return getattr(self.generator, name)

    def generate(self, prompts: Sequence[str], params: SamplingParams, n: Sequence[int] | None = None,
                 start: Sequence[int] | None = None) -> list[list[Completion]]:
        counts, starts = counts_per_prompt(prompts, params, n), starts_per_prompt(prompts, start)
        keys = [SampleStore.key(self.model, p, params) for p in prompts]
        held = self.store.get_many(keys) if self.store else {}
        # per distinct key, the range asked [lo, hi) and the first index it lacks: drawn from there to hi
        want: dict[str, list[int]] = {}
        for k, j, c in zip(keys, starts, counts):
            if c:
                lo, hi = want.get(k, (j, j + c))
                want[k] = [min(lo, j), max(hi, j + c)]
        draw = {}
        for k, (lo, hi) in want.items():
            first = _first_missing(held.get(k), lo, hi)
            if first is not None:
                draw[k] = first if takes(self.generator, "start") else 0
        fresh = self._draw(prompts, keys, params, draw, {k: hi for k, (_, hi) in want.items()})
        if fresh and self.store:
            self.store.put_many(fresh)
        out, run, cached = [], [], []
        for k, j, c in zip(keys, starts, counts):
            got = {**held.get(k, Held()).completions, **(fresh[k].completions if k in fresh else {})}
            out.append([got[i] for i in range(j, j + c)])
            src = fresh.get(k) or held.get(k)
            run.append(src.prompt_run if c and src else 0)
            cached.append(src.prompt_cached if c and src else 0)
            self.stats.stored += sum(i not in (fresh[k].completions if k in fresh else ()) for i in range(j, j + c))
        self.last_prompt_tokens, self.last_cached_tokens = run, cached
        return out

    def lacking(self, prompts: Sequence[str], params: SamplingParams) -> list[str]:
        """Those of `prompts` whose first params.n completions the store does not hold in full."""
        keys = [SampleStore.key(self.model, p, params) for p in prompts]
        held = self.store.get_many(keys) if self.store else {}
        return [p for p, k in zip(prompts, keys) if _first_missing(held.get(k), 0, params.n) is not None]

    def _draw(self, prompts: Sequence[str], keys: list[str], params: SamplingParams, draw: dict[str, int],
              end: dict[str, int]) -> dict[str, Held]:
        """Completions draw[k] .. end[k] - 1 of each key to draw, in one generate call."""
        if not draw:
            return {}
        prompt_of = dict(zip(keys, prompts))
        order = list(draw)
        if takes(self.generator, "n"):
            kwargs = {"start": [draw[k] for k in order]} if any(draw.values()) else {}
            outs = self.generator.generate([prompt_of[k] for k in order], params,
                                           n=[end[k] - draw[k] for k in order], **kwargs)
            run = getattr(self.generator, "last_prompt_tokens", None) or [None] * len(order)
            cached = getattr(self.generator, "last_cached_tokens", None) or [0] * len(order)
        else:   # a generator written before per-prompt counts: one call per count, each from j = 0
            outs, run, cached = [None] * len(order), [None] * len(order), [0] * len(order)
            for size in sorted({end[k] for k in order}):
                idx = [i for i, k in enumerate(order) if end[k] == size]
                got = self.generator.generate([prompt_of[order[i]] for i in idx], dataclasses.replace(params, n=size))
                part = getattr(self.generator, "last_prompt_tokens", None) or [None] * len(idx)
                for i, comps, r in zip(idx, got, part):
                    outs[i], run[i] = comps, r
        fresh = {}
        for k, comps, r, c in zip(order, outs, run, cached):
            fresh[k] = Held(dict(zip(range(draw[k], end[k]), comps)), r, int(c or 0))
            self.stats.generated += len(comps)
            self.stats.tokens += sum(x.num_tokens for x in comps)
        return fresh
