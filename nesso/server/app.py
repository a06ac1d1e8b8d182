"""The FastAPI application behind `nesso serve`: OpenAI's chat completions with tool calls enforced by grammar,
continuous batching through one scheduler thread, an agent endpoint and a chat page for the shipped tools."""

from __future__ import annotations

import hmac
import inspect
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from nesso.agent import Tool
from nesso.engine import Engine
from nesso.server import errors
from nesso.server.agent_stream import agent_events, prepare_agent
from nesso.server.chat import ChatService
from nesso.server.errors import ApiError, check_unicode, error_body
from nesso.server.scheduler import Scheduler
from nesso.server.schemas import (
    AgentChatRequest,
    AgentEvent,
    AgentTools,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ErrorResponse,
    Health,
    ModelCard,
    ModelList,
)

DEFAULT_BODY_LIMIT = 8 * 1024 * 1024
PUBLIC_PATHS = {"/", "/favicon.ico"}  # the page itself holds no data; it asks for the key when the API says 401
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text} for code, text in (
        (400, "invalid request: malformed JSON, bad parameter, invalid tool schema, prompt too long"),
        (401, "missing or wrong API key (when the server has one)"),
        (413, "request body too large"))}


def create_app(engine: Engine, model_name: str = "default", *, aliases: tuple[str, ...] = (),
               api_key: str | None = None, slots: int = 8, max_tokens_cap: int | None = None,
               tools: list[Tool] | None = None, body_limit: int = DEFAULT_BODY_LIMIT) -> FastAPI:
    """``max_tokens_cap`` bounds every completion (a request's own max_tokens can only lower it); ``tools``
    are what the agent endpoint and the page may run (default: the shipped tools)."""
    if tools is None:
        from nesso.tools import default_tools

        tools = default_tools()
    scheduler = Scheduler(engine, slots=slots)
    chat = ChatService(engine, scheduler, model_name, max_tokens_cap=max_tokens_cap)
    names = {model_name, *aliases}
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        scheduler.start()
        try:
            yield
        finally:
            scheduler.stop()

    options: dict[str, Any] = {}
    if "strict_content_type" in inspect.signature(FastAPI).parameters:
        options["strict_content_type"] = False  # a JSON body without Content-Type (curl -d) is still JSON
    app = FastAPI(title="nesso serve", version="1", lifespan=lifespan, redoc_url=None,
                  description="OpenAI-compatible chat completions for nesso models, with tool calls and JSON "
                              "outputs enforced by constrained decoding.", **options)
    app.state.scheduler, app.state.engine, app.state.model_name = scheduler, engine, model_name
    errors.install(app)

    def check_model(model: str) -> None:
        if model not in names:
            raise ApiError(404, f"the model {model!r} does not exist; this server serves {model_name!r} "
                                "(see GET /v1/models)", param="model", code="model_not_found")

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        html = resources.files("nesso.server").joinpath("static/index.html").read_text(encoding="utf-8")
        return HTMLResponse(html)

    @app.get("/health", response_model=Health, responses={401: ERRORS[401]}, tags=["server"])
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_name, **scheduler.snapshot()}

    @app.get("/v1/models", response_model=ModelList, responses={401: ERRORS[401]}, tags=["openai"])
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [_card(model_name, created)]}

    @app.get("/v1/models/{model_id:path}", response_model=ModelCard, tags=["openai"],
             responses={401: ERRORS[401], 404: {"model": ErrorResponse, "description": "unknown model"}})
    async def get_model(model_id: str) -> dict[str, Any]:
        check_model(model_id)
        return _card(model_name, created)

    @app.post("/v1/chat/completions", tags=["openai"], response_model=ChatCompletion, responses={
        200: {"content": {"text/event-stream": {"schema": _sse_schema("ChatCompletionChunk")}},
              "description": "a chat.completion object, or with stream=true an SSE stream of chat.completion.chunk "
                             "objects ending with data: [DONE]"},
        **ERRORS, 404: {"model": ErrorResponse, "description": "unknown model"},
        500: {"model": ErrorResponse, "description": "a fault of the server (never the client's mistake)"}})
    async def chat_completions(req: ChatCompletionRequest, request: Request) -> Response:
        check_model(req.model)
        check_unicode(req.model_dump(by_alias=True, exclude_none=True))
        prepared = await run_in_threadpool(chat.prepare, req)  # grammar compiles and tokenizing stay off the loop
        tickets, queue = chat.submit(prepared)
        if prepared.stream:
            return StreamingResponse(chat.stream(prepared, tickets, queue), media_type="text/event-stream",
                                     headers=SSE_HEADERS)
        body = await chat.complete(prepared, tickets, queue, request.is_disconnected)
        if body is None:  # the client is gone; nobody reads this
            return Response(status_code=499)
        return JSONResponse(body)

    @app.get("/v1/agent/tools", response_model=AgentTools, responses={401: ERRORS[401]}, tags=["agent"])
    async def agent_tools() -> dict[str, Any]:
        return {"tools": [{"name": t.name, "description": t.description, "parameters": t.parameters}
                          for t in tools]}

    @app.post("/v1/agent/chat", tags=["agent"], responses={
        200: {"content": {"text/event-stream": {"schema": _sse_schema("AgentEvent")}},
              "description": "SSE events: {type: text|call|result|done|error, ...}, then data: [DONE]"},
        **ERRORS})
    async def agent_chat(req: AgentChatRequest) -> StreamingResponse:
        check_unicode(req.model_dump(by_alias=True, exclude_none=True))
        agent, user, choice, stopped = await run_in_threadpool(prepare_agent, req, engine, scheduler, tools,
                                                               max_tokens_cap)
        return StreamingResponse(agent_events(agent, user, choice, stopped), media_type="text/event-stream",
                                 headers=SSE_HEADERS)

    _clean_openapi(app)
    app.add_middleware(Guard, api_key=api_key, body_limit=body_limit)
    return app


def _sse_schema(event: str) -> dict[str, Any]:
    """One server-sent event: its data is a JSON ``event`` object, an error object, or the final [DONE]."""
    payload = {"anyOf": [{"$ref": f"#/components/schemas/{event}"}, {"$ref": "#/components/schemas/ErrorResponse"}]}
    return {"type": "object", "required": ["data"], "properties": {
        "data": {"anyOf": [{"const": "[DONE]"},
                           {"type": "string", "contentMediaType": "application/json", "contentSchema": payload}]}}}


def _card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "nesso"}


def _clean_openapi(app: FastAPI) -> None:
    """Validation errors answer 400 like OpenAI, not FastAPI's 422: say so in the spec."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = build()
            for path in spec.get("paths", {}).values():
                for op in path.values():
                    responses = op.get("responses", {})
                    if responses.pop("422", None) is not None and "400" not in responses:
                        responses["400"] = {"description": "invalid request",
                                            "content": {"application/json": {
                                                "schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
            for model in (ErrorResponse, ChatCompletionChunk, AgentEvent):  # named only by the SSE schemas
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, sub in schema.pop("$defs", {}).items():
                    schemas.setdefault(name, sub)
                schemas.setdefault(model.__name__, schema)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class _TooLarge(StarletteHTTPException):
    """Raised while the body is read; FastAPI passes HTTP exceptions through to the 413 handler."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class Guard:
    """Pure ASGI middleware (it must not buffer streams): bearer-token auth and a request-size limit."""

    def __init__(self, app: Any, api_key: str | None, body_limit: int) -> None:
        self.app, self.api_key, self.body_limit = app, api_key, body_limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.api_key and scope.get("path") not in PUBLIC_PATHS:
            given = headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
                message = ("missing API key: send the header 'Authorization: Bearer <key>'" if not given
                           else "incorrect API key")
                await _send_json(send, 401, error_body(401, message, None, "invalid_api_key"),
                                 {"www-authenticate": "Bearer"})
                return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.body_limit):
            await _send_json(send, 413, error_body(413, f"the request body is larger than {self.body_limit} bytes",
                                                   None, "request_too_large"))
            return
        seen = 0
        started = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.body_limit:
                    raise _TooLarge(self.body_limit)
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_json(send, 413, error_body(413, f"the request body is larger than {self.body_limit} "
                                                            "bytes", None, "request_too_large"))


async def _send_json(send: Any, status: int, body: dict[str, Any], extra: dict[str, str] | None = None) -> None:
    import json

    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


@contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread (port 0: any free port); yields the base URL.
    For tests, benchmarks and notebooks; `nesso serve` runs uvicorn in the foreground instead."""
    import threading

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="nesso-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(30)
