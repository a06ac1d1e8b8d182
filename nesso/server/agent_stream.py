"""POST /v1/agent/chat: one user turn through nesso's agent loop with the shipped tools, run on the server and
streamed as SSE events (text, call, result, done). The OpenAI endpoint never executes tools; this one does,
for the built-in chat page."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from nesso.agent import Agent, AgentEvent, Tool
from nesso.commands.agent import system_prompt_for
from nesso.engine import Constraint, Engine, SamplingParams
from nesso.errors import NessoError
from nesso.server.errors import ApiError, error_body
from nesso.server.scheduler import Delta, Failed, Finished, Scheduler
from nesso.server.schemas import AgentChatRequest
from nesso.tokenizer import check_messages


class _Stopped(Exception):
    """The client went away: the agent thread stops at its next generation."""


class SchedulerEngine:
    """The part of Engine that Agent uses (tokenizer, model config, stream), generating through the shared
    scheduler so agent turns are batched with every other request."""

    def __init__(self, engine: Engine, scheduler: Scheduler, stopped: threading.Event) -> None:
        self.tokenizer, self.model, self.max_len = engine.tokenizer, engine.model, engine.max_len
        self.scheduler, self.stopped = scheduler, stopped

    def stream(self, prompt: list[int] | str, params: SamplingParams | None = None,
               constraint: Constraint | None = None, on_finish: Any = None) -> Iterator[str]:
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        events: queue.SimpleQueue = queue.SimpleQueue()
        ticket = self.scheduler.submit(ids, params or SamplingParams(), constraint, events.put)
        try:
            while True:
                try:
                    ev = events.get(timeout=0.25)
                except queue.Empty:
                    if self.stopped.is_set():
                        raise _Stopped() from None
                    continue
                if self.stopped.is_set():
                    raise _Stopped()
                if isinstance(ev, Delta):
                    yield ev.text
                elif isinstance(ev, Finished):
                    if on_finish:
                        on_finish(ev.generation)
                    return
                elif isinstance(ev, Failed):
                    raise NessoError(ev.message)
        finally:
            ticket.cancel()


def tool_choice_for(value: str | None, tools: list[Tool]) -> Any:
    if value in (None, "", "auto"):
        return "auto"
    if value in ("required", "none"):
        return value
    if value in {t.name for t in tools}:
        return {"type": "function", "function": {"name": value}}
    raise ApiError(400, f"tool_choice {value!r} is not auto, required, none or one of the chosen tools "
                        f"({', '.join(t.name for t in tools) or 'none'})", param="tool_choice")


def prepare_agent(req: AgentChatRequest, engine: Engine, scheduler: Scheduler, shipped: list[Tool],
                  max_tokens_cap: int | None) -> tuple[Agent, str, Any, threading.Event]:
    by_name = {t.name: t for t in shipped}
    names = list(by_name) if req.tools is None else req.tools
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ApiError(400, f"unknown tool(s) {', '.join(map(repr, unknown))}; the server offers "
                            f"{', '.join(by_name) or 'none'}", param="tools")
    tools = [by_name[n] for n in dict.fromkeys(names)]
    history = [dict(m) for m in req.messages]
    try:
        check_messages(history)  # before the system turn is added, so that indices are the client's
    except NessoError as e:
        raise ApiError(400, str(e), param="messages", code="invalid_value") from None
    last = history[-1]
    if last.get("role") != "user" or not isinstance(last.get("content"), str) or not last["content"].strip():
        raise ApiError(400, "the last message must be the user's turn: {'role': 'user', 'content': '...'}",
                       param=f"messages[{len(history) - 1}]")
    if history[0].get("role") != "system":
        first = next(m["content"] for m in history if m.get("role") == "user" and isinstance(m.get("content"), str))
        history.insert(0, {"role": "system", "content": system_prompt_for(first)})
    choice = tool_choice_for(req.tool_choice, tools)
    specs = [t.spec for t in tools]
    prompt = engine.tokenizer.apply_chat_template(history, specs or None, add_generation_prompt=True)
    n = len(engine.tokenizer.encode(prompt))
    if n >= engine.max_len:
        raise ApiError(400, f"the conversation has {n} tokens but the model's context is {engine.max_len}; "
                            "start a new chat", param="messages", code="context_length_exceeded")
    max_tokens = min(req.max_tokens, max_tokens_cap or req.max_tokens)
    stopped = threading.Event()
    agent = Agent(SchedulerEngine(engine, scheduler, stopped), tools, max_steps=req.max_steps,
                  params=SamplingParams(max_tokens=max_tokens, temperature=req.temperature))
    agent.messages = history[:-1]
    return agent, last["content"], choice, stopped


def _event(ev: AgentEvent) -> dict[str, Any]:
    if ev.kind == "text":
        return {"type": "text", "text": ev.text}
    if ev.kind == "call":
        return {"type": "call", "name": ev.step.name, "arguments": ev.step.arguments}
    if ev.kind == "result":
        return {"type": "result", "name": ev.step.name, "ok": ev.step.ok, "result": ev.step.result,
                "seconds": round(ev.step.seconds, 4)}
    r = ev.result
    return {"type": "done", "answer": r.answer, "stopped": r.stopped, "messages": r.messages}


async def agent_events(agent: Agent, user: str, choice: Any, stopped: threading.Event) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    out: asyncio.Queue = asyncio.Queue()
    end = object()

    def work() -> None:
        try:
            for ev in agent.events(user, choice):
                loop.call_soon_threadsafe(out.put_nowait, _event(ev))
        except _Stopped:
            pass
        except NessoError as e:
            loop.call_soon_threadsafe(out.put_nowait, {"type": "error", **error_body(400, str(e))})
        except Exception as e:  # noqa: BLE001 - reported to the page; the server stays up
            loop.call_soon_threadsafe(out.put_nowait,
                                      {"type": "error", **error_body(500, f"{type(e).__name__}: {e}")})
        finally:
            try:
                loop.call_soon_threadsafe(out.put_nowait, end)
            except RuntimeError:  # the event loop is gone (server shutting down)
                pass

    worker = threading.Thread(target=work, name="nesso-agent", daemon=True)
    worker.start()
    try:
        while True:
            item = await out.get()
            if item is end:
                break
            yield f"data: {json.dumps(item, ensure_ascii=False, default=str)}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        stopped.set()
