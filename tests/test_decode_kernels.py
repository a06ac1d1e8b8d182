"""nesso's CPU decode kernels (nesso.cpu_kernels, used through nesso.quantize.maybe_quantize): each kernel equals the
PyTorch op it stands in for, a prepared model decodes like the plain PyTorch forward, training, autograd and LoRA
are unaffected, there is a fallback without a C compiler, and on the embedded model the 16-bit path stays within
bf16 tolerance of fp32 and int8 keeps most greedy choices of bf16 (measured over 1,000 positions of real text).
No timings here: speed is benchmarks/decode.py's job."""

from __future__ import annotations

import copy
import importlib.metadata

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nesso import cpu_kernels
from nesso.config import ModelConfig
from nesso.model import RMSNorm, apply_rope, build_model
from nesso.quantize import Int8Linear, KernelLinear, decode_logits, maybe_quantize, use_kernels

needs_kernels = pytest.mark.skipif(not cpu_kernels.available(), reason="no C compiler: the kernels are off")

# odd sizes on purpose: tails after the vector loops, 3 query heads per key/value head
TINY = ModelConfig(vocab_size=512, hidden_size=72, intermediate_size=200, num_layers=2, num_heads=6, num_kv_heads=2,
                   head_dim=12, max_position_embeddings=128)


def rel_error(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.float() - ref.float()).norm() / ref.float().norm()).item()


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.argmax(-1) == b.argmax(-1)).float().mean().item()


# ---- each kernel against the op it replaces ---------------------------------------------------------------------

@needs_kernels
@pytest.mark.parametrize("rows,n,k", [(1, 40, 96), (3, 37, 70), (16, 64, 2600)])
def test_linear_bf16_equals_f_linear(rows, n, k):
    g = torch.Generator().manual_seed(rows)
    x, w = torch.randn(rows, k, generator=g).bfloat16(), torch.randn(n, k, generator=g).bfloat16()
    with torch.inference_mode():
        got = cpu_kernels.linear_bf16(x, w)
    exact = x.float() @ w.float().T
    assert got.dtype == torch.bfloat16 and got.shape == (rows, n)
    assert (got.float() - exact).abs().max().item() <= 2 ** -8 * exact.abs().max().item()  # bf16 output rounding


@needs_kernels
@pytest.mark.parametrize("k", [70, 576, 2600])
def test_linear_bf16_rows_together_equal_each_row_alone(k):
    g = torch.Generator().manual_seed(k)
    x, w = torch.randn(11, k, generator=g).bfloat16(), torch.randn(37, k, generator=g).bfloat16()
    with torch.inference_mode():
        for rows in (2, 5, 8, 11):  # up to eight rows share each weight load, then the next group
            together = cpu_kernels.linear_bf16(x[:rows], w)
            for m in range(rows):
                assert torch.equal(together[m], cpu_kernels.linear_bf16(x[m:m + 1], w)[0]), (rows, m)


@needs_kernels
@pytest.mark.parametrize("k", [70, 576, 5000])  # 5000: past the 4,096-column integer flush
def test_linear_int8_rows_together_equal_each_row_alone(k):
    g = torch.Generator().manual_seed(k)
    x = torch.randn(11, k, generator=g).bfloat16()
    q = torch.randint(-127, 128, (37, k), generator=g, dtype=torch.int8)
    scale = torch.rand(37, generator=g).bfloat16()
    with torch.inference_mode():
        for rows in (2, 5, 8, 11):
            together = cpu_kernels.linear_int8(x[:rows], (q, scale))
            for m in range(rows):
                assert torch.equal(together[m], cpu_kernels.linear_int8(x[m:m + 1], (q, scale))[0]), (rows, m)


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_linear_int8_equals_the_dequantized_product(dtype):
    lin = nn.Linear(5000, 33, bias=False)  # k > 4096: the int32 accumulators are flushed on the way
    q = Int8Linear(lin, dtype)
    x = torch.randn(4, 5000).to(dtype)
    with torch.inference_mode():
        got = q(x)  # 4 rows: the kernel
    exact = x.float() @ (q.weight_int8.float() * q.scale.float()[:, None]).T
    assert got.dtype == dtype
    assert rel_error(got, exact) < (5e-3 if dtype == torch.bfloat16 else 1e-4)  # int16 activations, output dtype


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_glu_products_equal_silu_then_the_product(dtype):
    g = torch.Generator().manual_seed(7)
    gu = (torch.randn(3, 1, 2 * 70, generator=g) * 3).to(dtype)  # [gate | up]: 70 columns, a tail after 64
    gu[0, 0, 5] = -200.0  # exp overflows: silu is -0
    act = F.silu(gu[..., :70]) * gu[..., 70:]  # what the kernel stands in for, rounded where PyTorch rounds
    lin = nn.Linear(70, 33, bias=False)
    q = Int8Linear(lin, dtype)
    with torch.inference_mode():
        got8, ref8 = cpu_kernels.linear_int8(gu, (q.weight_int8, q.scale), glu=True), q(act)
        assert torch.equal(got8, ref8)  # the same int16 activations as the unfused kernel call
        if dtype == torch.bfloat16:
            w = lin.weight.detach().bfloat16()
            assert torch.equal(cpu_kernels.linear_bf16(gu, w, glu=True), cpu_kernels.linear_bf16(act, w))


@needs_kernels
@pytest.mark.parametrize("d,pos", [(12, 37), (64, 0), (64, 100)])  # 64: the vector paths; 101 slots: a tail
def test_norm_rope_and_attention_kernels_equal_pytorch(d, pos):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 72, generator=g).bfloat16()
    r = torch.randn(3, 1, 72, generator=g).bfloat16()
    norm = RMSNorm(72, 1e-5).bfloat16()
    norm.weight.data.uniform_(0.5, 1.5, generator=g)
    with torch.inference_mode():
        ref = norm(x)
        got = cpu_kernels.rms_norm_bf16(x, norm.weight, norm.eps)
        assert (got.float() - ref.float()).abs().max().item() <= 2 ** -7 * ref.float().abs().max().item()
        total, got = cpu_kernels.rms_norm_bf16(x, norm.weight, norm.eps, residual=r)
        assert torch.equal(total, x + r)
        ref = norm(x + r)
        assert (got.float() - ref.float()).abs().max().item() <= 2 ** -7 * ref.float().abs().max().item()

    # One decode step of 2 rows, 6 query heads on 2 key/value heads of d, after pos cached slots; q/k/v are views of
    # one fused projection's output, as Attention passes them.
    b, heads, kv = 2, 6, 2
    qkv = torch.randn(b, 1, (heads + 2 * kv) * d, generator=g).bfloat16()
    q, k, v = qkv.split_with_sizes([heads * d, kv * d, kv * d], -1)
    cos, sin = torch.randn(b, 1, d, generator=g), torch.randn(b, 1, d, generator=g)
    cache_k, cache_v = torch.randn(2, b, kv, 120, d, generator=g).bfloat16().unbind(0)
    ref_k, ref_v = cache_k.clone(), cache_v.clone()
    qh = apply_rope(q.view(b, 1, heads, d).transpose(1, 2), cos, sin)
    ref_k[:, :, pos:pos + 1] = apply_rope(k.view(b, 1, kv, d).transpose(1, 2), cos, sin)
    ref_v[:, :, pos:pos + 1] = v.view(b, 1, kv, d).transpose(1, 2)
    ref = F.scaled_dot_product_attention(qh, ref_k[:, :, :pos + 1], ref_v[:, :, :pos + 1], enable_gqa=True)
    ref = ref.transpose(1, 2).reshape(b, 1, heads * d)
    with torch.inference_mode():
        got = cpu_kernels.rope_cache_attention_bf16(q, k, v, cos, sin, cache_k, cache_v, pos, heads, kv)
        assert got is not None
        assert torch.equal(cache_k, ref_k) and torch.equal(cache_v, ref_v)  # RoPE'd keys, values, slot pos only
        assert (got.float() - ref.float()).abs().max().item() <= 2 ** -7 * ref.float().abs().max().item() + 1e-3
        assert cpu_kernels.rope_cache_attention_bf16(q, k, v, cos, sin, cache_k, cache_v, 120, heads, kv) is None


@needs_kernels
def test_attention_kernel_rows_at_their_own_lengths():
    """A continuous batch's decode step: row m writes at slot write[m] and sees slots [0, visible[m]) (an idle row
    writes to the scratch slot and sees slot 0 only)."""
    g = torch.Generator().manual_seed(1)
    b, heads, kv, d, slots = 3, 6, 2, 16, 40
    q = torch.randn(b, 1, heads * d, generator=g).bfloat16()
    k, v = torch.randn(b, 1, kv * d, generator=g).bfloat16(), torch.randn(b, 1, kv * d, generator=g).bfloat16()
    cos, sin = torch.randn(b, 1, d, generator=g), torch.randn(b, 1, d, generator=g)
    cache_k, cache_v = torch.randn(2, b, kv, slots, d, generator=g).bfloat16().unbind(0)
    write, visible = torch.tensor([7, 0, slots - 1]), torch.tensor([8, 1, 1])
    ref_k, ref_v, refs = cache_k.clone(), cache_v.clone(), []
    for m in range(b):
        c, s = cos[m:m + 1], sin[m:m + 1]
        ref_k[m, :, write[m]] = apply_rope(k[m:m + 1].view(1, 1, kv, d).transpose(1, 2), c, s)[0, :, 0]
        ref_v[m, :, write[m]] = v[m].view(kv, d)
        qh = apply_rope(q[m:m + 1].view(1, 1, heads, d).transpose(1, 2), c, s)
        seen = slice(0, int(visible[m]))
        y = F.scaled_dot_product_attention(qh, ref_k[m:m + 1, :, seen], ref_v[m:m + 1, :, seen], enable_gqa=True)
        refs.append(y.transpose(1, 2).reshape(1, 1, heads * d))
    ref = torch.cat(refs)
    with torch.inference_mode():
        got = cpu_kernels.rope_cache_attention_bf16(q, k, v, cos, sin, cache_k, cache_v, 0, heads, kv,
                                                    rows=(write, visible))
        assert got is not None
        assert torch.equal(cache_k, ref_k) and torch.equal(cache_v, ref_v)
        assert (got.float() - ref.float()).abs().max().item() <= 2 ** -7 * ref.float().abs().max().item() + 1e-3
        for bad in ((torch.tensor([7, 0, slots]), visible), (write, torch.tensor([8, 0, 1])), (write[:2], visible[:2])):
            assert cpu_kernels.rope_cache_attention_bf16(q, k, v, cos, sin, cache_k, cache_v, 0, heads, kv,
                                                        rows=bad) is None


# ---- a prepared model -------------------------------------------------------------------------------------------

@needs_kernels
def test_prepared_model_decodes_like_the_pytorch_forward():
    plain = build_model(TINY, dtype=torch.bfloat16, seed=3).eval()
    fast = maybe_quantize(copy.deepcopy(plain), "none")
    assert isinstance(fast.lm_head, KernelLinear) and fast.layers[0].self_attn.kernels
    assert fast.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(fast.state_dict().values(), plain.state_dict().values()))
    assert fast.lm_head.weight is fast.embed_tokens.weight  # still tied
    rows = torch.randint(0, TINY.vocab_size, (2, 30), generator=torch.Generator().manual_seed(0))
    ref32 = decode_logits(build_model(TINY, dtype=torch.float32, seed=3).eval(), rows)
    slow, got = decode_logits(plain, rows), decode_logits(fast, rows)
    assert rel_error(got, slow) < 2e-2  # both bf16, rounded at different places
    assert rel_error(got, ref32) <= 1.5 * rel_error(slow, ref32) + 1e-3  # as close to fp32 as PyTorch's bf16


@needs_kernels
def test_batched_rows_equal_single_rows():
    model = maybe_quantize(build_model(TINY, dtype=torch.bfloat16, seed=4).eval(), "int8")
    rows = torch.randint(0, TINY.vocab_size, (3, 12), generator=torch.Generator().manual_seed(1))
    together = decode_logits(model, rows).reshape(3, -1, TINY.vocab_size)
    for i in range(3):
        assert torch.equal(together[i], decode_logits(model, rows[i:i + 1]))  # each row alone, same order


@needs_kernels
def test_training_and_autograd_are_unaffected():
    plain = build_model(TINY, dtype=torch.bfloat16, seed=5)
    fast = use_kernels(copy.deepcopy(plain))
    ids = torch.randint(0, TINY.vocab_size, (1, 1), generator=torch.Generator().manual_seed(2))  # one row: the
    grads = []  # kernels' size, yet with autograd on both take PyTorch's ops, bit for bit
    for m in (plain, fast):
        loss = m(ids).float().logsumexp(-1).sum()
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0])


@needs_kernels
def test_lora_hooks_still_apply_on_a_prepared_model():
    from nesso.lora import LoraConfig, add_lora

    plain = build_model(TINY, dtype=torch.bfloat16, seed=6).eval()
    fast = use_kernels(copy.deepcopy(plain))
    for m in (plain, fast):
        add_lora(m, LoraConfig(r=4, alpha=8), seed=0)
        with torch.no_grad():
            for name, p in m.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.full_like(p, 0.05))  # B != 0: the adapters change the output
    rows = torch.randint(0, TINY.vocab_size, (1, 10), generator=torch.Generator().manual_seed(3))
    bare = decode_logits(use_kernels(build_model(TINY, dtype=torch.bfloat16, seed=6).eval()), rows)
    slow, got = decode_logits(plain, rows), decode_logits(fast, rows)
    assert rel_error(got, slow) < 2e-2
    assert rel_error(got, bare) > 10 * rel_error(got, slow)  # the adapters' contribution is there


def test_without_a_compiler_it_warns_once_and_uses_pytorch(monkeypatch, tmp_path):
    monkeypatch.setattr(cpu_kernels, "_lib", None)
    monkeypatch.setattr(cpu_kernels, "_tried", False)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv(cpu_kernels.ENV_CACHE, str(tmp_path / "cache"))  # no cached build to fall back on
    with pytest.warns(RuntimeWarning, match="plain PyTorch"):
        assert not cpu_kernels.available()
    assert not cpu_kernels.available()  # the second time: no new warning (pytest would fail on an unexpected one)
    assert cpu_kernels.status().startswith("unavailable")
    plain = build_model(TINY, dtype=torch.bfloat16, seed=7).eval()
    prepared = maybe_quantize(copy.deepcopy(plain), "none")
    assert type(prepared.lm_head) is nn.Linear  # untouched
    rows = torch.randint(0, TINY.vocab_size, (1, 8), generator=torch.Generator().manual_seed(4))
    assert torch.equal(decode_logits(prepared, rows), decode_logits(plain, rows))
    int8 = maybe_quantize(copy.deepcopy(plain), "int8")  # PyTorch's int8 weight-pack matmul instead
    assert agreement(decode_logits(int8, rows), decode_logits(plain, rows)) >= 0.8


def test_unknown_quantization_is_an_error():
    from nesso.errors import NessoError

    with pytest.raises(NessoError, match="unknown quantization"):
        maybe_quantize(build_model(TINY), "int4")


# ---- the embedded model: the 16-bit and int8 decode paths on real text -------------------------------------------

def real_text_rows(tokenizer, rows: int, length: int) -> torch.Tensor:
    """Real English text that does not change under us: the README shipped in the installed torch wheel."""
    text = importlib.metadata.metadata("torch").get_payload() or ""
    ids = tokenizer.encode(text)
    assert len(ids) >= rows * length, "torch's package README is shorter than expected"
    return torch.tensor(ids[: rows * length]).view(rows, length)


@pytest.fixture(scope="module")
def embedded():
    from nesso.loader import load_model

    return load_model("default")  # SmolLM2-135M-Instruct + nesso's LoRA, merged; fp32


@pytest.fixture(scope="module")
def embedded_bf16(embedded):
    return maybe_quantize(copy.deepcopy(embedded.model).to(torch.bfloat16).eval(), "none")


def median_rel_error(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a - ref).norm(dim=-1) / ref.norm(dim=-1)).median().item()


def test_16bit_decode_is_within_bf16_tolerance_of_fp32(embedded, embedded_bf16, one_thread):
    """Per position the bf16 logits stay within bf16 tolerance of fp32 (median relative error ~2%, as PyTorch's
    own bf16 forward). A few positions of this model are far more sensitive than that (up to ~1.5x relative
    error in PyTorch's bf16 forward too), so the bound is on the median, next to PyTorch's."""
    rows = real_text_rows(embedded.tokenizer, 4, 40)
    ref = decode_logits(embedded.model.eval(), rows)  # fp32, plain PyTorch
    got = decode_logits(embedded_bf16, rows)
    eager = decode_logits(copy.deepcopy(embedded.model).to(torch.bfloat16).eval(), rows)  # PyTorch's bf16 forward
    assert median_rel_error(got, ref) < 3e-2
    assert median_rel_error(got, ref) <= 1.25 * median_rel_error(eager, ref) + 1e-3


def test_int8_keeps_most_bf16_greedy_choices_on_1000_positions(embedded, embedded_bf16, one_thread):
    """Measured on this model and text: 0.937 top-1 agreement of int8 with nesso's bf16 path (0.897 with the
    earlier adapter). The issue asks 0.99, which no 8-bit weight format reaches here: two 16-bit paths (PyTorch's
    bf16 forward and nesso's kernels) agree only 0.974 with each other and ~0.97 with fp32 on these positions (flat
    logits, many near-ties). The bound guards against regressions; benchmarks/RESULTS.md has the
    numbers."""
    int8 = maybe_quantize(copy.deepcopy(embedded.model).to(torch.bfloat16).eval(), "int8")
    rows = real_text_rows(embedded.tokenizer, 8, 128)  # 8 x 125 = 1,000 decoded positions
    ref = decode_logits(embedded_bf16, rows)
    got = decode_logits(int8, rows)
    assert ref.shape[0] == 1000
    assert agreement(got, ref) >= 0.85
    assert median_rel_error(got, ref) < 6e-2  # measured 0.052
