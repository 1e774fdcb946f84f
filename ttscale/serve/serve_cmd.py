"""`ttscale serve --policy P [--prm PRM] [--allocation FILE]`: test-time search behind an OpenAI-compatible API.

Loads the models once (the same loading as `ttscale search`), then answers POST /v1/chat/completions and
/v1/completions: the last user message (or the prompt) is the problem, the body's extra fields (`strategy`,
`budget`, `beam_width`, ... — the search stage's options, snake_case) choose the search, and this stage's
search options are the defaults. `strategy: auto` picks a configuration per request from --allocation.
Requests arriving together are searched together (serve.batching). Needs `pip install 'ttscale[serve]'`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ttscale.config import field, overrides, tweak
from ttscale.inference.loading import GeneratorArgs, ReviserArgs
from ttscale.inference.sampling_args import SamplingArgs
from ttscale.inference.scorers_load import ScorerArgs
from ttscale.search.search_args import SearchArgs

API_KEY_ENV = "TTSCALE_API_KEY"


@dataclass(kw_only=True)
@overrides(budget=tweak(8, help="N when a request does not set `budget` (see --strategy)"),
           strategy=tweak(help="strategy when a request does not set `strategy`; a request may ask for any "
                               "strategy the loaded models can run (GET /v1/models lists them)"),
           max_new_tokens=tweak(help="token limit per full sample when a request sets no `max_tokens`"),
           api_key=tweak(flag="--backend-api-key", help="openai backend: the policy server's API key "
                                                        "(default: $OPENAI_API_KEY, if set)"),
           reviser_api_key=tweak(help="revision model: openai backend: API key (default: the same as "
                                      "--backend-api-key)"))
class Config(SearchArgs, SamplingArgs, ReviserArgs, GeneratorArgs, ScorerArgs):
    """Serve test-time search (any strategy, a PRM, compute-optimal auto) as an OpenAI-compatible HTTP API."""
    policy: str | None = field(None, help="policy model: a local save_pretrained dir, a hub id, a PEFT adapter dir, "
                               "a .gguf file, or (backend openai) the served model name; not needed for revisions")
    host: str = field("127.0.0.1", help="address to listen on; 127.0.0.1 = this machine only (0.0.0.0 opens it "
                                        "to the network: set --api-key)")
    port: int = field(8000, ge=0, le=65535, help="port to listen on")
    serve_api_key: str | None = field(None, flag="--api-key",
                                      help=f"clients must send `Authorization: Bearer KEY` (default: ${API_KEY_ENV} "
                                           f"if set; neither set: no key needed)")
    model_name: str | None = field(None, help="model id clients send and GET /v1/models lists (default: the "
                                              "policy's (or revision model's) folder name)")
    max_budget: int = field(64, ge=1, help="cap on a request's budget, n and probe_samples (over it: 400)")
    max_tokens: int = field(4096, ge=1, help="cap on tokens per candidate a request may ask for: max_tokens, and "
                                             "max_depth x max_step_tokens for step-wise search (over it: 400)")
    max_body_bytes: int = field(1 << 20, ge=1, help="cap on a request body's size (over it: 413)")
    max_prompt_tokens: int = field(0, ge=0, help="cap on a prompt's tokens (its chat template included; over it: 400); "
                                                 "0 = what the policy's context and the PRM's max length leave after "
                                                 "the tokens a search may generate, which always apply")
    request_timeout: float = field(600.0, ge=0, help="seconds a request may wait for its answer; past it, 504 and the "
                                                     "request is dropped if its batch has not started (0: no limit)")
    max_pending: int = field(256, ge=1, help="requests that may wait for a batch; more get 503")
    batch_window_ms: float = field(20.0, ge=0, help="a batch waits up to this long after its first request for "
                                                   "others to join (0: batch only what is already queued)")
    max_batch: int = field(16, ge=1, help="most requests searched in one batch")
    concurrency: int = field(8, ge=1, help="batches searched side by side; their generate calls share one running "
                                           "decode batch (a transformers policy joins new rows at its next step); "
                                           "1 = one batch at a time")

    def __post_init__(self):
        if not (self.policy or self.revision_model):
            raise ValueError("nothing to serve: set --policy (and/or --revision-model)")
        self.check_models()

    def served_name(self) -> str:
        return self.model_name or Path(str(self.policy or self.revision_model)).name


def run(cfg: Config) -> int:
    from ttscale.serve.app import create_app   # first: a missing extra fails before any model loads

    import uvicorn

    from ttscale.search.allocation_file import load_allocation
    from ttscale.search.search_cmd import build_context

    allocation = load_allocation(cfg.allocation) if cfg.allocation else None
    ctx, _ = build_context(cfg, need_policy=True)
    key = cfg.serve_api_key or os.environ.get(API_KEY_ENV) or None
    app = create_app(cfg, ctx, cfg.served_name(), api_key=key, allocation=allocation)
    print(f"[serve] {cfg.served_name()} on http://{cfg.host}:{cfg.port}/v1 (default strategy {cfg.strategy}, "
          f"N={cfg.budget}; API key {'required' if key else 'not required'})", flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info")
    return 0
