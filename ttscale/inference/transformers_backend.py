"""In-process generation with transformers: any local/hub checkpoint, a PEFT adapter, or a GGUF file.

The decode loop is our own (inference/decode.py: continuous batching over a growing KV buffer) rather than
`model.generate`, because the Generator contract needs things generate does not give together:
  - completion j of a prompt depends only on (prompt, params without n, j): every row samples from a
    counter-based generator keyed by a seed derived from those, so batching never changes a result, and a
    prompt asked for fewer completions gets the first ones of a larger request (`generate(..., n=[...])`);
  - stop strings are matched on decoded text (a stop can end inside a token) per row, the text is cut
    right after the stop, and the row's slot goes to the next queued row;
  - n samples of a prompt admitted together share one prefill: the prompt is run once, its KV copied n times.
After each call `last_prompt_tokens` holds, per prompt, the prompt tokens prefilled: its length once per
admission its samples fall in (padding is masked and not counted; there is no cache across calls, so
`last_cached_tokens` is all 0).
"""
from __future__ import annotations

import inspect
import json
import os
import threading
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from ttscale.inference.base import Completion, SamplingParams, counts_per_prompt, starts_per_prompt
from ttscale.inference.backend_rules import cache_kwarg, derive_seed, find_stop, resolve_dtype


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _adapter_base(path: str) -> str | None:
    """The base model named by a PEFT adapter dir, or None if `path` is not one."""
    cfg = Path(path) / "adapter_config.json"
    if not cfg.is_file():
        return None
    base = json.loads(cfg.read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{cfg}: no base_model_name_or_path; pass the base model as `model` and this dir as adapter=")
    return base


def load_model_and_tokenizer(model: str | os.PathLike, tokenizer: Any = None, *, dtype: Any = "auto",
                             device: str = "cpu", adapter: str | None = None, gguf_file: str | None = None):
    """(model, tokenizer) from a checkpoint dir / hub id, a .gguf file, or a PEFT adapter dir (LoRA is
    merged into the base weights, so generation runs at the base model's speed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttscale.inference.gguf import load_gguf, split_gguf_path

    torch_dtype = resolve_dtype(dtype, device)
    directory, gguf_name = split_gguf_path(model, gguf_file)
    if gguf_name is not None:
        lm, tok = load_gguf(directory, gguf_name, dtype=None if torch_dtype == "auto" else torch_dtype)
    else:
        if adapter is None and (base := _adapter_base(directory)) is not None:
            adapter, directory = directory, base
        lm = AutoModelForCausalLM.from_pretrained(directory, dtype=torch_dtype)
        tok_src = adapter if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else directory
        tok = AutoTokenizer.from_pretrained(tok_src)
    if adapter is not None:
        from peft import PeftModel

        lm = PeftModel.from_pretrained(lm, adapter)
        if hasattr(lm, "merge_and_unload"):
            lm = lm.merge_and_unload()
    if tokenizer is not None:
        tok = AutoTokenizer.from_pretrained(tokenizer) if isinstance(tokenizer, (str, os.PathLike)) else tokenizer
    return lm, tok


class TransformersGenerator:
    """Generator over a transformers causal LM (see module doc). `batch_size` counts sequences (prompts x n)."""

    def __init__(self, model: Any, tokenizer: Any = None, *, dtype: Any = "auto", device: str = "auto",
                 threads: int | None = None, batch_size: int = 32, adapter: str | None = None,
                 gguf_file: str | None = None, progress: bool = True):
        if threads:
            torch.set_num_threads(int(threads))
        self.device = resolve_device(device)
        if isinstance(model, torch.nn.Module):
            if tokenizer is None:
                raise ValueError("TransformersGenerator(model_object) needs tokenizer= as well")
            if adapter is not None:
                from peft import PeftModel
                model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
            lm, tok = model, tokenizer
        else:
            lm, tok = load_model_and_tokenizer(model, tokenizer, dtype=dtype, device=self.device,
                                               adapter=adapter, gguf_file=gguf_file)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = lm.to(self.device).eval()
        self.tokenizer = tok
        self.batch_size = int(batch_size)
        self.progress = progress
        self.num_params = sum(p.numel() for p in self.model.parameters())
        self.eos_ids = self._eos_ids()
        self.pad_id = next(iter(x for x in (tok.pad_token_id, tok.eos_token_id, 0) if x is not None))
        self._keep_arg = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        self._cache_arg = cache_kwarg(self.model) or "past_key_values"
        self._stop_cache: dict[tuple[str, ...], frozenset[int]] = {}
        self._last = threading.local()   # last_prompt_tokens / last_cached_tokens: see module doc
        self._shared = None              # the shared row queue once serve() is on

    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        for src in (getattr(self.model, "generation_config", None), self.tokenizer):
            eos = getattr(src, "eos_token_id", None)
            ids.update([eos] if isinstance(eos, int) else (eos or []))
        return ids

    # --- text <-> ids -------------------------------------------------------------------------------

    def encode(self, prompt: str) -> list[int]:
        tok = self.tokenizer
        # Chat-templated prompts already start with BOS; adding another would shift the model.
        add = not (tok.bos_token and prompt.startswith(tok.bos_token))
        ids = tok(prompt, add_special_tokens=add)["input_ids"]
        if not ids:
            raise ValueError("empty prompt: nothing to condition on (this tokenizer adds no BOS token)")
        return ids

    def _decode(self, ids: Sequence[int], context: Sequence[int] = ()) -> str:
        """Decode generated ids as they read after `context` (SentencePiece drops a leading space when a
        continuation is decoded alone)."""
        dec = self.tokenizer.decode
        if context:
            ctx = dec(list(context), skip_special_tokens=True)
            full = dec(list(context) + list(ids), skip_special_tokens=True)
            if full.startswith(ctx):
                return full[len(ctx):]
        return dec(list(ids), skip_special_tokens=True)

    # --- the decode loop (inference/decode.py) ----------------------------------------------------------

    def _forward(self, cache, **kw) -> torch.Tensor:
        kw[self._cache_arg] = cache
        if self._keep_arg:
            kw["logits_to_keep"] = 1
        return self.model(use_cache=True, **kw).logits[:, -1]

    def _stop_ids(self, stops: tuple[str, ...]) -> frozenset[int]:
        """Token ids that can complete one of `stops`: those whose text holds a stop's last character, or that
        decode to nothing whole on their own (byte pieces). Other tokens skip the text check (exact: a stop
        ends inside the token that brings its last character)."""
        if stops not in self._stop_cache:
            last = {s[-1] for s in stops}
            ids = set()
            for i in range(len(self.tokenizer)):
                text = self.tokenizer.decode([i], skip_special_tokens=True)
                if not text or "\ufffd" in text or any(c in text for c in last):
                    ids.add(i)
            self._stop_cache[stops] = frozenset(ids)
        return self._stop_cache[stops]

    def _finish(self, prompt: list[int], gen: list[int], token: int, stops: list[str], window: int,
                max_new: int, stop_ids: frozenset[int] = frozenset()) -> Completion | None:
        """Append `token` to row `gen`; a Completion if that ended the row, else None."""
        if token in self.eos_ids:
            return self._completion(prompt, gen, "eos", extra=1)
        gen.append(token)
        if stops and token in stop_ids:
            tail = self.tokenizer.decode(gen[-window:], skip_special_tokens=True)
            if find_stop(tail, stops) is not None:  # cheap check on the tail, then confirm on the full text
                text = self._decode(gen, prompt[-4:])
                end = find_stop(text, stops)
                if end is not None:
                    return Completion(text=text[:end], num_tokens=len(gen), finish_reason="stop")
        if len(gen) >= max_new:
            return self._completion(prompt, gen, "length")
        return None

    def _completion(self, prompt: list[int], gen: list[int], reason: str, extra: int = 0) -> Completion:
        return Completion(text=self._decode(gen, prompt[-4:]), num_tokens=len(gen) + extra, finish_reason=reason)

    def generate(self, prompts: Sequence[str], params: SamplingParams, n: Sequence[int] | None = None,
                 start: Sequence[int] | None = None) -> list[list[Completion]]:
        counts, starts = counts_per_prompt(prompts, params, n), starts_per_prompt(prompts, start)
        if params.max_new_tokens < 1:
            raise ValueError(f"need max_new_tokens >= 1, got {params.max_new_tokens}")
        from ttscale.inference.decode import Call, Engine, Row, Rows

        texts = list(prompts)
        encoded = [self.encode(p) for p in texts]
        # Longest prompts first, a prompt's samples together (they share one prefill when admitted together);
        # results are batch-invariant, so the order changes only speed. A prompt asked for 0 is never run.
        order = sorted(range(len(texts)), key=lambda p: -len(encoded[p]))
        stops = tuple(s for s in params.stop if s)
        window = 4 * max((len(s) for s in stops), default=0) + 8  # tokens that can hold any stop string
        stop_ids = self._stop_ids(stops) if stops else frozenset()
        total = sum(counts)
        bar = tqdm(total=total, desc="generate", unit="seq", leave=False,
                   disable=not self.progress or total <= self.batch_size or self._shared is not None)
        call = Call(len(texts), total, params.temperature, params.top_p, on_done=bar.update,
                    finish=lambda row, t: self._finish(row.ids, row.out, t, stops, window, params.max_new_tokens,
                                                       stop_ids))
        which = [(p, j) for p in order for j in range(starts[p], starts[p] + counts[p])]
        rows = [Row(call, k, p, derive_seed(params.seed, texts[p], j), encoded[p]) for k, (p, j) in enumerate(which)]
        if self._shared is not None:   # serve(): join the running batch of every caller
            self._shared.put(rows)
        else:
            with torch.inference_mode():
                Engine(self._forward, self.pad_id, self.batch_size, self.device).run(Rows(rows))
        done = call.wait()
        bar.close()
        results: list[list[Completion]] = [[None] * k for k in counts]   # type: ignore[list-item]
        for (p, j), c in zip(which, done):
            results[p][j - starts[p]] = c
        self._last.prompt_tokens, self._last.cached_tokens = call.prefilled, [0] * len(texts)
        return results

    # per thread: under serve() several threads call generate at once, and each reads its own call's counts
    last_prompt_tokens = property(lambda self: getattr(self._last, "prompt_tokens", None))
    last_cached_tokens = property(lambda self: getattr(self._last, "cached_tokens", None))

    def serve(self) -> "TransformersGenerator":
        """Share one running batch between threads: from now on a `generate` call from any thread queues its
        rows into a decode loop on a background thread, and they join the running batch at its next step
        (continuous batching across callers, what `ttscale serve` uses). Results are the same as alone."""
        from ttscale.inference.decode import Engine, Rows

        if self._shared is None:
            self._shared = Rows(shared=True)
            engine = Engine(self._forward, self.pad_id, self.batch_size, self.device)

            def loop() -> None:
                with torch.inference_mode():
                    while True:   # an error fails the calls in flight; the loop serves the next ones
                        engine.run(self._shared)

            threading.Thread(target=loop, name="ttscale-decode", daemon=True).start()
        return self
