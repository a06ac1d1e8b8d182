"""Process groups and the transformations that make the single-device model train at scale.

The model code in ``nesso.model`` knows nothing about distribution: these functions wrap it from the outside
(torchtitan style), in the order activation checkpointing → ``torch.compile`` → FSDP2, each per decoder layer.
Launch with ``torchrun`` (it sets RANK/WORLD_SIZE/LOCAL_RANK); without it everything runs in one process with no
process group.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from nesso.errors import NessoError


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise NessoError("train.device is cuda but no CUDA GPU is visible; use device: cpu (or auto)")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "cpu":
        return torch.device("cpu")
    raise NessoError(f"train.device {name!r} is not one of auto, cuda, cpu")


def init_distributed(device: str = "auto", timeout_minutes: int = 30) -> DistInfo:
    """Join the torchrun process group when launched by torchrun (NCCL on GPUs, gloo on CPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes),
                                device_id=dev if dev.type == "cuda" else None)
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank=rank, world=world, local_rank=local_rank, device=dev)


def shutdown() -> None:
    """Close the process group ``init_distributed`` opened (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj):
    if dist.is_available() and dist.is_initialized():
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return obj


# ---- model transformations ---------------------------------------------------------------------------------
def apply_activation_checkpointing(model: nn.Module) -> None:
    """Recompute each decoder layer in backward. The layer's own forward is wrapped, so parameter names (and with
    them state dicts and checkpoints) stay unchanged."""
    from torch.utils.checkpoint import checkpoint

    for layer in model.layers:
        inner = layer.forward

        def forward(*args, _inner=inner, **kwargs):
            return checkpoint(_inner, *args, use_reentrant=False, **kwargs)

        layer.forward = forward


def apply_compile(model: nn.Module) -> None:
    """``torch.compile`` each decoder layer in place (names unchanged; one graph reused by every layer). Shapes are
    static until one changes: fixed pretraining windows keep static graphs, while packed SFT rows, whose lengths
    vary by a few tokens, get one graph dynamic in the length after the first change instead of one per length."""
    for layer in model.layers:
        layer.compile()


def apply_fsdp(model: nn.Module, param_dtype: torch.dtype | None = torch.bfloat16,
               reduce_dtype: torch.dtype = torch.float32, reshard_after_forward: bool = True) -> nn.Module:
    """FSDP2: ``fully_shard`` every decoder layer, then the root (embedding, final norm, tied head). Parameters
    stay fp32 in the optimizer; compute runs in ``param_dtype`` and gradients are reduced in ``reduce_dtype``."""
    try:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    except ImportError:  # torch < 2.6
        from torch.distributed._composable.fsdp import MixedPrecisionPolicy, fully_shard
    from torch.distributed.device_mesh import init_device_mesh

    device_type = next(model.parameters()).device.type
    mesh = init_device_mesh(device_type, (dist.get_world_size(),), mesh_dim_names=("dp",))
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    layers = list(model.layers)
    for i, layer in enumerate(layers):
        # The last layer's parameters are needed again right away by backward: keep them gathered.
        fully_shard(layer, mesh=mesh, mp_policy=mp, reshard_after_forward=reshard_after_forward and i < len(layers) - 1)
    # The root (embedding, final norm, tied head) stays gathered from its forward through backward: the loss
    # functions apply ``model.lm_head`` to the returned hidden states after forward, in chunks.
    fully_shard(model, mesh=mesh, mp_policy=mp, reshard_after_forward=False)
    return model
