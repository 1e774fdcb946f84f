"""The demo's scheduler: steps with dependencies, run on a pool of long-lived worker processes.

A step is one `ttscale` command. Each worker imports ttscale once and runs its steps in-process (a fresh
`python -m ttscale` per step re-imported torch, transformers and datasets: about 8 s of CPU a step, over 40
steps). Among the steps whose inputs are ready, the one expected to take longest goes first, so both cores
stay busy to the end (longest-processing-time order). A step's output goes to its log file.
"""
from __future__ import annotations

import gc
import multiprocessing
import os
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass
class Step:
    name: str
    argv: list[str] | Callable[[], list[str]]   # `ttscale ARGV` (a function: built when the step starts)
    done: Path                           # exists once the step has finished (a resumed demo skips it)
    after: tuple[str, ...] = ()          # steps whose outputs it reads
    cost: float = 1.0                    # expected seconds: the order among ready steps


def run_step(argv: list[str], log: str) -> int:
    """In a worker: `ttscale ARGV` in this process, its stdout and stderr (file descriptors, so library and
    C-level output too) appended to `log`."""
    from ttscale.cli import main

    Path(log).parent.mkdir(parents=True, exist_ok=True)
    saved = [os.dup(1), os.dup(2)]
    with open(log, "a") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            rc = main(argv)
        except BaseException as e:   # noqa: BLE001 - the driver reports the step's failure, the log the cause
            traceback.print_exc()
            rc = e.code if isinstance(e, SystemExit) and isinstance(e.code, int) else 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
    gc.collect()
    return rc


def run_dag(steps: list[Step], jobs: int, logs: Path, announce: Callable[[Step, Path], None],
            finished: Callable[[Step, float], None]) -> int:
    """Run `steps` (skipping those already done) on `jobs` workers; 0, or the first failing step's code."""
    by_name = {s.name: s for s in steps}
    done = {s.name for s in steps if s.done.exists()}
    for s in steps:
        if s.name in done:
            print(f"[demo] {s.name}: done already ({s.done}), skipped", flush=True)
    pending = [s for s in steps if s.name not in done]
    running: dict[Future, tuple[Step, float]] = {}
    rc = 0
    # spawn: a worker must not inherit the driver's threads or torch state
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        while pending or running:
            ready = [s for s in pending if all(d in done or d not in by_name for d in s.after)]
            while rc == 0 and ready and len(running) < jobs:
                step = max(ready, key=lambda s: s.cost)
                ready.remove(step)
                pending.remove(step)
                if callable(step.argv):
                    step.argv = step.argv()
                log = logs / f"{step.name}.log"
                log.unlink(missing_ok=True)
                announce(step, log)
                running[pool.submit(run_step, step.argv, str(log))] = (step, time.time())
            if not running:
                break
            for fut in wait(running, return_when=FIRST_COMPLETED).done:
                step, t0 = running.pop(fut)
                code = fut.result()
                if code:
                    print(f"[demo] {step.name} failed with exit code {code}; see {logs / (step.name + '.log')}",
                          flush=True)
                    rc = rc or code
                else:
                    done.add(step.name)
                    finished(step, time.time() - t0)
    if rc == 0 and pending:
        names = ", ".join(s.name for s in pending)
        print(f"[demo] not run (their inputs are missing; see --only): {names}", flush=True)
    return rc
