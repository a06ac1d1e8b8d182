"""Weight-only int8 quantization for CPU inference: per-output-channel symmetric scales, matmul through
PyTorch's int8 weight-pack kernel. Training never sees these modules."""

from __future__ import annotations

import torch
from torch import nn

from nesso.errors import NessoError


class Int8Linear(nn.Module):
    def __init__(self, linear: nn.Linear, compute_dtype: torch.dtype) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
        self.register_buffer("weight_int8", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(compute_dtype))
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch._weight_int8pack_mm(x.reshape(-1, shape[-1]).to(self.scale.dtype), self.weight_int8, self.scale)
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear (attention, MLP and the output head) by an Int8Linear, in place."""
    dtype = next(model.parameters()).dtype
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, child_name, Int8Linear(child, dtype))
    return model


def maybe_quantize(model: nn.Module, mode: str | None) -> nn.Module:
    if mode in (None, "none"):
        return model
    if mode == "int8":
        return quantize_int8(model)
    raise NessoError(f"unknown quantization {mode!r}; use 'int8' or 'none'")
