"""Causal attention inside each packed sample of a row, sample by sample, on a CPU.

Training packs several samples into one row; each must attend only to itself. One block-diagonal T x T mask does
that at the cost of the whole square; calling PyTorch's fused CPU attention once per sample costs the sum of the
samples' squares instead (3x less time for a 2k-token row of ~300-token samples).

The per-sample loop is a ``torch.library`` custom op that takes the samples as a [B, T] tensor of sample ids: a
compiled decoder layer sees one opaque call on tensors rather than a Python list that changes with every batch,
so ``train.compile`` and packed rows go together on a CPU without a recompile per batch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

Spans = list[list[tuple[int, int]]]  # per batch row, the [start, end) of each packed sample

_forward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
FP32_BACKWARD_BELOW = 1024  # tokens


def document_spans(document_ids: Tensor) -> Spans:
    """[B, T] sample ids of packed rows -> per row, ``(start, end)`` of each run of one id (padding included: its
    outputs are never trained on)."""
    ids = document_ids.cpu().numpy()
    spans = []
    for row in ids:
        cuts = [0, *(np.flatnonzero(row[1:] != row[:-1]) + 1).tolist(), len(row)]
        spans.append(list(zip(cuts[:-1], cuts[1:])))
    return spans


def attends_span_by_span(segments: Tensor) -> bool:
    """Whether packed samples attend sample by sample rather than through one block-diagonal mask. Only on a CPU,
    where it is ~3x faster; on a GPU the per-sample kernels are launch-bound: an H200 SFT step of 16 x 2,048 tokens
    took 1.3 s span by span against 0.32 s with the mask (benchmarks/RESULTS.md, "GPU")."""
    return segments.device.type == "cpu"


def _pieces(segments: Tensor):
    for r, row in enumerate(document_spans(segments)):
        for s, e in row:
            yield slice(r, r + 1), slice(None), slice(s, e)


@torch.library.custom_op("nesso::packed_attention", mutates_args=(), device_types="cpu")
def _packed_attention(q: Tensor, k: Tensor, v: Tensor, segments: Tensor) -> tuple[Tensor, Tensor]:
    b, h, t, _ = q.shape
    out = torch.empty_like(q)
    lse = q.new_empty((b, h, t), dtype=torch.float32)  # each query's log-sum-exp, kept for the backward
    for piece in _pieces(segments):
        out[piece], lse[piece] = _forward(q[piece], k[piece], v[piece], 0.0, True)
    return out, lse


@_packed_attention.register_fake
def _(q: Tensor, k: Tensor, v: Tensor, segments: Tensor) -> tuple[Tensor, Tensor]:
    b, h, t, _ = q.shape
    return torch.empty_like(q), q.new_empty((b, h, t), dtype=torch.float32)


@torch.library.custom_op("nesso::packed_attention_backward", mutates_args=(), device_types="cpu")
def _packed_attention_backward(grad: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                               segments: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)  # the pieces cover every token
    for piece in _pieces(segments):
        # PyTorch's bf16 backward is 1.4-3x slower than its fp32 one on samples of a few hundred tokens (an AMX
        # Xeon, 2 threads; from ~1k tokens on it is the faster): short samples go through fp32 copies.
        upcast = piece[2].stop - piece[2].start < FP32_BACKWARD_BELOW and q.dtype != torch.float32
        inputs = (x[piece].float() if upcast else x[piece] for x in (grad, q, k, v, out))
        dq[piece], dk[piece], dv[piece] = _backward(next(inputs).contiguous(), *inputs, lse[piece], 0.0, True)
    return dq, dk, dv


@_packed_attention_backward.register_fake
def _(grad: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
      segments: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _save(ctx, inputs: tuple[Tensor, ...], output: tuple[Tensor, Tensor]) -> None:
    ctx.save_for_backward(*inputs, *output)


def _grads(ctx, grad: Tensor, _grad_lse: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
    q, k, v, segments, out, lse = ctx.saved_tensors
    return (*_packed_attention_backward(grad, q, k, v, out, lse, segments), None)


_packed_attention.register_autograd(_grads, setup_context=_save)


def packed_attention(q: Tensor, k: Tensor, v: Tensor, segments: Tensor) -> Tensor:
    """Causal attention of q [B, H, T, D] over k/v [B, kv heads, T, D] (grouped-query when fewer) within each run
    of one id in ``segments`` [B, T]: what ``packed_causal_mask(segments)`` allows. CPU tensors."""
    return _packed_attention(q, k, v, segments)[0]


def packed_causal_mask(document_ids: Tensor) -> Tensor:
    """[B, T] sample ids -> [B, 1, T, T] bool mask: causal and never across packed samples."""
    t = document_ids.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=document_ids.device).tril()
    same = document_ids.unsqueeze(2) == document_ids.unsqueeze(1)
    return (causal & same).unsqueeze(1)
