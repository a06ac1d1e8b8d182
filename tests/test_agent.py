"""The agent loop on the embedded SmolLM2-135M with constrained tool calls: multi-step, parallel, tool errors,
timeouts, the repeated-call guard and max_steps; and tool schemas built from type hints and docstrings."""

import enum
import json
import threading
import time
from typing import Literal

import pytest

from nesso.agent import Agent, ToolRegistry, load_tools, parse_docstring, tool
from nesso.commands.agent import system_prompt_for
from nesso.engine import Engine, SamplingParams
from nesso.errors import NessoError
from nesso.toolcalls import ToolCall


@tool
def get_weather(city: str) -> dict:
    """Current weather in a city.

    Args:
        city: City name.
    """
    return {"city": city, "temp_c": 21}


@tool
def get_population(city: str) -> dict:
    """Population of a city.

    Args:
        city: City name.
    """
    return {"city": city, "population": 2_100_000}


@pytest.fixture(scope="module")
def engine(smollm_bf16):
    return Engine(smollm_bf16.model, smollm_bf16.tokenizer)


def agent(engine, tools, **kw):
    return Agent(engine, tools, system_prompt="You are a helpful assistant.",
                 params=SamplingParams(max_tokens=80), **kw)


def named(name):
    return {"type": "function", "function": {"name": name}}


def test_multi_step_then_answer(engine):
    a = agent(engine, [get_weather, get_population])
    result = a.run("What's the weather in Paris?", tool_choice=[named("get_weather"), named("get_population"), "none"])
    assert result.stopped == "answer" and result.answer
    tools_run = [s.name for s in result.steps if s.kind == "tool"]
    assert tools_run[0] == "get_weather" and "get_population" in tools_run
    roles = [m["role"] for m in result.messages]
    assert roles[:3] == ["system", "user", "assistant"] and roles[-1] == "assistant" and "tool" in roles
    for m in result.messages:
        if m["role"] == "tool":
            assert json.loads(m["content"])["city"]
    trace = json.loads(result.trace_json())
    assert trace["stopped"] == "answer" and trace["steps"][0]["kind"] == "model"


def test_parallel_calls_run_concurrently_and_return_in_order(engine):
    barrier, lock, started = threading.Barrier(2, timeout=20), threading.Lock(), []

    def rendezvous() -> None:
        with lock:
            started.append(1)
            first_two = len(started) <= 2
        if first_two:
            barrier.wait()  # passes only when the first two calls run at the same time

    @tool
    def get_weather(city: str) -> dict:  # noqa: F811 - same name the model knows
        """Current weather in a city.

        Args:
            city: City name.
        """
        rendezvous()
        return {"city": city, "temp_c": 20}

    @tool
    def get_population(city: str) -> dict:  # noqa: F811
        """Population of a city.

        Args:
            city: City name.
        """
        rendezvous()
        return {"city": city, "population": 2_100_000}

    a = agent(engine, [get_weather, get_population], max_steps=1)
    result = a.run("What's the weather in Paris and in London?", tool_choice="required")
    first = result.steps[0]
    assert len(first.calls) >= 2
    tool_steps = [s for s in result.steps if s.kind == "tool"][: len(first.calls)]
    assert [s.name for s in tool_steps] == [c["function"]["name"] for c in first.calls]
    assert [s.arguments for s in tool_steps] == [json.loads(c["function"]["arguments"]) for c in first.calls]
    assert all(s.ok for s in tool_steps)
    tool_msgs = [m for m in result.messages if m["role"] == "tool"][: len(first.calls)]
    assert [m["tool_call_id"] for m in tool_msgs] == [c["id"] for c in first.calls]


def test_tool_exception_is_returned_to_the_model(engine):
    @tool
    def get_weather(city: str) -> dict:  # noqa: F811
        """Current weather in a city.

        Args:
            city: City name.
        """
        raise ConnectionError("weather service unreachable")

    result = agent(engine, [get_weather]).run("Weather in Rome?", tool_choice=[named("get_weather"), "none"])
    failed = [s for s in result.steps if s.kind == "tool"][0]
    assert not failed.ok and "ConnectionError: weather service unreachable" in failed.result
    assert result.stopped == "answer"


def test_tool_timeout_is_an_error_result(engine):
    @tool(timeout=0.2)
    def slow(city: str) -> str:
        """A slow lookup.

        Args:
            city: City name.
        """
        time.sleep(3)
        return "late"

    result = agent(engine, [slow]).run("Look up Rome.", tool_choice=[named("slow"), "none"])
    step = [s for s in result.steps if s.kind == "tool"][0]
    assert not step.ok and "timed out after 0.2 s" in step.result


def test_same_call_three_times_stops_the_loop(engine):
    @tool
    def ping() -> str:
        """Check that the service is up."""
        return "pong"

    result = agent(engine, [ping], parallel_tool_calls=False, max_steps=6).run(
        "Ping the service.", tool_choice=["required"] * 6)
    assert result.stopped == "loop" and "ping with the same arguments 3 times" in result.answer
    assert sum(1 for s in result.steps if s.kind == "tool") == 2


def test_a_system_prompt_function_opens_each_conversation_in_its_first_requests_language(engine):
    a = Agent(engine, [get_weather], system_prompt=system_prompt_for, params=SamplingParams(max_tokens=8))
    first = a.run("Che tempo fa a Parigi?", tool_choice="none")
    assert first.messages[0]["role"] == "system" and first.messages[0]["content"].startswith("Sei Nesso")
    a.run("And in Rome?", tool_choice="none")  # the same conversation keeps its system turn
    assert [m["role"] for m in a.messages].count("system") == 1 and a.messages[0]["content"].startswith("Sei Nesso")
    a.reset()
    assert a.messages == []
    second = a.run("What's the weather in Paris?", tool_choice="none")
    assert second.messages[0]["content"].startswith("You are Nesso")


def test_max_steps(engine):
    counter = iter(range(100))

    @tool
    def next_page(page: int) -> dict:
        """Fetch a page of results.

        Args:
            page: Page number.
        """
        return {"page": page, "next": next(counter)}

    result = agent(engine, [next_page], parallel_tool_calls=False, max_steps=2, repeat_limit=99).run(
        "Fetch all pages.", tool_choice=["required"] * 3)
    assert result.stopped == "max_steps" and "after 2 steps" in result.answer


def test_invalid_arguments_never_reach_the_tool():
    calls = []

    @tool
    def book(seats: int) -> str:
        """Book seats.

        Args:
            seats: How many.
        """
        calls.append(seats)
        return "ok"

    reg = ToolRegistry([book])
    text, ok = reg.execute(ToolCall("c", "book", {"seats": "two"}, '{"seats": "two"}'))
    assert not ok and "is not of type 'integer'" in text and calls == []
    text, ok = reg.execute(ToolCall("c", "nope", {}, "{}"))
    assert not ok and "unknown tool" in text


def test_results_that_are_not_unicode_reach_the_model_with_replacement_characters():
    @tool
    def list_dir() -> str:
        """A directory listing with a file name that was not UTF-8 (os.listdir gives it as a surrogate)."""
        return "notes.txt caf\udce9.txt"

    @tool
    def broken(path: str) -> str:
        """Fails with the undecodable name in its message."""
        raise FileNotFoundError(f"no such file: {path}\udcff")

    reg = ToolRegistry([list_dir, broken])
    text, ok = reg.execute(ToolCall("c", "list_dir", {}, "{}"))
    assert ok and text == "notes.txt caf\ufffd.txt"
    text, ok = reg.execute(ToolCall("c", "broken", {"path": "x"}, '{"path": "x"}'))
    assert not ok and "no such file: x\ufffd" in text
    text.encode("utf-8")  # what the tokenizer will be given


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


def test_schema_from_type_hints_and_italian_docstring():
    @tool
    def prenota(citta: str, notti: int, colazione: bool = False, stanza: Literal["singola", "doppia"] = "doppia",
                ospiti: list[str] | None = None, colore: Color = Color.RED, prezzo_max: float | None = None) -> str:
        """Prenota un albergo.

        Argomenti:
            citta: Città di destinazione.
            notti: Numero di notti,
                almeno una.
            colazione: Se includere la colazione.
        """
        return "ok"

    params = prenota.parameters
    assert prenota.description == "Prenota un albergo."
    assert params["required"] == ["citta", "notti"]
    p = params["properties"]
    assert p["citta"] == {"type": "string", "description": "Città di destinazione."}
    assert p["notti"] == {"type": "integer", "description": "Numero di notti, almeno una."}
    assert p["colazione"]["type"] == "boolean" and p["colazione"]["default"] is False
    assert p["stanza"] == {"type": "string", "enum": ["singola", "doppia"], "default": "doppia"}
    assert p["ospiti"] == {"type": "array", "items": {"type": "string"}}
    assert p["colore"] == {"type": "string", "enum": ["red", "blue"]}
    assert p["prezzo_max"] == {"type": "number"}
    assert params["additionalProperties"] is False


def test_docstring_parser_google_style():
    desc, args = parse_docstring("Do X.\n\nMore words.\n\nArgs:\n    a (int): first\n    b: second\n\nReturns:\n    y")
    assert desc == "Do X. More words." and args == {"a": "first", "b": "second"}


def test_unsupported_hints_and_bad_tool_refs():
    def takes_bytes(x: bytes) -> None:
        """Needs bytes."""

    with pytest.raises(NessoError, match="unsupported argument type bytes"):
        tool(takes_bytes)
    with pytest.raises(NessoError, match="module:attribute"):
        load_tools(["nesso.tools"])
    with pytest.raises(NessoError, match="cannot import"):
        load_tools(["no_such_module_xyz:thing"])
    with pytest.raises(NessoError, match="has no attribute"):
        load_tools(["nesso.tools:nothing_here"])
    assert [t.name for t in load_tools(["nesso.tools:calculator"])] == ["calculator"]
