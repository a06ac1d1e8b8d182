"""`nesso serve` with a real chat model (the embedded SmolLM2-135M-Instruct, bf16) through the official openai
client: a plain answer streamed and not, a full tool loop the client drives, and a JSON-schema answer."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

from nesso.engine import Engine
from nesso.server.app import create_app, running

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "enum": ["Rome", "Paris", "Tokyo"]},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}}}


@pytest.fixture(scope="module")
def base_url(smollm_bf16):
    engine = Engine(smollm_bf16.model, smollm_bf16.tokenizer)
    with running(create_app(engine, "default", slots=4)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=300)


def test_plain_answer_streamed_and_not(client):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    out = client.chat.completions.create(model="default", messages=messages, max_tokens=24)
    choice = out.choices[0]
    assert "Paris" in choice.message.content and choice.finish_reason == "stop"
    assert choice.message.tool_calls is None and out.usage.completion_tokens <= 24
    pieces, finish, usage = [], None, None
    for chunk in client.chat.completions.create(model="default", messages=messages, max_tokens=24, stream=True,
                                                stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            pieces.append(c.delta.content or "")
            finish = c.finish_reason or finish
    assert "".join(pieces) == choice.message.content and finish == "stop"
    assert usage.completion_tokens == out.usage.completion_tokens and len([p for p in pieces if p]) > 1


def test_a_full_tool_loop(client, base_url):
    messages = [{"role": "user", "content": "What's the weather like in Paris today, in celsius?"}]
    first = client.chat.completions.create(model="default", messages=messages, tools=[WEATHER],
                                           tool_choice="required", parallel_tool_calls=False, max_tokens=48)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}

    result = {"city": "Paris", "temperature": 21, "unit": "celsius", "sky": "sunny"}
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)}]
    reused = httpx.get(base_url + "/health").json()["reused_prompt_tokens"]
    second = client.chat.completions.create(model="default", messages=messages, tools=[WEATHER],
                                            tool_choice="none", max_tokens=40)
    answer = second.choices[0]
    assert answer.message.tool_calls is None and answer.message.content.strip()
    assert answer.finish_reason in ("stop", "length")
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + 20
    # the second turn extends the first: the slot that served it reuses its cached prompt
    assert httpx.get(base_url + "/health").json()["reused_prompt_tokens"] - reused >= first.usage.prompt_tokens - 1


def test_json_schema_answer(client):
    schema = {"type": "object", "properties": {"country": {"type": "string"}, "capital": {"type": "string"}},
              "required": ["country", "capital"], "additionalProperties": False}
    out = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "Give the capital of Italy as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": schema, "strict": True}},
        max_tokens=40)
    assert out.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(out.choices[0].message.content), schema)
