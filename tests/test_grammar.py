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
    # A random model may keep adding calls until max_tokens; the structure guard closes the last one in time.
    out = generate(engine, compiler(engine).for_tools(TOOLS, "required"), seed, max_tokens=120)
    parsed = parse_tool_calls(out.text, TOOLS)
    assert len(parsed.calls) >= 1 and not parsed.errors, out.text
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


@pytest.mark.parametrize("seed", range(2))
def test_stop_strings_never_cut_a_constrained_call_or_json(engine, seed):
    """A stop string that the output contains ('"' is in every call and every JSON object here) ends free text only;
    inside a required call or a JSON output it would leave it invalid."""
    prompt = engine.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    for constraint in (lambda: compiler(engine).for_tools(TOOLS, "required", parallel=False),
                       lambda: compiler(engine).for_json(SCHEMAS["add"])):
        plain = engine.generate(prompt, SamplingParams(max_tokens=160, temperature=1.0, seed=seed), constraint())
        stopped = engine.generate(prompt, SamplingParams(max_tokens=160, temperature=1.0, seed=seed,
                                                         stop=['"', ":"]), constraint())
        assert '"' in plain.text and stopped.text == plain.text and stopped.finish_reason == plain.finish_reason
    # with tool_choice auto, free text stops and a call's inside does not
    from nesso.engine import _inside_call

    text = 'Sure.\n<tool_call>\n{"name": "add"}\n</tool_call>\nDone: "ok"'
    assert not _inside_call(text, text.index("Sure")) and _inside_call(text, text.index('"name"'))
    assert not _inside_call(text, text.index('"ok"')) and not _inside_call(text, text.index("<tool_call>"))


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


# ---- structure guard: no loops inside the JSON, and always closed within max_tokens ----------------------------
FREE = {"type": "object", "properties": {"notes": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
                                        "count": {"type": "integer"}}, "required": ["notes", "tags", "count"]}
FREE_TOOL = [{"type": "function", "function": {"name": "save", "parameters": FREE}}]


@pytest.mark.parametrize("max_tokens", [24, 40, 64])
def test_guard_closes_unbounded_json_within_max_tokens(engine, max_tokens):
    # A random model at temperature 1 almost never closes a free string by itself: unguarded, the budget cuts it.
    cut = 0
    for seed in range(3):
        out = generate(engine, compiler(engine).for_json(FREE), seed, max_tokens)
        assert out.completion_tokens <= max_tokens
        jsonschema.validate(json.loads(out.text), FREE)
        assert out.finish_reason == "length"  # the budget, not the model, ended it
        raw = engine.generate(out_prompt(engine), SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=seed,
                                                                 structure_guard=False), compiler(engine).for_json(FREE))
        cut += not _valid_json(raw.text, FREE)
    assert cut >= 2


@pytest.mark.parametrize("parallel", [True, False])
def test_guard_closes_tool_calls_within_max_tokens(engine, parallel):
    for seed in range(3):
        out = generate(engine, compiler(engine).for_tools(FREE_TOOL, "required", parallel=parallel), seed, 48)
        parsed = parse_tool_calls(out.text, FREE_TOOL)
        assert parsed.calls and not parsed.errors, out.text
        assert out.completion_tokens <= 48


def test_guard_keeps_outputs_that_fit(engine):
    # Budget to spare: the guard changes nothing, the grammar ends the output.
    out = generate(engine, compiler(engine).for_tools(TOOLS, "required", parallel=False), 0, 160)
    assert out.finish_reason == "stop"


def out_prompt(engine):
    return engine.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)


def _valid_json(text, schema):
    try:
        jsonschema.validate(json.loads(text), schema)
        return True
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False


def test_loop_continuation():
    from nesso.engine import loop_continuation

    assert loop_continuation([7] * 12) == 7
    assert loop_continuation([7] * 11) is None  # shorter than the span
    cycle = [1, 2, 3]
    assert loop_continuation([9, 9] + cycle * 4) == 1  # 12 tokens repeating (1 2 3): next would be 1
    assert loop_continuation(cycle * 4 + [1]) == 2
    assert loop_continuation(list(range(30))) is None
    ten = list(range(10))
    assert loop_continuation(ten * 2) is None  # a 10-token cycle needs 21 tokens
    assert loop_continuation(ten * 2 + [0]) == 1


def test_guard_breaks_a_real_models_loop_in_a_tool_argument(smollm_bf16):
    """The embedded base model copies a looping path into the argument; the guard bans the token that extends the
    loop, so the call ends with budget to spare instead of being cut."""
    engine = Engine(smollm_bf16.model, smollm_bf16.tokenizer)
    tools = [{"type": "function", "function": {"name": "list_files", "parameters": {
        "type": "object", "properties": {"directory": {"type": "string"}}, "required": ["directory"]}}}]
    prompt = engine.tokenizer.apply_chat_template(
        [{"role": "user", "content": "List the files in /home/user/" + "ogre/" * 40}], tools, add_generation_prompt=True)
    comp = compiler_for(engine.tokenizer, engine.model.config.vocab_size)
    for guard in (True, False):
        out = engine.generate(prompt, SamplingParams(max_tokens=96, structure_guard=guard), comp.for_tools(tools, "required"))
        parsed = parse_tool_calls(out.text, tools)
        if guard:
            assert parsed.calls and not parsed.errors, out.text
            assert parsed.calls[0].arguments["directory"].count("ogre") < 10
        else:
            assert out.finish_reason == "length" and parsed.errors, out.text  # what the guard prevents


def test_guard_needs_only_the_closing_path_length(engine):
    # The closing path, counted on a copy of the matcher (an upper bound of the shortest complete call: where the
    # path takes the lowest legal id, the model may need fewer tokens), fits a budget of exactly its length.
    c = compiler(engine).for_tools(FREE_TOOL, "required", parallel=False)
    path = 1 + len(c.closing_path(after=c.closing_token(), limit=1000))
    for budget, complete in ((path, True), (10, False)):
        for seed in range(2):
            out = generate(engine, compiler(engine).for_tools(FREE_TOOL, "required", parallel=False), seed, budget)
            parsed = parse_tool_calls(out.text, FREE_TOOL)
            assert (len(parsed.calls) == 1 and not parsed.errors) == complete, (budget, out.text)


def test_closing_path_completes_an_email_string(engine):
    # Inside an e-mail string the closing quote is not legal before an "@" and a domain (and brackets are mere
    # content): the closing path takes the characters formats need, and the JSON it ends with validates.
    schema = {"type": "object", "properties": {"to": {"type": "string", "format": "email"}}, "required": ["to"]}
    c = compiler(engine).for_json(schema)
    ids = engine.tokenizer.encode('{"to": "mario')
    for tok in ids:
        c.advance(tok)
    path = c.closing_path(None, 100, ids[-1])
    assert len(path) <= 10 and c.completes(path)
    previous = ids[-1]
    for expected in path:  # the path is the one closing_token follows, step by step
        previous = c.closing_token(previous)
        assert previous == expected
        c.advance(previous)
        ids.append(previous)
    assert c.done or c.matcher.is_accepting()
    jsonschema.validate(json.loads(engine.tokenizer.decode(ids)), schema, format_checker=jsonschema.FormatChecker())


def test_closing_path_takes_the_tool_that_closes_soonest(engine):
    # Greedily (lowest id first) the path would name "a_event", whose four required arguments need far more
    # tokens than "read"'s one. Where the greedy path does not fit, the path tries each option at its first
    # choice, so a tight budget still admits the shortest call.
    long_args = {k: {"type": "string", "format": "date"} for k in ("start", "end", "due", "since")}
    tools = [{"type": "function", "function": {"name": "a_event", "parameters": {
        "type": "object", "properties": long_args, "required": list(long_args)}}},
             {"type": "function", "function": {"name": "read", "parameters": {
                 "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}]
    c = compiler(engine).for_tools(tools, "required", parallel=False)
    greedy = c.closing_path(None, 1000)
    assert "a_event" in engine.tokenizer.decode(greedy)
    short = c.closing_path(None, len(greedy) - 1)
    assert short is not None and "read" in engine.tokenizer.decode(short) and c.completes(short)
    assert c.closing_path(None, len(short) - 1) is None
    out = generate(engine, compiler(engine).for_tools(tools, "required", parallel=False), 0, len(short))
    parsed = parse_tool_calls(out.text, tools)
    assert len(parsed.calls) == 1 and not parsed.errors, out.text


def test_completes_checks_a_path_to_the_end(engine):
    c = compiler(engine).for_json({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})
    tok = engine.tokenizer
    assert c.completes(tok.encode('{"a": 5}'))
    assert not c.completes(tok.encode('{"a": 5'))  # legal so far, but not finished
    assert not c.completes(tok.encode('{"b": 5}'))  # not legal
    assert not c.completes([])
