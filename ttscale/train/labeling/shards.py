"""Which problems each shard labels and how they are cut into numbered parts.

Problem i belongs to shard i % num_shards, so any number of problems spreads evenly (20 problems on 4
shards: 5 each). Each shard cuts its own problems into chunks of chunk_size; chunk ids are numbered shard
after shard (shard 0's chunks first), so they are dense (0..n_chunks-1, what `missing_chunks` expects),
globally unique, and a function of (n_problems, num_shards, chunk_size) only: a resumed or merged run finds
the same ids. Rows are put back in problem order when the shards are merged (see output.ordered_rows).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    n_problems: int
    num_shards: int
    chunk_size: int

    def shard_problems(self, shard: int) -> range:
        return range(shard, self.n_problems, self.num_shards)

    def _n_chunks_of(self, shard: int) -> int:
        return -(-len(self.shard_problems(shard)) // self.chunk_size)

    @property
    def n_chunks(self) -> int:
        return sum(self._n_chunks_of(s) for s in range(self.num_shards))

    def chunks(self, shard: int) -> list[tuple[int, range]]:
        """(chunk id, the problem indices it labels) for every chunk of `shard`, in order."""
        first = sum(self._n_chunks_of(s) for s in range(shard))
        mine = self.shard_problems(shard)
        return [(first + j, mine[j * self.chunk_size:(j + 1) * self.chunk_size])
                for j in range(self._n_chunks_of(shard))]

    def shard_of_chunk(self) -> dict[int, int]:
        return {c: s for s in range(self.num_shards) for c, _ in self.chunks(s)}
