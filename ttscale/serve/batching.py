"""Requests that arrive together are searched together, in the strategies' own batched `run`, and the groups
run side by side on one shared decode loop.

The event loop only queues jobs and awaits futures. A round starts when a job arrives: it waits until that
job is `window_s` old or `max_batch` jobs are queued, groups the jobs by their settings key (a batched run
shares one strategy, budget and settings), and starts each group as one `strategy.run(problems, ctx, budget)`
— the same call `ttscale search` makes for a batch of problems — on a pool of `concurrency` threads, without
waiting for the groups already running. A transformers generator is put in serve mode (`serve()`): the
generate calls of every running group queue their rows into one decode loop, where they join the running
batch at its next step (continuous batching across requests); other backends batch on their side (vLLM,
an OpenAI-compatible server). The PRM scores one call at a time (`SerialScorer`).

Per-problem results do not depend on the batch (the Generator contract: a completion depends only on prompt,
params and index), so a request gets what the same search would give it alone.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ttscale.inference.base import Usage
from ttscale.search.types import ProblemResult, SearchContext
from ttscale.serve.schemas import SearchRequest

logger = logging.getLogger("ttscale.serve")


@dataclass(eq=False)
class Job:
    request: SearchRequest
    future: asyncio.Future
    arrived: float
    dropped: bool = False         # the client went away: skip it if its batch has not started


class SerialScorer:
    """A scorer shared by request threads: one call at a time, with `usage` and `last_item_tokens` kept per
    thread (a strategy's Meter reads them around its own call, never another thread's)."""

    def __init__(self, scorer: Any) -> None:
        self._scorer, self._lock, self._local = scorer, threading.Lock(), threading.local()
        if hasattr(scorer, "score_incremental"):
            self.score_incremental = lambda items: self._call(scorer.score_incremental, items)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._scorer, name)

    @property
    def usage(self) -> Usage:
        return getattr(self._local, "usage", Usage())

    @property
    def last_item_tokens(self) -> Any:
        return getattr(self._local, "last_item_tokens", None)

    def score(self, items):
        return self._call(self._scorer.score, items)

    def _call(self, fn, items):
        with self._lock:
            before = self._scorer.usage.snapshot()
            out = fn(items)
            spent = self._scorer.usage - before
            self._local.last_item_tokens = getattr(self._scorer, "last_item_tokens", None)
        mine = self.usage
        self._local.usage = Usage(mine.calls + spent.calls, mine.tokens + spent.tokens)
        return out


def share_models(ctx: SearchContext) -> SearchContext:
    """`ctx` with models that several request threads may call at once (module doc)."""
    for gen in (ctx.generator, ctx.reviser):
        if gen is not None and hasattr(gen, "serve"):
            gen.serve()
    if ctx.scorer is not None and not isinstance(ctx.scorer, SerialScorer):
        ctx = dataclasses.replace(ctx, scorer=SerialScorer(ctx.scorer))
    return ctx


class Batcher:
    def __init__(self, window_s: float, max_batch: int, concurrency: int = 1) -> None:
        self.window_s, self.max_batch = window_s, max_batch
        self.executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ttscale-model")
        self._slots = asyncio.Semaphore(concurrency)
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
                await self._slots.acquire()   # at most `concurrency` groups run at once
                asyncio.create_task(self._start(jobs))

    async def _start(self, jobs: list[Job]) -> None:
        # checked when the group starts: a client may leave while it waits for a slot
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
        finally:
            self._slots.release()

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
