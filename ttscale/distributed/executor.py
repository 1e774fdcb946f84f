"""The executor interface every resumable stage calls: `make_executor(cfg).map_parts(tasks, work, write)`.

- `tasks`: an iterable of (part number, payload) — only the parts still to do; payloads are the part's
  input (problem rows), built lazily so a huge run never holds them all.
- `work`: a `Work` — `setup(replica)` loads the models once per replica (replica None = in-process),
  `run(state, payload)` computes one part's result. It must be picklable for Ray (a dataclass of options).
- `write(part, result)`: called in the driver process, once per part, in completion order; the stages
  use their existing atomic writes here, so resume and `merge` do not care which executor ran.

`local` (the default) is the plain in-process loop; `ray` is ray_pool.RayExecutor.
"""
from __future__ import annotations

import itertools
from typing import Any, Iterable

from ttscale.distributed.work import ExecutorArgs, Work, Write

__all__ = ["ExecutorArgs", "LocalExecutor", "Work", "Write", "make_executor"]


class LocalExecutor:
    """Today's loop: load once, then run and write the parts in order in this process."""

    def __init__(self) -> None:
        self.stats: dict[str, Any] = {"executor": "local", "parts": 0}

    def map_parts(self, tasks: Iterable[tuple[int, Any]], work: Work, write: Write) -> None:
        it = iter(tasks)
        first = next(it, None)
        if first is None:
            return
        state = work.setup(None)
        try:
            for part, payload in itertools.chain([first], it):
                write(part, work.run(state, payload))
                self.stats["parts"] += 1
        finally:
            work.close(state)


def make_executor(args: ExecutorArgs):
    if args.executor == "ray":
        from ttscale.distributed.ray_pool import RayExecutor
        return RayExecutor(args)
    return LocalExecutor()
