"""OpenAIGenerator against a small local OpenAI-compatible stub server (aiohttp.web on 127.0.0.1).

The stub behaves like vLLM's /v1/completions: it honours include_stop_str_in_output, reports stop_reason,
returns per-choice logprobs tokens when asked, and can fail with 503 or be slow to test retries/concurrency.
"""
from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from aiohttp import web

from ttscale.inference.base import Completion, SamplingParams
from ttscale.inference.loading import GeneratorArgs
from ttscale.inference.backend_rules import derive_seed
from ttscale.inference.openai_backend import OpenAIGenerator, ServerError


class Stub:
    """Prompt keywords pick the behaviour: 'stop' ends on the first stop string, 'eos' ends naturally,
    anything else runs to max_tokens; 'flaky' answers 503 on its first try, 'bad' answers 400."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self.failed: set[str] = set()
        self.delay = 0.0

    async def completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        prompt = body["prompt"]
        if "bad" in prompt or (body["n"] > 1 and body["temperature"] == 0):  # vLLM refuses greedy with n > 1
            return web.json_response({"error": "bad request"}, status=400)
        if "flaky" in prompt and prompt not in self.failed:
            self.failed.add(prompt)
            return web.json_response({"error": "overloaded"}, status=503)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(self.delay)
        self.in_flight -= 1
        choices, total = [], 0
        for i in range(body["n"]):
            words = [f"w{i}"] * 3
            if "stop" in prompt:
                stop = body["stop"][0]
                text = " ".join(words) + (stop if body.get("include_stop_str_in_output") else "")
                finish, stop_reason, ntok = "stop", stop, 4
            elif "eos" in prompt:
                text, finish, stop_reason, ntok = " ".join(words), "stop", None, 4  # EOS token counted
            else:
                ntok = body["max_tokens"]
                text, finish, stop_reason = " ".join([f"w{i}"] * ntok), "length", None
            total += ntok
            ch = {"index": i, "text": text, "finish_reason": finish, "stop_reason": stop_reason}
            if body.get("logprobs") is not None:
                ch["logprobs"] = {"tokens": ["t"] * ntok}
            choices.append(ch)
        usage = {"completion_tokens": total}
        if "nousage" not in prompt:     # like vLLM: prompt tokens once per request, cached ones where enabled
            usage["prompt_tokens"] = len(prompt.split())
            if "cached" in prompt:
                usage["prompt_tokens_details"] = {"cached_tokens": 1}
        return web.json_response({"choices": choices[::-1], "usage": usage})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    stub, port = Stub(), _free_port()
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/v1/completions", stub.completions)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield stub, f"http://127.0.0.1:{port}/v1"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def _gen(url, **kw):
    return OpenAIGenerator(url, "stub-model", num_params=1000, backoff_s=0.01, progress=False, **kw)


def test_params_passed_and_results_mapped(server):
    stub, url = server
    stub.bodies.clear()
    sp = SamplingParams(n=2, temperature=0.5, top_p=0.8, max_new_tokens=5, stop=("\n\n",), seed=9)
    out = _gen(url, api_key="k").generate(["p stop", "p eos", "p long"], sp)
    body = next(b for b in stub.bodies if b["prompt"] == "p stop")
    assert body == {"model": "stub-model", "prompt": "p stop", "n": 2, "max_tokens": 5, "temperature": 0.5,
                    "top_p": 0.8, "seed": derive_seed(9, "p stop"), "include_stop_str_in_output": True,
                    "stop": ["\n\n"], "logprobs": 0}
    assert out[0] == [Completion("w0 w0 w0\n\n", 4, "stop"), Completion("w1 w1 w1\n\n", 4, "stop")]
    assert out[1] == [Completion("w0 w0 w0", 4, "eos"), Completion("w1 w1 w1", 4, "eos")]
    assert out[2][1] == Completion("w1 w1 w1 w1 w1", 5, "length")
    # samples from j = 3 on: the server seeds choice j with seed + j, so the request is seeded seed + 3
    stub.bodies.clear()
    _gen(url, api_key="k").generate(["p stop"], sp, n=[2], start=[3])
    assert stub.bodies[0]["seed"] == derive_seed(9, "p stop") + 3


def test_per_prompt_counts_are_per_request_n(server):
    stub, url = server
    stub.bodies.clear()
    out = _gen(url).generate(["a eos", "b eos", "c eos"], SamplingParams(n=4, temperature=0.7, max_new_tokens=5),
                             n=[2, 0, 1])
    assert [len(o) for o in out] == [2, 0, 1]
    assert sorted((b["prompt"], b["n"]) for b in stub.bodies) == [("a eos", 2), ("c eos", 1)]   # 0: not sent


def test_dropped_stop_string_is_restored_and_usage_counts(server):
    stub, url = server
    sp = SamplingParams(n=1, max_new_tokens=5, stop=("\n\n",))
    out = _gen(url, extra_body={}).generate(["q stop"], sp)  # server drops the stop string
    assert out == [[Completion("w0 w0 w0\n\n", 4, "stop")]]
    assert "logprobs" not in stub.bodies[-1] and "include_stop_str_in_output" not in stub.bodies[-1]


def test_greedy_asks_once_and_copies(server):
    stub, url = server
    out = _gen(url).generate(["g eos"], SamplingParams(n=3, temperature=0.0))
    assert out == [[Completion("w0 w0 w0", 4, "eos")] * 3]
    assert stub.bodies[-1]["n"] == 1 and "logprobs" not in stub.bodies[-1]


def test_retries_after_503(server):
    stub, url = server
    stub.bodies.clear()
    out = _gen(url).generate(["flaky eos"], SamplingParams(n=1))
    assert out == [[Completion("w0 w0 w0", 4, "eos")]]
    assert [b["prompt"] for b in stub.bodies] == ["flaky eos", "flaky eos"]
    with pytest.raises(ServerError, match="HTTP 400"):
        _gen(url).generate(["bad"], SamplingParams())


def test_gives_up_after_max_retries(server):
    stub, url = server
    with pytest.raises(ServerError, match="after 0 retries.*503"):
        _gen(url, max_retries=0).generate(["flaky once more"], SamplingParams())


def test_concurrency_limit_respected(server):
    stub, url = server
    stub.delay, stub.max_in_flight = 0.05, 0
    try:
        t = time.perf_counter()
        out = _gen(url, max_concurrency=3).generate([f"c{i}" for i in range(12)], SamplingParams(max_new_tokens=2))
        elapsed = time.perf_counter() - t
    finally:
        stub.delay = 0.0
    assert len(out) == 12 and all(o[0].num_tokens == 2 for o in out)
    assert stub.max_in_flight == 3  # saturated, never exceeded
    assert elapsed >= 4 * 0.05  # 12 requests, 3 at a time


def test_clear_error_when_no_server():
    url = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(ConnectionError, match="no server at .* `vllm serve stub-model`"):
        _gen(url).generate(["x"], SamplingParams())


def test_generator_args_build_openai(server):
    _, url = server
    g = GeneratorArgs(policy="stub-model", backend="openai", base_url=url, max_concurrency=2).build()
    assert isinstance(g, OpenAIGenerator) and g.max_concurrency == 2 and g.url == url + "/completions"
    assert g.num_params == 0  # unknown served model: no config to count from
    sized = GeneratorArgs(policy="stub-model", backend="openai", base_url=url, policy_params=7_000_000).build()
    assert sized.num_params == 7_000_000


def test_prompt_tokens_from_the_servers_usage(server):
    _, url = server
    gen = _gen(url)
    gen.generate(["p eos", "cached p q eos", "nousage eos"], SamplingParams(n=2))
    # run = prompt_tokens - cached_tokens, once per request (the n samples share the prefill)
    assert gen.last_prompt_tokens == [2, 3, None] and gen.last_cached_tokens == [0, 1, 0]
