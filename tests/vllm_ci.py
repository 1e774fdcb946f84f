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
_proc: subprocess.Popen | None = None
_stopped = False


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
    global _proc
    if _stopped:
        return "1\nthe session ended before the vLLM suite started\n--- stderr ---\n"
    _proc = subprocess.Popen([str(VENV / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                              "tests/test_vllm_backend.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = _proc.communicate(timeout=1500)
    except subprocess.TimeoutExpired:
        stop()
        out, err = _proc.communicate()
    return f"{_proc.returncode}\n{out}\n--- stderr ---\n{err[-2000:]}"


def start() -> None:
    global _future
    if _future is None:
        _future = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vllm-ci").submit(_run)


def stop() -> None:
    """Kill the subprocess and what it started (vllm serve) if it still runs: the session ended without it."""
    global _stopped
    _stopped = True
    if _proc is not None and _proc.poll() is None:
        import signal

        try:
            os.killpg(_proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def result() -> tuple[str, str]:
    start()
    return _future.result()
