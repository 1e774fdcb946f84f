"""`ttscale serve` end to end: the real server (uvicorn, a free loopback port) talked to with the `openai` client.

Two servers: one with the tiny transformers policy + tiny PRM (loaded the way `ttscale serve` loads them, the
policy wrapped so a test can hold or break a model call), and one with the scripted fakes of search_fakes and
no PRM, whose solutions end in answers (so n > 1 has distinct answers to rank) and whose strategies needing a
PRM must be refused.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

MISSING = [m for m in ("fastapi", "uvicorn", "openai", "httpx") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)}: pip install -e '.[dev]'")

from search_fakes import ScriptedGenerator, ScriptedScorer  # noqa: E402
from ttscale.config import parse_config  # noqa: E402
from ttscale.data.steps import join_steps  # noqa: E402
from ttscale.search.types import SearchContext  # noqa: E402

KEY = "test-key"
PROBLEM = "Tom has 3 apples and buys 4 more. How many apples does he have?"
SMALL = ["--budget", "4", "--beam-width", "2", "--max-depth", "2", "--max-step-tokens", "6", "--max-new-tokens", "12"]


class Controlled:
    """The loaded policy, plus test switches: `hold` blocks model calls until released; a prompt containing
    EXPLODE fails. Everything else is the real generator's."""

    def __init__(self, inner):
        self.inner, self.hold, self.prompts = inner, threading.Event(), []
        self.release = threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, prompts, params, n=None):
        self.prompts.extend(prompts)
        if self.hold.is_set():
            self.release.wait(20)
        if any("EXPLODE" in p for p in prompts):
            raise RuntimeError("the policy exploded")
        return self.inner.generate(prompts, params, n)


def _start(app):
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    assert server.started, "server did not start"
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


def _stop(server, thread):
    server.should_exit = True
    thread.join(10)


def _allocation(path):
    path.write_text(yaml.safe_dump({
        "difficulty": {"kind": "custom", "edges": [0.5], "labels": ["hard", "easy"]},
        "bins": {"easy": {"4": {"strategy": "majority", "budget": 4, "aggregation": "last", "voting": "majority"}},
                 "hard": {"4": {"strategy": "beam", "budget": 4, "beam_width": 2, "aggregation": "min",
                                "voting": "prm-vote"}}},
        "fallback": {"4": {"strategy": "weighted-best-of-n", "budget": 4, "aggregation": "last", "voting": "prm-vote"}},
    }))
    return path


@pytest.fixture(scope="module")
def real(tiny_lm_dir, prm_dir, tmp_path_factory):
    """(base_url, cfg, ctx, policy): the tiny policy + PRM behind the server, as `ttscale serve` loads them."""
    from ttscale.search.allocation_file import load_allocation
    from ttscale.search.search_cmd import build_context
    from ttscale.serve.app import create_app
    from ttscale.serve.serve_cmd import Config

    alloc = _allocation(tmp_path_factory.mktemp("alloc") / "allocation.yaml")
    cfg = parse_config(Config, ["--policy", str(tiny_lm_dir), "--prm", str(prm_dir), "--device", "cpu", "--threads",
                                "1", "--prm-device", "cpu", *SMALL, "--max-budget", "8", "--max-tokens", "64",
                                "--max-body-bytes", "4096", "--allocation", str(alloc), "--probe-samples", "2",
                                "--batch-window-ms", "30", "--concurrency", "1"])   # one busy batch holds the rest
    ctx, _ = build_context(cfg, need_policy=True)
    policy = Controlled(ctx.generator)
    ctx = dataclasses.replace(ctx, generator=policy)
    url, server, thread = _start(create_app(cfg, ctx, "tiny", api_key=KEY, allocation=load_allocation(alloc)))
    yield url, cfg, ctx, policy
    _stop(server, thread)


@pytest.fixture(scope="module")
def fake():
    """(base_url, cfg, ctx): scripted policy, no PRM, majority by default, a long window (batching is visible)."""
    from ttscale.serve.app import create_app
    from ttscale.serve.serve_cmd import Config

    cfg = parse_config(Config, ["--policy", "scripted", "--strategy", "majority", "--budget", "8",
                                "--batch-window-ms", "300", "--max-batch", "8"])
    ctx = SearchContext(generator=ScriptedGenerator(depth=3), settings=cfg.settings())
    url, server, thread = _start(create_app(cfg, ctx, "scripted"))
    yield url, cfg, ctx
    _stop(server, thread)


def _client(url, key=KEY):
    from openai import OpenAI

    return OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)


def _direct(cfg, ctx, problem, system=None, **options):
    """What the same search gives run in-process (the strategy `ttscale search` runs), for the same problem."""
    req = dataclasses.replace(cfg, **options)
    settings = dataclasses.replace(req.settings(ctx.settings.revision_max_attempts), system=system)
    run_ctx = dataclasses.replace(ctx, settings=settings)
    return req.make_strategy().run([{"id": "x", "problem": problem, "answer": None}], run_ctx, req.budget)[0]


def _usage(result):
    s = result.spent
    generated = s.generated_tokens + s.reviser_generated_tokens
    return {"prompt_tokens": s.tokens - generated, "completion_tokens": generated, "total_tokens": s.tokens}


@pytest.mark.parametrize("strategy", ["majority", "weighted-best-of-n", "beam"])
def test_chat_matches_the_same_search_in_process(real, strategy):
    url, cfg, ctx, _ = real
    resp = _client(url).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": PROBLEM}],
        extra_body={"strategy": strategy, "seed": 3, "return_candidates": True})
    want = _direct(cfg, ctx, PROBLEM, strategy=strategy, seed=3)
    info = resp.model_extra["ttscale"]
    assert resp.usage.model_dump(exclude_none=True) == _usage(want) and resp.usage.completion_tokens > 0
    assert info["spent"] == {**want.spent.to_dict(), "flops": want.spent.policy_flops + want.spent.prm_flops,
                             "model_calls": want.spent.policy_calls + want.spent.prm_calls}
    assert info["strategy"] == strategy and info["chosen"] == want.chosen and info["answer"] == want.prediction
    assert [c["steps"] for c in info["candidates"]] == [c.steps for c in want.candidates]
    for got, c in zip(info["candidates"], want.candidates):
        assert got["step_scores"] == pytest.approx(c.step_scores) and got["finished"] == c.finished
    assert len(resp.choices) == 1
    shown = resp.choices[0].message.content
    if want.chosen >= 0:
        assert shown == join_steps(want.candidates[want.chosen].steps) and resp.choices[0].finish_reason == "stop"
    else:  # nothing finished: the best-scored unfinished candidate, flagged as cut
        assert resp.choices[0].finish_reason == "length"
        assert shown in [join_steps(c.steps) for c in want.candidates]


def test_completion_usage_equals_the_cli_search(real, tmp_path, tiny_lm_dir, prm_dir):
    import datasets

    from ttscale.cli import main

    url, *_ = real
    resp = _client(url).completions.create(model="tiny", prompt=PROBLEM, extra_body={"strategy": "beam"})
    (tmp_path / "p.jsonl").write_text(json.dumps({"id": "a", "problem": PROBLEM, "answer": "7"}) + "\n")
    assert main(["search", str(tmp_path / "out"), "--problems", str(tmp_path / "p.jsonl"), "--policy",
                 str(tiny_lm_dir), "--prm", str(prm_dir), "--device", "cpu", "--threads", "1", "--prm-device", "cpu",
                 "--strategy", "beam", *SMALL]) == 0
    row = datasets.load_from_disk(str(tmp_path / "out" / "dataset"))[0]
    spent = row["spent"]
    assert resp.usage.completion_tokens == spent["generated_tokens"] > 0
    # prompts the policy prefilled plus what the PRM scored: every token run that was not generated
    assert resp.usage.prompt_tokens == spent["policy_prompt_tokens"] + spent["prm_tokens"] > spent["prm_tokens"]
    assert resp.model_extra["ttscale"]["spent"]["policy_calls"] == row["spent"]["policy_calls"]
    assert resp.object == "text_completion" and isinstance(resp.choices[0].text, str)


def test_auto_chooses_per_request_from_the_allocation_file(real):
    from ttscale.search.allocation_file import choose_config, load_allocation, predicted_difficulty_of
    from ttscale.search.registry import get_strategy

    url, cfg, ctx, _ = real
    resp = _client(url).chat.completions.create(model="tiny", messages=[{"role": "user", "content": PROBLEM}],
                                                extra_body={"strategy": "auto"})
    choice = resp.model_extra["ttscale"]["choice"]
    probe_ctx = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, voting="majority"))
    probe = get_strategy("majority").run([{"id": "x", "problem": PROBLEM}], probe_ctx, 2)[0]
    want = choose_config(load_allocation(cfg.allocation), predicted_difficulty_of(probe.candidates), 4)
    assert choice["bin"] == want["bin"] and choice["strategy"] == want["strategy"]
    assert resp.usage.model_dump(exclude_none=True) == _usage(_direct(cfg, ctx, PROBLEM, strategy="auto"))


def test_an_easy_and_a_hard_request_with_the_same_budget_get_different_compute(tmp_path):
    """Per-problem allocation behind the API: the bin edge sits between two problems' predicted difficulties, the
    easier is given majority at N=2 (the probe's own 2 samples: nothing more is drawn), the harder beam at N=4.
    Both ask for budget 4; each reply says what its bin was given and what it spent, and its usage is what the
    same search run in-process spent."""
    from ttscale.search.allocation_file import load_allocation, predicted_difficulty_of
    from ttscale.search.registry import get_strategy
    from ttscale.serve.app import create_app
    from ttscale.serve.serve_cmd import Config

    cfg = parse_config(Config, ["--policy", "scripted", "--prm", "scripted", "--budget", "4",
                                "--probe-samples", "2", "--max-depth", "3"])
    ctx = SearchContext(generator=ScriptedGenerator(depth=3), scorer=ScriptedScorer(), settings=cfg.settings())
    probe_ctx = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, voting="majority"))
    texts = [PROBLEM, "A box holds 5 pens and 2 more are added. How many pens?",
             "Sam had 9 coins and lost 4. How many coins are left?", "What is 6 plus 1?"]
    probes = get_strategy("majority").run([{"id": str(i), "problem": t} for i, t in enumerate(texts)], probe_ctx, 2)
    diff = sorted((predicted_difficulty_of(r.candidates), t) for r, t in zip(probes, texts))
    (hard_d, hard), (easy_d, easy) = diff[0], diff[-1]
    assert easy_d > hard_d
    path = tmp_path / "allocation.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "difficulty": {"kind": "custom", "edges": [(hard_d + easy_d) / 2], "labels": ["hard", "easy"],
                                     "samples": 2},
        "cost": {"axis": "tokens", "baseline": "weighted-best-of-n", "rule": "mean", "budgets": {"4": 100.0}},
        "bins": {"easy": {"4": {"strategy": "majority", "budget": 2, "aggregation": "last", "voting": "majority",
                                "cost": 40.0}},
                 "hard": {"4": {"strategy": "beam", "budget": 4, "beam_width": 2, "aggregation": "min",
                                "voting": "prm-vote", "cost": 160.0}}},
        "fallback": {"4": {"strategy": "weighted-best-of-n", "budget": 4, "aggregation": "last", "voting": "prm-vote",
                           "cost": 100.0}}}))
    auto_cfg = dataclasses.replace(cfg, allocation=str(path))
    url, server, thread = _start(create_app(auto_cfg, ctx, "scripted", api_key=KEY, allocation=load_allocation(path)))
    try:
        replies = {name: _client(url).chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": text}], extra_body={"strategy": "auto", "budget": 4})
            for name, text in (("easy", easy), ("hard", hard))}
    finally:
        _stop(server, thread)
    info = {name: r.model_extra["ttscale"] for name, r in replies.items()}
    assert info["easy"]["choice"]["bin"] == "easy" and info["easy"]["choice"]["strategy"] == "majority"
    assert info["hard"]["choice"]["bin"] == "hard" and info["hard"]["choice"]["strategy"] == "beam"
    assert info["easy"]["budget"] == info["hard"]["budget"] == 4
    assert (info["easy"]["choice"]["cost"], info["hard"]["choice"]["cost"]) == (40.0, 160.0)
    assert info["easy"]["choice"]["cost_axis"] == "tokens"
    assert info["easy"]["spent"]["policy_calls"] == 1        # the probe's call only: majority at 2 reuses it
    assert replies["easy"].usage.total_tokens < replies["hard"].usage.total_tokens
    for name, text in (("easy", easy), ("hard", hard)):
        want = _direct(auto_cfg, ctx, text, strategy="auto")
        assert replies[name].usage.model_dump(exclude_none=True) == _usage(want)
        assert info[name]["spent"]["generated_tokens"] == want.spent.generated_tokens


def test_streaming_sends_the_same_solution_as_events(real):
    url, *_ = real
    client = _client(url)
    body = dict(model="tiny", messages=[{"role": "user", "content": PROBLEM}], extra_body={"strategy": "majority"})
    whole = client.chat.completions.create(**body)
    chunks = list(client.chat.completions.create(**body, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage == whole.usage and chunks[-1].model_extra["ttscale"]["strategy"] == "majority"
    parts = list(client.completions.create(model="tiny", prompt=PROBLEM, stream=True, extra_body={"strategy": "majority"}))
    assert "".join(p.choices[0].text for p in parts) == whole.choices[0].message.content
    import httpx  # the raw stream ends with the [DONE] sentinel
    raw = httpx.post(url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                     json={"prompt": PROBLEM, "stream": True, "strategy": "majority"}).text
    assert raw.rstrip().endswith("data: [DONE]") and raw.startswith("data: {")


def test_models_and_health(real):
    import httpx

    url, *_ = real
    models = _client(url).models.list().data
    assert [m.id for m in models] == ["tiny"]
    offered = models[0].model_extra["ttscale"]["strategies"]
    assert {"majority", "weighted-best-of-n", "beam", "auto"} <= set(offered) and "revisions" not in offered
    assert httpx.get(url + "/health", timeout=10).json()["status"] == "ok"


def test_n_returns_the_top_distinct_answers_by_vote(fake):
    from ttscale.search.voting import rank_answers

    url, cfg, ctx = fake
    resp = _client(url, key="any").chat.completions.create(
        model="scripted", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROBLEM}],
        n=3, extra_body={"budget": 8})
    want = _direct(cfg, ctx, PROBLEM, system="Be brief.")   # the system message goes into the policy's prompt
    ranked = rank_answers(want.candidates, "majority")
    assert len(ranked) >= 2, "the scripted policy should give several answers"
    assert [c.index for c in resp.choices] == list(range(min(3, len(ranked))))
    answers = [c.message.content.rsplit("boxed{", 1)[1][0] for c in resp.choices]
    assert len(set(answers)) == len(answers) and answers[0] == resp.model_extra["ttscale"]["answer"]
    # ranked by votes: each answer's count is no higher than the one before
    counts = [sum(c.answer_key == a for c in want.candidates if c.finished) for a in answers]
    assert counts == sorted(counts, reverse=True)


def test_requests_that_arrive_together_are_searched_together(fake):
    import httpx

    url, cfg, ctx = fake
    client = _client(url, key="any")
    before = httpx.get(url + "/health", timeout=10).json()
    problems = [f"Problem number {i}: add things." for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda p: client.completions.create(model="scripted", prompt=p), problems))
    after = httpx.get(url + "/health", timeout=10).json()
    assert after["searched"] - before.get("searched", 0) == 6
    assert after["batches"] - before.get("batches", 0) < 6 and after["largest_batch"] > 1
    for p, resp in zip(problems, got):   # batched, each still gets its own search's result
        want = _direct(cfg, ctx, p)
        assert resp.usage.completion_tokens == want.spent.generated_tokens
        assert resp.model_extra["ttscale"]["answer"] == want.prediction


def test_error_cases_get_their_status_and_name_the_field(real, fake):
    import httpx
    import openai

    url, *_ = real
    msg = [{"role": "user", "content": PROBLEM}]
    with pytest.raises(openai.AuthenticationError):
        _client(url, key="wrong").chat.completions.create(model="tiny", messages=msg)
    assert httpx.get(url + "/v1/models", timeout=10).status_code == 401
    cases = [
        ({"messages": msg, "budget": 9}, 400, "--max-budget"),
        ({"messages": msg, "n": 9}, 400, "--max-budget"),
        ({"messages": msg, "max_tokens": 65}, 400, "--max-tokens"),
        ({"messages": msg, "strategy": "beam", "max_depth": 20}, 400, "--max-tokens"),
        ({"messages": msg, "strategy": "nope"}, 422, "strategy"),
        ({"messages": msg, "beam_widht": 2}, 422, "beam_widht"),
        ({"messages": msg, "allocation": "/etc/passwd"}, 422, "allocation"),
        ({"messages": msg, "beam_width": 0}, 422, "beam_width must be >= 1"),
        ({"messages": msg, "budget": "four"}, 422, "budget must be int"),
        ({"messages": msg, "strategy": "auto", "budget": 2}, 422, "allocation file"),
        ({"messages": msg, "strategy": "revisions"}, 422, "revision model"),
        ({"messages": msg, "model": "gpt-4"}, 422, "model"),
        ({"messages": []}, 400, "messages"),
        ({"prompt": PROBLEM}, 400, "messages"),
    ]
    for body, status, needle in cases:
        r = httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        assert (r.status_code, needle in r.json()["error"]["message"]) == (status, True), (body, r.text)
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    r = httpx.post(url + "/v1/chat/completions", content=b'{"messages": [', headers=auth, timeout=30)
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]["message"]
    r = httpx.post(url + "/v1/chat/completions", content=b'[1, 2]', headers=auth, timeout=30)
    assert r.status_code == 400 and "JSON object" in r.json()["error"]["message"]
    r = httpx.post(url + "/v1/chat/completions", json={"messages": msg, "pad": "x" * 5000}, headers=auth, timeout=30)
    assert r.status_code == 413 and "--max-body-bytes" in r.json()["error"]["message"]
    # the scripted server has no PRM: strategies and votings that need one are refused, naming the field
    furl, *_ = fake
    for body, needle in [({"strategy": "weighted-best-of-n"}, "PRM"), ({"voting": "prm-vote"}, "PRM")]:
        r = httpx.post(furl + "/v1/chat/completions", json={"messages": msg, **body}, timeout=30)
        assert r.status_code == 422 and needle in r.json()["error"]["message"] and r.json()["error"]["param"], r.text
    with pytest.raises(openai.UnprocessableEntityError, match="PRM"):
        _client(furl, key="any").chat.completions.create(model="scripted", messages=msg,
                                                         extra_body={"strategy": "beam"})


def test_model_failure_is_a_500_and_the_server_keeps_serving(real):
    import openai

    url, *_ = real
    client = _client(url)
    with pytest.raises(openai.InternalServerError, match="the policy exploded"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "EXPLODE " + PROBLEM}],
                                       extra_body={"strategy": "majority"})
    ok = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": PROBLEM}],
                                        extra_body={"strategy": "majority"})
    assert ok.usage.completion_tokens > 0


def test_a_request_whose_client_left_is_dropped_before_it_costs_compute(real):
    import httpx

    url, _, _, policy = real
    auth = {"Authorization": f"Bearer {KEY}"}
    before = httpx.get(url + "/health", timeout=10).json()
    seen = len(policy.prompts)   # earlier tests sent PROBLEM too: only prompts from here on count
    policy.release.clear()
    policy.hold.set()   # the next model call blocks: the worker is busy, later requests queue
    busy = threading.Thread(target=lambda: httpx.post(url + "/v1/completions", headers=auth, timeout=60,
                                                      json={"prompt": PROBLEM, "strategy": "majority"}))
    busy.start()
    try:
        deadline = time.time() + 120   # generous: on a loaded machine the first request may take a while to start
        while not any(PROBLEM in p for p in policy.prompts[seen:]):
            assert time.time() < deadline, "the first request never reached the model"
            time.sleep(0.02)
        t0 = time.time()   # the event loop still answers while a model call runs
        assert httpx.get(url + "/health", timeout=5).json()["status"] == "ok" and time.time() - t0 < 2
        # A raw connection, closed only once the server has queued its request: a client timeout could fire
        # before the server even read the body on a loaded machine, and that request would never be queued.
        body = json.dumps({"prompt": "LEFT EARLY " + PROBLEM, "strategy": "majority"}).encode()
        host, port = url.split("//")[1].split("/")[0].split(":")
        queued = httpx.get(url + "/health", timeout=5).json()["queued"]
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
                         f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            while httpx.get(url + "/health", timeout=5).json()["queued"] == queued:
                assert time.time() < deadline, "the second request was never queued"
                time.sleep(0.02)
        time.sleep(0.5)    # the server notices the closed connection (loopback: at once)
    finally:
        policy.hold.clear()
        policy.release.set()
    busy.join(120)
    deadline = time.time() + 120   # generous for a loaded machine: it only costs time when the check fails
    while httpx.get(url + "/health", timeout=5).json().get("dropped", 0) == before.get("dropped", 0):
        assert time.time() < deadline, "the abandoned request was not dropped"
        time.sleep(0.05)
    assert not any("LEFT EARLY" in p for p in policy.prompts)


def test_the_cli_stage_serves_and_reads_the_key_from_the_environment(tiny_lm_dir):
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TTSCALE_API_KEY": "env-key", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "ttscale", "serve", "--policy", str(tiny_lm_dir), "--strategy",
                             "majority", "--port", str(port), "--device", "cpu", "--threads", "1", "--budget", "2",
                             "--max-new-tokens", "8"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.time() < deadline, "ttscale serve did not start"
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert httpx.get(url + "/v1/models", timeout=5).status_code == 401
        models = _client(url, key="env-key").models.list().data
        assert models[0].id == tiny_lm_dir.name and "majority" in models[0].model_extra["ttscale"]["strategies"]
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_missing_extra_is_one_line_naming_it(monkeypatch, capsys):
    from ttscale.cli import main

    monkeypatch.setitem(sys.modules, "fastapi", None)            # as if `pip install 'ttscale[serve]'` never ran
    monkeypatch.delitem(sys.modules, "ttscale.serve.app", raising=False)
    assert main(["serve", "--policy", "nowhere", "--strategy", "majority"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'ttscale[serve]'" in err and "fastapi" in err and "Traceback" not in err


def test_hostile_bodies_get_one_line_each_and_the_connection_keeps_serving(real):
    """Deep nesting (400), a lone surrogate (400), a non-finite number (422), each one line naming the problem;
    the next request on the same keep-alive connection is answered."""
    import httpx

    url, *_ = real
    ok = json.dumps({"messages": [{"role": "user", "content": PROBLEM}], "strategy": "majority"}).encode()
    msg = b'[{"role": "user", "content": "x"}]'
    cases = [
        (b'{"messages": ' + b"[" * 1500 + b"]" * 1500 + b"}", 400, "nested too deep"),
        (b'{"messages": [{"role": "user", "content": "x \\ud800"}]}', 400, "lone surrogate"),
        (b'{"messages": ' + msg + b', "temperature": Infinity}', 422, "non-finite number Infinity"),
        (b'{"messages": ' + msg + b', "temperature": NaN}', 422, "non-finite number NaN"),
        (b'{"messages": ' + msg + b', "top_p": 1e999}', 422, "out of range"),
    ]
    from ttscale.serve.app import parse_json
    from ttscale.serve.schemas import ApiError

    with pytest.raises(ApiError, match="nested too deep"):   # 100,000 levels: once an uncaught RecursionError
        parse_json(b"[" * 100_000 + b"]" * 100_000)
    with httpx.Client(headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
                      timeout=60) as client:
        for body, status, needle in cases:
            r = client.post(url + "/v1/chat/completions", content=body)
            error = r.json()["error"]["message"]
            assert (r.status_code, needle in error, "\n" in error) == (status, True, False), (body[:60], r.text)
            assert client.post(url + "/v1/chat/completions", content=ok).status_code == 200


def test_a_bad_request_is_refused_before_it_can_join_a_batch(real):
    """A lone surrogate sent beside valid requests is refused at parse time: the valid ones are searched in
    their batch (no failed batch, no one-by-one retry) and answer 200."""
    import httpx

    url, *_ = real
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    before = httpx.get(url + "/health", timeout=10).json()
    good = [json.dumps({"prompt": f"{PROBLEM} ({i})", "strategy": "majority"}).encode() for i in range(3)]
    bad = b'{"prompt": "x \\ud800", "strategy": "majority"}'
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda b: httpx.post(url + "/v1/completions", content=b, headers=auth,
                                                   timeout=120).status_code, good + [bad]))
    assert codes == [200, 200, 200, 400]
    after = httpx.get(url + "/health", timeout=10).json()
    assert after.get("failed", 0) == before.get("failed", 0) and after["queued"] - before["queued"] == 3


def test_a_prompt_too_long_for_the_models_is_refused_before_it_is_queued(real):
    """The tiny policy's context is 1024 tokens: a 200,000-character prompt is refused at once, without being
    tokenized; a prompt that tokenizes past --max-prompt-tokens is refused naming the cap."""
    from ttscale.serve.schemas import ApiError, RequestParser

    _, cfg, ctx, _ = real
    parser = RequestParser(cfg, ctx, "tiny")
    assert parser.limits == {"the policy's context": 1024, "the PRM's max length": ctx.scorer.spec.max_length}
    t0 = time.perf_counter()
    with pytest.raises(ApiError) as e:
        parser.parse("text", {"prompt": "7 + " * 50_000}, "r1")
    assert e.value.status == 400 and "too long: 200000 characters" in e.value.message and "context" in e.value.message
    assert time.perf_counter() - t0 < 0.5
    from ttscale.search.candidates import policy_prompt

    small = len(parser.tokenizer(policy_prompt("2 + 2", [], parser.tokenizer, ctx.settings))["input_ids"])
    capped = RequestParser(dataclasses.replace(cfg, max_prompt_tokens=small), ctx, "tiny")
    with pytest.raises(ApiError, match=rf"too long: \d+ tokens, at most {small} fit \(this server's cap --max-promp"):
        capped.parse("text", {"prompt": PROBLEM}, "r2")
    assert capped.parse("text", {"prompt": "2 + 2"}, "r3").problem["problem"] == "2 + 2"


class SlowScripted(ScriptedGenerator):
    """A scripted policy whose every call takes 2 s, recording when each call ran."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.spans = []

    def generate(self, prompts, params, n=None):
        t0 = time.monotonic()
        time.sleep(2.0)
        self.spans.append((t0, time.monotonic()))
        return super().generate(prompts, params, n)


def _two_requests(cfg, slow, gap: float, **options):
    """Serve `slow` with `options`; send FIRST, then SECOND `gap` seconds later: both responses, and the
    server's /health once the first search has finished."""
    import httpx

    from ttscale.serve.app import create_app

    url, server, thread = _start(create_app(dataclasses.replace(cfg, batch_window_ms=0, **options),
                                            SearchContext(generator=slow, settings=cfg.settings()), "scripted"))
    try:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(httpx.post, url + "/v1/completions", json={"prompt": "FIRST problem"}, timeout=60)
            time.sleep(gap)
            second = pool.submit(httpx.post, url + "/v1/completions", json={"prompt": "SECOND problem"}, timeout=60)
            responses = first.result(), second.result()
        time.sleep(2.5)    # the first search finishes
        return (*responses, httpx.get(url + "/health", timeout=10).json())
    finally:
        _stop(server, thread)


def test_a_request_past_its_deadline_gets_504_and_is_dropped_before_its_batch(fake):
    """--request-timeout: a request still queued at its deadline answers 504 and never reaches the model."""
    _, cfg, _ = fake
    slow = SlowScripted(depth=3)
    # one batch at a time: the second request queues behind the slow first one
    first, second, health = _two_requests(cfg, slow, 0.3, request_timeout=1.0, concurrency=1)
    assert first.status_code == 504 and second.status_code == 504
    assert "--request-timeout 1" in second.json()["error"]["message"]
    assert not any("SECOND" in p for call in slow.calls for p in call["prompts"])   # dropped before its batch
    assert health["dropped"] >= 1


def test_serial_scorer_keeps_each_threads_usage_apart():
    """Request threads share one PRM: calls run one at a time and each thread's Meter sees only its own
    usage and per-item tokens."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from ttscale.inference.base import Usage
    from ttscale.serve.batching import SerialScorer

    class Counting:
        num_params = 7

        def __init__(self):
            self.usage, self.inside, self.most = Usage(), 0, 0
            self.lock = threading.Lock()

        def score(self, items):
            with self.lock:
                self.inside += 1
                self.most = max(self.most, self.inside)
            self.last_item_tokens = [len(p) for p, _ in items]
            self.usage.calls += 1
            self.usage.tokens += sum(self.last_item_tokens)
            with self.lock:
                self.inside -= 1
            return [[0.5] * len(s) for _, s in items]

    inner = Counting()
    shared = SerialScorer(inner)

    def job(k):
        before = shared.usage.snapshot()
        for _ in range(5):
            shared.score([("x" * k, ["a", "b"])] * k)
        return shared.usage - before, shared.last_item_tokens

    with ThreadPoolExecutor(4) as pool:
        out = list(pool.map(job, [1, 2, 3, 4]))
    assert [(u.calls, u.tokens) for u, _ in out] == [(5, 5 * k * k) for k in (1, 2, 3, 4)]
    assert [t for _, t in out] == [[k] * k for k in (1, 2, 3, 4)]
    assert inner.usage.calls == 20 and inner.most == 1 and shared.num_params == 7


def test_with_concurrency_a_batch_starts_while_another_runs(fake):
    """--concurrency 2: a request arriving while a batch searches starts at once (its own batch, beside the
    running one) instead of waiting for it; with 1 it waits."""
    _, cfg, _ = fake
    for concurrency, overlap in ((2, True), (1, False)):
        slow = SlowScripted(depth=3)
        first, second, _ = _two_requests(cfg, slow, 0.5, concurrency=concurrency)
        assert first.status_code == second.status_code == 200
        (_, end1), (start2, _) = sorted(slow.spans)[:2]
        assert (start2 < end1) is overlap, (concurrency, slow.spans)
