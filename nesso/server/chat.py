"""POST /v1/chat/completions: a request becomes a prompt, sampling parameters and a grammar (tool calls, JSON
or both); the scheduler generates; the text becomes OpenAI's message or its stream of chunks."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from nesso.engine import Constraint, Engine, Generation, SamplingParams
from nesso.errors import NessoError
from nesso.server.errors import ApiError, error_body
from nesso.server.scheduler import Delta, Failed, Finished, Scheduler, Ticket
from nesso.server.schemas import AssistantMessage, ChatCompletionRequest, ContentPart, ToolMessage
from nesso.toolcalls import ArgumentsDelta, CallEnd, CallStart, ContentDelta, ToolCallParser

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_STOP = 16  # OpenAI takes 4; agent frameworks sometimes send more, and checking one is cheap


def fingerprint() -> str:
    try:
        from importlib.metadata import version

        return f"fp_nesso_{version('nesso')}"
    except Exception:  # noqa: BLE001 - not installed as a distribution (running from a checkout)
        return "fp_nesso"


# ---- messages -------------------------------------------------------------------------------------------
def _text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for j, part in enumerate(content):
        assert isinstance(part, ContentPart)
        if part.type != "text" or part.text is None:
            raise ApiError(400, f"{where}[{j}]: only text parts ({{'type': 'text', 'text': ...}}) are supported "
                                f"(got type {part.type!r}); nesso models read text only",
                           param=f"{where}[{j}]", code="unsupported_content")
        texts.append(part.text)
    return "\n".join(texts)


def _arguments(raw: str, where: str) -> str:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ApiError(400, f"{where} must be a JSON object encoded as a string ({e.msg})", param=where,
                       code="invalid_tool_call") from None
    if not isinstance(value, dict):
        raise ApiError(400, f"{where} must encode a JSON object (got {type(value).__name__})", param=where,
                       code="invalid_tool_call")
    return json.dumps(value, ensure_ascii=False)  # the canonical spacing the model writes and was trained on


def template_messages(messages: list[Any]) -> list[dict[str, Any]]:
    """OpenAI messages -> the chat template's dicts. Tool results must answer the calls of the assistant
    message before them; they are put in call order, as the template pairs results with calls by position."""
    out: list[dict[str, Any]] = []
    i = 0
    while i < len(messages):
        m, where = messages[i], f"messages[{i}]"
        if isinstance(m, ToolMessage):
            raise ApiError(400, f"{where}: a 'tool' message must follow an assistant message with 'tool_calls' "
                                "(it answers one of those calls by its tool_call_id)", param=where,
                           code="invalid_tool_message")
        if not isinstance(m, AssistantMessage):
            role = "system" if m.role == "developer" else m.role
            out.append({"role": role, "content": _text(m.content, f"{where}.content")})
            i += 1
            continue
        entry: dict[str, Any] = {"role": "assistant", "content": _text(m.content, f"{where}.content") or None}
        calls = m.tool_calls or []
        ids: dict[str, int] = {}
        for j, c in enumerate(calls):
            cw = f"{where}.tool_calls[{j}]"
            if not _NAME.match(c.function.name):
                raise ApiError(400, f"{cw}.function.name must be 1-64 letters, digits, '_', '-' or '.'",
                               param=f"{cw}.function.name", code="invalid_tool_call")
            if c.id in ids:
                raise ApiError(400, f"{cw}.id {c.id!r} is used twice in one message", param=f"{cw}.id",
                               code="invalid_tool_call")
            ids[c.id] = j
        if calls:
            entry["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                "name": c.function.name,
                "arguments": _arguments(c.function.arguments, f"{where}.tool_calls[{j}].function.arguments")}}
                for j, c in enumerate(calls)]
        out.append(entry)
        i += 1
        answers: dict[int, dict[str, Any]] = {}
        while i < len(messages) and isinstance(messages[i], ToolMessage):
            t, tw = messages[i], f"messages[{i}]"
            if t.tool_call_id not in ids:
                known = ", ".join(ids) or "none"
                raise ApiError(400, f"{tw}.tool_call_id {t.tool_call_id!r} does not match a call of the assistant "
                                    f"message before it (its call ids: {known})", param=f"{tw}.tool_call_id",
                               code="invalid_tool_message")
            k = ids[t.tool_call_id]
            if k in answers:
                raise ApiError(400, f"{tw}: the call {t.tool_call_id!r} already has a result", param=tw,
                               code="invalid_tool_message")
            answers[k] = {"role": "tool", "tool_call_id": t.tool_call_id, "name": calls[k].function.name,
                          "content": _text(t.content, f"{tw}.content")}
            i += 1
        if calls and i < len(messages) and len(answers) < len(calls):
            missing = [c.id for k, c in enumerate(calls) if k not in answers]
            raise ApiError(400, f"{where} has tool calls without a 'tool' message answering them: "
                                f"{', '.join(missing)}", param=where, code="invalid_tool_message")
        out.extend(answers[k] for k in sorted(answers))
    return out


# ---- grammar ---------------------------------------------------------------------------------------------
def _tools_or_json_lark(tools: list[dict[str, Any]], parallel: bool, schema: dict[str, Any] | None) -> str:
    """Either a JSON answer that follows ``schema`` or tool calls (tool_choice auto with a response_format)."""
    from nesso.grammar import CANONICAL_JSON, call_schema, json_lark
    from nesso.toolcalls import TOOL_CLOSE, TOOL_OPEN

    json_lark(schema)  # validates the schema, with the same message as a plain JSON request
    schema = {"type": "object"} if schema is None else schema
    spaced = {**schema, "x-guidance": {**CANONICAL_JSON, **schema.get("x-guidance", {})}}
    more = f' ("\\n" "{TOOL_OPEN}" body)*' if parallel else ""
    return (f'%llguidance {{}}\nstart: answer | "{TOOL_OPEN}" body{more}\n'
            f"answer: %json {json.dumps(spaced, ensure_ascii=False)}\n"
            f'body: "\\n" %json {json.dumps(call_schema(tools), ensure_ascii=False)} "\\n{TOOL_CLOSE}"\n')


def _grammar_errors(param: str) -> Callable[[Callable[[], Any]], Any]:
    def run(build: Callable[[], Any]) -> Any:
        try:
            return build()
        except ApiError:
            raise
        except NessoError as e:
            raise ApiError(400, str(e), param=param, code="invalid_schema") from None
        except Exception as e:  # noqa: BLE001 - the client's schema broke the grammar compiler
            raise ApiError(400, f"the schema cannot be enforced: {type(e).__name__}: {e}", param=param,
                           code="invalid_schema") from None
        except BaseException as e:  # llguidance reports Rust panics as pyo3 PanicException (a BaseException)
            if type(e).__name__ != "PanicException":
                raise
            raise ApiError(400, f"the schema cannot be enforced: {e}", param=param, code="invalid_schema") from None

    return run


# ---- preparing a request ----------------------------------------------------------------------------------
@dataclass
class Prepared:
    prompt: list[int]
    params: list[SamplingParams]
    constraints: list[Constraint | None]
    parser_tools: list[dict[str, Any]] | None  # None: the output is never parsed for tool calls
    stream: bool
    include_usage: bool
    model: str
    id: str = field(default_factory=lambda: "chatcmpl-" + uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def n(self) -> int:
        return len(self.params)


class ChatService:
    def __init__(self, engine: Engine, scheduler: Scheduler, model_name: str, *, max_tokens_cap: int | None = None
                 ) -> None:
        from nesso.grammar import compiler_for

        self.engine, self.scheduler, self.model_name = engine, scheduler, model_name
        self.max_tokens_cap = max_tokens_cap
        self.compiler = compiler_for(engine.tokenizer, engine.model.config.vocab_size)
        self.fingerprint = fingerprint()

    def prepare(self, req: ChatCompletionRequest) -> Prepared:
        from nesso.grammar import ToolChoice, normalize_tools

        if req.logprobs:
            raise ApiError(400, "logprobs are not supported by nesso serve", param="logprobs", code="unsupported")
        if req.top_logprobs:
            raise ApiError(400, "top_logprobs are not supported by nesso serve", param="top_logprobs",
                           code="unsupported")
        if req.logit_bias:
            raise ApiError(400, "logit_bias is not supported by nesso serve", param="logit_bias", code="unsupported")
        if req.stream_options is not None and not req.stream:
            raise ApiError(400, "stream_options is only allowed when stream is true", param="stream_options",
                           code="invalid_value")
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        if len(stop) > MAX_STOP:
            raise ApiError(400, f"stop takes at most {MAX_STOP} strings (got {len(stop)})", param="stop",
                           code="invalid_value")
        messages = template_messages(req.messages)

        try:
            tools = normalize_tools([t.model_dump(exclude_none=True) for t in req.tools] if req.tools else None)
        except NessoError as e:
            raise ApiError(400, str(e), param="tools", code="invalid_tools") from None
        try:
            choice = ToolChoice.parse(req.tool_choice.model_dump() if hasattr(req.tool_choice, "model_dump")
                                      else req.tool_choice)
        except NessoError as e:
            raise ApiError(400, str(e), param="tool_choice", code="invalid_value") from None
        if choice.mode in ("required", "named") and not tools:
            raise ApiError(400, f"tool_choice {choice.mode!r} needs a non-empty 'tools' list", param="tool_choice",
                           code="invalid_value")
        if choice.mode == "named" and choice.name not in {t["function"]["name"] for t in tools}:
            raise ApiError(400, f"tool_choice names {choice.name!r}, which is not among the tools offered "
                                f"({', '.join(t['function']['name'] for t in tools)})", param="tool_choice",
                           code="invalid_value")
        parallel = req.parallel_tool_calls is not False
        fmt = req.response_format
        json_mode = fmt is not None and fmt.type != "text"
        schema = fmt.json_schema.schema_ if fmt is not None and fmt.type == "json_schema" else None
        if json_mode and schema is not None and not isinstance(schema, dict):
            raise ApiError(400, "response_format.json_schema.schema must be an object", param="response_format")
        calls_possible = bool(tools) and choice.mode != "none"

        lark, structured = None, False
        if calls_possible and not (json_mode and choice.mode == "auto"):
            from nesso.grammar import tool_call_lark

            lark = _grammar_errors("tools")(lambda: tool_call_lark(tools, choice, parallel))
            structured = choice.mode in ("required", "named")
        elif calls_possible:
            lark = _grammar_errors("response_format")(lambda: _tools_or_json_lark(tools, parallel, schema))
            structured = True
        elif json_mode:
            from nesso.grammar import json_lark

            lark = _grammar_errors("response_format")(lambda: json_lark(schema))
            structured = True
        elif tools:  # tool_choice none: no call can start, but the model still sees the tools
            from nesso.grammar import tool_call_lark

            lark = tool_call_lark(tools, choice, parallel)
        param = "response_format" if json_mode else "tools"
        if lark is not None:
            _grammar_errors(param)(lambda: self.compiler.compile(lark))

        text = self.engine.tokenizer.apply_chat_template(messages, tools or None, add_generation_prompt=True)
        prompt = self.engine.tokenizer.encode(text)
        context = self.engine.max_len
        if len(prompt) >= context:
            raise ApiError(400, f"the prompt has {len(prompt)} tokens but the model's context is {context}; "
                                "shorten the conversation or the tool list", param="messages",
                           code="context_length_exceeded")
        budget = context - len(prompt)
        asked = req.max_completion_tokens or req.max_tokens
        max_tokens = min(x for x in (asked, budget, self.max_tokens_cap) if x is not None)
        n = req.n or 1
        params = []
        for i in range(n):
            seed = None if req.seed is None else (req.seed + i) % 2**64
            try:
                params.append(SamplingParams(
                    max_tokens=max_tokens, temperature=req.temperature or 0.0,
                    top_p=req.top_p if req.top_p is not None else 1.0, top_k=req.top_k or 0,
                    repetition_penalty=req.repetition_penalty or 1.0, stop=stop, seed=seed))
            except NessoError as e:
                raise ApiError(400, str(e), code="invalid_value") from None
        constraints = [self.compiler.constraint(lark, structured) if lark else None for _ in range(n)]
        parser_tools = None
        if calls_possible:  # names only: the grammar already enforced each schema
            parser_tools = [{"type": "function", "function": {"name": t["function"]["name"]}} for t in tools]
        include_usage = bool(req.stream and req.stream_options and req.stream_options.include_usage)
        return Prepared(prompt, params, constraints, parser_tools, bool(req.stream), include_usage, self.model_name)

    # ---- running ------------------------------------------------------------------------------
    def submit(self, p: Prepared) -> tuple[list[Ticket], asyncio.Queue]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        tickets = []
        try:
            for i, (params, constraint) in enumerate(zip(p.params, p.constraints)):
                def sink(ev: Any, i: int = i) -> None:
                    loop.call_soon_threadsafe(queue.put_nowait, (i, ev))

                tickets.append(self.scheduler.submit(p.prompt, params, constraint, sink))
        except NessoError as e:
            for t in tickets:
                t.cancel()
            raise ApiError(400, str(e), param="messages") from None
        return tickets, queue

    async def complete(self, p: Prepared, tickets: list[Ticket], queue: asyncio.Queue,
                       disconnected: Callable[[], Any]) -> dict[str, Any] | None:
        results: list[Generation | None] = [None] * p.n
        checked = time.monotonic()
        try:
            while any(r is None for r in results):
                try:
                    i, ev = await asyncio.wait_for(queue.get(), timeout=1.0)
                except TimeoutError:
                    ev = None
                if time.monotonic() - checked >= 1.0:  # a client that gave up frees its slots
                    checked = time.monotonic()
                    if await disconnected():
                        return None
                if isinstance(ev, Finished):
                    results[i] = ev.generation
                elif isinstance(ev, Failed):
                    raise ApiError(400 if ev.client_error else 500, ev.message,
                                   code="generation_failed" if ev.client_error else "internal_error")
        finally:
            for t in tickets:
                t.cancel()
        choices = [self._choice(i, g, p) for i, g in enumerate(results)]
        completion = sum(g.completion_tokens for g in results)
        return {"id": p.id, "object": "chat.completion", "created": p.created, "model": p.model,
                "system_fingerprint": self.fingerprint, "choices": choices,
                "usage": _usage(len(p.prompt), completion)}

    def _choice(self, index: int, gen: Generation, p: Prepared) -> dict[str, Any]:
        content: str | None = gen.text
        calls: list[dict[str, Any]] = []
        if p.parser_tools is not None:
            parser = ToolCallParser(p.parser_tools)
            parser.feed(gen.text)
            parser.close()
            calls = [c.to_openai() for c in parser.result.calls]
            content = parser.result.content
            if calls and not content:
                content = None
        finish = "tool_calls" if calls and gen.finish_reason == "stop" else gen.finish_reason
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        return {"index": index, "message": message, "logprobs": None, "finish_reason": finish}

    async def stream(self, p: Prepared, tickets: list[Ticket], queue: asyncio.Queue) -> AsyncIterator[str]:
        def chunk(i: int, delta: dict[str, Any], finish: str | None = None) -> str:
            body: dict[str, Any] = {
                "id": p.id, "object": "chat.completion.chunk", "created": p.created, "model": p.model,
                "system_fingerprint": self.fingerprint,
                "choices": [{"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            if p.include_usage:
                body["usage"] = None
            return _sse(body)

        states = [_ChoiceStream(p.parser_tools) for _ in range(p.n)]
        completion = 0
        try:
            for i in range(p.n):
                yield chunk(i, {"role": "assistant", "content": ""})
            left = p.n
            while left:
                i, ev = await queue.get()
                if isinstance(ev, Delta):
                    for d in states[i].feed(ev.text):
                        yield chunk(i, d)
                elif isinstance(ev, Finished):
                    for d in states[i].close():
                        yield chunk(i, d)
                    gen = ev.generation
                    completion += gen.completion_tokens
                    finish = "tool_calls" if states[i].calls and gen.finish_reason == "stop" else gen.finish_reason
                    yield chunk(i, {}, finish)
                    left -= 1
                elif isinstance(ev, Failed):
                    status = 400 if ev.client_error else 500
                    yield _sse(error_body(status, ev.message, None, "generation_failed"))
                    break
            else:
                if p.include_usage:
                    yield _sse({"id": p.id, "object": "chat.completion.chunk", "created": p.created,
                                "model": p.model, "system_fingerprint": self.fingerprint, "choices": [],
                                "usage": _usage(len(p.prompt), completion)})
            yield "data: [DONE]\n\n"
        finally:  # also when the client disconnects: the slots are freed at the next step
            for t in tickets:
                t.cancel()


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


class _ChoiceStream:
    """One choice's text -> delta dicts: content, and tool calls (id, type and name once per index, then
    argument fragments whose concatenation is exactly the final arguments string). With tools, content is
    trimmed at both ends like the non-streamed message: whitespace is held back until more text follows."""

    def __init__(self, tools: list[dict[str, Any]] | None) -> None:
        self.parser = ToolCallParser(tools) if tools is not None else None
        self.started = False
        self.held = ""
        self.calls = 0
        self.sent: dict[int, str] = {}

    def feed(self, text: str) -> list[dict[str, Any]]:
        if self.parser is None:
            return [{"content": text}] if text else []
        return self._convert(self.parser.feed(text))

    def close(self) -> list[dict[str, Any]]:
        return [] if self.parser is None else self._convert(self.parser.close())

    def _convert(self, events: list[Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for e in events:
            if isinstance(e, ContentDelta):
                text = self.held + e.text
                if not self.started:
                    text = text.lstrip()
                body = text.rstrip()
                self.held = text[len(body):]
                if body:
                    self.started = True
                    out.append({"content": body})
            elif isinstance(e, CallStart):
                self.sent[e.index] = ""
                out.append({"tool_calls": [{"index": e.index, "id": e.id, "type": "function",
                                            "function": {"name": e.name, "arguments": ""}}]})
            elif isinstance(e, ArgumentsDelta):
                self.sent[e.index] = self.sent.get(e.index, "") + e.text
                out.append({"tool_calls": [{"index": e.index, "function": {"arguments": e.text}}]})
            elif isinstance(e, CallEnd) and e.call is not None:
                self.calls += 1
                full, sent = e.call.arguments_json, self.sent.get(e.index)
                if sent is None:  # the head was never recognised while streaming: send the call whole
                    out.append({"tool_calls": [{"index": e.index, "id": e.call.id, "type": "function",
                                                "function": {"name": e.call.name, "arguments": full}}]})
                elif full.startswith(sent) and len(full) > len(sent):
                    out.append({"tool_calls": [{"index": e.index, "function": {"arguments": full[len(sent):]}}]})
        return out
