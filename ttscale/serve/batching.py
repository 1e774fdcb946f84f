"""Requests that arrive together are searched together, in the strategies' own batched `run`.

The event loop only queues jobs and awaits futures; ONE worker thread makes every model call (models are not
thread-safe, and one batched call uses the device better than several small ones). A round starts when a job
arrives: it waits until that job is `window_s` old or `max_batch` jobs are queued, groups the jobs by their
settings key (a batched run shares one strategy, budget and settings), and runs each group as one
`strategy.run(problems, ctx, budget)` — the same call `ttscale search` makes for a batch of problems. Jobs that
arrive meanwhile wait for the next round, whose window has usually already passed.

Per-problem results do not depend on the batch (the Generator contract: a completion depends only on prompt,
params and index), so a request gets what the same search would give it alone.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ttscale.search.types import ProblemResult
from ttscale.serve.schemas import SearchRequest

logger = logging.getLogger("ttscale.serve")


@dataclass(eq=False)
class Job:
    request: SearchRequest
    future: asyncio.Future
    arrived: float
    dropped: bool = False         # the client went away: skip it if its batch has not started


class Batcher:
    def __init__(self, window_s: float, max_batch: int) -> None:
        self.window_s, self.max_batch = window_s, max_batch
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ttscale-model")
        self.stats: Counter[str] = Counter()   # queued, searched, dropped, batches, failed, largest_batch
        self._queue: asyncio.Queue[Job] | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop(), name="ttscale-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    @property
    def pending(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def submit(self, request: SearchRequest) -> Job:
        loop = asyncio.get_running_loop()
        job = Job(request, loop.create_future(), loop.time())
        self._queue.put_nowait(job)
        self.stats["queued"] += 1
        return job

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                left = batch[0].arrived + self.window_s - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except asyncio.TimeoutError:
                    break
            groups: dict[str, list[Job]] = defaultdict(list)
            for job in batch:
                groups[job.request.key].append(job)
            for jobs in groups.values():
                # checked again per group: a client may leave while an earlier group of this round runs
                live = [j for j in jobs if not j.dropped]
                self.stats["dropped"] += len(jobs) - len(live)
                try:
                    if live:
                        await self._run(live)
                except Exception as e:  # noqa: BLE001 - a bug here must fail these requests, not stop the loop
                    logger.exception("batch bookkeeping failed")
                    for job in live:
                        if not job.future.done():
                            job.future.set_exception(e)

    async def _run(self, jobs: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self.executor, _search, [j.request for j in jobs])
        except Exception as e:  # noqa: BLE001 - any model failure is answered (500), never kills the server
            if len(jobs) > 1:   # one bad request must not fail the others: search each alone
                logger.warning("batch of %d failed (%s: %s); searching its requests one by one",
                               len(jobs), type(e).__name__, e)
                for job in jobs:
                    await self._run([job])
                return
            logger.exception("search failed")
            self.stats["failed"] += 1
            if not jobs[0].future.done():
                jobs[0].future.set_exception(e)
            return
        self.stats["batches"] += 1
        self.stats["searched"] += len(jobs)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(jobs))
        for job, result in zip(jobs, results):
            if not job.future.done():
                job.future.set_result(result)


def _search(requests: list[SearchRequest]) -> list[ProblemResult]:
    """On the worker thread: one batched run for requests that share a key (so strategy, budget, ctx)."""
    first = requests[0]
    results = first.strategy.run([r.problem for r in requests], first.ctx, first.budget)
    if len(results) != len(requests):
        raise RuntimeError(f"{first.strategy_name} returned {len(results)} results for {len(requests)} problems")
    return results
