"""The generative PRM's text format: what a verifier reads, writes and ends with, in one place.

A check of step k of a solution is the policy's prompt continued by the first k steps, then the step to check
and a request to redo it; the verifier writes a rationale (its own derivation of that step) and then a
verdict, one token: `positive` ("+", the step is right) or `negative` ("-"). Training data, SFT and scoring
all build their text here, so a verifier is read exactly as it was trained.

The toy world's rationales are the policy re-deriving the step from the problem and the prefix; the verdict
says whether the re-derived step reaches the same number (`agrees`). That is what a careful reader does with
an arithmetic step, recompute it and compare, and it needs neither the world's checker nor its true labels.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

from ttscale.data.steps import DEFAULT_DELIMITER, build_prompt, continuation_prompt

CHECK = "Check: "
REDO = "\nRedo:"   # no trailing space: the rationale's first token carries it, as the verifier writes it
VERDICT = "\nVerdict:"
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def critique_prompt(problem: str, prefix: Sequence[str], step: str, tokenizer: Any = None,
                    delimiter: str = DEFAULT_DELIMITER) -> str:
    """The text a verifier continues with its rationale for `step`, given the steps before it."""
    return continuation_prompt(build_prompt(problem, tokenizer), list(prefix), delimiter) + CHECK + step.strip() + REDO


def rationale_text(rationale: str) -> str:
    """A rationale as it follows the prompt, up to and including the verdict marker (training and scoring)."""
    return " " + rationale.strip() + VERDICT


def critique_completion(rationale: str, ok: bool, positive: str = "+", negative: str = "-") -> str:
    """What the verifier is trained to write after the prompt: rationale, verdict marker, verdict token."""
    return rationale_text(rationale) + (positive if ok else negative)


def final_number(text: str) -> str | None:
    """The last number in a step (its result), as written; None when it has none."""
    found = _NUMBER.findall(text)
    return found[-1] if found else None


def agrees(rederived: str, step: str) -> bool:
    """Whether a re-derived step reaches the checked step's result: the same last number (numerically), or, for
    steps without numbers, the same text up to spacing."""
    a, b = final_number(rederived), final_number(step)
    if a is None or b is None:
        return a is None and b is None and " ".join(rederived.split()) == " ".join(step.split())
    return float(a) == float(b)
