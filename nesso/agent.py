"""The agent: tools from typed Python functions, and the loop model -> calls -> execute -> results -> model.

No model output is ever evaluated as code: arguments are JSON, validated against the tool's schema, and passed
to the Python function as keyword arguments.
"""

from __future__ import annotations

import concurrent.futures as cf
import enum
import inspect
import json
import re
import threading
import time
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from nesso.engine import Engine, SamplingParams
from nesso.errors import NessoError
from nesso.tokenizer import valid_unicode
from nesso.toolcalls import ToolCall, ToolCallParser, validate_arguments

# Section headers that start the per-argument docs in a docstring (English and Italian).
_ARG_SECTIONS = ("args:", "arguments:", "parameters:", "params:", "argomenti:", "parametri:")
_OTHER_SECTIONS = ("returns:", "return:", "raises:", "examples:", "example:", "restituisce:", "ritorna:",
                   "esempi:", "esempio:", "note:", "notes:", "yields:")


def _json_type(hint: Any) -> tuple[dict[str, Any], bool]:
    """JSON schema for a type hint, and whether None is allowed."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(hint))
        if len(args) == 1:
            return _json_type(args[0])[0], nullable
        return {"anyOf": [_json_type(a)[0] for a in args]}, nullable
    if origin is typing.Literal:
        values = list(typing.get_args(hint))
        return {"type": _scalar_name(type(values[0])), "enum": values}, False
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple, set):
        item = typing.get_args(hint)
        schema: dict[str, Any] = {"type": "array"}
        if item and item[0] is not Ellipsis:
            schema["items"] = _json_type(item[0])[0]
        return schema, False
    if origin is dict or hint is dict:
        return {"type": "object"}, False
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"type": _scalar_name(type(next(iter(hint)).value)), "enum": [m.value for m in hint]}, False
    if hint is inspect.Parameter.empty or hint is Any:
        return {}, False
    if isinstance(hint, type):
        return {"type": _scalar_name(hint)}, False
    raise NessoError(f"cannot turn the type hint {hint!r} into a JSON schema")


def _scalar_name(t: type) -> str:
    for py, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string")):
        if issubclass(t, py):
            return name
    raise NessoError(f"unsupported argument type {t.__name__}; use str, int, float, bool, lists, dicts, "
                     "Literal or Enum")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Description (text before the first section) and per-argument docs from an 'Args:'-style section."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    desc, args, current, section = [], {}, None, "desc"
    for line in lines:
        low = line.strip().lower()
        if low in _ARG_SECTIONS:
            section, current = "args", None
            continue
        if low in _OTHER_SECTIONS:
            section = "other"
            continue
        if section == "desc":
            desc.append(line)
        elif section == "args":
            m = re.match(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$", line)
            if m and not line.startswith("        "):
                current = m.group(1).lstrip("*")
                args[current] = m.group(2).strip()
            elif current and line.strip():
                args[current] = (args[current] + " " + line.strip()).strip()
    description = " ".join(" ".join(desc).split())
    return description, args


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]
    timeout: float = 10.0

    @property
    def spec(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}

    def __call__(self, **kwargs: Any) -> Any:
        return self.fn(**kwargs)


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None, timeout: float = 10.0,
         description: str | None = None) -> Any:
    """Make a Tool from a typed function; the JSON schema comes from type hints and the docstring.

    >>> @tool
    ... def get_time(timezone: str) -> str:
    ...     '''Current time in a time zone.
    ...
    ...     Args:
    ...         timezone: IANA name such as Europe/Rome.
    ...     '''
    """

    def build(f: Callable[..., Any]) -> Tool:
        desc, arg_docs = parse_docstring(f.__doc__)
        hints = typing.get_type_hints(f)
        props: dict[str, Any] = {}
        required = []
        for pname, param in inspect.signature(f).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise NessoError(f"tool {f.__name__}: *args/**kwargs cannot be described to the model")
            schema, nullable = _json_type(hints.get(pname, param.annotation))
            if pname in arg_docs:
                schema["description"] = arg_docs[pname]
            if param.default is not inspect.Parameter.empty:
                if param.default is not None and not isinstance(param.default, enum.Enum):
                    schema["default"] = param.default
            elif not nullable:
                required.append(pname)
            props[pname] = schema
        parameters = {"type": "object", "properties": props, "required": required, "additionalProperties": False}
        return Tool(name or f.__name__, description or desc or f.__name__, parameters, f, timeout)

    return build(fn) if fn is not None else build


class ToolRegistry:
    def __init__(self, tools: list[Tool] | None = None) -> None:
        self.tools: dict[str, Tool] = {}
        for t in tools or []:
            self.add(t)

    def add(self, t: Tool) -> None:
        if t.name in self.tools:
            raise NessoError(f"two tools are named {t.name!r}")
        self.tools[t.name] = t

    @property
    def specs(self) -> list[dict[str, Any]]:
        return [t.spec for t in self.tools.values()]

    def __len__(self) -> int:
        return len(self.tools)

    def execute(self, call: ToolCall) -> tuple[str, bool]:
        """Run one call; returns (result text for the model, ok). Never raises. Text that is not valid Unicode (a
        file name's undecodable bytes) reaches the model with U+FFFD in place of each bad character."""
        text, ok = self._execute(call)
        return valid_unicode(text), ok

    def _execute(self, call: ToolCall) -> tuple[str, bool]:
        t = self.tools.get(call.name)
        if t is None:
            return json.dumps({"error": f"unknown tool {call.name!r}"}), False
        problem = validate_arguments(t.parameters, call.arguments, t.name)
        if problem:
            return json.dumps({"error": problem}, ensure_ascii=False), False
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = t.fn(**call.arguments)
            except Exception as e:  # noqa: BLE001 - a failing tool is reported to the model, not raised
                box["error"] = e

        # A daemon thread: a tool that never returns cannot keep the process alive or block the loop.
        worker = threading.Thread(target=target, name=f"tool-{t.name}", daemon=True)
        worker.start()
        worker.join(t.timeout)
        if worker.is_alive():
            return json.dumps({"error": f"{t.name} timed out after {t.timeout:g} s"}), False
        if "error" in box:
            e = box["error"]
            return json.dumps({"error": f"{type(e).__name__}: {e}"}, ensure_ascii=False), False
        value = box.get("value")
        return (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)), True


# ---- the loop -----------------------------------------------------------------------------------------
@dataclass
class Step:
    kind: str  # "model" | "tool" | "stop"
    content: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    name: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    result: str = ""
    ok: bool = True
    seconds: float = 0.0


@dataclass
class AgentResult:
    answer: str
    steps: list[Step]
    messages: list[dict[str, Any]]
    stopped: str  # "answer" | "max_steps" | "loop" | "error"

    def trace(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.steps]

    def trace_json(self) -> str:
        return json.dumps({"answer": self.answer, "stopped": self.stopped, "steps": self.trace()},
                          ensure_ascii=False, indent=2)


@dataclass
class AgentEvent:
    """Streamed by Agent.events(): 'text' deltas, then 'call'/'result' per tool call, and a final 'done'."""

    kind: str
    text: str = ""
    step: Step | None = None
    result: AgentResult | None = None


class Agent:
    def __init__(self, engine: Engine, tools: ToolRegistry | list[Tool] | None = None, *,
                 system_prompt: str | Callable[[str], str] | None = None, max_steps: int = 6, constrained: bool = True,
                 params: SamplingParams | None = None, parallel_tool_calls: bool = True,
                 repeat_limit: int = 3) -> None:
        self.engine = engine
        self.tools = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
        self.system_prompt = system_prompt
        self.max_steps, self.constrained, self.repeat_limit = max_steps, constrained, repeat_limit
        self.params = params or SamplingParams(max_tokens=384)
        self.parallel = parallel_tool_calls
        self.messages: list[dict[str, Any]] = []
        self.reset()

    def reset(self) -> None:
        """Start a new conversation. A ``system_prompt`` given as a function makes the system turn from the
        conversation's first request (``nesso.commands.agent.system_prompt_for``: in that request's language)."""
        fixed = isinstance(self.system_prompt, str) and self.system_prompt
        self.messages = [{"role": "system", "content": self.system_prompt}] if fixed else []

    def run(self, user: str, tool_choice: Any = "auto") -> AgentResult:
        result = None
        for ev in self.events(user, tool_choice):
            if ev.kind == "done":
                result = ev.result
        assert result is not None
        return result

    def events(self, user: str, tool_choice: Any = "auto") -> Iterator[AgentEvent]:
        """Run one user turn, streaming text and tool activity. ``tool_choice`` applies to the first step and
        later steps are 'auto', so the model can answer from the tool results; a list gives one choice per step
        (e.g. ``[{"function": {"name": "lookup"}}, "none"]``: look up first, then answer), then 'auto'."""
        from nesso.grammar import compiler_for

        if not self.messages and callable(self.system_prompt):
            self.messages.append({"role": "system", "content": self.system_prompt(user)})
        self.messages.append({"role": "user", "content": user})
        steps: list[Step] = []
        seen: dict[str, int] = {}
        specs = self.tools.specs
        tok = self.engine.tokenizer
        for step_no in range(self.max_steps):
            if isinstance(tool_choice, list):
                choice = tool_choice[step_no] if step_no < len(tool_choice) else "auto"
            else:
                choice = tool_choice if step_no == 0 else "auto"
            constraint = None
            if self.constrained and specs:
                constraint = compiler_for(tok, self.engine.model.config.vocab_size).for_tools(
                    specs, choice, self.parallel)
            prompt = tok.apply_chat_template(self.messages, specs or None, add_generation_prompt=True)
            parser = ToolCallParser(specs)
            started = time.perf_counter()
            for delta in self.engine.stream(prompt, self.params, constraint):
                for e in parser.feed(delta):
                    if type(e).__name__ == "ContentDelta":
                        yield AgentEvent("text", text=e.text)
            for e in parser.close():
                if type(e).__name__ == "ContentDelta":
                    yield AgentEvent("text", text=e.text)
            parsed = parser.result
            step = Step("model", content=parsed.content, calls=[c.to_openai() for c in parsed.calls],
                        errors=[f"{e.message}" for e in parsed.errors], seconds=time.perf_counter() - started)
            steps.append(step)
            assistant: dict[str, Any] = {"role": "assistant", "content": parsed.content or None}
            if parsed.calls:
                assistant["tool_calls"] = [c.to_openai() for c in parsed.calls]
            self.messages.append(assistant)
            if not parsed.calls and not parsed.errors:
                yield AgentEvent("done", result=AgentResult(parsed.content, steps, list(self.messages), "answer"))
                return
            for call in parsed.calls:
                key = call.name + json.dumps(call.arguments, sort_keys=True)
                seen[key] = seen.get(key, 0) + 1
                if seen[key] >= self.repeat_limit:
                    msg = (f"stopped: the model called {call.name} with the same arguments {seen[key]} times "
                           "without reaching an answer")
                    steps.append(Step("stop", content=msg))
                    yield AgentEvent("done", result=AgentResult(msg, steps, list(self.messages), "loop"))
                    return
            for call in parsed.calls:
                yield AgentEvent("call", step=Step("tool", name=call.name, arguments=call.arguments))
            results = self._execute(parsed.calls)
            for call, (text, ok, secs) in zip(parsed.calls, results):
                s = Step("tool", name=call.name, arguments=call.arguments, result=text, ok=ok, seconds=secs)
                steps.append(s)
                yield AgentEvent("result", step=s)
                self.messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": text})
            for err in parsed.errors:  # an unparseable call is answered like a failed tool, so the model can retry
                text = json.dumps({"error": err.message}, ensure_ascii=False)
                s = Step("tool", name=err.name or "?", result=text, ok=False)
                steps.append(s)
                yield AgentEvent("result", step=s)
                self.messages.append({"role": "tool", "content": text})
        msg = f"stopped: no final answer after {self.max_steps} steps"
        steps.append(Step("stop", content=msg))
        yield AgentEvent("done", result=AgentResult(msg, steps, list(self.messages), "max_steps"))

    def _execute(self, calls: list[ToolCall]) -> list[tuple[str, bool, float]]:
        """Parallel calls run concurrently; results come back in call order."""

        def timed(call: ToolCall) -> tuple[str, bool, float]:
            t0 = time.perf_counter()
            text, ok = self.tools.execute(call)
            return text, ok, time.perf_counter() - t0

        if len(calls) <= 1:
            return [timed(c) for c in calls]
        with cf.ThreadPoolExecutor(max_workers=min(8, len(calls))) as pool:
            return list(pool.map(timed, calls))


def load_tools(refs: list[str]) -> list[Tool]:
    """``module:attr`` references to a Tool, a list of Tools, or a plain typed function."""
    import importlib

    out: list[Tool] = []
    for ref in refs:
        module_name, _, attr = ref.partition(":")
        if not module_name or not attr:
            raise NessoError(f"--tools takes module:attribute (got {ref!r}), e.g. nesso.tools:DEFAULT_TOOLS")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise NessoError(f"cannot import {module_name!r} for --tools: {e}") from None
        if not hasattr(module, attr):
            raise NessoError(f"{module_name} has no attribute {attr!r}")
        obj = getattr(module, attr)
        items = obj if isinstance(obj, (list, tuple)) else [obj]
        for item in items:
            if isinstance(item, Tool):
                out.append(item)
            elif callable(item):
                out.append(tool(item))
            else:
                raise NessoError(f"{ref}: {item!r} is neither a tool nor a function")
    return out
