"""A search result -> an OpenAI completion (chat or text), whole or as server-sent events.

Choices: choice 0 is the candidate the strategy selected; with `n` > 1 the next choices are the best candidates
of the other distinct answers, ranked by the same vote (search.voting.rank_answers), so fewer than n come back
when fewer answers were found. A choice's content is its steps joined by the step delimiter; finish_reason
"stop" for a finished candidate. When no candidate finished there is nothing to vote on: the single choice is
the best-scored unfinished candidate, with finish_reason "length" and `ttscale.answer` null.

usage: completion_tokens = every token the search generated (policy and revision model; auto's probe and
discarded samples included); prompt_tokens = every other token a model ran: the prompts the policy and the
revision model prefilled (a prefix served from a cache is not run, so not counted) and the tokens the PRM
scored; total_tokens = their sum = the search's Spent.tokens (the `--cost tokens` axis of `evaluate`).
"""
from __future__ import annotations

import json
import time
from typing import Any, Iterator

from ttscale.data.steps import join_steps
from ttscale.search.registry import STRATEGIES
from ttscale.search.types import ProblemResult
from ttscale.search.voting import aggregate, rank_answers
from ttscale.serve.schemas import SearchRequest


def selection_rule(req: SearchRequest, result: ProblemResult) -> tuple[str, str]:
    """(voting, aggregation) that chose this result: auto's per-problem choice, else the request's."""
    st = req.ctx.settings
    if result.choice:
        voting = result.choice.get("voting") or "default"
        if voting == "default":
            voting = STRATEGIES[result.choice["strategy"]].default_voting
        return voting, result.choice.get("aggregation") or st.aggregation
    return req.strategy.voting(req.ctx), st.aggregation


def picks(req: SearchRequest, result: ProblemResult) -> list[tuple[int, str]]:
    """(candidate index, finish_reason) per choice; index -1 when the search returned no candidate."""
    voting, aggregation = selection_rule(req, result)
    ranked = rank_answers(result.candidates, voting, aggregation)
    if ranked:
        return [(i, "stop") for i in ranked[:req.n]]
    if not result.candidates:
        return [(-1, "length")]
    scores = [aggregate(c.step_scores, aggregation) for c in result.candidates]
    return [(min(range(len(scores)), key=lambda i: (-scores[i], i)), "length")]


def usage(result: ProblemResult) -> dict[str, int]:
    spent = result.spent
    generated = spent.generated_tokens + spent.reviser_generated_tokens
    return {"prompt_tokens": spent.tokens - generated, "completion_tokens": generated, "total_tokens": spent.tokens}


def ttscale_info(req: SearchRequest, result: ProblemResult) -> dict[str, Any]:
    spent = result.spent
    voting, aggregation = selection_rule(req, result)
    info: dict[str, Any] = {
        "strategy": req.strategy_name, "method": req.strategy.method(req.budget), "budget": req.budget,
        "voting": voting, "aggregation": aggregation, "answer": result.prediction, "chosen": result.chosen,
        "choice": result.choice,   # auto: the configuration chosen for this request, its bin and difficulty
        "spent": {**spent.to_dict(), "flops": spent.policy_flops + spent.prm_flops,
                  "model_calls": spent.policy_calls + spent.prm_calls},
    }
    if req.return_candidates:
        info["candidates"] = [{**c.to_dict(), "score": aggregate(c.step_scores, aggregation)}
                              for c in result.candidates]
    return info


def _text(req: SearchRequest, result: ProblemResult, index: int) -> str:
    return "" if index < 0 else join_steps(result.candidates[index].steps, req.ctx.settings.delimiter)


def completion(req: SearchRequest, result: ProblemResult, request_id: str, model: str) -> dict[str, Any]:
    choices = []
    for n, (index, finish) in enumerate(picks(req, result)):
        text = _text(req, result, index)
        body = ({"message": {"role": "assistant", "content": text}} if req.kind == "chat" else {"text": text})
        choices.append({"index": n, **body, "finish_reason": finish, "logprobs": None})
    return {"id": request_id, "object": "chat.completion" if req.kind == "chat" else "text_completion",
            "created": int(time.time()), "model": model, "choices": choices, "usage": usage(result),
            "ttscale": ttscale_info(req, result)}


def _pieces(text: str, delimiter: str) -> list[str]:
    """The text in step-sized pieces that concatenate back to it exactly."""
    parts = text.split(delimiter)
    return [p + (delimiter if i < len(parts) - 1 else "") for i, p in enumerate(parts)]


def stream(req: SearchRequest, result: ProblemResult, request_id: str, model: str) -> Iterator[str]:
    """The finished search as OpenAI chunks: per choice its role, its steps, its finish; then usage (when
    stream_options.include_usage) with the ttscale field; then [DONE]."""
    chat = req.kind == "chat"
    head = {"id": request_id, "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()), "model": model}

    def event(choices: list[dict[str, Any]], **extra: Any) -> str:
        return f"data: {json.dumps({**head, 'choices': choices, **extra})}\n\n"

    for n, (index, finish) in enumerate(picks(req, result)):
        if chat:
            yield event([{"index": n, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for piece in _pieces(_text(req, result, index), req.ctx.settings.delimiter):
            delta = {"delta": {"content": piece}} if chat else {"text": piece}
            yield event([{"index": n, **delta, "finish_reason": None, "logprobs": None}])
        end = {"delta": {}} if chat else {"text": ""}
        yield event([{"index": n, **end, "finish_reason": finish, "logprobs": None}])
    if req.include_usage:
        yield event([], usage=usage(result), ttscale=ttscale_info(req, result))
    yield "data: [DONE]\n\n"
