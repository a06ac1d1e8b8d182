"""Parse ``<tool_call>`` blocks out of model text, whole or streamed.

One incremental parser serves both: ``parse_tool_calls(text)`` feeds the whole text at once. It yields content
deltas (text outside calls), the start of each call (index, id, name), argument fragments whose concatenation is
the call's arguments JSON, and the end of each call with the validated result or a structured error. Nothing here
raises on model output.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"  # the one tool-call format (README)

_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*(?=\S)')


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]
    arguments_json: str  # exactly as the model wrote it (what OpenAI clients receive)

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments_json}}


@dataclass
class ToolCallError:
    index: int
    raw: str
    message: str
    name: str | None = None


@dataclass
class ParsedOutput:
    content: str
    calls: list[ToolCall] = field(default_factory=list)
    errors: list[ToolCallError] = field(default_factory=list)


# ---- stream events ------------------------------------------------------------------------------
@dataclass
class ContentDelta:
    text: str


@dataclass
class CallStart:
    index: int
    id: str
    name: str


@dataclass
class ArgumentsDelta:
    index: int
    text: str


@dataclass
class CallEnd:
    index: int
    call: ToolCall | None
    error: ToolCallError | None


Event = ContentDelta | CallStart | ArgumentsDelta | CallEnd


class ToolCallParser:
    """Feed text deltas, get events. ``tools`` (OpenAI list) enables name and argument-schema checks."""

    def __init__(self, tools: list[dict[str, Any]] | None = None) -> None:
        self.schemas: dict[str, dict[str, Any]] | None = None
        if tools:
            self.schemas = {}
            for t in tools:
                fn = t.get("function", t) if isinstance(t, dict) else {}
                if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                    self.schemas[fn["name"]] = fn.get("parameters") or {"type": "object"}
        self.buf = ""
        self.inside = False
        self.index = 0
        self.started: CallStart | None = None
        self.args_emitted = 0
        self.result = ParsedOutput("")

    # ---- feeding -------------------------------------------------------------------------------
    def feed(self, text: str) -> list[Event]:
        self.buf += text
        events: list[Event] = []
        while True:
            if not self.inside:
                if self.index and not self.buf.strip():
                    return events  # whitespace after a call: separator or trailing text, not known yet
                if self.index and self.buf.lstrip().startswith(TOOL_OPEN):
                    self.buf = self.buf.lstrip()
                at = self.buf.find(TOOL_OPEN)
                if at == -1:
                    keep = _partial_suffix(self.buf, TOOL_OPEN)
                    self._content(self.buf[: len(self.buf) - keep], events)
                    self.buf = self.buf[len(self.buf) - keep:]
                    return events
                self._content(self.buf[:at], events)
                self.buf = self.buf[at + len(TOOL_OPEN):]
                self.inside, self.started, self.args_emitted = True, None, 0
            else:
                end = self.buf.find(TOOL_CLOSE)
                body = self.buf if end == -1 else self.buf[:end]
                self._stream_arguments(body, events, final=end != -1)
                if end == -1:
                    return events
                events.append(self._finish(body))
                self.buf = self.buf[end + len(TOOL_CLOSE):]
                self.inside = False

    def close(self) -> list[Event]:
        """End of generation: flush held-back text; an unclosed call becomes an error."""
        events: list[Event] = []
        if self.inside:
            body = self.buf
            self.buf, self.inside = "", False
            end = self._finish(body, unclosed=True)
            events.append(end)
        else:
            self._content(self.buf if self.buf.strip() else "", events)
            self.buf = ""
        self.result.content = self.result.content.strip()
        return events

    # ---- internals -----------------------------------------------------------------------------
    def _content(self, text: str, events: list[Event]) -> None:
        if text:
            events.append(ContentDelta(text))
            self.result.content += text

    def _stream_arguments(self, body: str, events: list[Event], final: bool) -> None:
        if self.started is None:
            m = _HEAD.match(body)
            if not m:
                return
            try:
                name = json.loads(f'"{m.group(1)}"')
            except json.JSONDecodeError:
                return
            self.started = CallStart(self.index, new_call_id(), name)
            self.args_start = m.end()
            events.append(self.started)
        tail = body[self.args_start:]
        if final:
            stop = tail.rstrip().rfind("}")
            visible = tail[:stop].rstrip() if stop != -1 else tail.rstrip()
        else:  # hold back from the last '}' on: it may be the outer object's end
            stop = tail.rfind("}")
            visible = tail if stop == -1 else tail[:stop]
            visible = visible.rstrip() if stop != -1 else visible
        if len(visible) > self.args_emitted:
            events.append(ArgumentsDelta(self.index, visible[self.args_emitted:]))
            self.args_emitted = len(visible)

    def _finish(self, body: str, unclosed: bool = False) -> CallEnd:
        index = self.index
        self.index += 1
        call_id = self.started.id if self.started else new_call_id()
        name, error = None, None
        try:
            obj = json.loads(body)
        except json.JSONDecodeError as e:
            obj, error = None, f"the call is not valid JSON ({e.msg} at char {e.pos})"
        if obj is not None:
            name = obj.get("name") if isinstance(obj, dict) else None
            args = obj.get("arguments", {}) if isinstance(obj, dict) else None
            if isinstance(args, str):  # some models double-encode
                try:
                    args = json.loads(args)
                except json.JSONDecodeError:
                    args = None
            if not isinstance(obj, dict) or not isinstance(name, str) or not name:
                error = 'the call must be an object with a "name" string'
            elif not isinstance(args, dict):
                error = f'"arguments" of {name} must be a JSON object'
            else:
                error = self._validate(name, args)
        if unclosed and error is None:
            error = f"the {TOOL_OPEN} block was not closed with {TOOL_CLOSE}"
        if error:
            err = ToolCallError(index, body.strip(), error, name)
            self.result.errors.append(err)
            return CallEnd(index, None, err)
        args_json = body[self.args_start:].rstrip()[:-1].rstrip() if self.started else json.dumps(args)
        try:
            if json.loads(args_json) != args:
                args_json = json.dumps(args, ensure_ascii=False)
        except json.JSONDecodeError:
            args_json = json.dumps(args, ensure_ascii=False)
        call = ToolCall(call_id, name, args, args_json)
        self.result.calls.append(call)
        return CallEnd(index, call, None)

    def _validate(self, name: str, args: dict[str, Any]) -> str | None:
        if self.schemas is None:
            return None
        if name not in self.schemas:
            return f"unknown tool {name!r}; available: {', '.join(sorted(self.schemas)) or 'none'}"
        return validate_arguments(self.schemas[name], args, name)


def validate_arguments(schema: dict[str, Any], args: dict[str, Any], name: str) -> str | None:
    """None when ``args`` satisfies ``schema``; else a message naming the failing argument."""
    from jsonschema import Draft202012Validator

    errors = sorted(Draft202012Validator(schema).iter_errors(args), key=lambda e: list(e.path))
    if not errors:
        return None
    e = errors[0]
    where = "/".join(str(p) for p in e.path) or "arguments"
    return f"invalid arguments for {name}: {where}: {e.message}"


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag`` (held back while streaming)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


def parse_tool_calls(text: str, tools: list[dict[str, Any]] | None = None) -> ParsedOutput:
    parser = ToolCallParser(tools)
    parser.feed(text)
    parser.close()
    return parser.result
