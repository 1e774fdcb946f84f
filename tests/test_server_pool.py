"""The OpenAI backend's server pool against two local stub servers (http.server on 127.0.0.1)."""
from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ttscale.config import parse_config
from ttscale.inference.base import SamplingParams
from ttscale.inference.loading import GeneratorArgs
from ttscale.inference.openai_backend import OpenAIGenerator
from ttscale.inference.server_pool import split_urls

pytestmark = pytest.mark.timeout(60)


class StubServer:
    """Answers /v1/completions with the prompt echoed back; stops itself after `stop_after` answers."""

    def __init__(self, stop_after: int | None = None):
        self.answered: Counter = Counter()
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                choice = {"index": 0, "text": "re: " + body["prompt"], "finish_reason": "length"}
                data = json.dumps({"choices": [choice], "usage": {"completion_tokens": body["max_tokens"]}}).encode()
                # counted before the reply goes out: once the client has every reply, every count is in
                with stub.lock:
                    stub.answered[body["prompt"]] += 1
                    if stop_after is not None and sum(stub.answered.values()) == stop_after:
                        threading.Thread(target=stub.stop).start()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()   # new connections are refused from here on


def test_a_server_stopped_mid_run_loses_nothing_and_repeats_nothing():
    a, b = StubServer(stop_after=5), StubServer()
    try:
        gen = OpenAIGenerator(f"{a.url},{b.url}", "stub", max_concurrency=4, num_params=1, progress=False,
                              backoff_s=0.01, cooldown_s=30)
        prompts = [f"p{i}" for i in range(40)]
        outs = gen.generate(prompts, SamplingParams(n=1, temperature=0.7, max_new_tokens=3, seed=1))
        assert [o[0].text for o in outs] == [f"re: {p}" for p in prompts]
        both = a.answered + b.answered
        assert set(both) == set(prompts) and set(both.values()) == {1}   # every request answered, none twice
        # a also answers what it had accepted before it stopped; b took the rest, retries included
        assert 5 <= sum(a.answered.values()) < 40 and sum(b.answered.values()) == 40 - sum(a.answered.values())
    finally:
        b.stop()


def test_requests_are_spread_and_the_run_fails_clearly_when_none_answers():
    a, b = StubServer(), StubServer()
    gen = OpenAIGenerator([a.url, b.url], "stub", max_concurrency=2, num_params=1, progress=False)
    gen.generate([f"p{i}" for i in range(10)], SamplingParams(n=1, temperature=0.7, max_new_tokens=2))
    assert sum(a.answered.values()) > 0 and sum(b.answered.values()) > 0
    a.stop()
    b.stop()
    with pytest.raises(ConnectionError, match="none of the 2 servers answers"):
        gen.generate(["q"], SamplingParams(n=1, temperature=0.7, max_new_tokens=2))


def test_base_url_takes_several_servers():
    assert split_urls("http://a/v1/, http://b/v1") == ["http://a/v1", "http://b/v1"]
    cfg = parse_config(GeneratorArgs, ["--policy", "m", "--backend", "openai", "--base-url", "http://a/v1,http://b/v1",
                                       "http://c/v1"])
    gen = cfg.build()
    assert [s.url for s in gen.pool.servers] == ["http://a/v1", "http://b/v1", "http://c/v1"]
