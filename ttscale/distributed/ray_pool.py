"""A pool of Ray actors, one model replica each, fed parts from a queue; the driver writes the results.

Scheduling: every replica holds at most one part; as soon as any part finishes (`ray.wait`), its replica
gets the next one, so a slow replica never holds the others back and the queue drains at the pool's pace.

Faults: an actor whose process dies is restarted by Ray (`max_restarts`) — it loads its models again — and
the part it was running is retried on it (`max_task_retries`). A replica that is out of restarts leaves the
pool and its part goes back to the queue for the others; the run fails only when every replica is gone.
The driver writes a part once: a result for a part already written (a retry that raced) is dropped.
Results are identical to an in-process run because a part's result depends only on its payload and the
options (the generator contract: completion j depends only on prompt, params and j).
"""
from __future__ import annotations

import os
import signal
import time
import warnings
from collections import deque
from typing import Any, Iterable, Iterator

from ttscale.distributed.work import ExecutorArgs, Work, Write
from ttscale.errors import UserError

MAX_RESTARTS = 3   # per replica; each restart reloads its models, so a crash loop ends quickly
# Test hook (fault injection): the first replica to take a part creates this file and SIGKILLs itself.
CHAOS_ENV = "TTSCALE_CHAOS_KILL_ONCE"


def require_ray():
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'ttscale[ray]'") from None
    return ray


class _Replica:
    """One model replica: models loaded once in __init__ (again after a restart), then one part per call."""

    def __init__(self, work: Work, index: int):
        import ray

        self.work, self.index = work, index
        with warnings.catch_warnings():   # Ray's own property trips its deprecation of actor_id
            warnings.simplefilter("ignore")
            self.restarted = ray.get_runtime_context().was_current_actor_reconstructed
        self.state = work.setup(index)

    def run(self, payload: Any) -> tuple[bool, Any]:
        marker = os.environ.get(CHAOS_ENV)
        if marker:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                os.kill(os.getpid(), signal.SIGKILL)
            except FileExistsError:
                pass
        return self.restarted, self.work.run(self.state, payload)


class RayExecutor:
    def __init__(self, args: ExecutorArgs):
        self.args = args
        self.stats: dict[str, Any] = {"executor": "ray", "replicas": args.replicas, "parts": 0,
                                      "restarted_replicas": 0, "replicas_lost": 0, "duplicates_dropped": 0,
                                      "seconds_startup": 0.0}

    def _connect(self, ray) -> bool:
        """Join or start a cluster; True when this call started it (and so should shut it down)."""
        if ray.is_initialized():
            return False
        # no --ray-address: a cluster of this run's own ("local"); ray.init(None) would join any cluster it
        # finds on the machine, which is what `--ray-address auto` asks for, not the default
        ray.init(address=self.args.ray_address or "local", logging_level="WARNING", log_to_driver=True)
        return True

    def _actors(self, ray, work: Work) -> list:
        env = {CHAOS_ENV: os.environ[CHAOS_ENV]} if os.environ.get(CHAOS_ENV) else {}
        cls = ray.remote(_Replica).options(
            num_cpus=self.args.replica_cpus, num_gpus=self.args.replica_gpus, max_restarts=MAX_RESTARTS,
            max_task_retries=MAX_RESTARTS, runtime_env={"env_vars": env} if env else None)
        return [cls.remote(work, k) for k in range(self.args.replicas)]

    def map_parts(self, tasks: Iterable[tuple[int, Any]], work: Work, write: Write) -> None:
        ray = require_ray()
        started = self._connect(ray)
        t0 = time.perf_counter()
        actors = self._actors(ray, work)
        try:
            self._drain(ray, actors, iter(tasks), write, t0)
            st = self.stats
            print(f"[ray] {st['parts']} parts on {st['replicas']} replicas in {time.perf_counter() - t0:.1f}s "
                  f"(first result after {st['seconds_startup']:.1f}s); restarted replicas: "
                  f"{st['restarted_replicas']}, replicas lost: {st['replicas_lost']}, "
                  f"duplicate results dropped: {st['duplicates_dropped']}")
        finally:
            for a in actors:
                ray.kill(a)
            if started:
                ray.shutdown()

    def _drain(self, ray, actors: list, queue: Iterator[tuple[int, Any]], write: Write, t0: float) -> None:
        from ray.exceptions import RayActorError

        retry: deque[tuple[int, Any]] = deque()   # parts whose replica was lost, before new ones
        free = deque(range(len(actors)))
        alive = set(free)
        running: dict[Any, tuple[int, int, Any]] = {}   # object ref -> (replica, part, payload)
        restarted: set[int] = set()
        written: set[int] = set()
        exhausted = False
        while True:
            while free and not exhausted or free and retry:
                item = retry.popleft() if retry else next(queue, None)
                if item is None:
                    exhausted = True
                    break
                k = free.popleft()
                running[actors[k].run.remote(item[1])] = (k, *item)
            if not running:
                return
            (ref,), _ = ray.wait(list(running), num_returns=1)
            k, part, payload = running.pop(ref)
            try:
                was_restarted, result = ray.get(ref)
            except RayActorError as e:
                alive.discard(k)
                self.stats["replicas_lost"] += 1
                if not alive:
                    raise RuntimeError(f"every Ray replica died (last: {e}); see the worker logs above") from None
                retry.append((part, payload))
                continue
            if not self.stats["parts"]:
                self.stats["seconds_startup"] = time.perf_counter() - t0
            if was_restarted:
                restarted.add(k)
                self.stats["restarted_replicas"] = len(restarted)
            if part in written:
                self.stats["duplicates_dropped"] += 1
            else:
                write(part, result)
                written.add(part)
                self.stats["parts"] += 1
            free.append(k)
