"""One batch-1 decode step, recorded once and replayed by a single C call per token (the CPU's CUDA graph).

With nesso's kernels every op of a one-token step of a bf16 or int8 model is a call into ``nesso.cpu_kernels``
(norms, projections, RoPE + cache write + attention, residual adds), but getting from one call to the next through
the modules' Python costs ~60 us per layer: a fifth of a step of the 135M model, a tenth of the 0.4B one.
``DecodeGraph.capture`` runs one step of ``Transformer.forward_embedded`` eagerly while the kernel wrappers report
each call, and keeps the calls, their buffers and the step's output. ``replay`` writes the next token's embedding and
RoPE rows into the captured input buffers and runs the calls again in C, attention at the new slot: same kernels,
same buffers, same arithmetic, so the logits are bit for bit the eager step's.

A recording is only kept when it is the whole step: every activation a kernel read was an input of the step or the
output of an earlier kernel call (a PyTorch op between two kernels, as a LoRA hook's add, leaves a tensor no call
wrote, and the capture is declined), the output is the last call's, and a replay of the captured step gives the
eager logits exactly (which also catches an op that changed a kernel's output in place). Otherwise ``capture``
returns None and the caller keeps the eager forward. A graph holds pointers to the model's weights and to the KV
cache it was recorded on, and is valid while they stay where they are: ``Engine`` drops it when the generation
ends, ``ContinuousBatch`` keys it on the slot and the cache's memory (any sequence in that slot can replay it).
"""

from __future__ import annotations

import struct

import torch
from torch import nn

from nesso import cpu_kernels


def _bits(v: float) -> int:
    return struct.unpack("<I", struct.pack("<f", v))[0]


class _Recorder:
    """Collects the kernel calls of one step and checks that each reads only what the step produced."""

    def __init__(self, inputs: tuple[torch.Tensor, ...]) -> None:
        self.ops: list[list[int]] = []
        self.regions: list[tuple[int, int]] = []  # [start, end) bytes of every buffer the step may read
        self.keep: list[torch.Tensor] = []  # its buffers stay allocated: the replay writes into them
        self.positions: set[int] = set()
        self.complete = True
        self.last: torch.Tensor | None = None
        for t in inputs:
            self._written(t)

    def _written(self, t: torch.Tensor) -> None:
        start = t.data_ptr()
        self.regions.append((start, start + t.numel() * t.element_size()))
        self.keep.append(t)

    def _known(self, t: torch.Tensor) -> bool:
        p = t.data_ptr()
        return any(start <= p < end for start, end in self.regions)

    def __call__(self, kind: int, args: tuple, reads: tuple[torch.Tensor, ...], *writes: torch.Tensor) -> None:
        if not all(self._known(t) for t in reads):
            self.complete = False
        if kind == cpu_kernels.OP_ROPE_CACHE_ATTENTION_BF16:
            self.positions.add(args[cpu_kernels.ATTENTION_POSITION_ARG])
        words = [kind] + [_bits(a) if isinstance(a, float) else int(a) for a in args]
        self.ops.append(words + [0] * (cpu_kernels.OP_WORDS - len(words)))
        for t in writes:
            self._written(t)
        self.last = writes[0]


class DecodeGraph:
    """A captured one-token decode step of ``model`` (batch 1, its KV caches, kernels on): ``replay(token, pos)``
    returns the logits [1, 1, V] of the step that feeds ``token`` at slot ``pos``, in a buffer the next replay
    overwrites."""

    def __init__(self, model: nn.Module, rec: _Recorder, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                 logits: torch.Tensor) -> None:
        self.model, self.x, self.cos, self.sin, self.logits = model, x, cos, sin, logits
        self.ops = torch.tensor(rec.ops, dtype=torch.int64)
        self.keep = rec.keep
        self.threads = torch.get_num_threads()
        self.capacity = model.caches[0].k.shape[2]

    @classmethod
    @torch.inference_mode()
    def capture(cls, model: nn.Module, token: int, pos: int) -> tuple[torch.Tensor, DecodeGraph | None]:
        """Run the step that feeds ``token`` at slot ``pos`` eagerly (its logits [1, 1, V] are the first result, as
        ``model(ids, cache_start=pos, last_only=True)``) and return the graph of it, or None where the step cannot
        be replayed (no kernels, hooks, a PyTorch op between kernels: see the module's docstring)."""
        ids = torch.tensor([[token]], device=model.embed_tokens.weight.device)
        x, cos, sin = model.embed(ids, cache_start=pos)
        if not _replayable(model, x):
            return model.forward_embedded(x, cos, sin, cache_start=pos, last_only=True), None
        x, cos, sin = x.contiguous(), cos.contiguous(), sin.contiguous()
        rec = _Recorder((x, cos, sin))
        cpu_kernels._tls.recorder = rec
        try:
            logits = model.forward_embedded(x, cos, sin, cache_start=pos, last_only=True)
        finally:
            cpu_kernels._tls.recorder = None
        if not (rec.complete and rec.ops and rec.last is logits and rec.positions == {pos}):
            return logits, None
        graph = cls(model, rec, x, cos, sin, logits)
        eager = logits.clone()
        graph._run(pos)  # the same step again: it must give the same logits (and rewrites the same cache slot)
        if not torch.equal(eager, logits):
            # Something outside the recorded calls shaped the step; put back what the replay wrote to the cache.
            return model.forward_embedded(x, cos, sin, cache_start=pos, last_only=True), None
        return eager, graph

    @torch.inference_mode()
    def replay(self, token: int, pos: int) -> torch.Tensor | None:
        """The logits of the step feeding ``token`` at slot ``pos``, or None when this graph cannot run it (a slot
        past its caches, or torch's thread count changed): the caller runs the eager forward."""
        if not 0 <= pos < self.capacity or torch.get_num_threads() != self.threads:
            return None
        model = self.model
        self.x[0, 0].copy_(model.embed_tokens.weight[token])
        self.cos[0, 0].copy_(model.rope_cos[pos])
        self.sin[0, 0].copy_(model.rope_sin[pos])
        self._run(pos)
        return self.logits

    def _run(self, pos: int) -> None:
        cpu_kernels.replay(self.ops, pos)


def _replayable(model: nn.Module, x: torch.Tensor) -> bool:
    """Cheap checks before recording: kernels loaded, a one-row bf16 CPU step without autograd, no hooks anywhere
    (a hook may change what a module returns), and the model's caches in place."""
    if not (cpu_kernels.usable_bf16(x) and x.shape[:2] == (1, 1) and model.caches):
        return False
    nn_hooks = nn.modules.module
    if (nn_hooks._global_forward_hooks or nn_hooks._global_forward_pre_hooks
            or nn_hooks._global_forward_hooks_always_called):
        return False
    return not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
