"""A request body -> the search to run: the problem, the resolved settings and strategy, and the batching key.

Search settings come from the body's own fields (the openai client's `extra_body`), each checked against the
option it sets on the command line (type, bounds, choices), with the server's values as defaults. Errors
name the body field: 400 for what is not a usable request (malformed, over a cap, text that is not valid
Unicode, a prompt longer than the models take), 422 for a value the search refuses (unknown strategy or
option, out of bounds, a non-finite number, a strategy the loaded models cannot run). Everything is checked
before a request is queued, so a bad request never joins (and fails) a batch of good ones.

Prompt length: the policy's prompt for the problem (its chat template included) is counted with the policy's
tokenizer and must leave room, in the policy's context and the PRM's max length, for the tokens the search may
generate per candidate; --max-prompt-tokens caps it further. A text too long to possibly fit (over the cap
times the vocabulary's longest token, in characters) is refused without being tokenized.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Mapping

from ttscale.config import check_value
from ttscale.search.candidates import policy_prompt
from ttscale.search.registry import STRATEGIES
from ttscale.search.search_args import StrategyOptions
from ttscale.search.strategy import Strategy
from ttscale.search.types import SearchContext


class ApiError(Exception):
    """An error answered to the client: HTTP status, message, and the body field it is about."""

    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status}}


# Body fields -> the option they set. `allocation` is a file on the server and the step delimiter is what the
# PRM was trained on: a client sets neither.
_RENAMED = {"max_tokens": "max_new_tokens", "max_completion_tokens": "max_new_tokens"}
_SERVER_ONLY = {"allocation"}
SEARCH_FIELDS = (["strategy", "budget", "aggregation", "voting", "temperature", "top_p", "seed"]
                 + [f.name for f in dataclasses.fields(StrategyOptions) if f.name not in _SERVER_ONLY])
_OWN = {"model", "messages", "prompt", "n", "stream", "stream_options", "return_candidates"}
# Standard OpenAI fields that do not change a search: accepted so stock clients work, and ignored.
_IGNORED = {"user", "frequency_penalty", "presence_penalty", "logit_bias", "metadata", "store", "service_tier",
            "parallel_tool_calls", "stop", "logprobs", "echo"}
_FALSY_ONLY = {"stop", "logprobs", "echo"}   # ignored only when unset: a set value would be silently broken


@dataclass
class SearchRequest:
    kind: str                     # "chat" or "text"
    problem: dict[str, Any]       # what strategies take: id, problem, answer (None: no gold here)
    strategy: Strategy
    strategy_name: str
    budget: int
    ctx: SearchContext            # the server's models with this request's settings
    key: str                      # requests with the same key are searched in the same batched run
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    return_candidates: bool = False


def _typed(name: str, tp: Any, value: Any) -> Any:
    """The value if it has the option's type (JSON ints pass as floats; bools are not ints), else 422."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) else tp
    if value is None and len(typing.get_args(tp)) > len(args):
        return None
    ok = (isinstance(value, bool) if base is bool else
          isinstance(value, int) and not isinstance(value, bool) if base is int else
          isinstance(value, (int, float)) and not isinstance(value, bool) if base is float else
          isinstance(value, str) if base is str else True)
    if not ok:
        raise ApiError(422, f"{name} must be {getattr(base, '__name__', base)}, got {json.dumps(value)}", name)
    return float(value) if base is float else value


def _problem_text(kind: str, body: Mapping[str, Any]) -> tuple[str, str | None]:
    """(problem, system prompt or None) from the messages' last user message, or from the prompt."""
    if kind == "text":
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise ApiError(400, "prompt must be one string (send several requests: they are searched together)",
                           "prompt")
        return prompt, None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ApiError(400, "messages must be a non-empty list of {role, content} objects", "messages")

    def text(m: Mapping[str, Any]) -> str:
        content = m.get("content")
        if isinstance(content, list):  # content parts: only text parts carry a problem
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        if not isinstance(content, str):
            raise ApiError(400, "each message's content must be text", "messages")
        return content

    users = [text(m) for m in messages if m.get("role") == "user"]
    if not users:
        raise ApiError(400, "messages hold no user message: the last user message is the problem", "messages")
    system = "\n\n".join(text(m) for m in messages if m.get("role") in ("system", "developer")) or None
    return users[-1], system


def _valid_text(text: str, param: str) -> str:
    """Text a tokenizer can encode: a lone surrogate (JSON "\\ud800") is refused here, not in a batch."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ApiError(400, f"{param} is not valid Unicode text: a lone surrogate at character {e.start} "
                            f"(send UTF-8 text)", param) from None
    return text


def model_limits(ctx: SearchContext) -> dict[str, int]:
    """The token limits of the loaded models a prompt must fit: the policy's (or reviser's) context, the PRM's
    max length, where they are known (a served model's context is the server's to enforce)."""
    out = {}
    gen = ctx.generator or ctx.reviser
    n = getattr(getattr(getattr(gen, "model", None), "config", None), "max_position_embeddings", None)
    if isinstance(n, int) and n > 0:
        out["the policy's context"] = n
    n = getattr(getattr(ctx.scorer, "spec", None), "max_length", None)
    if isinstance(n, int) and n > 0:
        out["the PRM's max length"] = n
    return out


class RequestParser:
    """Turns bodies into SearchRequests for one server: its config (defaults and caps) and its loaded models."""

    def __init__(self, cfg: Any, ctx: SearchContext, model_id: str, allocation: Mapping[str, Any] | None = None):
        self.cfg, self.ctx, self.model_id, self.allocation = cfg, ctx, model_id, allocation
        self.hints = typing.get_type_hints(type(cfg))
        self.fields = {f.name: f for f in dataclasses.fields(cfg)}
        self.limits = model_limits(ctx)
        gen = ctx.generator or ctx.reviser
        self.tokenizer = getattr(gen, "tokenizer", None)
        vocab = self.tokenizer.get_vocab() if hasattr(self.tokenizer, "get_vocab") else {}
        self.chars_per_token = max((len(t) for t in vocab), default=64)   # no token spans more characters

    def parse(self, kind: str, body: Any, request_id: str) -> SearchRequest:
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        unknown = sorted(set(body) - _OWN - _IGNORED - set(_RENAMED) - set(SEARCH_FIELDS))
        if unknown:
            raise ApiError(422, f"unknown field {unknown[0]!r}; search settings are: {', '.join(SEARCH_FIELDS)}",
                           unknown[0])
        for name in _FALSY_ONLY & set(body):
            if body[name]:
                raise ApiError(422, f"{name} is not supported by ttscale serve", name)
        model = body.get("model")
        if model is not None and model != self.model_id:
            raise ApiError(422, f"model {model!r} is not served here; this server serves {self.model_id!r}", "model")
        problem, system = _problem_text(kind, body)
        field_name = "prompt" if kind == "text" else "messages"
        _valid_text(problem, field_name)
        _valid_text(system or "", field_name)
        if not problem.strip():
            raise ApiError(400, "the problem is empty", "prompt" if kind == "text" else "messages")

        overrides = {}
        for name, value in body.items():
            option = _RENAMED.get(name, name)
            if option in self.fields and name not in _OWN:
                overrides[option] = self._checked(name, option, value)
        n = _typed("n", int, body.get("n", 1) if body.get("n") is not None else 1)
        self._check_caps({**{k: getattr(self.cfg, k) for k in self.fields}, **overrides}, n)
        try:  # the config's own checks: the strategy can run with the loaded models (names the flag it needs)
            req_cfg = dataclasses.replace(self.cfg, **overrides)
        except ValueError as e:
            raise ApiError(422, f"strategy {overrides.get('strategy', self.cfg.strategy)!r} cannot run on this "
                                f"server: {e}", "strategy") from None
        settings = dataclasses.replace(req_cfg.settings(self.ctx.settings.revision_max_attempts), system=system)
        ctx = dataclasses.replace(self.ctx, settings=settings)
        self._check_prompt(problem, settings, req_cfg, field_name)
        strategy = req_cfg.make_strategy()
        try:
            strategy.validate(req_cfg.budget, ctx)
        except ValueError as e:
            raise ApiError(422, f"strategy {req_cfg.strategy!r} cannot run on this server: {e}", "strategy") from None
        key = json.dumps({"strategy": req_cfg.strategy, "budget": req_cfg.budget,
                          "settings": dataclasses.asdict(settings), "options": req_cfg.strategy_options()},
                         sort_keys=True)
        stream_options = body.get("stream_options") or {}
        return SearchRequest(
            kind=kind, problem={"id": request_id, "problem": problem, "answer": None}, strategy=strategy,
            strategy_name=req_cfg.strategy, budget=req_cfg.budget, ctx=ctx, key=key, n=n,
            stream=bool(_typed("stream", bool, body.get("stream") or False)),
            include_usage=bool(isinstance(stream_options, dict) and stream_options.get("include_usage")),
            return_candidates=bool(_typed("return_candidates", bool, body.get("return_candidates") or False)))

    def _checked(self, name: str, option: str, value: Any) -> Any:
        value = _typed(name, self.hints[option], value)
        why = check_value(self.fields[option], value)
        if why:
            raise ApiError(422, f"{name} {why}", name)
        if option == "strategy" and value not in STRATEGIES:  # choices already say it; kept for a clear message
            raise ApiError(422, f"unknown strategy {value!r}", name)
        return value

    def _check_caps(self, values: Mapping[str, Any], n: int) -> None:
        """The server's per-request caps (400 naming the cap); also run on the server's own defaults at start."""
        cfg = self.cfg
        if n < 1:
            raise ApiError(422, f"n must be >= 1, got {n}", "n")
        for name, value in (("budget", values["budget"]), ("n", n), ("probe_samples", values["probe_samples"])):
            if value > cfg.max_budget:
                raise ApiError(400, f"{name} {value} is over this server's cap --max-budget {cfg.max_budget}", name)
        if values["max_new_tokens"] > cfg.max_tokens:
            raise ApiError(400, f"max_tokens {values['max_new_tokens']} is over this server's cap --max-tokens "
                                f"{cfg.max_tokens}", "max_tokens")
        family = STRATEGIES[values["strategy"]].family
        per_path = values["max_depth"] * values["max_step_tokens"]
        if family in ("tree", "meta") and per_path > cfg.max_tokens:
            raise ApiError(400, f"max_depth x max_step_tokens = {per_path} tokens per path is over this server's "
                                f"cap --max-tokens {cfg.max_tokens}", "max_depth")
        if values["strategy"] == "auto" and self.allocation is not None:
            smallest = min(int(b) for b in self.allocation["fallback"])
            if values["budget"] < smallest:
                raise ApiError(422, f"budget {values['budget']} is below the smallest budget in the server's "
                                    f"allocation file ({smallest}) for strategy auto", "budget")

    def _check_prompt(self, problem: str, settings: Any, req_cfg: Any, param: str) -> None:
        """The prompt's tokens plus what the search may generate per candidate fit every model limit (400)."""
        family = STRATEGIES[req_cfg.strategy].family
        room = (req_cfg.max_depth * req_cfg.max_step_tokens if family in ("tree", "meta") else 0)
        room = max(room, req_cfg.max_new_tokens)
        caps = {name: n - room for name, n in self.limits.items()}
        if self.cfg.max_prompt_tokens:
            caps["--max-prompt-tokens"] = self.cfg.max_prompt_tokens
        if not caps:
            return
        name, cap = min(caps.items(), key=lambda kv: kv[1])
        why = (f"{name} ({self.limits[name]} tokens) less the {room} tokens this search may generate per "
               f"candidate" if name in self.limits else f"this server's cap {name} {cap}")
        text_len = len(problem) + len(settings.system or "")
        if cap <= 0 or text_len > cap * self.chars_per_token:
            raise ApiError(400, f"the prompt is too long: {text_len} characters; at most {max(cap, 0)} tokens fit "
                                f"({why}); shorten it or ask for fewer tokens", param)
        if self.tokenizer is None or not callable(self.tokenizer):
            return
        n = len(self.tokenizer(policy_prompt(problem, [], self.tokenizer, settings))["input_ids"])
        if n > cap:
            raise ApiError(400, f"the prompt is too long: {n} tokens, at most {cap} fit ({why}); shorten it or "
                                f"ask for fewer tokens", param)

    def check_defaults(self) -> None:
        """The server's defaults must fit its own caps (raised as ValueError at start, before serving)."""
        try:
            self._check_caps({k: getattr(self.cfg, k) for k in self.fields}, 1)
        except ApiError as e:
            raise ValueError(f"the server's defaults break its caps: {e.message}") from None
