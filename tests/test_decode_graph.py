"""nesso.decode_graph: a recorded decode step replays bit for bit like the eager forward (bf16 and int8, many
steps, the KV cache included), and is declined wherever something other than a kernel call shapes the step."""

from __future__ import annotations

import copy

import pytest
import torch

from nesso import cpu_kernels
from nesso.config import ModelConfig
from nesso.decode_graph import DecodeGraph
from nesso.model import build_model
from nesso.quantize import maybe_quantize

needs_kernels = pytest.mark.skipif(not cpu_kernels.available(), reason="no C compiler: the kernels are off")

# odd sizes: tails after the vector loops, 3 query heads per key/value head, untied output head
TINY = ModelConfig(vocab_size=300, hidden_size=72, intermediate_size=200, num_layers=3, num_heads=6, num_kv_heads=2,
                   head_dim=12, max_position_embeddings=64, tie_word_embeddings=False)
PROMPT = [5, 17, 250, 3, 99]


def prepared(mode: str, seed: int = 0) -> torch.nn.Module:
    return maybe_quantize(build_model(TINY, dtype=torch.bfloat16, seed=seed).eval(), mode)


@torch.inference_mode()
def prefill(model: torch.nn.Module, capacity: int = 32) -> None:
    model.setup_caches(1, capacity)
    model(torch.tensor([PROMPT]), cache_start=0)


@torch.inference_mode()
def eager_step(model: torch.nn.Module, token: int, pos: int) -> torch.Tensor:
    return model(torch.tensor([[token]]), cache_start=pos, last_only=True)


@needs_kernels
def test_the_residual_add_kernel_equals_pytorchs_bf16_add():
    g = torch.Generator().manual_seed(0)
    for n in (1, 72, 1001):
        a = (torch.randn(1, 1, n, generator=g) * 30).to(torch.bfloat16)
        b = torch.randn(1, 1, n, generator=g).to(torch.bfloat16)
        assert torch.equal(cpu_kernels.add_bf16(a, b), a + b)


@needs_kernels
@pytest.mark.parametrize("mode", ["none", "int8"])
def test_replayed_steps_equal_the_eager_steps_bit_for_bit(mode):
    eager, graphed = prepared(mode), prepared(mode)
    prefill(eager)
    prefill(graphed)
    tokens = [7, 299, 0, 42, 42, 160, 11, 8, 77, 1]
    pos = len(PROMPT)
    expected = eager_step(eager, tokens[0], pos)
    first, graph = DecodeGraph.capture(graphed, tokens[0], pos)
    assert graph is not None
    assert torch.equal(first, expected)
    for tok in tokens[1:]:
        pos += 1
        expected = eager_step(eager, tok, pos)
        got = graph.replay(tok, pos)
        assert got is not None and torch.equal(got, expected), pos
    for a, b in zip(eager.caches, graphed.caches):  # the replays wrote the same keys and values
        assert torch.equal(a.k[:, :, :pos + 1], b.k[:, :, :pos + 1])
        assert torch.equal(a.v[:, :, :pos + 1], b.v[:, :, :pos + 1])


@needs_kernels
def test_replay_declines_a_slot_past_the_cache_or_a_new_thread_count():
    model = prepared("none")
    prefill(model, capacity=8)
    _, graph = DecodeGraph.capture(model, 3, len(PROMPT))
    assert graph is not None
    assert graph.replay(4, 8) is None  # the caches hold slots 0..7
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert graph.replay(4, 6) is None  # the recorded calls carry the old thread count
    finally:
        torch.set_num_threads(threads)
    assert graph.replay(4, 6) is not None


@needs_kernels
def test_a_lora_hook_or_a_pytorch_op_between_kernels_declines_the_capture():
    from nesso.lora import LoraConfig, add_lora

    model = prepared("none")
    add_lora(model, LoraConfig(r=2, alpha=4), seed=0)  # forward hooks that add to each projection's output
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.05)
    prefill(model)
    reference = copy.deepcopy(model)
    logits, graph = DecodeGraph.capture(model, 9, len(PROMPT))
    assert graph is None
    assert torch.equal(logits, eager_step(reference, 9, len(PROMPT)))

    model = prepared("none")
    model.layers[1].mlp.kernels = False  # this MLP runs PyTorch's ops: tensors no recorded call wrote
    prefill(model)
    assert DecodeGraph.capture(model, 9, len(PROMPT))[1] is None


@needs_kernels
def test_a_kernel_output_changed_in_place_is_caught_by_the_check_replay(monkeypatch):
    eager, graphed = prepared("none"), prepared("none")
    real_add = cpu_kernels.add_bf16

    def add_then_bump(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return real_add(a, b).add_(1)  # recorded as a plain add; the in-place bump is invisible to the recorder

    monkeypatch.setattr(cpu_kernels, "add_bf16", add_then_bump)
    prefill(eager)
    prefill(graphed)
    pos = len(PROMPT)
    logits, graph = DecodeGraph.capture(graphed, 21, pos)
    assert graph is None
    assert torch.equal(logits, eager_step(eager, 21, pos))
    for a, b in zip(eager.caches, graphed.caches):  # what the check replay wrote to the cache was put back
        assert torch.equal(a.k, b.k) and torch.equal(a.v, b.v)


def test_without_kernels_there_is_no_graph(monkeypatch):
    monkeypatch.setattr(cpu_kernels, "_lib", None)
    model = build_model(TINY, dtype=torch.bfloat16, seed=0).eval()
    prefill(model)
    logits, graph = DecodeGraph.capture(model, 2, len(PROMPT))
    assert graph is None and logits.shape == (1, 1, TINY.vocab_size)


@needs_kernels
def test_the_engine_replays_after_the_first_step_and_generates_the_same_tokens(llama_tokenizer, monkeypatch):
    from nesso.engine import Engine, SamplingParams

    cfg = ModelConfig(hidden_size=64, intermediate_size=160, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                      max_position_embeddings=256)
    model = maybe_quantize(build_model(cfg, dtype=torch.bfloat16, seed=1).eval(), "none")
    engine = Engine(model, llama_tokenizer)
    engine.stop_ids = set()  # random weights: decode every token asked for
    prompt, params = llama_tokenizer.encode("The quick brown fox"), SamplingParams(max_tokens=24)
    engine.decode_graph = False
    eager = engine.generate(prompt, params)
    engine.decode_graph = True
    model.cached_ids = []  # no prefix reuse: the same prefill as the eager run
    calls = []
    replay = DecodeGraph.replay
    monkeypatch.setattr(DecodeGraph, "replay", lambda self, tok, pos: calls.append(pos) or replay(self, tok, pos))
    graphed = engine.generate(prompt, params)
    assert graphed.token_ids == eager.token_ids and graphed.text == eager.text
    assert len(calls) == 24 - 2  # the prefill gives token 1, the recorded step token 2, replays the rest


@needs_kernels
def test_a_sequence_running_alone_in_a_continuous_batch_replays_too(llama_tokenizer, monkeypatch):
    from nesso.engine import ContinuousBatch, Engine, SamplingParams

    cfg = ModelConfig(hidden_size=64, intermediate_size=160, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                      max_position_embeddings=256)
    engine = Engine(maybe_quantize(build_model(cfg, dtype=torch.bfloat16, seed=2).eval(), "none"), llama_tokenizer)
    engine.stop_ids = set()
    prompt, params = llama_tokenizer.encode("Una frase per vedere il resto"), SamplingParams(max_tokens=20)
    alone = engine.generate(prompt, params)
    captures, replays = [], []
    capture, replay = DecodeGraph.capture.__func__, DecodeGraph.replay
    monkeypatch.setattr(DecodeGraph, "capture", classmethod(
        lambda cls, *a: captures.append(a[2]) or capture(cls, *a)))
    monkeypatch.setattr(DecodeGraph, "replay", lambda self, tok, pos: replays.append(pos) or replay(self, tok, pos))
    batch = ContinuousBatch(engine, slots=2, capacity=8)  # the slot cache grows twice on the way: new captures
    seq = batch.sequence(prompt, params)
    batch.add(seq)
    while not seq.finish:
        batch.step()
    assert batch.result(seq).token_ids == alone.token_ids  # the same prefill, then the same kernels and buffers
    assert len(captures) >= 2 and len(captures) + len(replays) == 19  # token 1 comes from the prefill
    batch.remove(seq)

    other = batch.sequence(llama_tokenizer.encode("Hello"), SamplingParams(max_tokens=6))
    again = batch.sequence(prompt, params)
    batch.add(other)
    batch.add(again)  # two running: the batched forward; then `again` alone replays again
    before = len(replays)
    while not again.finish:
        batch.step()
        for s in batch.active:
            if s.finish and s is not again:
                batch.remove(s)
    assert other.finish == "length" and len(again.out) == 20 and len(replays) > before


@needs_kernels
def test_replay_rows_declines_other_row_counts_and_slots_outside_the_cache(llama_tokenizer):
    from nesso.engine import ContinuousBatch, Engine, SamplingParams

    cfg = ModelConfig(hidden_size=64, intermediate_size=160, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                      max_position_embeddings=256)
    engine = Engine(maybe_quantize(build_model(cfg, dtype=torch.bfloat16, seed=3).eval(), "none"), llama_tokenizer)
    engine.stop_ids = set()
    batch = ContinuousBatch(engine, slots=2, capacity=32)
    for text in ("Ciao", "Hello there"):
        batch.add(batch.sequence(text, SamplingParams(max_tokens=8)))
    batch.step()  # two rows: recorded
    graph = next(g for key, g in batch._graphs.items() if key[0] == "rows")
    assert graph is not None
    tokens, positions = torch.tensor([5, 6]), torch.tensor([3, 4])
    with torch.inference_mode():  # the batch made its slot buffers there
        assert graph.replay_rows(torch.tensor([5]), positions[:1]) is None  # another row count
        write, visible = graph.slots
        saved = write.clone(), visible.clone()
        write[1] = graph.capacity  # past the cache (its last column is the scratch one, capacity - 1)
        assert graph.replay_rows(tokens, positions) is None
        write.copy_(saved[0])
        visible[0] = 0  # a row that sees nothing
        assert graph.replay_rows(tokens, positions) is None
        visible.copy_(saved[1])
        assert graph.replay_rows(tokens, positions) is not None
        assert graph.replay(5, 3) is None  # a rows graph is not a batch-1 one
