"""Rules every generation backend follows, in one place so their outputs agree: seed derivation, stop-string
cutting, dtype resolution, parameter counting (for FLOPs), the API-key fallback and the KV-cache argument name.

Backends import this module; the factory (inference.loading) imports the backends; nothing imports back.
"""
from __future__ import annotations

import hashlib
import logging
import os
from typing import Any, Sequence

from ttscale.errors import UserError

logger = logging.getLogger(__name__)

def derive_seed(seed: int, prompt: str, j: int | None = None) -> int:
    """A 63-bit seed from (run seed, prompt text, completion index): stable across processes (unlike
    hash()), so completion j of a prompt never depends on its batch. j=None seeds a whole n-sample request."""
    key = f"{int(seed)}\x00{'' if j is None else int(j)}\x00{prompt}".encode("utf-8")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def find_stop(text: str, stops: Sequence[str], start: int = 0) -> int | None:
    """End index (exclusive) of the earliest-ending stop string in text[start:], or None."""
    best = None
    for s in stops:
        if not s:
            continue
        i = text.find(s, start)
        if i >= 0 and (best is None or i + len(s) < best):
            best = i + len(s)
    return best


def resolve_dtype(dtype: Any, device: str):
    """"auto" -> float32 on CPU (bf16/fp16 matmuls are slow or missing there), checkpoint dtype elsewhere."""
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.float32 if device == "cpu" else "auto"
    if not hasattr(torch, dtype) or not isinstance(getattr(torch, dtype), torch.dtype):
        raise UserError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return getattr(torch, dtype)


def count_params_from_config(model: str) -> int:
    """Parameter count of a checkpoint from its config alone (meta device, no weights read); 0 if the
    config cannot be found (e.g. a served model name with no local copy)."""
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(model)
        with torch.device("meta"):
            lm = AutoModelForCausalLM.from_config(config)
        return sum(p.numel() for p in lm.parameters())
    except (OSError, ValueError, KeyError) as e:
        logger.warning("cannot count parameters of %r (%s); FLOPs accounting will read 0", model, e)
        return 0


def env_api_key(api_key: str | None) -> str | None:
    return api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")


def cache_kwarg(model: Any) -> str | None:
    """The forward() argument that takes a KV cache: `cache` since transformers 5.24, `past_key_values`
    before (the old name still works there as an alias); None when the model takes neither."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in params), None)
