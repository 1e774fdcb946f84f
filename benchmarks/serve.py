"""`ttscale serve` under load: 64 concurrent requests vs the same 64 sent one by one, and the same 64 beside one
hostile request (a 200,000-character prompt).

    PYTHONPATH=. .venv/bin/python benchmarks/serve.py --requests 64 --strategy weighted-best-of-n --budget 4

Starts the server in a child process on a free 127.0.0.1 port with the tiny policy and PRM that
benchmarks/search.py builds (random weights: the figures measure serving and batching, not accuracy), then
sends the toy-world problems one by one, and all at once. Prints requests/s for both, their ratio (goal: the
batched throughput, well above 1x), p50 / p95 latency, the server's batch statistics and the failed requests
(goal: 0). The mixed load sends the 64 again with the long prompt among them: the valid requests' p95 with it
(goal: within 2x of without; the server refuses it before it is queued) and the long request's status.
Every request has a timeout and the whole run a deadline; nothing leaves the loopback interface.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time

import httpx


def serve(port: int, args: argparse.Namespace) -> None:
    """The child process: tiny models, `ttscale serve`'s app, uvicorn on 127.0.0.1:port."""
    import uvicorn

    from search import build_models   # benchmarks/search.py: the same tiny models
    from ttscale.config import parse_config
    from ttscale.search.types import SearchContext
    from ttscale.serve.app import create_app
    from ttscale.serve.serve_cmd import Config

    generator, scorer = build_models(args.seed, args.threads)
    cfg = parse_config(Config, ["--policy", "tiny", "--prm", "tiny", "--strategy", args.strategy, "--budget",
                                str(args.budget), "--max-new-tokens", str(args.max_new_tokens), "--max-batch",
                                str(args.max_batch), "--batch-window-ms", str(args.window_ms),
                                "--concurrency", str(args.concurrency), "--max-depth", "4",
                                "--max-step-tokens", "16", "--beam-width", "2"])
    ctx = SearchContext(generator=generator, scorer=scorer, settings=cfg.settings())
    uvicorn.run(create_app(cfg, ctx, "tiny"), host="127.0.0.1", port=port, log_level="warning")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def send(client: httpx.AsyncClient, problem: str) -> tuple[float, int]:
    start = time.perf_counter()
    try:
        r = await client.post("/v1/chat/completions", json={"model": "tiny", "messages": [
            {"role": "user", "content": problem}]})
        status = r.status_code
    except httpx.HTTPError:
        status = -1
    return time.perf_counter() - start, status


async def load(url: str, problems: list[str], concurrent: bool, timeout: float, hostile: str | None = None) -> dict:
    """Send the problems (all at once or one by one); `hostile`, if given, goes out in the middle of the
    concurrent burst and is reported apart (the figures are the valid requests')."""
    limits = httpx.Limits(max_connections=len(problems) + 1)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        start = time.perf_counter()
        if concurrent:
            sent = [send(client, p) for p in problems]
            if hostile is not None:
                sent.insert(len(sent) // 2, send(client, hostile))
            results = await asyncio.gather(*sent)
        else:
            results = [await send(client, p) for p in problems]
        wall = time.perf_counter() - start
    extra = {}
    if hostile is not None:
        t, status = results.pop(len(problems) // 2)
        extra = {"hostile": {"chars": len(hostile), "status": status, "seconds": round(t, 3)}}
    latencies = [t for t, _ in results]
    return {"requests": len(problems), "wall_s": round(wall, 2), "requests_per_s": round(len(problems) / wall, 2),
            "p50_s": round(statistics.median(latencies), 3), "p95_s": round(percentile(latencies, 0.95), 3),
            "failed": sum(status != 200 for _, status in results), **extra}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--strategy", default="weighted-best-of-n")
    ap.add_argument("--budget", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--window-ms", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=8, help="serve --concurrency (1: one batch at a time, the "
                                                                "server before continuous batching)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    ap.add_argument("--deadline", type=float, default=1200.0, help="seconds for the whole run")
    ap.add_argument("--serve-port", type=int, default=None, help=argparse.SUPPRESS)   # the child process
    args = ap.parse_args()
    if args.serve_port is not None:
        return serve(args.serve_port, args)

    from ttscale.data.toy_world import generate_problems

    problems = [r["problem"] for r in generate_problems(args.requests, seed=args.seed + 1)][:args.requests]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    child = subprocess.Popen([sys.executable, __file__, *sys.argv[1:], "--serve-port", str(port)],
                             env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    deadline = time.time() + args.deadline
    try:
        while True:
            assert child.poll() is None, "the server exited"
            assert time.time() < deadline, "the server did not start"
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        asyncio.run(load(url, problems[:2], concurrent=False, timeout=args.timeout))   # warm-up, not counted
        one = asyncio.run(asyncio.wait_for(load(url, problems, False, args.timeout), deadline - time.time()))
        together = asyncio.run(asyncio.wait_for(load(url, problems, True, args.timeout), deadline - time.time()))
        long_prompt = ("Tom has 3 apples and buys 4 more. " * 6000)[:200_000]
        mixed = asyncio.run(asyncio.wait_for(load(url, problems, True, args.timeout, hostile=long_prompt),
                                             deadline - time.time()))
        stats = httpx.get(url + "/health", timeout=5).json()
    finally:
        child.terminate()
        child.wait(30)
    print(json.dumps({"strategy": args.strategy, "budget": args.budget, "one_by_one": one, "concurrent": together,
                      "throughput_ratio": round(together["requests_per_s"] / one["requests_per_s"], 2),
                      "with_a_200k_char_prompt": mixed,
                      "p95_ratio_with_vs_without": round(mixed["p95_s"] / together["p95_s"], 2),
                      "server": {k: stats.get(k, 0) for k in ("searched", "batches", "largest_batch", "dropped",
                                                           "failed")}}, indent=1))


if __name__ == "__main__":
    main()
