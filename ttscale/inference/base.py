"""The two interfaces every model-running stage uses: Generator and Scorer.

Labeling (rollouts), search and eval only ever talk to these, so backends and PRM styles can be swapped
without touching them.
"""
from __future__ import annotations

from dataclasses import dataclass
import inspect
from typing import Literal, Protocol, Sequence, runtime_checkable

FinishReason = Literal["stop", "eos", "length"]


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1                      # completions per prompt
    temperature: float = 0.7        # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()      # stop strings (e.g. ("\n\n",) to generate one step); kept in the text
    seed: int = 0

    def cache_key(self) -> tuple:
        """What the output depends on besides the prompt (the sample store's key, without n)."""
        return (self.n, self.temperature, self.top_p, self.max_new_tokens, tuple(self.stop), self.seed)


@dataclass(frozen=True)
class Completion:
    text: str                       # generated text only (not the prompt); includes the stop string if hit
    num_tokens: int                 # generated tokens (what compute accounting counts)
    finish_reason: FinishReason     # stop string hit / end-of-sequence / max_new_tokens reached


@runtime_checkable
class Generator(Protocol):
    """prompts -> params.n completions each, in prompt order; with `n` (one count per prompt), prompt i gets
    n[i] completions instead (0 allowed), so a caller asks each prompt for exactly what it will keep; with
    `start` (one index per prompt), prompt i gets completions start[i] .. start[i] + n[i] - 1, so a caller
    that already holds a prompt's first start[i] completions draws only the ones after them.

    Contract: completion j of a prompt depends only on (prompt, params without n, j) — not on which other
    prompts share the batch, nor on how many completions were asked of it — so results are reproducible and
    cacheable, and the first k completions of a prompt asked for n >= k are those it gets when asked for k.
    """

    num_params: int                 # for FLOPs accounting (≈ 2 · params · tokens)
    tokenizer: object | None        # for prompt building (chat template); None if unknown

    def generate(self, prompts: Sequence[str], params: SamplingParams, n: Sequence[int] | None = None,
                 start: Sequence[int] | None = None) -> list[list[Completion]]: ...


def counts_per_prompt(prompts: Sequence[str], params: SamplingParams, n: Sequence[int] | None) -> list[int]:
    """What each prompt of a generate call asks for: `n` checked against the prompts, or params.n for all."""
    if isinstance(prompts, str):
        raise TypeError("generate() takes a list of prompts, got one string")
    if n is None:
        if params.n < 1:
            raise ValueError(f"need n >= 1, got n={params.n}")
        return [params.n] * len(prompts)
    counts = [int(k) for k in n]
    if len(counts) != len(prompts) or any(k < 0 for k in counts):
        raise ValueError(f"n must give a count >= 0 for each of the {len(prompts)} prompts, got {counts}")
    return counts


def starts_per_prompt(prompts: Sequence[str], start: Sequence[int] | None) -> list[int]:
    """The first completion index each prompt of a generate call asks for (0 for all without `start`)."""
    if start is None:
        return [0] * len(prompts)
    starts = [int(k) for k in start]
    if len(starts) != len(prompts) or any(k < 0 for k in starts):
        raise ValueError(f"start must give an index >= 0 for each of the {len(prompts)} prompts, got {starts}")
    return starts


def takes(generator: Generator, option: str) -> bool:
    """Whether `generator.generate` takes `option` (`n`: per-prompt counts; `start`: first indices); a
    generator written before an option is served without it (search.meter, inference.sample_store)."""
    try:
        return option in inspect.signature(generator.generate).parameters
    except (TypeError, ValueError):
        return False


@dataclass
class Usage:
    """What a model has spent; strategies read deltas of it."""
    calls: int = 0
    tokens: int = 0                 # tokens processed (for a scorer: tokens actually run through the model)

    def snapshot(self) -> "Usage":
        return Usage(self.calls, self.tokens)

    def __sub__(self, other: "Usage") -> "Usage":
        return Usage(self.calls - other.calls, self.tokens - other.tokens)


@runtime_checkable
class Scorer(Protocol):
    """(problem, candidate steps) pairs -> one score in [0, 1] per step of each candidate.

    Every candidate's steps are scored in one forward pass; candidates are batched across problems.
    A step whose position was lost to tokenization (merged tag, truncation) is an error, never a
    silently shifted score.
    """

    num_params: int
    usage: Usage

    def score(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]: ...
