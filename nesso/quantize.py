"""Preparing a loaded model for CPU inference: optional weight-only int8, and nesso's decode kernels for the
projections. Training never sees any of this: the model's forward stays ``nesso.model``'s, and a prepared
projection computes with PyTorch's own ops whenever autograd is on, the tensors are not on the CPU, or more than
a few rows go through it at once (prefill).

int8: per-output-channel symmetric scales; a few rows take ``nesso.cpu_kernels.linear_int8``, more rows
PyTorch's int8 weight-pack matmul.
16-bit: every bf16 ``nn.Linear`` becomes a ``KernelLinear`` (same object, parameters, names and hooks; only its
class changes), whose few-row products take ``nesso.cpu_kernels.linear_bf16``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nesso import cpu_kernels
from nesso.errors import NessoError

PREFILL_ROWS = 64  # from this many rows on, an Int8Linear expands its weight and runs the regular matmul


class KernelLinear(nn.Linear):
    """An ``nn.Linear`` whose no-grad CPU products over a few bf16 rows (bf16 weight, no bias) use nesso's
    matrix-vector kernel; everything else is ``F.linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, bias = self._parameters["weight"], self._parameters["bias"]  # not nn.Module.__getattr__: it is slow
        if bias is None and w.dtype == torch.bfloat16 and cpu_kernels.usable_bf16(x) and w.is_contiguous():
            return cpu_kernels.linear_bf16(x, w)
        return F.linear(x, w, bias)


class Int8Linear(nn.Module):
    def __init__(self, linear: nn.Linear, compute_dtype: torch.dtype) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
        self.register_buffer("weight_int8", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(compute_dtype))
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight_int8.device.type == "cpu" and cpu_kernels.usable(x):
            return cpu_kernels.linear_int8(x, (self.weight_int8, self.scale))
        shape = x.shape
        if self.in_features % 32 or x.numel() >= PREFILL_ROWS * shape[-1]:
            # Many rows (prefill): the weight expanded once and the regular matmul beat PyTorch's int8 weight-pack
            # kernel, which also returns garbage in bf16 when in_features is not a multiple of 32.
            return F.linear(x, self.weight_int8.to(x.dtype) * self.scale.to(x.dtype)[:, None])
        y = torch._weight_int8pack_mm(x.reshape(-1, shape[-1]).to(self.scale.dtype), self.weight_int8, self.scale)
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or nn.modules.module._global_forward_hooks
                or nn.modules.module._global_forward_pre_hooks)


def _fused(x: torch.Tensor, linears: tuple[nn.Module, ...],
           glu: bool = False) -> tuple[torch.Tensor, list[int]] | None:
    """``torch.cat([m(x) for m in linears], -1)`` in one kernel call and each linear's output size, or None when that
    is not possible: ``x`` is not a few no-grad CPU rows, a linear has hooks, or the linears are not all
    ``KernelLinear`` with bf16 weights (and a bf16 ``x``) or all ``Int8Linear``. With ``glu`` the input of the
    product is ``F.silu(gate) * up`` for ``x = [gate | up]`` (twice the linears' input features)."""
    if not cpu_kernels.usable(x):
        return None
    kind = type(linears[0])
    k = x.shape[-1] >> glu
    if glu and x.shape[-1] != 2 * k:
        return None
    sizes = []
    if kind is KernelLinear:  # (module attributes through _parameters / _buffers: nn.Module.__getattr__ is slow)
        weights = []
        for m in linears:
            if type(m) is not kind or _hooked(m):
                return None
            w = m._parameters["weight"]
            if (m._parameters["bias"] is not None or w.dtype != torch.bfloat16 or not w.is_contiguous()
                    or w.shape[1] != k):
                return None
            weights.append(w)
            sizes.append(w.shape[0])
        if x.dtype != torch.bfloat16:
            return None
        return cpu_kernels.linear_bf16(x, *weights, glu=glu), sizes
    if kind is Int8Linear:
        pairs = []
        for m in linears:
            if type(m) is not kind or _hooked(m):
                return None
            q, scale = m._buffers["weight_int8"], m._buffers["scale"]
            if not q.is_cpu or scale.dtype != (pairs[0][1].dtype if pairs else scale.dtype) or q.shape[1] != k:
                return None
            pairs.append((q, scale))
            sizes.append(q.shape[0])
        return cpu_kernels.linear_int8(x, *pairs, glu=glu), sizes
    return None


def project(x: torch.Tensor, *linears: nn.Module) -> tuple[torch.Tensor, ...]:
    """``tuple(m(x) for m in linears)`` (q/k/v, or gate/up), in one kernel call when ``x`` is a few no-grad CPU rows
    and the linears are hook-free projections of one kind: ``KernelLinear`` with bf16 weights and bf16 ``x``, or
    ``Int8Linear``. Each output equals its projection's own kernel result bit for bit (the outputs are then views
    of one tensor, split along the last dimension)."""
    fused = _fused(x, linears) if 1 < len(linears) <= 3 else None
    if fused is None:
        return tuple(m(x) for m in linears)
    return fused[0].split_with_sizes(fused[1], -1)


def project_glu(x: torch.Tensor, gate: nn.Module, up: nn.Module, down: nn.Module) -> torch.Tensor:
    """``down(F.silu(gate(x)) * up(x))``, the SwiGLU MLP: gate and up in one kernel call and the SwiGLU with the
    down projection in a second where ``project``'s conditions hold (for ``down`` too); otherwise PyTorch's ops for
    the part that cannot."""
    fused = _fused(x, (gate, up))
    if fused is None:
        return down(F.silu(gate(x)) * up(x))
    y = _fused(fused[0], (down,), glu=True)
    if y is not None:
        return y[0]
    g, u = fused[0].split_with_sizes(fused[1], -1)
    return down(F.silu(g) * u)


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear (attention, MLP and the output head) by an Int8Linear, in place."""
    dtype = next(model.parameters()).dtype
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, child_name, Int8Linear(child, dtype))
    return model


def use_kernels(model: nn.Module) -> nn.Module:
    """Route ``model``'s few-row CPU projections through nesso's decode kernels and move the weights they stream
    into 2 MiB pages, in place. Parameter objects, names, values, hooks and the state dict are unchanged. A no-op
    (after one warning) when the kernels cannot be built, and for models not on the CPU."""
    first = next(model.parameters(), None)
    if first is None or first.device.type != "cpu" or not cpu_kernels.available():
        return model
    from nesso.model import MLP, Attention, RMSNorm

    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = KernelLinear
        elif isinstance(module, (Attention, MLP, RMSNorm)):
            module.kernels = True
    if cpu_kernels.huge_pages_supported():
        _pack_huge_pages(model)
    return model


@torch.no_grad()
def _pack_huge_pages(model: nn.Module) -> None:
    done: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.Linear):
            p = module.weight
            if id(p) not in done and p.is_contiguous():
                p.data = cpu_kernels.huge_page_copy(p.data)  # tied weights: the one Parameter, moved once
                done.add(id(p))
        elif isinstance(module, Int8Linear):
            module.weight_int8 = cpu_kernels.huge_page_copy(module.weight_int8.contiguous())


def maybe_quantize(model: nn.Module, mode: str | None) -> nn.Module:
    """Prepare a freshly loaded model for inference (the CLI calls this for ``--quantize``): int8 weights when
    ``mode`` is 'int8', then nesso's CPU decode kernels (``use_kernels``)."""
    if mode not in (None, "none", "int8"):
        raise NessoError(f"unknown quantization {mode!r}; use 'int8' or 'none'")
    if mode == "int8":
        quantize_int8(model)
    return use_kernels(model)


def decode_logits(model: nn.Module, rows: torch.Tensor, warm: int = 3) -> torch.Tensor:
    """fp32 logits [B * (T - warm), V] of one-token decode steps fed the tokens of ``rows`` [B, T] after a prefill
    of their first ``warm``: teacher forcing through the KV cache, the path generation takes, so that a quantized
    model's next-token choices can be compared position by position with another's."""
    b, t = rows.shape
    outs = []
    with torch.inference_mode():
        model.setup_caches(b, t + 1)
        model(rows[:, :warm], cache_start=0)
        for p in range(warm, t):
            outs.append(model(rows[:, p:p + 1], cache_start=p)[:, 0].float())
    return torch.stack(outs, 1).reshape(-1, outs[0].shape[-1])
