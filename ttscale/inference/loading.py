"""Pick and build a generation backend from options every model-running stage shares.

Stage configs inherit `GeneratorArgs`, so `--policy/--backend/--dtype/...` mean the same everywhere;
`ReviserArgs` is the same group for a revision model (`--revision-model --reviser-backend ...`).
The rules every backend follows live in inference.backend_rules.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Literal

from ttscale.config import field, prefixed
from ttscale.errors import UserError

Backend = Literal["transformers", "vllm", "openai"]


@dataclasses.dataclass(kw_only=True)
class GeneratorArgs:
    """Options that choose and configure the policy model (inherit these in a stage Config)."""

    policy: str = field(help="policy model: a local save_pretrained dir, a hub id, a PEFT adapter dir, a .gguf "
                             "file, or (backend openai) the model name the server serves")
    backend: Backend = field("transformers", help="generation backend: transformers (in-process, any device), "
                                                  "vllm (in-process vLLM, GPU; pip install 'ttscale[vllm]'), "
                                                  "openai (any OpenAI-compatible server, e.g. `vllm serve`)")
    dtype: str = field("auto", help="weights dtype: auto (checkpoint dtype on GPU, float32 on CPU), float32, "
                                    "bfloat16, float16")
    # run_key=False: how a run goes, not what it writes (see config.run_identity)
    device: str = field("auto", run_key=False,
                        help="transformers backend device: auto (cuda > mps > cpu), cpu, cuda, cuda:1, ...")
    threads: int | None = field(None, ge=1, run_key=False,
                                help="torch CPU threads for the transformers backend (default: torch's)")
    batch_size: int = field(32, ge=1, run_key=False,
                            help="transformers backend: sequences decoded together (prompts x n)")
    # model_specific: a --reviser-* group neither offers nor inherits these (config.prefixed)
    gguf_file: str | None = field(None, model_specific=True, help="GGUF file name inside --policy (a dir or hub "
                                  "repo); or give the .gguf path as --policy directly")
    adapter: str | None = field(None, model_specific=True, help="PEFT (LoRA) adapter dir applied on top of --policy")
    base_url: list[str] = field(default_factory=lambda: ["http://127.0.0.1:8000/v1"], run_key=False,
                                help="openai backend: server URL (ending in /v1); several (space- or "
                                     "comma-separated) make a pool: requests spread over them, a failing one "
                                     "is rested while the others take its requests")
    api_key: str | None = field(None, run_key=False,
                                help="openai backend: API key (default: $OPENAI_API_KEY, if set)")
    max_concurrency: int = field(16, ge=1, run_key=False, help="openai backend: requests in flight at once")
    tokenizer: str | None = field(None, help="tokenizer to build prompts (chat template) and count tokens with, "
                                             "for backend openai (default: none; plain-text prompts)")
    gpu_memory_utilization: float = field(0.5, gt=0, le=1, run_key=False,
                                          help="vllm backend: fraction of GPU memory vLLM may take (the policy's "
                                          "0.5 and the reviser's 0.3 by default leave room for the PRM on one "
                                          "GPU; alone on a GPU, raise it to 0.9)")
    # model_specific: the revision model has its own size (--reviser-params)
    policy_params: int | None = field(None, ge=1, model_specific=True, run_key=False,
                                      help="policy parameter count for FLOPs accounting (default: counted from the "
                                           "checkpoint or its config; needed for a served model whose config cannot "
                                           "be found, whose FLOPs are otherwise reported as unknown)")

    def build(self):
        """The Generator these options describe."""
        generator = self._build()
        if self.policy_params:
            generator.num_params = int(self.policy_params)
        return generator

    def _build(self):
        if not self.policy:
            raise UserError("no policy model given: pass --policy (a checkpoint dir, hub id, adapter dir, .gguf "
                             "file, or the served model name for --backend openai)")
        if self.backend == "transformers":
            return load_generator("transformers", self.policy, dtype=self.dtype, device=self.device,
                                  threads=self.threads, batch_size=self.batch_size, adapter=self.adapter,
                                  gguf_file=self.gguf_file)
        if self.backend == "vllm":
            if self.adapter or self.gguf_file:
                raise UserError("backend vllm: merge the adapter / convert the GGUF first "
                                 "(`ttscale convert-gguf`), then pass the folder as --policy")
            return load_generator("vllm", self.policy, dtype=self.dtype,
                                  gpu_memory_utilization=self.gpu_memory_utilization)
        if self.backend == "openai":
            tok = None
            if self.tokenizer:
                from transformers import AutoTokenizer
                tok = AutoTokenizer.from_pretrained(self.tokenizer)
            return load_generator("openai", self.policy, base_url=self.base_url, api_key=self.api_key,
                                  max_concurrency=self.max_concurrency, tokenizer=tok,
                                  num_params=self.policy_params)   # given: no config lookup
        raise UserError(f"unknown backend {self.backend!r}; choose transformers, vllm or openai")


_ReviserOptions = prefixed(
    GeneratorArgs, "reviser_", subject="revision model", rename={"policy": "revision_model"},
    help={"revision_model": "revision model (from `ttscale train-revision`): a save_pretrained dir, hub id, PEFT "
                            "adapter dir or .gguf file; loaded with the policy's backend options unless a "
                            "--reviser-* option says otherwise"},
    # its own share: two vLLM engines on one GPU must not each ask for the policy's
    defaults={"reviser_gpu_memory_utilization": 0.3})


@dataclasses.dataclass(kw_only=True)
class ReviserArgs(_ReviserOptions):
    """--revision-model and --reviser-backend/--reviser-dtype/...: each unset one is the policy's option."""

    reviser_params: int | None = field(None, ge=1, run_key=False,
                                       help="revision model parameter count for FLOPs accounting (default: counted "
                                            "from its checkpoint or config; not taken from --policy-params)")

    def reviser_generator_args(self, policy: GeneratorArgs) -> GeneratorArgs | None:
        """The revision model's GeneratorArgs (None without --revision-model): the policy's options with the
        --reviser-* ones given in place; the policy's --adapter and --gguf-file are not carried over."""
        if not self.revision_model:
            return None
        return dataclasses.replace(self.resolve(policy), policy_params=self.reviser_params)


def load_generator(backend: str, model: Any, **kw: Any):
    """Build a Generator: backend in {transformers, vllm, openai}; `kw` go to that backend's constructor."""
    if backend == "transformers":
        from ttscale.inference.transformers_backend import TransformersGenerator
        return TransformersGenerator(model, **kw)
    if backend == "vllm":
        from ttscale.inference.vllm_backend import VLLMGenerator
        return VLLMGenerator(model, **kw)
    if backend == "openai":
        from ttscale.inference.openai_backend import OpenAIGenerator
        base_url = kw.pop("base_url", "http://127.0.0.1:8000/v1")
        return OpenAIGenerator(base_url, model, **kw)
    raise UserError(f"unknown backend {backend!r}; choose transformers, vllm or openai")


def check_model_path(path: str | None, flag: str, kind: str = "model", backend: str = "transformers") -> None:
    """One line (UserError) before anything loads or is written, when `path` names no model it could be: a local
    path that does not exist (a hub id, "org/name", is left to the hub), or a model of the wrong kind for its flag
    (a PRM folder given as the policy, a causal LM given as the PRM)."""
    import json
    from pathlib import Path

    from ttscale.inference.prm_inputs import SPEC_FILE

    if not path or backend == "openai":   # a served model's name is the server's to check
        return
    p = Path(path).expanduser()
    if not p.exists():
        if kind == "allocation file" or path.startswith((".", "/", "~")) or path.count("/") > 1 or \
                path.endswith((".gguf", "/")):
            raise UserError(f"{flag} {path}: no such file or folder; pass a model folder, a .gguf file or a hub id")
        return                                   # "org/name" or "name": a hub id, fetched when loaded
    spec_file = p / SPEC_FILE if p.is_dir() else None
    if kind in ("policy", "revision model") and spec_file is not None and spec_file.is_file():
        raise UserError(f"{flag} {path} is a PRM folder (it has {SPEC_FILE}), not a {kind}; pass it as --prm")
    if kind == "PRM" and spec_file is not None and not spec_file.is_file() and (p / "config.json").is_file():
        archs = json.loads((p / "config.json").read_text()).get("architectures") or []
        if any(a.endswith("ForCausalLM") for a in archs):
            raise UserError(f"{flag} {path} holds a causal LM without {SPEC_FILE}: a policy, not a PRM; pass a folder "
                            f"`ttscale train-prm` wrote, or --prm-style for another PRM family")
