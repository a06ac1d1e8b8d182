"""Engine: greedy/sampled decoding, stops, streaming, batching (left padding) equal to one-by-one."""

import pytest
import torch

from nesso.engine import Engine, SamplingParams
from nesso.errors import NessoError


@pytest.fixture(scope="module")
def engine(tiny_model, llama_tokenizer):
    return Engine(tiny_model, llama_tokenizer)


PROMPTS = ["Ciao", "The quick brown fox jumps over", "Una frase un po' più lunga delle altre, per il padding a sinistra."]


def test_greedy_matches_a_manual_argmax_loop(engine, tiny_model, llama_tokenizer):
    ids = llama_tokenizer.encode(PROMPTS[1])
    out = engine.generate(ids, SamplingParams(max_tokens=8))
    seq = list(ids)
    with torch.no_grad():
        for _ in range(8):
            seq.append(int(tiny_model(torch.tensor([seq]))[0, -1].argmax()))
    assert out.token_ids == seq[len(ids):]
    assert out.finish_reason == "length" and out.prompt_tokens == len(ids) and out.completion_tokens == 8


def test_batched_greedy_equals_one_by_one(engine):
    params = SamplingParams(max_tokens=12)
    batched = engine.generate_batch(PROMPTS, params)
    for prompt, b in zip(PROMPTS, batched):
        assert b.token_ids == engine.generate(prompt, params).token_ids


def test_batched_sampling_with_seeds_equals_one_by_one(engine):
    params = [SamplingParams(max_tokens=10, temperature=0.9, top_p=0.9, top_k=50, seed=s) for s in range(3)]
    batched = engine.generate_batch(PROMPTS, params)
    for prompt, p, b in zip(PROMPTS, params, batched):
        assert b.token_ids == engine.generate(prompt, p).token_ids


def test_seed_reproducible_and_different_seeds_differ(engine):
    a = engine.generate(PROMPTS[0], SamplingParams(max_tokens=16, temperature=1.0, seed=1))
    b = engine.generate(PROMPTS[0], SamplingParams(max_tokens=16, temperature=1.0, seed=1))
    c = engine.generate(PROMPTS[0], SamplingParams(max_tokens=16, temperature=1.0, seed=2))
    assert a.token_ids == b.token_ids != c.token_ids


def test_stream_concatenates_to_the_full_text(engine):
    params = SamplingParams(max_tokens=20, temperature=0.8, seed=3)
    done = []
    pieces = list(engine.stream(PROMPTS[2], params, on_finish=done.append))
    assert "".join(pieces) == done[0].text == engine.generate(PROMPTS[2], params).text


def test_stop_string_truncates_and_is_never_streamed(engine):
    full = engine.generate(PROMPTS[1], SamplingParams(max_tokens=20)).text
    stop = full[5:8]
    out = engine.generate(PROMPTS[1], SamplingParams(max_tokens=20, stop=[stop]))
    assert out.text == full[: full.find(stop)] and out.finish_reason == "stop"
    streamed = "".join(engine.stream(PROMPTS[1], SamplingParams(max_tokens=20, stop=[stop])))
    assert streamed == out.text


def test_repetition_penalty_changes_prose(engine):
    plain = engine.generate(PROMPTS[0], SamplingParams(max_tokens=24))
    penalised = engine.generate(PROMPTS[0], SamplingParams(max_tokens=24, repetition_penalty=5.0))
    assert plain.token_ids != penalised.token_ids


def test_repetition_penalty_is_not_applied_inside_a_tool_call(engine, llama_tokenizer):
    from nesso.engine import _Sequence

    seq = _Sequence([1, 2], SamplingParams(repetition_penalty=1.3), None, llama_tokenizer)
    seq.text = 'ok <tool_call>\n{"name": "f", "arguments": {"a": 1'
    assert seq.in_structured_region()
    seq.text += "}}\n</tool_call>"
    assert not seq.in_structured_region()


def test_eos_stops_generation(smollm):
    engine = Engine(smollm.model, smollm.tokenizer)
    prompt = smollm.tokenizer.apply_chat_template([{"role": "user", "content": "Say hi."}], add_generation_prompt=True)
    out = engine.generate(prompt, SamplingParams(max_tokens=64))
    assert out.finish_reason == "stop" and smollm.tokenizer.eos_id not in out.token_ids


def test_json_object_mode_on_the_embedded_model(smollm):
    import json

    from nesso.grammar import compiler_for

    engine = Engine(smollm.model, smollm.tokenizer)
    prompt = smollm.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Give me a JSON object describing Rome with keys name and country."}],
        add_generation_prompt=True)
    constraint = compiler_for(smollm.tokenizer, smollm.model.config.vocab_size).for_json(None)
    out = engine.generate(prompt, SamplingParams(max_tokens=64), constraint)
    assert isinstance(json.loads(out.text), dict)


@pytest.mark.parametrize("kwargs,message", [
    ({"max_tokens": 0}, "max_tokens must be a positive integer"),
    ({"top_p": 0}, "top_p must be in"),
    ({"top_k": -1}, "top_k must be >= 0"),
    ({"repetition_penalty": 0}, "repetition_penalty must be > 0"),
    ({"stop": [""]}, "stop strings must be non-empty"),
])
def test_bad_sampling_params(kwargs, message):
    with pytest.raises(NessoError, match=message):
        SamplingParams(**kwargs)


def test_prompt_longer_than_context(engine):
    with pytest.raises(NessoError, match="the model's context is 256"):
        engine.generate(list(range(300)))
    with pytest.raises(NessoError, match="empty"):
        engine.generate([])


def test_generation_is_clipped_to_the_context(engine):
    out = engine.generate(list(range(1, 251)), SamplingParams(max_tokens=50))
    assert out.completion_tokens == 6 and out.finish_reason == "length"


def test_prefix_reuse_gives_the_same_tokens(engine, tiny_model, llama_tokenizer):
    first = llama_tokenizer.encode("Ciao, come stai? Tutto bene")
    out = engine.generate(first, SamplingParams(max_tokens=6))
    assert tiny_model.cached_ids == first + out.token_ids[:-1]
    extended = first + out.token_ids + llama_tokenizer.encode(" e poi")
    reused = engine.generate(extended, SamplingParams(max_tokens=8))
    tiny_model.clear_caches()
    fresh = engine.generate(extended, SamplingParams(max_tokens=8))
    assert reused.token_ids == fresh.token_ids
    other = Engine(tiny_model, llama_tokenizer)  # a second engine on the same model sees the same cache state
    engine.generate(PROMPTS[2], SamplingParams(max_tokens=4))
    assert other.generate(extended, SamplingParams(max_tokens=8)).token_ids == fresh.token_ids


QUESTIONS = ["Write a short poem about the sea.", "Che cos'è la fotosintesi? Spiegalo in breve.",
             "List three uses of copper.", "Explain how a bicycle works to a child who is seven years old.", "Ciao!",
             "What is 2+2?", "Descrivi Milano in tre frasi.", "Tell me a joke about cats."]


def test_a_cpu_batch_gives_each_prompt_its_own_tokens_whatever_its_batch_mates(smollm_bf16):
    """generate_batch on a CPU runs a ContinuousBatch that prefills every prompt whole: with the bf16 kernels each
    prompt gets exactly the tokens generate gives it on a fresh cache, for any number of slots and any order, and
    on_done reports each one. (Left-padded rows, or a prefill split at a prefix another prompt left in the slot —
    these prompts share the chat template's system turn — change some of these greedy outputs.)"""
    import copy

    from nesso import cpu_kernels
    from nesso.quantize import maybe_quantize

    if not cpu_kernels.available():
        pytest.skip("no C compiler: the kernels are off")
    tok = smollm_bf16.tokenizer
    fast = Engine(maybe_quantize(copy.deepcopy(smollm_bf16.model), "none"), tok)
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True) for q in QUESTIONS]
    params = SamplingParams(max_tokens=40)
    alone = []
    for p in prompts:
        fast.model.cached_ids = []  # a fresh cache: no prefix reused from the previous prompt
        alone.append(fast.generate(p, params).token_ids)
    for slots, order in ((3, list(range(8))), (8, list(range(8))), (2, list(range(8))[::-1])):
        done: list[int] = []
        got = fast.generate_batch([prompts[i] for i in order], params, slots=slots,
                                  on_done=lambda i, g, done=done: done.append(i))
        assert [g.token_ids for g in got] == [alone[i] for i in order], (slots, order)
        assert sorted(done) == list(range(8))


def test_generate_batch_wants_one_parameter_set_per_prompt(engine):
    with pytest.raises(NessoError, match="3 prompts need as many"):
        engine.generate_batch(PROMPTS, [SamplingParams(max_tokens=2)] * 2)
