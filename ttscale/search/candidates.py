"""Turning generated text into candidates: steps, extracted answer, vote key, and the finished rule.

One rule for every strategy: a candidate is FINISHED when the policy ended it (EOS) or its last step holds a
final \\boxed{} answer. A sample cut by the token limit without one is unfinished: reported, never voted on.
"""
from __future__ import annotations

from typing import Sequence

from ttscale.data.answers import answer_key, extract_answer
from ttscale.data.steps import build_prompt, continuation_prompt
from ttscale.search.types import Candidate, SearchSettings


def has_final_answer(step: str) -> bool:
    return "\\boxed" in step and extract_answer(step) is not None


def make_candidate(steps: Sequence[str], finish_reason: str, tokens: int = 0, **where: int) -> Candidate:
    """`where`: the strategy's bookkeeping fields (node/subtree for trees, chain/previous for revisions)."""
    steps = list(steps)
    finished = finish_reason == "eos" or bool(steps and has_final_answer(steps[-1]))
    answer = extract_answer(steps[-1]) if steps else None
    if answer is None and finished:  # an answer stated in an earlier step still counts once the text is done
        answer = extract_answer("\n".join(steps))
    return Candidate(steps=steps, answer=answer, answer_key=answer_key(answer) if answer is not None else None,
                     finished=finished, tokens=tokens, **where)


def policy_prompt(problem: str, prefix: Sequence[str], tokenizer, st: SearchSettings) -> str:
    """The policy's prompt for a problem continued after `prefix` steps (one place for every strategy)."""
    return continuation_prompt(build_prompt(problem, tokenizer, system=st.system), list(prefix), st.delimiter)


def drawn_count(problems: Sequence[dict], drawn: Sequence[Sequence[Candidate]]) -> int:
    """How many samples per problem `extend` starts from: the same number for each problem, or a ValueError."""
    counts = {len(d) for d in drawn}
    if len(drawn) != len(problems) or len(counts) > 1:
        raise ValueError(f"extend needs the same number of drawn samples for each of the {len(problems)} "
                         f"problems, got {sorted(counts)} over {len(drawn)}")
    return counts.pop() if counts else 0
