"""Batched, cached, graded rollouts: the only place labeling touches a model.

The cache is a SQLite file keyed by (model, prompt, sampling params incl. seed): since a generator's
completion j depends only on (prompt, params, j), a retry, a resumed run or a second labelling method
reuses rollouts already generated instead of paying for them again. Each batch is committed before its
results are used, so a killed job loses at most the batch in flight.

Under the Ray executor the file keeps one writer, the driver: each replica reads through it (read-only,
when its node can open the file) and keeps what it generates in a `ReplicaCache`, shipped with the part's
result; the driver stores those rollouts before it writes the part. No shared filesystem is needed for
that (SQLite's locking is unreliable over NFS); a replica killed mid-part loses only that part's new
rollouts, which its retry regenerates identically.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ttscale.data.answers import is_correct
from ttscale.inference.base import Completion, Generator, SamplingParams


class RolloutCache:
    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), timeout=60)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS rollouts (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.conn.commit()

    @classmethod
    def open_readonly(cls, path: str | Path) -> "RolloutCache | None":
        """The cache at `path` opened read-only, or None where it does not exist or cannot be opened."""
        if not Path(path).exists():
            return None
        self = cls.__new__(cls)
        try:
            self.conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=60)
            self.conn.execute("SELECT 1 FROM rollouts LIMIT 1")
        except sqlite3.Error:
            return None
        return self

    @staticmethod
    def key(model_id: str, prompt: str, params: SamplingParams) -> str:
        blob = json.dumps([model_id, prompt, list(params.cache_key())], ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, list[Completion]]:
        found: dict[str, list[Completion]] = {}
        uniq = list(dict.fromkeys(keys))
        for i in range(0, len(uniq), 500):  # SQLite caps bound parameters per statement
            chunk = uniq[i:i + 500]
            q = f"SELECT key, value FROM rollouts WHERE key IN ({','.join('?' * len(chunk))})"
            for k, v in self.conn.execute(q, chunk):
                found[k] = [Completion(*c) for c in json.loads(v)]
        return found

    def put_many(self, items: dict[str, list[Completion]]) -> None:
        rows = [(k, json.dumps([[c.text, c.num_tokens, c.finish_reason] for c in v], ensure_ascii=False))
                for k, v in items.items()]
        with self.conn:
            self.conn.executemany("INSERT OR REPLACE INTO rollouts (key, value) VALUES (?, ?)", rows)

    def close(self) -> None:
        # fold the write-ahead log back into the file, so a finished run's cache is one self-contained file
        # (a copy of the .sqlite alone would otherwise miss what is still in the -wal); a no-op read-only
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:   # read-only or busy: the WAL stays, and SQLite reads it as before
            pass
        self.conn.close()


class ReplicaCache:
    """A Ray replica's cache: reads the run's cache (if given) and its own new rollouts; `drain` hands the
    new ones to the driver, the run cache's only writer (see the module doc)."""

    def __init__(self, base: RolloutCache | None):
        self.base, self.fresh = base, {}

    def get_many(self, keys: Sequence[str]) -> dict[str, list[Completion]]:
        found = self.base.get_many(keys) if self.base else {}
        found.update({k: self.fresh[k] for k in keys if k in self.fresh})
        return found

    def put_many(self, items: dict[str, list[Completion]]) -> None:
        self.fresh.update(items)

    def drain(self) -> dict[str, list[Completion]]:
        out, self.fresh = self.fresh, {}
        return out

    def close(self) -> None:
        if self.base:
            self.base.close()


@dataclass
class RolloutStats:
    generated: int = 0          # completions actually generated
    cached: int = 0             # completions served from the cache
    tokens: int = 0             # generated tokens (not counting cache hits)


class RolloutEngine:
    """Run `params.n` rollouts for each prompt, through the cache, and grade them against gold answers."""

    def __init__(self, generator: Generator, model_id: str, cache: RolloutCache | ReplicaCache | None = None,
                 batch_prompts: int = 64, grade_timeout_s: float = 5.0):
        self.generator, self.model_id, self.cache = generator, model_id, cache
        self.batch_prompts = batch_prompts
        self.grade_timeout_s = grade_timeout_s
        self.stats = RolloutStats()

    def complete(self, prompts: Sequence[str], params: SamplingParams, on_batch=None) -> list[list[Completion]]:
        keys = [RolloutCache.key(self.model_id, p, params) for p in prompts]
        have = self.cache.get_many(keys) if self.cache else {}
        todo = list(dict.fromkeys(k for k in keys if k not in have))
        self.stats.cached += sum(len(have[k]) for k in keys if k in have)
        prompt_of = dict(zip(keys, prompts))
        for i in range(0, len(todo), self.batch_prompts):
            chunk = todo[i:i + self.batch_prompts]
            outs = self.generator.generate([prompt_of[k] for k in chunk], params)
            fresh = dict(zip(chunk, outs))
            if self.cache:
                self.cache.put_many(fresh)
            have.update(fresh)
            n = sum(len(o) for o in outs)
            self.stats.generated += n
            self.stats.tokens += sum(c.num_tokens for o in outs for c in o)
            if on_batch:
                on_batch(n)
        return [have[k] for k in keys]

    def count_correct(self, prompts: Sequence[str], golds: Sequence[str], params: SamplingParams,
                      on_batch=None) -> list[int]:
        """Number of the params.n rollouts of each prompt whose final answer matches its gold answer."""
        outs = self.complete(prompts, params, on_batch=on_batch)
        return [sum(is_correct(c.text, gold, timeout_s=self.grade_timeout_s) for c in comps)
                for comps, gold in zip(outs, golds)]
