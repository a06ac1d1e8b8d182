import pytest
import torch

from nesso.config import PRESETS, ModelConfig, get_preset
from nesso.errors import NessoError
from nesso.model import Transformer, build_model
from nesso.packed_attention import document_spans, packed_causal_mask


def test_nesso_04b_has_exactly_the_reported_parameter_count():
    cfg = get_preset("nesso-0.4b")
    assert cfg.num_parameters() == {"embedding": 123_125_760, "non_embedding": 314_635_200, "total": 437_760_960}
    with torch.device("meta"):
        model = Transformer(cfg)
    unique = {id(p): p.numel() for p in model.parameters()}  # tied head counted once
    assert sum(unique.values()) == 437_760_960


def test_training_flops_count_weight_gradients_only_for_trained_matrices():
    cfg = get_preset("nesso-0.4b")
    attention = 12 * 32 * 15 * 64 * 4096
    n = 314_635_200 + 123_125_760  # matrices incl. the tied head
    assert cfg.flops_per_token(4096) == 6 * n + attention
    assert cfg.flops_per_token(4096, trained_matmul=1_000_000) == 4 * n + 6_000_000 + attention  # LoRA
    # SFT: the head runs on the labelled positions only (here a quarter of them)
    lora_sft = 4 * (314_635_200 + 123_125_760 / 4) + 6_000_000 + attention
    assert cfg.flops_per_token(4096, trained_matmul=1_000_000, head_share=0.25) == lora_sft


def test_preset_shapes_match_the_card():
    cfg = PRESETS["nesso-0.4b"]
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_layers) == (960, 2560, 32)
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.vocab_size) == (15, 5, 64, 128_256)
    assert cfg.tie_word_embeddings and cfg.rope_theta == 10_000 and cfg.rms_norm_eps == 1e-5


def test_unknown_preset_and_bad_config_are_clear_errors():
    with pytest.raises(NessoError, match="unknown preset 'nesso-9b'"):
        get_preset("nesso-9b")
    with pytest.raises(NessoError, match="multiple of num_kv_heads"):
        ModelConfig(num_heads=15, num_kv_heads=4)


def test_cached_decode_equals_full_forward(tiny_model):
    ids = torch.randint(0, 1000, (2, 12))
    with torch.no_grad():
        full = tiny_model(ids)
        tiny_model.setup_caches(2, 32)
        pre = tiny_model(ids[:, :8], cache_start=0)
        steps = [tiny_model(ids[:, i:i + 1], cache_start=i) for i in range(8, 12)]
        chunk = tiny_model(ids[:, 8:12], cache_start=8)  # chunked prefill into a non-empty cache
    torch.testing.assert_close(pre, full[:, :8], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(steps, 1), full[:, 8:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(chunk, full[:, 8:], atol=1e-5, rtol=1e-5)


def test_packed_mask_equals_separate_sequences(tiny_model):
    a, b = torch.randint(0, 1000, (1, 5)), torch.randint(0, 1000, (1, 7))
    packed = torch.cat([a, b], 1)
    doc = torch.tensor([[0] * 5 + [1] * 7])
    pos = torch.tensor([list(range(5)) + list(range(7))])
    with torch.no_grad():
        out = tiny_model(packed, positions=pos, attn_mask=packed_causal_mask(doc))
        torch.testing.assert_close(out[:, :5], tiny_model(a), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[:, 5:], tiny_model(b), atol=1e-5, rtol=1e-5)


def test_spans_equal_the_packed_mask_in_values_and_gradients(tiny_model):
    """Span-by-span attention (what training uses for packed rows) computes what the block-diagonal mask does:
    two rows with different packings and padding, outputs and parameter gradients."""
    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (2, 12))
    doc = torch.tensor([[0] * 5 + [1] * 7, [0] * 3 + [1] * 4 + [2] * 3 + [-1] * 2])
    assert document_spans(doc) == [[(0, 5), (5, 12)], [(0, 3), (3, 7), (7, 10), (10, 12)]]
    pos = torch.tensor([list(range(5)) + list(range(7)), [0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 0, 0]])
    results = []
    for kwargs in ({"attn_mask": packed_causal_mask(doc)}, {"segments": doc}):
        tiny_model.zero_grad()
        out = tiny_model(ids, positions=pos, **kwargs)
        out[:, :10].float().pow(2).mean().backward()  # the padding's outputs are never trained on
        results.append((out[:, :10].detach(), [p.grad.clone() for p in tiny_model.parameters()]))
    (out_mask, grads_mask), (out_spans, grads_spans) = results
    torch.testing.assert_close(out_spans, out_mask, atol=1e-5, rtol=1e-5)
    for a, b in zip(grads_spans, grads_mask):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="one or the other"):
        tiny_model(ids, attn_mask=packed_causal_mask(doc), segments=doc)


def test_bf16_cast_keeps_rope_tables_fp32_and_weights_tied(tiny_config):
    model = build_model(tiny_config, dtype=torch.bfloat16)
    assert model.rope_cos.dtype == torch.float32
    assert model.lm_head.weight is model.embed_tokens.weight
    assert model.embed_tokens.weight.dtype == torch.bfloat16


def test_same_seed_same_weights(tiny_config):
    a, b = build_model(tiny_config, seed=3), build_model(tiny_config, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
