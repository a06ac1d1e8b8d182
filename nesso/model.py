"""The one Llama decoder used for training, inference and export.

Parameter names follow Hugging Face's LlamaForCausalLM without the leading ``model.`` so that the state-dict
adapter in ``nesso.checkpoint`` is a rename, not a reshuffle.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nesso import cpu_kernels
from nesso.config import ModelConfig
from nesso.packed_attention import attends_span_by_span, packed_attention, packed_causal_mask
from nesso.quantize import _hooked, project, project_glu


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.kernels = False  # nesso.quantize.use_kernels: few-row no-grad bf16 CPU calls take nesso.cpu_kernels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernels:
            w = self._parameters["weight"]  # not nn.Module.__getattr__: it is slow
            if w.dtype == torch.bfloat16 and cpu_kernels.usable_bf16(x):
                return cpu_kernels.rms_norm_bf16(x, w, self.eps)
        # Normalise in fp32 as HF Llama does, then cast back before the weight multiply.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)

    def add_forward(self, x: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x + residual, self(x + residual))``: a residual add and this norm, in one kernel call where
        ``forward`` would take the kernel (and the module has no hooks)."""
        if self.kernels:
            w = self._parameters["weight"]
            if (w.dtype == torch.bfloat16 and residual.dtype == torch.bfloat16 and residual.shape == x.shape
                    and cpu_kernels.usable_bf16(x) and not _hooked(self)):
                return cpu_kernels.rms_norm_bf16(x, w, self.eps, residual)  # type: ignore[return-value]
        x = x + residual
        return x, self(x)


def rope_inv_freq(cfg: ModelConfig) -> torch.Tensor:
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float64) / cfg.head_dim))
    scaling = cfg.rope_scaling
    if scaling and scaling.get("rope_type", scaling.get("type")) == "llama3":
        factor = scaling["factor"]
        low, high = scaling.get("low_freq_factor", 1.0), scaling.get("high_freq_factor", 4.0)
        old_len = scaling["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old_len / low, old_len / high
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        mid = (1 - smooth) * scaled / factor + smooth * scaled
        is_mid = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv_freq = torch.where(is_mid, mid, scaled)
    elif scaling and scaling.get("rope_type", scaling.get("type")) not in ("default", None):
        from nesso.errors import NessoError

        raise NessoError(f"rope_scaling type {scaling!r} is not supported (plain or 'llama3' only)")
    return inv_freq.float()


def rope_tables(cfg: ModelConfig, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = rope_inv_freq(cfg).to(device)
    t = torch.arange(cfg.max_position_embeddings, device=device, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: [B, H, T, D]; cos/sin: [B, T, D] gathered at each token's position.
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return (x.float() * cos + rotate_half(x.float()) * sin).to(x.dtype)


class KVCache(nn.Module):
    """A static, pre-allocated cache for one layer: writes go to slots [start, start+T)."""

    def __init__(self, batch: int, max_len: int, num_kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str | None = None) -> None:
        super().__init__()
        shape = (batch, num_kv_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    @classmethod
    def over(cls, k: torch.Tensor, v: torch.Tensor) -> KVCache:
        """A cache whose buffers are ``k`` and ``v`` [B, kv_heads, S, D] themselves (views of a larger cache)."""
        cache = cls.__new__(cls)
        nn.Module.__init__(cache)
        cache.register_buffer("k", k, persistent=False)
        cache.register_buffer("v", v, persistent=False)
        return cache

    def update(self, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = start + k.shape[2]
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.num_heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.num_heads * cfg.head_dim, cfg.hidden_size, bias=False)
        self.kernels = False  # nesso.quantize.use_kernels: one-token no-grad bf16 CPU steps take nesso.cpu_kernels

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                cache: KVCache | None, cache_start: int, segments: torch.Tensor | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        if self.kernels:  # the three projections in one kernel call where they can be
            q, k, v = project(x, self.q_proj, self.k_proj, self.v_proj)
            if t == 1 and mask is None and type(cache) is KVCache:
                # One-token decode: RoPE, the cache write and the attention in one kernel call where it can be.
                buffers = cache._buffers
                y = cpu_kernels.rope_cache_attention_bf16(q, k, v, cos, sin, buffers["k"], buffers["v"],
                                                          cache_start, self.num_heads, self.num_kv_heads)
                if y is not None:
                    return self.o_proj(y)
            elif t == 1 and hasattr(cache, "kernel_rows"):
                # Rows at their own lengths (a continuous batch's slot cache, which says where each row writes
                # and how far it sees): the same kernel call, per row.
                rows = cache.kernel_rows(b)
                if rows is not None:
                    y = cpu_kernels.rope_cache_attention_bf16(q, k, v, cos, sin, rows[0], rows[1], 0, self.num_heads,
                                                              self.num_kv_heads, rows=rows[2:])
                    if y is not None:
                        return self.o_proj(y)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = q.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(cache_start, k, v)
        gqa = self.num_kv_heads != self.num_heads
        if segments is not None:
            y = packed_attention(q, k, v, segments)
            return self.o_proj(y.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim))
        is_causal = mask is None and t > 1 and (cache is None or cache_start == 0)
        if mask is None and t > 1 and not is_causal:
            # Chunked prefill into a non-empty cache: query i sees every cached slot and the chunk up to i.
            s = k.shape[2]
            mask = torch.ones(t, s, dtype=torch.bool, device=x.device).tril(diagonal=s - t)
        if t == 1 and x.device.type == "cpu" and q.dtype == torch.bfloat16:
            # One-token decode on a CPU (padded batches, no kernels): PyTorch's bf16 attention is 4-5x slower
            # here than fp32 (2.0 vs 0.45 ms per layer at 1k cached tokens); the fp32 copy costs less.
            y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask, enable_gqa=gqa)
            y = y.to(q.dtype)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, enable_gqa=gqa)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)
        self.kernels = False  # nesso.quantize.use_kernels: few-row no-grad CPU calls take nesso.cpu_kernels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernels:  # gate/up in one kernel call, the SwiGLU and down in another, where they can be
            return project_glu(x, self.gate_proj, self.up_proj, self.down_proj)
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                cache: KVCache | None, cache_start: int, segments: torch.Tensor | None = None) -> torch.Tensor:
        h = self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, cache_start, segments)
        x, h = self.post_attention_layernorm.add_forward(x, h)  # x = x + h; h = norm(x)
        h = self.mlp(h)
        if self.mlp.kernels and h.dtype == x.dtype == torch.bfloat16 and h.shape == x.shape and cpu_kernels.usable(x):
            return cpu_kernels.add_bf16(x, h)  # a kernel call like the step's others (nesso.decode_graph)
        return x + h


class Transformer(nn.Module):
    """Llama decoder. ``forward`` covers training (full sequence, optional packing mask) and inference
    (prefill/decode through static per-layer KV caches)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        cos, sin = rope_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.caches: list[KVCache] | None = None
        # Token ids whose keys/values fill cache slots [0, len) of a batch-1 cache. The engine sets it after a
        # generation so that a prompt extending it (next agent step, next chat turn) only prefills the rest.
        self.cached_ids: list[int] = []

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        # .to(bfloat16) would also cast the RoPE tables; keep them fp32 on whatever device we moved to.
        super()._apply(fn, recurse)
        if self.rope_cos.dtype != torch.float32 and self.rope_cos.device.type != "meta":
            self.reset_rope()
        return self

    def reset_rope(self) -> None:
        cos, sin = rope_tables(self.config, self.rope_cos.device)
        self.rope_cos, self.rope_sin = cos, sin

    # ---- initialisation ---------------------------------------------------------------------
    @torch.no_grad()
    def init_weights(self, seed: int | None = None) -> None:
        """Normal(0, init_std) for every matrix, ones for norms; also rebuilds the RoPE tables (needed after
        meta-device construction)."""
        gen = torch.Generator(device="cpu")
        if seed is not None:
            gen.manual_seed(seed)
        std = self.config.init_std
        for name, p in self.named_parameters():
            if name.endswith("layernorm.weight") or name == "norm.weight":
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32).mul_(std).to(p.dtype))
        if self.rope_cos.device.type != "meta":
            self.reset_rope()

    # ---- KV cache -----------------------------------------------------------------------------
    def setup_caches(self, batch: int, max_len: int, dtype: torch.dtype | None = None) -> None:
        cfg = self.config
        max_len = min(max_len, cfg.max_position_embeddings)
        dtype = dtype or self.embed_tokens.weight.dtype
        device = self.embed_tokens.weight.device
        c = self.caches
        if c is not None and c[0].k.shape[0] == batch and c[0].k.shape[2] >= max_len and c[0].k.dtype == dtype:
            return
        self.caches = [KVCache(batch, max_len, cfg.num_kv_heads, cfg.head_dim, dtype, device)
                       for _ in range(cfg.num_layers)]
        self.cached_ids = []

    def clear_caches(self) -> None:
        self.caches = None
        self.cached_ids = []

    # ---- forward ------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None, cache_start: int | None = None,
                last_only: bool = False, return_hidden: bool = False,
                segments: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids [B, T] -> logits [B, T, V] (or [B, 1, V] with ``last_only``).

        positions [B, T]: RoPE positions (default: cache_start + arange(T)).
        attn_mask [B or 1, 1, T, S] bool (True = may attend): packing/padding masks; default causal.
        cache_start: write keys/values into ``self.caches`` from this slot (None = no cache).
        segments [B, T]: packed rows without a mask, the sample id of each token: causal attention inside each
        sample only, what ``packed_causal_mask(segments)`` allows at a fraction of its cost on a CPU
        (``nesso.packed_attention``; elsewhere they become that mask; no cache; not with ``attn_mask``).
        """
        x, cos, sin = self.embed(input_ids, positions, cache_start)
        return self.forward_embedded(x, cos, sin, attn_mask, cache_start, last_only, return_hidden, segments)

    def embed(self, input_ids: torch.Tensor, positions: torch.Tensor | None = None,
              cache_start: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``forward``'s inputs of the first layer: the token embeddings [B, T, H] and the RoPE cos/sin rows
        [B, T, D] at ``positions`` (default: cache_start + arange(T))."""
        b, t = input_ids.shape
        if positions is None:
            start = cache_start or 0
            positions = torch.arange(start, start + t, device=input_ids.device).unsqueeze(0).expand(b, t)
        return self.embed_tokens(input_ids), self.rope_cos[positions], self.rope_sin[positions]

    def forward_embedded(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                         attn_mask: torch.Tensor | None = None, cache_start: int | None = None,
                         last_only: bool = False, return_hidden: bool = False,
                         segments: torch.Tensor | None = None) -> torch.Tensor:
        """``forward`` from ``embed``'s outputs on."""
        start = cache_start or 0
        caches = self.caches if cache_start is not None else None
        if cache_start is not None and caches is None:
            raise RuntimeError("setup_caches() must be called before a cached forward")
        if segments is not None and (attn_mask is not None or caches is not None):
            raise ValueError("segments replace attn_mask for uncached packed rows; pass one or the other, no cache")
        if segments is not None and not attends_span_by_span(segments):
            attn_mask, segments = packed_causal_mask(segments), None  # once for all layers
        extra = () if segments is None else (segments,)  # compiled layers see the arguments they always saw
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, attn_mask, caches[i] if caches else None, start, *extra)
        if last_only:
            x = x[:, -1:]
        x = self.norm(x)
        if return_hidden:
            return x
        return self.lm_head(x)


def empty_model(cfg: ModelConfig, dtype: torch.dtype = torch.float32,
                device: str | torch.device = "cpu") -> Transformer:
    """Allocate without initialising (for loading weights): build on meta, materialise, re-tie, RoPE."""
    with torch.device("meta"):
        model = Transformer(cfg)
    model = model.to_empty(device=device).to(dtype)
    if cfg.tie_word_embeddings:  # to_empty replaces parameters one module at a time, which unties them
        model.lm_head.weight = model.embed_tokens.weight
    model.reset_rope()
    return model


def build_model(cfg: ModelConfig, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                seed: int | None = 0) -> Transformer:
    with torch.device(device):
        model = Transformer(cfg)
    model.init_weights(seed)
    return model.to(dtype=dtype)
