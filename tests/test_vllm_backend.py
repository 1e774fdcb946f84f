"""VLLMGenerator: runs only where vLLM is installed (pip install 'ttscale[vllm]'); skipped otherwise."""
from __future__ import annotations

import pytest

from ttscale.inference.base import SamplingParams


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


def test_vllm_generates_like_the_contract(tiny_lm_dir):
    pytest.importorskip("vllm")
    from ttscale.inference.vllm_backend import VLLMGenerator

    g = VLLMGenerator(str(tiny_lm_dir), dtype="float32", gpu_memory_utilization=0.3, max_model_len=256)
    sp = SamplingParams(n=3, temperature=1.0, max_new_tokens=12, stop=("e",), seed=1)
    prompts = ["What is 3 + 4?", "Tom has 5 apples"]
    out = g.generate(prompts, sp)
    assert [len(o) for o in out] == [3, 3]
    for c in (c for o in out for c in o):
        assert 1 <= c.num_tokens <= 12
        assert c.finish_reason != "stop" or c.text.endswith("e")
        assert c.finish_reason != "length" or c.num_tokens == 12
    assert g.generate(prompts, sp) == out  # seeded per prompt
    assert g.generate(prompts[::-1], sp) == out[::-1]  # batch-invariant contract
