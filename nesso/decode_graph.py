"""A decode step, recorded once and replayed by a single C call per token (the CPU's CUDA graph).

With nesso's kernels every op of a one-token step of a bf16 or int8 model is a call into ``nesso.cpu_kernels``
(norms, projections, RoPE + cache write + attention, residual adds), but getting from one call to the next through
the modules' Python costs ~60 us per layer: a fifth of a step of the 135M model, a tenth of the 0.4B one.
``DecodeGraph.capture`` runs one step of ``Transformer.forward_embedded`` eagerly while the kernel wrappers report
each call, and keeps the calls, their buffers and the step's output. ``replay`` writes the next token's embedding and
RoPE rows into the captured input buffers and runs the calls again in C, attention at the new slot: same kernels,
same buffers, same arithmetic, so the logits are bit for bit the eager step's. ``capture_rows`` / ``replay_rows``
do the same for the rows of a continuous batch, each at its own slot, read from buffers the batch rewrites.

A recording is only kept when it is the whole step: every activation a kernel read was an input of the step or the
output of an earlier kernel call (a PyTorch op between two kernels, as a LoRA hook's add, leaves a tensor no call
wrote, and the capture is declined), the output is the last call's, and a replay of the captured step gives the
eager logits exactly (which also catches an op that changed a kernel's output in place). Otherwise ``capture``
returns None and the caller keeps the eager forward. A graph holds pointers to the model's weights and to the KV
cache it was recorded on, and is valid while they stay where they are: ``Engine`` drops it when the generation
ends, ``ContinuousBatch`` keys it on the step's shape (a slot alone, or a row count) and the cache's memory (any
sequences in those rows can replay it).
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
    """A captured one-token decode step of ``model`` (its KV caches, kernels on): ``replay(token, pos)`` (batch 1)
    or ``replay_rows(tokens, positions)`` (the rows of a continuous batch) returns the step's logits [B, 1, V], in a
    buffer the next replay overwrites."""

    def __init__(self, model: nn.Module, rec: _Recorder, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                 logits: torch.Tensor, start: int, slots: tuple[torch.Tensor, ...]) -> None:
        self.model, self.x, self.cos, self.sin, self.logits = model, x, cos, sin, logits
        self.start, self.slots = start, slots
        self.ops = torch.tensor(rec.ops, dtype=torch.int64)
        self.keep = rec.keep
        self.threads = torch.get_num_threads()
        self.capacity = model.caches[0].k.shape[2]

    @classmethod
    def capture(cls, model: nn.Module, token: int, pos: int) -> tuple[torch.Tensor, DecodeGraph | None]:
        """Run the step that feeds ``token`` at slot ``pos`` eagerly (its logits [1, 1, V] are the first result, as
        ``model(ids, cache_start=pos, last_only=True)``) and return the graph of it, or None where the step cannot
        be replayed (no kernels, hooks, a PyTorch op between kernels: see the module's docstring)."""
        ids = torch.tensor([[token]], device=model.embed_tokens.weight.device)
        return cls._capture(model, ids, None, pos, None, ())

    @classmethod
    def capture_rows(cls, model: nn.Module, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
                     slots: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, DecodeGraph | None]:
        """``capture`` for a continuous batch's decode step: row b feeds ``tokens[b]`` at RoPE position
        ``positions[b]``; ``model.caches`` are the batch's slot caches, whose attention reads where each row writes
        and how far it sees from ``slots`` = (write, visible), int64 buffers the caller rewrites in place before
        each replay; ``mask`` is what PyTorch's attention would take instead."""
        return cls._capture(model, tokens[:, None], positions[:, None], 0, mask, slots)

    @classmethod
    @torch.inference_mode()
    def _capture(cls, model: nn.Module, ids: torch.Tensor, positions: torch.Tensor | None, start: int,
                 mask: torch.Tensor | None, slots: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, DecodeGraph | None]:
        x, cos, sin = model.embed(ids, positions, start)

        def step() -> torch.Tensor:
            return model.forward_embedded(x, cos, sin, attn_mask=mask, cache_start=start, last_only=True)

        if not _replayable(model, x):
            return step(), None
        x, cos, sin = x.contiguous(), cos.contiguous(), sin.contiguous()
        rec = _Recorder((x, cos, sin, *slots))
        cpu_kernels._tls.recorder = rec
        try:
            logits = step()
        finally:
            cpu_kernels._tls.recorder = None
        if not (rec.complete and rec.ops and rec.last is logits and rec.positions == {start}):
            return logits, None
        graph = cls(model, rec, x, cos, sin, logits, start, slots)
        eager = logits.clone()
        graph._run()  # the same step again: it must give the same logits (and rewrites the same cache slots)
        if not torch.equal(eager, logits):
            # Something outside the recorded calls shaped the step; put back what the replay wrote to the cache.
            return step(), None
        return eager, graph

    @torch.inference_mode()
    def replay(self, token: int, pos: int) -> torch.Tensor | None:
        """The logits of the step feeding ``token`` at slot ``pos``, or None when this graph cannot run it (a slot
        past its caches, or torch's thread count changed): the caller runs the eager forward."""
        if self.slots or not 0 <= pos < self.capacity or torch.get_num_threads() != self.threads:
            return None
        model = self.model
        self.x[0, 0].copy_(model.embed_tokens.weight[token])
        self.cos[0, 0].copy_(model.rope_cos[pos])
        self.sin[0, 0].copy_(model.rope_sin[pos])
        self.start = pos
        self._run()
        return self.logits

    @torch.inference_mode()
    def replay_rows(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor | None:
        """``capture_rows``' step for new ``tokens`` / ``positions`` [B] (the slot buffers already rewritten), or
        None where this graph cannot run it (another row count, slots outside the caches, a new thread count)."""
        b = self.x.shape[0]
        if not self.slots or tokens.shape != (b,) or torch.get_num_threads() != self.threads:
            return None
        if not cpu_kernels.slots_fit(*self.slots, self.capacity):
            return None
        model = self.model
        torch.index_select(model.embed_tokens.weight, 0, tokens, out=self.x.view(b, -1))
        torch.index_select(model.rope_cos, 0, positions, out=self.cos.view(b, -1))
        torch.index_select(model.rope_sin, 0, positions, out=self.sin.view(b, -1))
        self._run()
        return self.logits

    def _run(self) -> None:
        cpu_kernels.replay(self.ops, self.start)


def _replayable(model: nn.Module, x: torch.Tensor) -> bool:
    """Cheap checks before recording: kernels loaded, a one-token bf16 CPU step without autograd, no hooks anywhere
    (a hook may change what a module returns), and the model's caches in place."""
    if not (cpu_kernels.usable_bf16(x) and x.shape[1] == 1 and model.caches):
        return False
    nn_hooks = nn.modules.module
    if (nn_hooks._global_forward_hooks or nn_hooks._global_forward_pre_hooks
            or nn_hooks._global_forward_hooks_always_called):
        return False
    return not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
