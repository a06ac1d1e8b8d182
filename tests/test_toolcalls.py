"""Tool-call parsing: whole and streamed (split at every character boundary), with schema validation."""

import json

import pytest

from nesso.toolcalls import ArgumentsDelta, CallEnd, CallStart, ContentDelta, ToolCallParser, parse_tool_calls

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}}}]

TEXT = ('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Milano", "days": 2}}\n'
        '</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Città \\"}\\" {x}"}}\n</tool_call>'
        '\n<tool_call>\n{"name": "ping", "arguments": {}}\n</tool_call>')
ARGS = ['{"city": "Milano", "days": 2}', '{"city": "Città \\"}\\" {x}"}', "{}"]


def collect(chunks):
    parser = ToolCallParser(TOOLS)
    events = []
    for c in chunks:
        events += parser.feed(c)
    events += parser.close()
    return events, parser.result


def check(events, result):
    assert result.content == "Let me check."
    assert [c.name for c in result.calls] == ["get_weather", "get_weather", "ping"]
    assert [c.arguments_json for c in result.calls] == ARGS
    assert result.calls[1].arguments == {"city": 'Città "}" {x}'}
    assert not result.errors
    starts = [e for e in events if isinstance(e, CallStart)]
    assert [(s.index, s.name) for s in starts] == [(0, "get_weather"), (1, "get_weather"), (2, "ping")]
    assert len({s.id for s in starts}) == 3
    assert [c.id for c in result.calls] == [s.id for s in starts]
    streamed = {}
    for e in events:
        if isinstance(e, ArgumentsDelta):
            streamed[e.index] = streamed.get(e.index, "") + e.text
    assert [streamed.get(i, "") for i in range(3)] == ARGS
    assert "".join(e.text for e in events if isinstance(e, ContentDelta)).strip() == "Let me check."
    assert all("<tool" not in e.text for e in events if isinstance(e, ContentDelta))


def test_whole_text():
    check(*collect([TEXT]))


@pytest.mark.parametrize("cut", range(len(TEXT) + 1))
def test_split_at_every_boundary(cut):
    check(*collect([TEXT[:cut], TEXT[cut:]]))


def test_character_by_character():
    check(*collect(list(TEXT)))


def test_text_only_and_partial_tag_lookalikes():
    result = parse_tool_calls("Use <tool> tags or <tool_c... no call here.", TOOLS)
    assert result.content == "Use <tool> tags or <tool_c... no call here." and not result.calls


@pytest.mark.parametrize("body,message", [
    ('{"name": "get_weather", "arguments": {"city": "Roma"', "not valid JSON"),
    ('{"name": "nope", "arguments": {}}', "unknown tool 'nope'"),
    ('{"name": "get_weather", "arguments": {"days": 2}}', "'city' is a required property"),
    ('{"name": "get_weather", "arguments": {"city": 5}}', "city: 5 is not of type 'string'"),
    ('{"name": "get_weather", "arguments": {"city": "x", "extra": 1}}', "Additional properties"),
    ('{"arguments": {}}', 'must be an object with a "name"'),
    ('{"name": "get_weather", "arguments": [1]}', "must be a JSON object"),
])
def test_errors_are_structured_not_raised(body, message):
    result = parse_tool_calls(f"<tool_call>\n{body}\n</tool_call>", TOOLS)
    assert not result.calls and len(result.errors) == 1
    assert message in result.errors[0].message


def test_unclosed_block_is_an_error():
    result = parse_tool_calls('<tool_call>\n{"name": "ping", "arguments": {}}', TOOLS)
    assert result.errors and "not closed" in result.errors[0].message


def test_string_encoded_arguments_are_accepted():
    result = parse_tool_calls('<tool_call>\n{"name": "ping", "arguments": "{}"}\n</tool_call>', TOOLS)
    assert result.calls[0].arguments == {} and json.loads(result.calls[0].arguments_json) == {}


def test_call_end_events_carry_errors():
    events, _ = collect(['<tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call>'])
    ends = [e for e in events if isinstance(e, CallEnd)]
    assert len(ends) == 1 and ends[0].call is None and "unknown tool" in ends[0].error.message
