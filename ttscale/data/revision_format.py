"""THE prompt format of the revision model: a problem plus previous attempts, then a corrected solution.

Training (`train-revision`) and test-time revisions (search) both build prompts with `revision_prompt`, so
a model is always asked the same way it was trained. The layout reuses the policy's first-attempt prompt
(`ttscale.data.steps.build_prompt`): the attempts and the revision instruction go after the problem inside
the same user message, so with zero attempts the prompt IS the policy's prompt, and with a chat template the
whole block is one user turn. Plain-text layout (chat templates wrap the same user text):

    Solve the following math problem step by step. ... \\boxed{} at the end of the last step.

    Problem: <problem>

    Previous attempt 1:
    <attempt, steps separated by blank lines>

    Previous attempt 2:
    <attempt>

    <REVISE_INSTRUCTION>

    Solution:

Only the LAST `max_attempts` attempts are shown (Snell et al. 2024 train with up to 4 in context); older ones
are dropped. A trained model folder records the format version and max_attempts in `revision_format.json`
(`write_revision_info` / `read_revision_info`), so search can refuse a model trained for another format.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ttscale.data.steps import build_prompt

# Bump when the layout below changes: models trained on another version must not be used silently.
REVISION_FORMAT_VERSION = 1
DEFAULT_MAX_ATTEMPTS = 4
INFO_FILE = "revision_format.json"

ATTEMPT_HEADER = "Previous attempt {i}:"
REVISE_INSTRUCTION = (
    "The previous attempts may contain mistakes. Write a corrected solution in the same format: steps "
    "separated by a blank line, and the final answer in \\boxed{} at the end of the last step."
)


def revision_prompt(problem: str, previous_attempts: Sequence[str], tokenizer: Any | None = None,
                    max_attempts: int = DEFAULT_MAX_ATTEMPTS, system: str | None = None) -> str:
    """The text the revision model continues with a corrected solution (see the module docstring).

    Keeps the last `max_attempts` attempts in their original order, numbered from 1. Chat template when
    the tokenizer has one, plain text otherwise (exactly as `build_prompt`).
    """
    if max_attempts < 0:
        raise ValueError(f"max_attempts must be >= 0, got {max_attempts}")
    kept = list(previous_attempts)[-max_attempts:] if max_attempts else []
    if not kept:
        return build_prompt(problem, tokenizer, system=system)
    blocks = [problem.strip()]
    blocks += [ATTEMPT_HEADER.format(i=i) + "\n" + attempt.strip() for i, attempt in enumerate(kept, start=1)]
    blocks.append(REVISE_INSTRUCTION)
    return build_prompt("\n\n".join(blocks), tokenizer, system=system)


def write_revision_info(model_dir: str | Path, max_attempts: int, **extra: Any) -> Path:
    """Record which revision format a saved model was trained on (read back by `read_revision_info`)."""
    path = Path(model_dir) / INFO_FILE
    info = {"format_version": REVISION_FORMAT_VERSION, "max_attempts": int(max_attempts), **extra}
    path.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_revision_info(model_dir: str | Path) -> dict[str, Any]:
    """The revision-format record of a model folder; errors say why the model cannot be used for revisions."""
    path = Path(model_dir) / INFO_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing — {model_dir} was not trained by `ttscale train-revision`, so its prompt format is "
            f"unknown; train one with `ttscale train-revision`, or write {INFO_FILE} with "
            f'{{"format_version": {REVISION_FORMAT_VERSION}, "max_attempts": 4}} if it uses this format')
    info = json.loads(path.read_text(encoding="utf-8"))
    version = info.get("format_version")
    if version != REVISION_FORMAT_VERSION:
        raise ValueError(f"{path}: revision format version {version!r}, but this ttscale builds version "
                         f"{REVISION_FORMAT_VERSION} prompts; retrain the revision model with this version")
    if not isinstance(info.get("max_attempts"), int) or info["max_attempts"] < 0:
        raise ValueError(f"{path}: field 'max_attempts' must be a non-negative integer, got {info.get('max_attempts')!r}")
    return info
