"""Byte-exact golden renders of the one chat template, its assistant mask, and equality with transformers."""

import pytest

from nesso.tokenizer import CHAT_TEMPLATE, assistant_spans

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TOOLS_HEADER = (
    "# Tools\n\nYou may call one or more functions to help with the user query.\n\n"
    "The available functions are listed inside <tools></tools>, one JSON object per line:\n<tools>\n"
    '{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city", '
    '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}\n'
    "</tools>\n\nTo call a function, answer with a JSON object holding its name and arguments inside "
    "<tool_call></tool_call> tags, one block per call:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n')


def call(name, arguments):
    return {"id": "c1", "type": "function", "function": {"name": name, "arguments": arguments}}


CASES = {
    "plain_en": (
        [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hi!"},
         {"role": "assistant", "content": "Hello! How can I help?"}], None, False,
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
        "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"),
    "plain_it": (
        [{"role": "user", "content": "Ciao, come stai?"}, {"role": "assistant", "content": "Bene, grazie! E tu?"},
         {"role": "user", "content": "Perché è così?"}], None, True,
        "<|im_start|>user\nCiao, come stai?<|im_end|>\n<|im_start|>assistant\nBene, grazie! E tu?<|im_end|>\n"
        "<|im_start|>user\nPerché è così?<|im_end|>\n<|im_start|>assistant\n"),
    "tools_call_response_answer": (
        [{"role": "system", "content": "Sei un assistente."}, {"role": "user", "content": "Che tempo fa a Milano?"},
         {"role": "assistant", "content": None, "tool_calls": [call("get_weather", {"city": "Milano"})]},
         {"role": "tool", "tool_call_id": "c1", "content": '{"temp_c": 21, "sky": "sereno"}'},
         {"role": "assistant", "content": "A Milano ci sono 21 °C e il cielo è sereno."}], [WEATHER], False,
        "<|im_start|>system\nSei un assistente.\n\n" + TOOLS_HEADER
        + "<|im_start|>user\nChe tempo fa a Milano?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Milano"}}\n</tool_call><|im_end|>\n'
        '<|im_start|>user\n<tool_response>\n{"temp_c": 21, "sky": "sereno"}\n</tool_response><|im_end|>\n'
        "<|im_start|>assistant\nA Milano ci sono 21 °C e il cielo è sereno.<|im_end|>\n"),
    "parallel_calls_no_system": (
        [{"role": "user", "content": "Weather in Rome and Milan?"},
         {"role": "assistant", "content": None, "tool_calls": [
             call("get_weather", {"city": "Rome"}), call("get_weather", '{"city": "Milan"}')]},
         {"role": "tool", "content": '{"temp": 20}'}, {"role": "tool", "content": '{"temp": 18}'}],
        [WEATHER], True,
        "<|im_start|>system\n" + TOOLS_HEADER + "<|im_start|>user\nWeather in Rome and Milan?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Milan"}}\n</tool_call><|im_end|>\n'
        '<|im_start|>user\n<tool_response>\n{"temp": 20}\n</tool_response>\n<tool_response>\n{"temp": 18}\n'
        "</tool_response><|im_end|>\n<|im_start|>assistant\n"),
    "content_before_call": (
        [{"role": "user", "content": "Rome?"},
         {"role": "assistant", "content": "Let me check.", "tool_calls": [call("get_weather", {"city": "Rome"})]}],
        [WEATHER], False,
        "<|im_start|>system\n" + TOOLS_HEADER + "<|im_start|>user\nRome?<|im_end|>\n<|im_start|>assistant\n"
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>'
        "<|im_end|>\n"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_golden_render(llama_tokenizer, name):
    messages, tools, gen, expected = CASES[name]
    assert llama_tokenizer.apply_chat_template(messages, tools, add_generation_prompt=gen) == expected


@pytest.mark.parametrize("name", list(CASES))
def test_transformers_renders_the_same_string_from_a_saved_directory(tiny_dir, name):
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(tiny_dir)
    messages, tools, gen, expected = CASES[name]
    assert tok.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=gen) == expected
    assert tok.chat_template == CHAT_TEMPLATE


def test_assistant_mask_covers_exactly_the_assistant_turns(llama_tokenizer):
    messages, tools, _, _ = CASES["tools_call_response_answer"]
    enc = llama_tokenizer.encode_chat(messages, tools)
    masked = [i for i, m in zip(enc.ids, enc.assistant_mask) if m]
    text = llama_tokenizer.decode(masked)
    assert text == ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Milano"}}\n</tool_call><|im_end|>'
                    "A Milano ci sono 21 °C e il cielo è sereno.<|im_end|>")
    # the two masked runs are contiguous and each ends on <|im_end|>
    runs, prev = [], 0
    for i, m in enumerate(enc.assistant_mask):
        if m and not prev:
            runs.append([i, i])
        if m:
            runs[-1][1] = i
        prev = m
    assert len(runs) == 2 and all(enc.ids[end] == 128_003 for _, end in runs)
    assert len(enc.ids) == len(enc.assistant_mask)


def test_generation_prompt_is_not_masked(llama_tokenizer):
    enc = llama_tokenizer.encode_chat([{"role": "user", "content": "Ciao"}], add_generation_prompt=True)
    assert sum(enc.assistant_mask) == 0
    assert assistant_spans("<|im_start|>assistant\n") == []


def test_bad_messages_are_clear_errors(llama_tokenizer):
    from nesso.errors import NessoError

    with pytest.raises(NessoError, match="unknown role 'robot'"):
        llama_tokenizer.apply_chat_template([{"role": "robot", "content": "x"}])
    with pytest.raises(NessoError, match=r"messages\[0\] must be an object with a 'role'"):
        llama_tokenizer.apply_chat_template([{"content": "x"}])
    with pytest.raises(NessoError, match="content must be a string"):
        llama_tokenizer.apply_chat_template([{"role": "user", "content": 3}])
    # a call whose arguments are not a JSON object would be rendered (and trained) as if the model had written it
    user = {"role": "user", "content": "t"}
    for call, message in [
        ({"type": "function", "function": {"name": "f", "arguments": "{bad"}},
         r"messages\[1\].tool_calls\[0\].function.arguments is not valid JSON"),
        ({"type": "function", "function": {"name": "f", "arguments": "[1]"}}, "must be a JSON object \\(got list\\)"),
        ({"type": "function", "function": {"name": "f"}}, "must be a JSON object \\(got NoneType\\)"),
        ({"type": "function", "function": {"arguments": {}}}, r"messages\[1\].tool_calls\[0\] must be"),
    ]:
        with pytest.raises(NessoError, match=message):
            llama_tokenizer.apply_chat_template([user, {"role": "assistant", "tool_calls": [call]}])
    for call in ({"type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
                 {"name": "f", "arguments": {"a": 1}}):  # a JSON string or an object; OpenAI's or the flat form
        text = llama_tokenizer.apply_chat_template([user, {"role": "assistant", "tool_calls": [call]}])
        assert '{"name": "f", "arguments": {"a": 1}}' in text
