"""The vLLM suite's subprocess, started in the background as soon as pytest has collected it (conftest.py), so
its engine start-ups overlap the rest of the suite instead of running after it; test_vllm_ci.py waits for it."""
from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-vllm"
_future: concurrent.futures.Future | None = None


def _run() -> tuple[str, str]:
    """("skip", why) or ("ran", output tail + exit status)."""
    if not (VENV / ".ready").exists():
        failed = Path(f"{VENV}.failed")
        return "skip", failed.read_text().strip() if failed.exists() else "no .venv-vllm: `make test` builds it"
    from ttscale.inference.gguf import convert_gguf, smollm2_gguf_path

    try:
        gguf = smollm2_gguf_path()
    except (FileNotFoundError, ImportError) as e:
        return "skip", f"no SmolLM2 GGUF to test vLLM on: {e}"
    model = Path(tempfile.mkdtemp(prefix="smollm2_vllm_"))
    try:
        convert_gguf(gguf, model)
        return "ran", _pytest_in_venv(model)
    finally:
        shutil.rmtree(model, ignore_errors=True)


def _pytest_in_venv(model: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(TTSCALE_VLLM_TEST_MODEL=str(model), VLLM_CPU_KVCACHE_SPACE="1", OMP_NUM_THREADS="2",
               PYTHONPATH=str(ROOT))
    proc = subprocess.run([str(VENV / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                           "tests/test_vllm_backend.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1500)
    return f"{proc.returncode}\n{proc.stdout}\n--- stderr ---\n{proc.stderr[-2000:]}"


def start() -> None:
    global _future
    if _future is None:
        _future = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vllm-ci").submit(_run)


def result() -> tuple[str, str]:
    start()
    return _future.result()
