"""The sampling options every generating stage shares (label, generate, build-revisions, search, ...).

Stage configs inherit `SamplingArgs`, so `--temperature --top-p --max-new-tokens --seed --step-delimiter`
are declared once; a stage with another default says so with `config.overrides(max_new_tokens=256)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ttscale.config import field
from ttscale.data.steps import DEFAULT_DELIMITER
from ttscale.inference.base import SamplingParams


@dataclass(kw_only=True)
class SamplingArgs:
    """How samples are drawn from a model (inherit these in a stage Config)."""

    temperature: float = field(0.8, ge=0, help="sampling temperature (0 = greedy)")
    top_p: float = field(1.0, gt=0, le=1, help="nucleus sampling: sample from the smallest set of tokens whose "
                                               "probabilities sum to at least this (1 = all tokens)")
    max_new_tokens: int = field(512, ge=1, help="token limit per generated sample")
    seed: int = field(0, help="sampling seed: same seed, same samples")
    step_delimiter: str = field(DEFAULT_DELIMITER, help="step separator (the same as labelling and the PRM)")

    def params(self, n: int = 1, **overrides: Any) -> SamplingParams:
        """SamplingParams for `n` samples per prompt; `overrides` replace any of them (stop=..., temperature=0)."""
        return SamplingParams(**{"n": n, "temperature": self.temperature, "top_p": self.top_p,
                                 "max_new_tokens": self.max_new_tokens, "seed": self.seed, **overrides})
