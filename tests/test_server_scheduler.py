"""Continuous batching: sequences that join and leave between decode steps decode exactly as they would alone;
the scheduler thread streams, finishes and cancels requests."""

from __future__ import annotations

import queue
import time

import pytest

from nesso.engine import ContinuousBatch, Engine, SamplingParams
from nesso.server.scheduler import Delta, Failed, Finished, Scheduler

PROMPTS = ["Ciao", "The quick brown fox jumps over", "Una frase un po' più lunga delle altre, per vedere il resto.",
           "Hello world, this is a test"]


@pytest.fixture(scope="module")
def engine(llama_tokenizer):
    from nesso.config import ModelConfig
    from nesso.model import build_model

    cfg = ModelConfig(hidden_size=64, intermediate_size=160, num_layers=2, num_heads=4, num_kv_heads=2,
                      head_dim=16, max_position_embeddings=512)
    return Engine(build_model(cfg, seed=1), llama_tokenizer)


def _drain(batch: ContinuousBatch, pending: list, every: int = 3) -> dict:
    """Admit one sequence every ``every`` steps while decoding the others; returns id(seq) -> Generation."""
    results, step = {}, 0
    while pending or batch.active:
        if pending and batch.free and step % every == 0:
            batch.add(pending.pop(0))
        batch.step()
        step += 1
        for s in batch.active:
            if s.finish:
                results[id(s)] = batch.result(s)
                batch.remove(s)
    return results


def test_sequences_joining_mid_flight_decode_as_they_would_alone(engine):
    params = [SamplingParams(max_tokens=20), SamplingParams(max_tokens=16, temperature=0.9, seed=3),
              SamplingParams(max_tokens=25, repetition_penalty=1.3), SamplingParams(max_tokens=12, top_k=5,
                                                                                     temperature=1.0, seed=9)]
    alone = [engine.generate(p, sp) for p, sp in zip(PROMPTS, params)]
    batch = ContinuousBatch(engine, slots=3, capacity=8)  # fewer slots than requests, and a cache that must grow
    seqs = [batch.sequence(p, sp) for p, sp in zip(PROMPTS, params)]
    results = _drain(batch, list(seqs))
    for s, ref in zip(seqs, alone):
        got = results[id(s)]
        assert got.token_ids == ref.token_ids and got.text == ref.text
        assert got.finish_reason == ref.finish_reason and got.prompt_tokens == ref.prompt_tokens
    assert batch._caches[0].capacity > 8


def test_with_the_decode_kernels_rows_decode_as_they_would_alone(engine, llama_tokenizer, monkeypatch):
    """bf16 with nesso's kernels: a batched step gives each row the numbers its own step would (per-row products,
    attention at each row's length), so joining, leaving and idle rows change no one's tokens — eagerly or
    replayed (nesso.decode_graph)."""
    import copy

    import torch

    from nesso import cpu_kernels
    from nesso.quantize import maybe_quantize

    if not cpu_kernels.available():
        pytest.skip("no C compiler: the kernels are off")
    fast = Engine(maybe_quantize(copy.deepcopy(engine.model).to(torch.bfloat16), "none"), llama_tokenizer)
    params = [SamplingParams(max_tokens=20), SamplingParams(max_tokens=16, temperature=0.9, seed=3),
              SamplingParams(max_tokens=25, repetition_penalty=1.3), SamplingParams(max_tokens=12)]
    alone = [fast.generate(p, sp) for p, sp in zip(PROMPTS, params)]
    from nesso.decode_graph import DecodeGraph

    per_row, replays = [], []
    kernel, replay_rows = cpu_kernels.rope_cache_attention_bf16, DecodeGraph.replay_rows
    monkeypatch.setattr(cpu_kernels, "rope_cache_attention_bf16",
                        lambda *a, rows=None: per_row.append(rows is not None) or kernel(*a, rows=rows))
    monkeypatch.setattr(DecodeGraph, "replay_rows", lambda self, *a: replays.append(1) or replay_rows(self, *a))
    batch = ContinuousBatch(fast, slots=3, capacity=8)
    seqs = [batch.sequence(p, sp) for p, sp in zip(PROMPTS, params)]
    results = _drain(batch, list(seqs))
    for s, ref in zip(seqs, alone):
        assert results[id(s)].token_ids == ref.token_ids
    assert any(per_row)  # the batched steps took the kernel, rows at their own lengths
    assert len(replays) > 10  # and, once recorded for a row count, replayed it


def test_a_free_slot_serves_the_next_turn_from_its_cache(engine, llama_tokenizer):
    batch = ContinuousBatch(engine, slots=4)
    first = batch.sequence(PROMPTS[2], SamplingParams(max_tokens=8))
    _drain(batch, [first])
    turn2 = llama_tokenizer.encode(PROMPTS[2]) + first.out + llama_tokenizer.encode(" e poi?")
    before = batch.reused_tokens
    second = batch.sequence(turn2, SamplingParams(max_tokens=10))
    results = _drain(batch, [second])
    assert batch.reused_tokens - before >= len(llama_tokenizer.encode(PROMPTS[2]))
    assert results[id(second)].token_ids == engine.generate(turn2, SamplingParams(max_tokens=10)).token_ids


def test_max_tokens_is_clamped_to_the_context(engine, llama_tokenizer):
    batch = ContinuousBatch(engine, slots=1)
    prompt = llama_tokenizer.encode("word " * 500)[:505]
    seq = batch.sequence(prompt, SamplingParams(max_tokens=100))
    assert seq.params.max_tokens == engine.max_len - len(prompt)
    result = _drain(batch, [seq])[id(seq)]
    assert result.completion_tokens <= engine.max_len - len(prompt) and result.finish_reason == "length"


def test_scheduler_streams_finishes_and_cancels(engine, llama_tokenizer):
    sched = Scheduler(engine, slots=2)
    sched.start()
    try:
        params = SamplingParams(max_tokens=16)
        events: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in range(3)]
        tickets = [sched.submit(llama_tokenizer.encode(p), params, None, q.put) for p, q in zip(PROMPTS, events)]
        tickets[2].cancel()  # may be cancelled while queued or while running: either way it frees its slot
        for p, q in zip(PROMPTS[:2], events[:2]):
            text = ""
            while True:
                ev = q.get(timeout=60)
                if isinstance(ev, Delta):
                    text += ev.text
                else:
                    break
            assert isinstance(ev, Finished) and not isinstance(ev, Failed)
            assert ev.generation.text == text == engine.generate(p, params).text
        stats = sched.snapshot()
        assert stats["finished"] >= 2 and stats["peak_batch"] >= 1
        deadline = time.monotonic() + 30
        while sched.snapshot()["active"] or sched.snapshot()["queued"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert sched.snapshot()["cancelled"] + sched.snapshot()["finished"] == 3
    finally:
        sched.stop()


def test_an_int8_model_batches_too(llama_tokenizer):
    from nesso.config import ModelConfig
    from nesso.model import build_model
    from nesso.quantize import quantize_int8

    cfg = ModelConfig(hidden_size=64, intermediate_size=160, num_layers=2, num_heads=4, num_kv_heads=2,
                      head_dim=16, max_position_embeddings=256)
    engine = Engine(quantize_int8(build_model(cfg, seed=4)), llama_tokenizer)
    params = SamplingParams(max_tokens=10)
    batch = ContinuousBatch(engine, slots=2)
    seqs = [batch.sequence(p, params) for p in PROMPTS[:3]]
    results = _drain(batch, list(seqs), every=2)
    for s, p in zip(seqs, PROMPTS):
        assert results[id(s)].token_ids == engine.generate(p, params).token_ids
