"""`nesso serve` on the wire, through the official openai client and raw HTTP, against a real uvicorn on
loopback. A tiny random model on the Llama-3.2 tokenizer is enough: what is asserted is the protocol (shapes,
tool-call streaming, errors), and constrained outputs are valid whatever the weights."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

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
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"], "additionalProperties": False}}}
PING = {"type": "function", "function": {"name": "ping", "description": "Check the service is up."}}
TOOLS = [WEATHER, PING]
USER = [{"role": "user", "content": "What's the weather in Paris?"}]
CITY = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Rome", "Paris"]},
                                          "population": {"type": "integer", "minimum": 0, "maximum": 10**8}},
        "required": ["city", "population"], "additionalProperties": False}


def tiny_engine(tokenizer, seed: int = 1) -> Engine:
    from nesso.config import ModelConfig
    from nesso.model import build_model

    cfg = ModelConfig(hidden_size=64, intermediate_size=160, num_layers=2, num_heads=4, num_kv_heads=2,
                      head_dim=16, max_position_embeddings=2048)
    return Engine(build_model(cfg, seed=seed), tokenizer)


@pytest.fixture(scope="module")
def base_url(llama_tokenizer):
    with running(create_app(tiny_engine(llama_tokenizer), "tiny", slots=4)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=120)


def sse(client: openai.OpenAI, **kwargs) -> list[dict]:
    """The raw SSE events of a streamed completion; asserts the framing and the final [DONE]."""
    with client.chat.completions.with_streaming_response.create(model="tiny", stream=True, **kwargs) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


def assert_completion(body: dict, n: int = 1) -> None:
    assert set(body) == {"id", "object", "created", "model", "system_fingerprint", "choices", "usage"}
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-") and body["model"] == "tiny"
    assert [c["index"] for c in body["choices"]] == list(range(n))
    for c in body["choices"]:
        assert set(c) == {"index", "message", "logprobs", "finish_reason"} and c["logprobs"] is None
        msg = c["message"]
        assert msg["role"] == "assistant" and msg["refusal"] is None
        assert set(msg) in ({"role", "content", "refusal"}, {"role", "content", "refusal", "tool_calls"})
        if "tool_calls" in msg:
            assert msg["tool_calls"] and c["finish_reason"] in ("tool_calls", "length")
            for call in msg["tool_calls"]:
                assert_call(call)
        else:
            assert isinstance(msg["content"], str) and c["finish_reason"] in ("stop", "length")
    u = body["usage"]
    assert set(u) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] and u["prompt_tokens"] > 0


def assert_call(call: dict) -> dict:
    assert set(call) == {"id", "type", "function"} and call["type"] == "function"
    assert call["id"].startswith("call_") and set(call["function"]) == {"name", "arguments"}
    tool = {t["function"]["name"]: t for t in TOOLS}[call["function"]["name"]]
    args = json.loads(call["function"]["arguments"])
    jsonschema.validate(args, tool["function"].get("parameters", {"type": "object", "properties": {},
                                                                   "additionalProperties": False}))
    return args


def raw(client: openai.OpenAI, **kwargs) -> dict:
    body = client.chat.completions.with_raw_response.create(model="tiny", **kwargs).http_response.json()
    assert_completion(body, kwargs.get("n") or 1)
    return body


def rebuild(chunks: list[dict], n: int = 1) -> list[dict]:
    """Fold chunks into messages the way a client must: id/type/name once per index, arguments appended."""
    out = [{"content": "", "calls": {}, "finish": None, "roles": 0} for _ in range(n)]
    for ch in chunks:
        assert set(ch) >= {"id", "object", "created", "model", "choices"} and ch["object"] == "chat.completion.chunk"
        for c in ch["choices"]:
            o, d = out[c["index"]], c["delta"]
            assert set(c) == {"index", "delta", "logprobs", "finish_reason"} and o["finish"] is None
            o["roles"] += "role" in d
            o["content"] += d.get("content") or ""
            for tc in d.get("tool_calls", []):
                if "id" in tc:
                    assert tc["index"] not in o["calls"] and tc["type"] == "function"
                    assert set(tc) == {"index", "id", "type", "function"} and tc["function"]["arguments"] == ""
                    o["calls"][tc["index"]] = {"id": tc["id"], "type": "function",
                                               "function": {"name": tc["function"]["name"], "arguments": ""}}
                else:
                    assert set(tc) == {"index", "function"} and set(tc["function"]) == {"arguments"}
                    o["calls"][tc["index"]]["function"]["arguments"] += tc["function"]["arguments"]
            o["finish"] = c["finish_reason"]
    for o in out:
        assert o["roles"] == 1 and o["finish"] in ("stop", "length", "tool_calls")
    return out


# ---- models, health ----------------------------------------------------------------------------------------
def test_models_and_health(client, base_url):
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny"] and models.data[0].object == "model"
    assert client.models.retrieve("tiny").id == "tiny"
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("gpt-4o")
    assert e.value.body["code"] == "model_not_found"
    health = httpx.get(base_url + "/health").json()
    assert health["status"] == "ok" and health["slots"] == 4 and health["model"] == "tiny"


# ---- plain chat ---------------------------------------------------------------------------------------------
def test_plain_chat_and_its_stream_carry_the_same_text(client):
    body = raw(client, messages=USER, max_tokens=12)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 12
    chunks = sse(client, messages=USER, max_tokens=12, stream_options={"include_usage": True})
    *deltas, usage = chunks
    assert usage["choices"] == [] and usage["usage"] == body["usage"]
    assert all(c["usage"] is None for c in deltas)
    assert deltas[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert deltas[-1]["choices"][0]["delta"] == {} and deltas[-1]["choices"][0]["finish_reason"] == "length"
    (folded,) = rebuild(deltas)
    assert folded["content"] == choice["message"]["content"] and not folded["calls"]


def test_stop_strings_seed_and_n(client):
    text = raw(client, messages=USER, max_tokens=12)["choices"][0]["message"]["content"]
    stop = text[4:7]
    cut = raw(client, messages=USER, max_tokens=12, stop=[stop])["choices"][0]
    assert cut["message"]["content"] == text[: text.find(stop)] and cut["finish_reason"] == "stop"
    a = raw(client, messages=USER, max_tokens=6, temperature=1.0, seed=7, n=3)
    b = raw(client, messages=USER, max_tokens=6, temperature=1.0, seed=7, n=3)
    texts = [c["message"]["content"] for c in a["choices"]]
    assert texts == [c["message"]["content"] for c in b["choices"]] and len(set(texts)) > 1
    assert a["usage"]["completion_tokens"] == 18


# ---- tools -----------------------------------------------------------------------------------------------
def test_named_tool_choice_is_enforced_streamed_or_not(client):
    for tool, want in ((WEATHER, {"city", "unit"}), (PING, set())):
        choice = {"type": "function", "function": {"name": tool["function"]["name"]}}
        body = raw(client, messages=USER, tools=TOOLS, tool_choice=choice, parallel_tool_calls=False,
                   max_tokens=64)
        c = body["choices"][0]
        assert c["finish_reason"] == "tool_calls" and c["message"]["content"] is None
        (call,) = c["message"]["tool_calls"]
        assert call["function"]["name"] == tool["function"]["name"] and set(assert_call(call)) == want
        (folded,) = rebuild(sse(client, messages=USER, tools=TOOLS, tool_choice=choice, parallel_tool_calls=False,
                                max_tokens=64))
        assert folded["finish"] == "tool_calls" and folded["content"] == ""
        streamed = folded["calls"][0]["function"]
        assert streamed == call["function"]  # same name, and the fragments concatenate to the same arguments
    assert streamed["arguments"] == "{}"  # a parameterless tool still gets its (empty) arguments object


def test_required_auto_and_none(client):
    kw = {"messages": USER, "tools": TOOLS, "max_tokens": 48, "temperature": 1.0, "seed": 3, "n": 4}
    for c in raw(client, tool_choice="required", **kw)["choices"]:
        assert c["finish_reason"] == "length" or c["message"]["tool_calls"]
    for c in raw(client, tool_choice="none", **kw)["choices"]:
        assert "tool_calls" not in c["message"] and "<tool_call>" not in c["message"]["content"]
    auto = raw(client, tool_choice="auto", **kw)["choices"]  # either text or calls; the shape is checked
    assert all(("tool_calls" in c["message"]) == (c["finish_reason"] == "tool_calls") for c in auto
               if c["finish_reason"] != "length")


def test_parallel_calls_and_parallel_tool_calls_false(client):
    kw = {"messages": USER, "tools": [PING], "tool_choice": "required", "max_tokens": 64, "temperature": 1.0,
          "seed": 11, "n": 6}
    several = raw(client, **kw)["choices"]
    counts = [len(c["message"].get("tool_calls", [])) for c in several]
    assert max(counts) >= 2
    for c in several:
        ids = [t["id"] for t in c["message"].get("tool_calls", [])]
        assert len(set(ids)) == len(ids)
    single = raw(client, parallel_tool_calls=False, **kw)["choices"]
    assert all(len(c["message"]["tool_calls"]) == 1 and c["finish_reason"] == "tool_calls" for c in single)
    # the same parallel calls streamed: indexes 0..k-1, each announced once, then its arguments
    folded = rebuild(sse(client, **kw), n=6)
    for c, f in zip(several, folded):
        calls = [f["calls"][i] for i in sorted(f["calls"])]
        assert sorted(f["calls"]) == list(range(len(calls)))
        assert [x["function"] for x in calls] == [x["function"] for x in c["message"].get("tool_calls", [])]


def test_sdk_stream_helper_rebuilds_the_calls(client):
    choice = {"type": "function", "function": {"name": "get_weather"}}
    with client.chat.completions.stream(model="tiny", messages=USER, tools=TOOLS, tool_choice=choice,
                                        parallel_tool_calls=False, max_tokens=64) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and set(json.loads(call.function.arguments)) == {"city", "unit"}
    assert final.choices[0].finish_reason == "tool_calls"


def test_a_full_tool_loop(client):
    """call -> the client runs the tool -> result with tool_call_id -> answer; results may come in any order."""
    first = client.chat.completions.create(model="tiny", messages=USER, tools=TOOLS, tool_choice="required",
                                           max_tokens=80, temperature=1.0, seed=11, n=8)
    message = max((c.message for c in first.choices), key=lambda m: len(m.tool_calls or []))
    calls = message.tool_calls
    assert calls and len({c.id for c in calls}) == len(calls)
    results = [{"role": "tool", "tool_call_id": c.id,
                "content": json.dumps({"ok": True, "tool": c.function.name, "n": i})} for i, c in enumerate(calls)]
    history = [*USER, message.model_dump(exclude_none=True)]
    answer = client.chat.completions.create(model="tiny", messages=history + results[::-1], tools=TOOLS,
                                            tool_choice="none", max_tokens=8)
    assert answer.choices[0].message.content and answer.choices[0].message.tool_calls is None
    in_order = client.chat.completions.create(model="tiny", messages=history + results, tools=TOOLS,
                                              tool_choice="none", max_tokens=8)
    assert in_order.choices[0].message.content == answer.choices[0].message.content  # results put in call order
    assert answer.usage.prompt_tokens > first.usage.prompt_tokens
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=history + [{**results[0], "tool_call_id": "call_x"}],
                                       max_tokens=4)
    assert e.value.body["param"].endswith("tool_call_id")
    if len(calls) > 1:  # an unanswered call before the next user turn
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="tiny", messages=history + results[:1] + USER, max_tokens=4)


# ---- JSON ------------------------------------------------------------------------------------------------
def test_json_schema_and_json_object(client):
    fmt = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY, "strict": True}}
    for c in raw(client, messages=USER, response_format=fmt, max_tokens=60, n=2, temperature=1.0, seed=1)["choices"]:
        assert c["finish_reason"] == "stop"
        jsonschema.validate(json.loads(c["message"]["content"]), CITY)
    (folded,) = rebuild(sse(client, messages=USER, response_format=fmt, max_tokens=60))
    jsonschema.validate(json.loads(folded["content"]), CITY)
    body = raw(client, messages=USER, response_format={"type": "json_object"}, max_tokens=40)
    c = body["choices"][0]
    if c["finish_reason"] == "stop":
        assert isinstance(json.loads(c["message"]["content"]), dict)
    else:
        assert c["message"]["content"].startswith("{")
    # tools offered and a JSON answer wanted: either valid calls or JSON that follows the schema
    for c in raw(client, messages=USER, tools=TOOLS, response_format=fmt, max_tokens=60, n=4, temperature=1.0,
                 seed=5)["choices"]:
        if c["finish_reason"] == "stop":
            jsonschema.validate(json.loads(c["message"]["content"]), CITY)


# ---- errors ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, param, code", [
    ({"model": "nope", "messages": USER}, "model", "model_not_found"),
    ({"model": "tiny", "messages": USER, "temperature": 3}, "temperature", None),
    ({"model": "tiny", "messages": USER, "n": 0}, "n", None),
    ({"model": "tiny", "messages": []}, "messages", None),
    ({"model": "tiny"}, "messages", "missing_required_parameter"),
    ({"model": "tiny", "messages": USER, "stop": [f"s{i}" for i in range(17)]}, "stop", None),
    ({"model": "tiny", "messages": USER, "tools": TOOLS, "tool_choice": {"type": "function",
                                                                       "function": {"name": "nope"}}},
     "tool_choice", None),
    ({"model": "tiny", "messages": USER, "tool_choice": "required"}, "tool_choice", None),
    ({"model": "tiny", "messages": USER, "tools": [{"type": "function", "function": {
        "name": "bad", "parameters": {"type": "object", "properties": {"x": {"type": "nonsense"}}}}}]}, "tools", None),
    ({"model": "tiny", "messages": USER, "tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools", None),
    ({"model": "tiny", "messages": USER, "response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object", "properties": {"a": {"type": 5}}}}}}, "response_format", None),
    ({"model": "tiny", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "data:,"}}]}]}, "messages[0].content[0]", "unsupported_content"),
    ({"model": "tiny", "messages": [{"role": "tool", "tool_call_id": "x", "content": "1"}]}, "messages[0]", None),
    ({"model": "tiny", "messages": [*USER, {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "ping", "arguments": "{not json"}}]}]},
     "messages[1].tool_calls[0].function.arguments", "invalid_tool_call"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "word " * 3000}]}, "messages",
     "context_length_exceeded"),
    ({"model": "tiny", "messages": USER, "logprobs": True}, "logprobs", "unsupported"),
    ({"model": "tiny", "messages": USER, "stream_options": {"include_usage": True}}, "stream_options", None),
])
def test_client_mistakes_are_4xx_openai_errors(base_url, body, param, code):
    r = httpx.post(base_url + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == (404 if code == "model_not_found" else 400), r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    assert err["param"] == param and err["message"]
    if code:
        assert err["code"] == code


@pytest.mark.parametrize("path, body, param", [
    ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "caf\ud800"}]},
     "messages[0].content"),
    ("/v1/chat/completions", {"model": "tiny", "messages": USER, "tools": [{"type": "function", "function": {
        "name": "f", "description": "\udc00", "parameters": {"type": "object"}}}]}, "tools[0].function.description"),
])
def test_a_lone_surrogate_escape_is_a_400_naming_the_field(base_url, path, body, param):
    r = httpx.post(base_url + path, content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["code"] == "invalid_unicode" and "surrogate" in err["message"]


@pytest.mark.parametrize("body, param, message", [
    ({"messages": [*USER, {"role": "assistant", "tool_calls": [{"id": "1", "type": "function", "function": {
        "name": "calculator", "arguments": "{bad"}}]}, {"role": "tool", "tool_call_id": "1", "content": "x"},
        {"role": "user", "content": "again"}]}, "messages", "messages[1].tool_calls[0].function.arguments is not valid"),
    ({"messages": [{"role": "wizard", "content": "hi"}, *USER]}, "messages", "messages[0] has unknown role 'wizard'"),
    ({"messages": [*USER, {"role": "assistant", "content": "x"}]}, "messages[1]", "must be the user's turn"),
    ({"messages": USER, "tools": ["nope"]}, "tools", "unknown tool(s) 'nope'"),
    ({"messages": USER, "tool_choice": "nope"}, "tool_choice", "is not auto, required, none"),
])
def test_agent_endpoint_mistakes_are_400s_in_the_clients_terms(base_url, body, param, message):
    """Indices are the client's, though the server opens the conversation with its own system turn."""
    r = httpx.post(base_url + "/v1/agent/chat", json=body, timeout=60)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and message in err["message"]


def test_malformed_bodies(base_url, client):
    url = base_url + "/v1/chat/completions"
    bad = httpx.post(url, content=b'{"model": "tiny", "messages": [', headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
    deep = b'{"model": "tiny", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    for body in (b'{"model": "tiny", "messages": "caf\xe9"}', deep):  # latin-1 bytes; nesting past the parser
        r = httpx.post(url, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text
    no_type = httpx.post(url, content=json.dumps({"model": "tiny", "messages": USER, "max_tokens": 2}))
    assert no_type.status_code == 200  # curl -d without a Content-Type still works
    plain = httpx.post(url, content=b"hello", headers={"content-type": "text/plain"})
    assert plain.status_code == 400 and "JSON object" in plain.json()["error"]["message"]
    big = httpx.post(url, content=b"{" + b" " * (9 * 1024 * 1024) + b"}", headers={"content-type": "application/json"})
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    missing = httpx.get(base_url + "/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=USER, top_p=0)
    assert httpx.get(base_url + "/health").json()["status"] == "ok"  # still up


# ---- concurrency ---------------------------------------------------------------------------------------------
def test_concurrent_requests_are_batched_and_match_sequential_ones(client, base_url):
    prompts = [[{"role": "user", "content": f"Question number {i}: " + "why? " * i}] for i in range(4)]
    alone = [client.chat.completions.create(model="tiny", messages=m, max_tokens=120).choices[0].message.content
             for m in prompts]
    together: dict[int, str] = {}

    def ask(i: int) -> None:
        together[i] = client.chat.completions.create(model="tiny", messages=prompts[i],
                                                     max_tokens=120).choices[0].message.content

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [together[i] for i in range(4)] == alone
    assert httpx.get(base_url + "/health").json()["peak_batch"] >= 2


def test_a_client_that_disconnects_mid_stream_frees_its_slot(base_url):
    before = httpx.get(base_url + "/health").json()
    body = {"model": "tiny", "messages": USER, "max_tokens": 1900, "stream": True}
    with httpx.stream("POST", base_url + "/v1/chat/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
        while not next(lines).startswith("data: "):
            pass
    deadline = time.monotonic() + 30
    while True:
        health = httpx.get(base_url + "/health").json()
        if health["active"] == 0 and health["cancelled"] > before["cancelled"]:
            break
        assert time.monotonic() < deadline, health
        time.sleep(0.05)
    assert health["finished"] == before["finished"]  # it was stopped, not run to 1900 tokens
    # the same for a plain request whose client gives up waiting
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(base_url + "/v1/chat/completions", json={**body, "stream": False}, timeout=1.0)
    deadline = time.monotonic() + 30
    while True:
        after = httpx.get(base_url + "/health").json()
        if after["active"] == 0 and after["cancelled"] > health["cancelled"]:
            break
        assert time.monotonic() < deadline, after
        time.sleep(0.05)
    assert after["finished"] == before["finished"]


# ---- auth -------------------------------------------------------------------------------------------------
def test_api_key_is_required_when_set(llama_tokenizer):
    app = create_app(tiny_engine(llama_tokenizer, seed=2), "tiny", api_key="s3cret", max_tokens_cap=4)
    with running(app) as url:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            r = httpx.get(url + "/v1/models", headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
            assert r.headers["www-authenticate"] == "Bearer"
        assert httpx.get(url + "/health").status_code == 401
        assert httpx.get(url + "/").status_code == 200  # the page asks for the key itself
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).models.list()
        ok = openai.OpenAI(base_url=url + "/v1", api_key="s3cret", max_retries=0)
        out = ok.chat.completions.create(model="tiny", messages=USER, max_tokens=50)
        assert out.usage.completion_tokens == 4  # the server's --max-tokens caps a request's own


# ---- the command ----------------------------------------------------------------------------------------------
def test_nesso_serve_command(capsys):
    from nesso.cli import main

    assert main(["serve", "--slots", "0"]) == 2
    assert "--slots must be at least 1" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "nesso-nano", "--port", str(port)]) == 2  # fails before loading the model
        assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
    proc = subprocess.Popen([sys.executable, "-m", "nesso", "serve", "nesso-nano", "--port", str(port),
                             "--max-tokens", "3"], env={**os.environ, "NESSO_API_KEY": "from-env"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None and time.monotonic() < deadline
            try:
                if httpx.get(url + "/health", headers={"Authorization": "Bearer from-env"}).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert httpx.get(url + "/health").status_code == 401
        client = openai.OpenAI(base_url=url + "/v1", api_key="from-env", max_retries=0)
        out = client.chat.completions.create(model="nesso-nano", messages=USER)
        assert out.model == "nesso-nano" and out.usage.completion_tokens == 3
    finally:
        proc.terminate()
        banner = proc.communicate(timeout=30)[0]
    assert f"OpenAI base_url: http://127.0.0.1:{port}/v1" in banner and "API key required" in banner
