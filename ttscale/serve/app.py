"""The HTTP side: OpenAI-compatible routes over the batcher. Needs the `serve` extra (FastAPI + uvicorn).

Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health (no key needed: it says
only whether the server is up and how busy it is).
Safety: with an API key set, /v1/* needs `Authorization: Bearer KEY` (401 otherwise); bodies over
--max-body-bytes get 413 before they are parsed; JSON nested deeper than MAX_JSON_DEPTH gets 400 and a
non-finite number (NaN, Infinity, 1e999) 422; a prompt longer than the models take gets 400 (schemas.py); more
than --max-pending queued requests get 503; a request whose client disconnects, or that is still waiting after
--request-timeout seconds (504), is dropped before its batch starts; a failed search answers 500 with the
reason and the server keeps serving.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import math
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, Mapping

from ttscale.errors import UserError

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    import uvicorn  # noqa: F401 - serve_cmd runs it; checked here so one message names the extra
except ImportError as e:  # one line the CLI prints as is
    raise UserError(f"ttscale serve needs FastAPI and uvicorn ({e.name} is missing): "
                    f"pip install 'ttscale[serve]'") from None

from ttscale.search.registry import STRATEGIES, get_strategy
from ttscale.search.types import SearchContext
from ttscale.serve import responses
from ttscale.serve.batching import Batcher, share_models
from ttscale.serve.schemas import ApiError, RequestParser


def offered_strategies(cfg: Any, ctx: SearchContext) -> list[str]:
    """The strategies the loaded models can run (with the server's default options)."""
    out = []
    for name in STRATEGIES:
        try:
            get_strategy(name, cfg.strategy_options()).validate(cfg.budget, ctx)
        except ValueError:
            continue
        out.append(name)
    return out


MAX_JSON_DEPTH = 32     # an OpenAI request nests about 5 levels


def _reject_constant(name: str) -> float:
    raise ApiError(422, f"non-finite number {name} in the body: every number must be finite")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ApiError(422, f"number {text[:40]} is out of range: every number must be finite")
    return value


def _depth(data: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


def parse_json(raw: bytes) -> Any:
    """The body as JSON, or an ApiError: malformed (400), nested too deep (400), a non-finite number (422)."""
    try:
        data = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite)
    except RecursionError:
        raise ApiError(400, f"JSON nested too deep (this server takes at most {MAX_JSON_DEPTH} levels)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, f"malformed JSON body: {e}") from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise ApiError(400, f"JSON nested too deep (this server takes at most {MAX_JSON_DEPTH} levels)")
    return data


def _error(e: ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


async def _read_body(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {declared} bytes is over this server's cap --max-body-bytes {limit}")
    data = bytearray()
    async for chunk in request.stream():   # a chunked body has no length to check up front
        data += chunk
        if len(data) > limit:
            raise ApiError(413, f"request body is over this server's cap --max-body-bytes {limit}")
    return parse_json(bytes(data))


async def _disconnected(request: Request) -> None:
    """Returns when the client goes away (the body is read, so the next ASGI message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(cfg: Any, ctx: SearchContext, model_id: str, api_key: str | None = None,
               allocation: Mapping[str, Any] | None = None) -> FastAPI:
    """The server for loaded models `ctx` with `cfg`'s defaults and caps (see serve_cmd.Config)."""
    concurrency = getattr(cfg, "concurrency", 1)
    if concurrency > 1:
        ctx = share_models(ctx)
    parser = RequestParser(cfg, ctx, model_id, allocation)
    parser.check_defaults()
    batcher = Batcher(cfg.batch_window_ms / 1000.0, cfg.max_batch, concurrency)
    strategies = offered_strategies(cfg, ctx)
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="ttscale serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher = batcher

    def authorized(request: Request) -> bool:
        if not api_key:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode())

    def check_key(request: Request) -> None:
        # in the handlers, not a middleware: Starlette's http middleware wraps `receive`, which would hide
        # the client's disconnect from the handler
        if not authorized(request):
            raise ApiError(401, "missing or wrong API key: send Authorization: Bearer KEY",
                           kind="authentication_error")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_id, "pending": batcher.pending, **batcher.stats}

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        try:
            check_key(request)
        except ApiError as e:
            return _error(e)
        return {"object": "list", "data": [{
            "id": model_id, "object": "model", "created": created, "owned_by": "ttscale",
            "ttscale": {"strategies": strategies, "default_strategy": cfg.strategy, "default_budget": cfg.budget,
                        "max_budget": cfg.max_budget, "prm": ctx.scorer is not None,
                        "revision_model": ctx.reviser is not None, "allocation": allocation is not None}}]}

    async def search(request: Request, kind: str) -> Response:
        request_id = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
        try:
            check_key(request)
            req = parser.parse(kind, await _read_body(request, cfg.max_body_bytes), request_id)
            if batcher.pending >= cfg.max_pending:
                raise ApiError(503, f"server busy: {batcher.pending} requests queued (--max-pending "
                                    f"{cfg.max_pending}); retry later", kind="server_error")
        except ApiError as e:
            return _error(e)
        job = batcher.submit(req)
        watcher = asyncio.create_task(_disconnected(request))
        try:
            done, _ = await asyncio.wait({job.future, watcher}, timeout=cfg.request_timeout or None,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if not job.future.done():   # the client left, or the deadline passed: its batch skips it if not started
            job.dropped = True
            if watcher in done:
                return Response(status_code=499)
            return _error(ApiError(504, f"no answer within --request-timeout {cfg.request_timeout:g} s; the request "
                                        "was dropped", kind="server_error"))
        if job.future.exception() is not None:
            e = job.future.exception()
            return _error(ApiError(500, f"search failed: {type(e).__name__}: {e}", kind="server_error"))
        result = job.future.result()
        if req.stream:
            return StreamingResponse(responses.stream(req, result, request_id, model_id),
                                     media_type="text/event-stream")
        return JSONResponse(responses.completion(req, result, request_id, model_id))

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await search(request, "chat")

    @app.post("/v1/completions")
    async def text(request: Request) -> Response:
        return await search(request, "text")

    return app
