"""Steps: split/join solutions on a delimiter, and build the policy prompt.

The papers (Snell et al., Liu et al.) split on a blank line; every stage uses the same delimiter so that
labels, PRM inputs and search steps line up. Invariant: split_steps(join_steps(steps)) == steps for steps
that are non-empty, stripped, and do not contain the delimiter.
"""
from __future__ import annotations

from typing import Any

DEFAULT_DELIMITER = "\n\n"

INSTRUCTION = (
    "Solve the following math problem step by step. Separate the steps with a blank line, "
    "and put the final answer in \\boxed{{}} at the end of the last step.\n\nProblem: {problem}"
)


def split_steps(solution: str, delimiter: str = DEFAULT_DELIMITER) -> list[str]:
    """Split a solution into steps; surrounding whitespace is stripped and empty steps dropped."""
    return [s.strip() for s in solution.split(delimiter) if s.strip()]


def join_steps(steps: list[str], delimiter: str = DEFAULT_DELIMITER) -> str:
    return delimiter.join(s.strip() for s in steps)


def build_prompt(problem: str, tokenizer: Any | None = None, system: str | None = None) -> str:
    """The text a policy continues: chat template when the tokenizer has one, plain text otherwise.

    The result ends where the assistant's answer begins, so `build_prompt(p) + join_steps(prefix)
    + delimiter` is how search and labeling continue a partial solution.
    """
    user = INSTRUCTION.format(problem=problem.strip())
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return (system + "\n\n" if system else "") + user + "\n\nSolution:\n"


def continuation_prompt(prompt: str, prefix_steps: list[str], delimiter: str = DEFAULT_DELIMITER) -> str:
    """Prompt + the first steps of a solution, ready for the next step."""
    if not prefix_steps:
        return prompt
    return prompt + join_steps(prefix_steps, delimiter) + delimiter
