"""A pool of worker processes running math-verify (sympy), with a hard time limit per comparison.

math-verify's own timeouts use SIGALRM, which only works on the main thread, so workers run it with
timeouts off and the parent bounds the wait: a worker that overruns is killed (and a replacement boots
at once) and the comparison counts as "not verified". Works from any thread; forked children get their
own pool. Workers are `python -c` children speaking line-delimited JSON over stdin/stdout (so they can
be started from daemonic processes too), memory-capped, and exit with their parent.
"""
from __future__ import annotations

import atexit
import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

STARTUP_TIMEOUT_S = 120.0  # a worker boot (importing sympy) is not charged to the comparison timeout


class _Worker:
    """One `python -c` child running math-verify; line-delimited JSON over its stdin/stdout."""

    def __init__(self) -> None:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from ttscale.data.verify_pool import worker_main; worker_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0)
        self.ready = False
        self.buf = b""

    def _readline(self, timeout_s: float) -> bytes | None:
        deadline = time.monotonic() + timeout_s
        out = self.proc.stdout
        assert out is not None
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([out], [], [], remaining)[0]:
                return None
            chunk = os.read(out.fileno(), 4096)
            if not chunk:
                raise ChildProcessError(f"grader worker exited with code {self.proc.wait()}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def verify(self, gold: str, pred: str, timeout_s: float) -> bool | None:
        """The verdict, or None when the worker overran `timeout_s` (it must then be killed)."""
        if not self.ready:
            if self._readline(STARTUP_TIMEOUT_S) != b"ready":
                raise ChildProcessError(f"grader worker did not start within {STARTUP_TIMEOUT_S:.0f}s")
            self.ready = True
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps([gold, pred]) + "\n").encode())
        line = self._readline(timeout_s)
        return None if line is None else line == b"1"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()


class _Pool:
    """At most `size` workers; a caller borrows one, so concurrent threads never share a pipe."""

    def __init__(self, size: int) -> None:
        self.size, self.pid = size, os.getpid()
        self.slots = threading.BoundedSemaphore(size)
        self.idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self.all: set[_Worker] = set()
        self.lock = threading.Lock()

    def _new(self) -> _Worker:
        w = _Worker()
        with self.lock:
            self.all.add(w)
        return w

    def _drop(self, w: _Worker) -> None:
        w.kill()
        with self.lock:
            self.all.discard(w)

    def verify(self, gold: str, pred: str, timeout_s: float) -> bool:
        with self.slots:
            try:
                w = self.idle.get_nowait()
            except queue.Empty:
                w = self._new()
            try:
                verdict = w.verify(gold, pred, timeout_s)
            except (ChildProcessError, OSError):  # died (e.g. out of memory): replace it, count as wrong
                self._drop(w)
                return False
            if verdict is None:  # overran: kill it and boot a replacement in the background now
                self._drop(w)
                self.idle.put(self._new())
                return False
            self.idle.put(w)
            return verdict

    def close(self) -> None:
        with self.lock:
            workers, self.all = list(self.all), set()
        for w in workers:
            w.kill()


_POOL: _Pool | None = None
_POOL_LOCK = threading.Lock()


def get_pool() -> _Pool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():  # a forked child must not use its parent's pipes
            default = max(1, min(4, (os.cpu_count() or 2) // 2))
            _POOL = _Pool(int(os.environ.get("TTSCALE_GRADER_WORKERS", default)))
        return _POOL


@atexit.register
def shutdown() -> None:
    """Stop the math-verify worker processes (also done at exit; they restart on demand)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None and pool.pid == os.getpid():
        pool.close()



def verify(gold: str, pred: str, timeout_s: float) -> bool:
    """math-verify's verdict on two bare answers; False when it errors or takes over `timeout_s`."""
    return get_pool().verify(gold, pred, timeout_s)


def pool_size() -> int:
    return get_pool().size


def worker_main() -> None:
    """Child loop: [gold, pred] JSON lines in, "1"/"0" lines out. Memory is capped so a blow-up dies fast."""
    import logging

    try:
        import resource

        cap = int(os.environ.get("TTSCALE_GRADER_MEMORY_GB", "4")) << 30
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (ImportError, ValueError, OSError):
        pass
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse
    from math_verify import verify as math_verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    parent = os.getppid()

    def watchdog() -> None:  # exit with the parent even when it dies without closing our stdin
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    config = [LatexExtractionConfig(), ExprExtractionConfig()]

    def check(gold: str, pred: str) -> bool:
        g = parse("\\boxed{" + gold + "}", config, parsing_timeout=None)  # type: ignore[arg-type]
        p = parse("\\boxed{" + pred + "}", config, parsing_timeout=None)  # type: ignore[arg-type]
        return bool(g and p and math_verify(g, p, timeout_seconds=None))

    check("\\frac{1}{2}", "0.5")  # warm the parsers before reporting ready
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        try:
            ok = check(*json.loads(line))
        except BaseException:  # noqa: BLE001 - any failure (MemoryError, RecursionError...) is "not verified"
            ok = False
        sys.stdout.write("1\n" if ok else "0\n")
        sys.stdout.flush()
