"""Constrained decoding: every tool_choice mode and JSON-schema output are valid by construction, whatever the
weights. A random small model on the real Llama-3.2 vocabulary samples freely (temperature 1) under the grammar."""

import json

import jsonschema
import pytest

from nesso.engine import Engine, SamplingParams
from nesso.errors import NessoError
from nesso.grammar import ToolChoice, compiler_for
from nesso.toolcalls import parse_tool_calls

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                         "unit": {"type": "string", "enum": ["C", "F"]}},
        "required": ["city"]}}},
    {"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer", "minimum": -99, "maximum": 999},
                                         "b": {"type": "boolean"}},
        "required": ["a", "b"]}}},
    {"type": "function", "function": {"name": "ping"}},
]
SCHEMAS = {
    "get_weather": TOOLS[0]["function"]["parameters"], "add": TOOLS[1]["function"]["parameters"],
    "ping": {"type": "object", "properties": {}, "additionalProperties": False},
}


@pytest.fixture(scope="module")
def engine(tiny_model, llama_tokenizer):
    return Engine(tiny_model, llama_tokenizer)


def generate(engine, constraint, seed, max_tokens=160):
    prompt = engine.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    return engine.generate(prompt, SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=seed), constraint)


def compiler(engine):
    return compiler_for(engine.tokenizer, engine.model.config.vocab_size)


@pytest.mark.parametrize("seed", range(4))
def test_required_gives_a_valid_call(engine, seed):
    out = generate(engine, compiler(engine).for_tools(TOOLS, "required", parallel=False), seed)
    assert out.finish_reason == "stop", out.text
    parsed = parse_tool_calls(out.text, TOOLS)
    assert len(parsed.calls) == 1 and not parsed.errors and parsed.content == ""
    for call in parsed.calls:
        jsonschema.validate(call.arguments, SCHEMAS[call.name])
        # canonical spacing, exactly as the chat template renders calls
        assert call.arguments_json == json.dumps(call.arguments, ensure_ascii=False)


@pytest.mark.parametrize("seed", range(3))
def test_named_choice_calls_only_that_tool(engine, seed):
    choice = {"type": "function", "function": {"name": "add"}}
    out = generate(engine, compiler(engine).for_tools(TOOLS, choice, parallel=False), seed)
    parsed = parse_tool_calls(out.text, TOOLS)
    assert out.finish_reason == "stop"
    assert len(parsed.calls) == 1 and parsed.calls[0].name == "add" and not parsed.errors
    assert all(isinstance(c.arguments["a"], int) for c in parsed.calls)


@pytest.mark.parametrize("seed", range(2))
def test_parallel_calls_are_each_valid(engine, seed):
    # A random model may keep adding calls until max_tokens: every call it closed must be valid.
    out = generate(engine, compiler(engine).for_tools(TOOLS, "required"), seed, max_tokens=120)
    parsed = parse_tool_calls(out.text, TOOLS)
    assert len(parsed.calls) >= 1
    assert len(parsed.errors) == (1 if out.finish_reason == "length" else 0)
    for call in parsed.calls:
        jsonschema.validate(call.arguments, SCHEMAS[call.name])


def test_parameterless_tool_gets_empty_object(engine):
    out = generate(engine, compiler(engine).for_tools(TOOLS, {"function": {"name": "ping"}}), 0)
    assert parse_tool_calls(out.text, TOOLS).calls[0].arguments_json == "{}"


def tokens_allowed(constraint, tokenizer, text):
    """Feed text token by token; False as soon as the grammar forbids the next token."""
    for tok in tokenizer.encode(text):
        if not constraint.allowed()[tok]:
            return False
        constraint.advance(tok)
    return True


def test_none_forbids_the_tool_call_tag(engine):
    tok = engine.tokenizer
    assert tokens_allowed(compiler(engine).for_tools(TOOLS, "none"), tok, "It is sunny <tool")
    assert not tokens_allowed(compiler(engine).for_tools(TOOLS, "none"), tok, "Sure <tool_call>\n{")


def test_auto_allows_text_then_constrains_the_call(engine):
    tok = engine.tokenizer
    c = compiler(engine).for_tools(TOOLS, "auto")
    assert tokens_allowed(c, tok, 'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Roma"}}')
    assert not tokens_allowed(compiler(engine).for_tools(TOOLS, "auto"), tok, '<tool_call>\n{"name": "rm_rf"')
    assert tokens_allowed(compiler(engine).for_tools(TOOLS, "auto"), tok, "Just an answer, no tools.")


def test_after_one_call_without_parallel_only_eos_is_allowed(engine):
    tok = engine.tokenizer
    c = compiler(engine).for_tools(TOOLS, "required", parallel=False)
    assert tokens_allowed(c, tok, '<tool_call>\n{"name": "ping", "arguments": {}}\n</tool_call>')
    allowed = c.allowed().nonzero().flatten().tolist()
    assert set(allowed) <= tok.stop_ids


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False},
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                      "age": {"type": "integer", "minimum": 0, "maximum": 120},
                                      "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
                                      "address": {"type": "object", "properties": {"zip": {"type": "string",
                                                  "pattern": "^[0-9]{5}$"}}, "required": ["zip"],
                                                  "additionalProperties": False}},
     "required": ["name", "age", "address"], "additionalProperties": False},
    {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 99}, "minItems": 1, "maxItems": 4},
])
def test_json_schema_output_validates(engine, schema, seed):
    out = generate(engine, compiler(engine).for_json(schema), seed, max_tokens=256)
    assert out.finish_reason == "stop", out.text
    jsonschema.validate(json.loads(out.text), schema)


def test_grammars_are_cached(engine):
    comp = compiler(engine)
    comp.for_tools(TOOLS, "auto")
    size = len(comp._cache)
    comp.for_tools(TOOLS, "auto")
    assert len(comp._cache) == size


@pytest.mark.parametrize("schema,message", [
    ({"type": "array", "uniqueItems": True}, "uses uniqueItems, which constrained decoding does not support"),
    ({"type": "string", "pattern": "(?=a)b"}, "look-around"),
    ({"type": "nonsense"}, "not a valid JSON schema"),
])
def test_unsupported_schema_features_are_named(engine, schema, message):
    with pytest.raises(NessoError, match=message):
        compiler(engine).for_json(schema)


@pytest.mark.parametrize("tools,choice,message", [
    (TOOLS, {"function": {"name": "missing"}}, "names 'missing', which is not among the tools"),
    (TOOLS, "sometimes", "tool_choice 'sometimes' is not one of"),
    ([{"type": "function", "function": {"name": "bad name!"}}], "auto", "must be 1-64 letters"),
    ([TOOLS[0], TOOLS[0]], "auto", "appears twice"),
    ([{"type": "function", "function": {"name": "x", "parameters": {"type": "string"}}}], "auto", "must describe an object"),
    ([{"function": "x"}], "auto", r"tools\[0\] must look like"),
])
def test_bad_tools_and_choices(engine, tools, choice, message):
    with pytest.raises(NessoError, match=message):
        compiler(engine).for_tools(tools, choice)


def test_tool_choice_forms():
    assert ToolChoice.parse(None).mode == "auto"
    assert ToolChoice.parse({"type": "function", "function": {"name": "f"}}) == ToolChoice("named", "f")
