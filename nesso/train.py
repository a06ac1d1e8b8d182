"""The training loop shared by pretraining, SFT and DPO, and `nesso pretrain`.

:class:`Trainer` takes a model, a schedule and, per optimizer step, a list of micro-batches (dicts of tensors);
a *loss function* ``loss_fn(model, batch) -> summed loss`` decides what is learned. Pretraining uses
:func:`causal_lm_loss` on plain windows; SFT plugs in the same function with ``labels`` = -100 outside the
assistant turns and ``doc_ids``/``positions`` for packed samples (attention sample by sample, ``nesso.packed_attention``);
DPO can pass its own.
The loss of a step is normalised by the number of target tokens of the whole global batch (all micro-batches on
all ranks), so accumulation and data parallelism give the same gradients as one big batch.

Checkpoints (``OUT/checkpoints/step_XXXXXXXX/``) hold the model and optimizer as a torch.distributed.checkpoint
(loadable on another world size), the schedule and data position (``trainer_state.json``), every rank's RNG, and an
``hf/`` folder that `nesso`/transformers load directly. They appear atomically (written under a temporary name and
renamed), and ``OUT/checkpoints/latest`` names the newest.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import math
import os
import random
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nesso.config import ModelConfig, get_preset
from nesso.data.recipe import DataRecipe, Section, expand_path, read_recipe_file
from nesso.data.shards import write_json_atomic
from nesso.distributed import (
    DistInfo,
    all_reduce_sum,
    apply_activation_checkpointing,
    apply_compile,
    apply_fsdp,
    barrier,
    init_distributed,
)
from nesso.errors import NessoError
from nesso.model import Transformer, build_model
from nesso.packed_attention import document_spans
from nesso.schedules import Schedule, ScheduleConfig

IGNORE_INDEX = -100
Batch = dict[str, Any]  # tensors
LossFn = Callable[[nn.Module, Batch], torch.Tensor]

# Dense bf16 peak FLOP/s per device, for MFU when train.peak_flops is not set.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12}


def device_peak_flops(device: torch.device, dtype: str = "bf16") -> float | None:
    """Peak FLOP/s of ``device`` for MFU: the GPU's dense bf16 peak by name (None when unknown), or this CPU's
    measured matmul rate."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return next((v for k, v in PEAK_FLOPS.items() if k in name), None)
    return cpu_matmul_flops(dtype, torch.get_num_threads())


@functools.cache
def cpu_matmul_flops(dtype: str, threads: int) -> float:
    """This CPU's square-matmul rate at ``threads`` threads: the best of three 2048³ products (~0.1 s in bf16,
    ~0.4 s in fp32 on two cores). Measured rather than tabled because CPUs of one name differ by 2× and more
    (AVX-512 bf16 vs AMX; two AMD EPYC VMs read 395 and 750 bf16 GFLOP/s)."""
    n = 2048
    gen = torch.Generator().manual_seed(0)
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    a, b = (torch.randn(n, n, generator=gen).to(torch_dtype) for _ in range(2))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a @ b  # warm-up: oneDNN picks and packs its kernel on the first call
        best = math.inf
        for _ in range(3):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return 2 * n**3 / best


# ---- configuration ------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    seq_len: int = 4096
    micro_batch: int = 4
    grad_accum: int | None = None  # None: derived from tokens_per_step (or 1)
    tokens_per_step: int | None = None  # global tokens per optimizer step = micro_batch·seq_len·grad_accum·world
    steps: int = 1000
    lr: float = 3e-3
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # 0 disables clipping
    dtype: str = "bf16"  # compute precision: bf16 (autocast / FSDP mixed precision) or fp32
    device: str = "auto"
    compile: bool = False
    activation_checkpointing: bool = False
    document_masking: bool = False  # attention stays inside documents (Nanotron does not: default off)
    loss_chunk_tokens: int = 0  # compute the LM head + loss in chunks of this many tokens (0: all at once)
    peak_flops: float | None = None  # per device, for MFU; default by device name
    threads: int | None = None  # CPU: torch.set_num_threads
    log_every: int = 10
    ckpt_every: int = 1000
    keep_checkpoints: int = 3
    export_hf: bool = True  # write OUT/checkpoints/step_*/hf with every checkpoint
    export_dtype: str = "bfloat16"
    out_dir: str = "runs/run"
    seed: int = 0

    @classmethod
    def from_section(cls, s: Section, name: str, seed: int) -> TrainConfig:
        c = cls(seed=seed)
        c.seq_len = s.get("seq_len", int, c.seq_len, minimum=1)
        c.micro_batch = s.get("micro_batch", int, c.micro_batch, minimum=1)
        c.grad_accum = s.get("grad_accum", int, None, minimum=1)
        c.tokens_per_step = s.get("tokens_per_step", int, None, minimum=1)
        if c.grad_accum is not None and c.tokens_per_step is not None:
            raise NessoError("train: give grad_accum or tokens_per_step, not both")
        c.steps = s.get("steps", int, c.steps, minimum=1)
        c.lr = s.get("lr", float, c.lr, above=0.0)
        betas = s.get("betas", list, [0.9, 0.95])
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            raise NessoError(f"train.betas must be two numbers in [0, 1), like [0.9, 0.95] (got {betas!r})")
        c.betas = (float(betas[0]), float(betas[1]))
        c.eps = s.get("eps", float, c.eps, above=0.0)
        c.weight_decay = s.get("weight_decay", float, c.weight_decay, minimum=0.0)
        c.grad_clip = s.get("grad_clip", float, c.grad_clip, minimum=0.0)
        c.dtype = s.get("dtype", str, c.dtype, choices=("bf16", "fp32"))
        c.device = s.get("device", str, c.device, choices=("auto", "cpu", "cuda"))
        c.compile = s.get("compile", bool, c.compile)
        c.activation_checkpointing = s.get("activation_checkpointing", bool, c.activation_checkpointing)
        c.document_masking = s.get("document_masking", bool, c.document_masking)
        c.loss_chunk_tokens = s.get("loss_chunk_tokens", int, c.loss_chunk_tokens, minimum=0)
        c.peak_flops = s.get("peak_flops", float, None, above=0.0)
        c.threads = s.get("threads", int, None, minimum=1)
        c.log_every = s.get("log_every", int, c.log_every, minimum=1)
        c.ckpt_every = s.get("ckpt_every", int, c.ckpt_every, minimum=1)
        c.keep_checkpoints = s.get("keep_checkpoints", int, c.keep_checkpoints, minimum=1)
        c.export_hf = s.get("export_hf", bool, c.export_hf)
        c.export_dtype = s.get("export_dtype", str, c.export_dtype, choices=("bfloat16", "float16", "float32"))
        c.out_dir = s.get("out_dir", str, f"runs/{name}")
        s.finish()
        return c

    def resolve_grad_accum(self, world: int) -> int:
        if self.grad_accum is not None:
            return self.grad_accum
        if self.tokens_per_step is None:
            return 1
        per_pass = self.micro_batch * self.seq_len * world
        if self.tokens_per_step % per_pass:
            raise NessoError(f"train.tokens_per_step ({self.tokens_per_step:,}) is not a multiple of micro_batch × "
                             f"seq_len × world size = {self.micro_batch} × {self.seq_len} × {world} = {per_pass:,}")
        return self.tokens_per_step // per_pass


@dataclass
class PretrainRecipe:
    name: str
    seed: int
    model: ModelConfig
    init_from: str | None
    data: DataRecipe
    train: TrainConfig
    schedule: ScheduleConfig
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None) -> PretrainRecipe:
        raw = read_recipe_file(path, overrides)
        top = Section(raw, "recipe")
        name = top.get("name", str)
        seed = top.get("seed", int, 0)
        model_cfg, init_from = _parse_model(top.section("model"))
        top.get("tokenizer", str, "llama32")
        top.section("data")
        data = DataRecipe.from_raw(raw)
        train = TrainConfig.from_section(top.section("train"), name, seed)
        schedule = ScheduleConfig.from_section(top.section("schedule"))
        top.finish()
        if train.seq_len > model_cfg.max_position_embeddings:
            raise NessoError(f"train.seq_len ({train.seq_len}) exceeds the model's max_position_embeddings "
                             f"({model_cfg.max_position_embeddings})")
        return cls(name, seed, model_cfg, init_from, data, train, schedule, raw)


def _parse_model(s: Section) -> tuple[ModelConfig, str | None]:
    preset = s.get("preset", str, "nesso-0.4b")
    init_from = s.get("init_from", str, None)
    cfg = get_preset(preset)
    changes = {}
    for key in ModelConfig.__dataclass_fields__:
        if key in ("extra", "rope_scaling", "eos_token_id"):
            continue
        if s.has(key):
            default = getattr(cfg, key)
            kind = float if isinstance(default, float) else bool if isinstance(default, bool) else int
            changes[key] = s.get(key, kind)
    s.finish()
    return (cfg.replace(**changes) if changes else cfg), init_from


# ---- loss ---------------------------------------------------------------------------------------------------
def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                         chunk_tokens: int = 0) -> torch.Tensor:
    """Summed next-token loss of ``hidden @ weight.T`` over labels != -100.

    When gradients are needed the LM head and the loss are fused: each chunk of ``chunk_tokens`` rows (0: all) makes
    its logits, turns them in place into the gradient (softmax − one-hot) and multiplies it out right away, so the
    [tokens, vocabulary] logits are never kept for backward nor recomputed, and every pass over them is one pass.
    Rows without a target never reach the LM head (an SFT batch supervises only the assistant turns, often a small
    part of its tokens), and the head's weight gradient is only made when the weight needs one (not under LoRA).
    Matmuls run in the autocast dtype when autocast is on (bf16), the softmax in fp32.
    """
    h = hidden.reshape(-1, hidden.shape[-1])
    y = labels.reshape(-1)
    device_type = h.device.type
    compute = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else h.dtype
    chunk = chunk_tokens if chunk_tokens > 0 else max(h.shape[0], 1)
    if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
        return _FusedLinearCrossEntropy.apply(h, weight, y, chunk, compute)
    rows = _target_rows(y)
    if rows is not None:
        h, y = h[rows], y[rows]
    with torch.autocast(device_type, enabled=False):
        w = weight.to(compute)
        return sum((F.cross_entropy(F.linear(h[s:s + chunk].to(compute), w).float(), y[s:s + chunk],
                                    ignore_index=IGNORE_INDEX, reduction="sum")
                    for s in range(0, h.shape[0], chunk)), torch.zeros((), device=h.device))


def _target_rows(labels: torch.Tensor) -> torch.Tensor | None:
    """Indices of the rows of flat ``labels`` that have a target, or None when all of them do."""
    valid = labels != IGNORE_INDEX
    if bool(valid.all()):
        return None
    return valid.nonzero().squeeze(1)


class _FusedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk: int,
                compute: torch.dtype) -> torch.Tensor:
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        rows = _target_rows(labels)
        inputs = hidden if rows is None else hidden[rows]
        targets = labels if rows is None else labels[rows]
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(compute)
            grad_rows = torch.empty_like(inputs) if need_h else None
            grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            for s in range(0, inputs.shape[0], chunk):
                h = inputs[s:s + chunk].to(compute)
                target = targets[s:s + chunk].unsqueeze(1)
                logits = torch.mm(h, w.t()).float()
                picked = logits.gather(1, target).squeeze(1)
                peak = logits.amax(dim=1, keepdim=True)
                grad = logits.sub_(peak).exp_()  # in place: one exp pass serves the loss and the gradient
                norm = grad.sum(dim=1, keepdim=True)
                lse = (peak + norm.log()).squeeze(1)
                total += (lse - picked).sum()
                grad.div_(norm)  # softmax
                grad.scatter_add_(1, target, torch.full_like(picked, -1.0).unsqueeze(1))  # − one-hot
                g = grad.to(compute)
                if grad_rows is not None:
                    grad_rows[s:s + chunk] = torch.mm(g, w).to(hidden.dtype)
                if grad_w is not None:
                    grad_w.add_(torch.mm(g.t(), h))
        grad_h = grad_rows
        if need_h and rows is not None:
            grad_h = torch.zeros_like(hidden).index_copy_(0, rows, grad_rows)
        ctx.save_for_backward(grad_h, None if grad_w is None else grad_w.to(weight.dtype))
        return total

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        return (None if grad_h is None else grad_h * grad_out.to(grad_h.dtype),
                None if grad_w is None else grad_w * grad_out.to(grad_w.dtype), None, None, None)


def make_causal_lm_loss(chunk_tokens: int = 0) -> LossFn:
    def loss_fn(model: nn.Module, batch: Batch) -> torch.Tensor:
        return causal_lm_loss(model, batch, chunk_tokens)

    return loss_fn


def causal_lm_loss(model: nn.Module, batch: Batch, chunk_tokens: int = 0) -> torch.Tensor:
    """Summed cross-entropy over ``labels`` != -100. Optional keys: ``positions`` [B, T] (RoPE positions),
    ``doc_ids`` [B, T] (packed samples: attention stays within a sample) or a ready ``attn_mask``."""
    mask = batch.get("attn_mask")
    segments = batch.get("doc_ids") if mask is None else None
    hidden = model(batch["input_ids"], positions=batch.get("positions"), attn_mask=mask, return_hidden=True,
                   segments=segments)
    return linear_cross_entropy(hidden, model.lm_head.weight, batch["labels"], chunk_tokens)


def attended_pairs(batch: Batch) -> int:
    """Sum over the batch's sequences of length² (each packed sample on its own): the attention term of the FLOPs
    (``ModelConfig.flops_per_token`` takes the mean context, this over the tokens). From the host copy of
    ``doc_ids``: no device sync."""
    ids = batch["input_ids"]
    if "doc_ids" not in batch:
        return ids.shape[0] * ids.shape[1] ** 2
    return sum((e - s) ** 2 for row in document_spans(batch["doc_ids"]) for s, e in row)


def count_labelled(batch: Batch) -> int:
    """Positions with a target: those whose hidden state reaches the LM head (the losses run it there only)."""
    return int((batch["labels"] != IGNORE_INDEX).sum())


def count_loss_tokens(batch: Batch, labelled: int) -> int:
    """What a micro-batch's summed loss is divided by: its ``labelled`` (``count_labelled``) target tokens, or
    ``num_loss_tokens`` when a loss normalises by something else (e.g. DPO: the number of preference pairs)."""
    if "num_loss_tokens" in batch:
        return int(batch["num_loss_tokens"])
    return labelled


# ---- optimizer ----------------------------------------------------------------------------------------------
def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only (not on norm gains); fused kernel where the device has one."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kwargs = {"lr": cfg.lr, "betas": cfg.betas, "eps": cfg.eps}
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, foreach=True, **kwargs)


# ---- the trainer --------------------------------------------------------------------------------------------
class Trainer:
    def __init__(self, model: Transformer, cfg: TrainConfig, schedule: Schedule, out_dir: str | Path,
                 dist_info: DistInfo | None = None, tokenizer: Any = None, loss_fn: LossFn | None = None,
                 use_fsdp: bool | None = None, run_info: dict[str, Any] | None = None,
                 show_progress: bool = True) -> None:
        self.cfg, self.schedule, self.tokenizer = cfg, schedule, tokenizer
        self.dist = dist_info or DistInfo()
        self.out_dir = Path(out_dir)
        self.loss_fn = loss_fn or make_causal_lm_loss(cfg.loss_chunk_tokens)
        self.run_info = run_info or {}
        self.show_progress = show_progress
        self.model_config = model.config
        self.compute_dtype = torch.bfloat16 if cfg.dtype == "bf16" else torch.float32
        model = model.to(self.dist.device)
        if cfg.activation_checkpointing:
            apply_activation_checkpointing(model)
        if cfg.compile:
            if self.dist.device.type == "cpu" and not (os.environ.get("CXX") or shutil.which("g++")
                                                       or shutil.which("clang++")):
                raise NessoError("train.compile on a CPU needs a C++ compiler (torch.compile builds its CPU kernels "
                                 "with one): install g++ (apt install g++) or set train.compile: false")
            apply_compile(model)
        self.fsdp = self.dist.world > 1 if use_fsdp is None else use_fsdp
        if self.fsdp:
            apply_fsdp(model, param_dtype=self.compute_dtype if cfg.dtype == "bf16" else None)
        self.model = model
        self.optimizer = build_optimizer(model, cfg)
        self.step = 0
        self.tokens_seen = 0
        self.ckpt_root = self.out_dir / "checkpoints"
        self.log_path = self.out_dir / "train_log.jsonl"

    # -- precision ------------------------------------------------------------------------------------------
    def _autocast(self):
        if self.cfg.dtype == "bf16" and not self.fsdp:  # FSDP runs bf16 through its mixed-precision policy
            return torch.autocast(self.dist.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def peak_flops(self) -> float | None:
        return self.cfg.peak_flops or device_peak_flops(self.dist.device, self.cfg.dtype)

    def _memory_gb(self) -> float:
        if self.dist.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.dist.device) / 2**30
        return peak_rss_gb()

    # -- one optimizer step ---------------------------------------------------------------------------------
    def train_step(self, micro_batches: list[Batch]) -> dict[str, float]:
        model, dev = self.model, self.dist.device
        labelled_counts = [count_labelled(b) for b in micro_batches]
        local_tokens = sum(count_loss_tokens(b, n) for b, n in zip(micro_batches, labelled_counts))
        global_tokens = int(all_reduce_sum(torch.tensor([local_tokens], dtype=torch.float64, device=dev)).item())
        if global_tokens == 0:
            raise NessoError(f"step {self.step + 1}: the batch has no target tokens (every label is -100)")
        scale = self.dist.world / global_tokens  # FSDP averages gradients over ranks; undo that, divide by tokens
        loss_sum = torch.zeros((), dtype=torch.float32, device=dev)
        attended = 0
        for batch in micro_batches:
            attended += attended_pairs(batch)
            batch = {k: v.to(dev, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
            with self._autocast():
                loss = self.loss_fn(model, batch)
            (loss * scale).backward()
            loss_sum += loss.detach().float()
        grad_norm = self._clip_gradients()
        lr = self.schedule(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if dev.type == "cpu":
            release_freed_memory()
        loss_total = float(all_reduce_sum(loss_sum.double()).item())
        inputs = sum(b["input_ids"].numel() for b in micro_batches) * self.dist.world
        self.tokens_seen += inputs
        return {"loss": loss_total / global_tokens, "lr": lr, "grad_norm": grad_norm, "tokens": inputs,
                "attended": attended * self.dist.world, "labelled": sum(labelled_counts) * self.dist.world}

    def _clip_gradients(self) -> float:
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
        if hasattr(norm, "full_tensor"):  # a DTensor under FSDP
            norm = norm.full_tensor()
        return float(norm)

    # -- the loop -------------------------------------------------------------------------------------------
    def fit(self, data: Iterable[list[Batch]], stop_after: int | None = None) -> list[dict[str, float]]:
        """Train until ``schedule.total`` steps (or ``stop_after``), checkpointing on the way; ``data`` yields each
        step's micro-batches and may have state_dict()/load_state_dict() to checkpoint its position."""
        from tqdm import tqdm

        total = self.schedule.total
        records: list[dict[str, float]] = []
        params = list(self.model.parameters())
        frozen = any(not p.requires_grad for p in params)
        trained = sum(p.numel() for p in params if p.requires_grad and p.ndim >= 2) if frozen else None
        peak = self.peak_flops()
        bar = tqdm(total=total, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                   disable=not (self.dist.is_main and self.show_progress))
        window_tokens = window_attended = window_labelled = 0
        window_start, window_losses = time.perf_counter(), []
        started = time.perf_counter()
        it = iter(data)
        self.model.train()
        try:
            while self.step < total and (stop_after is None or self.step < stop_after):
                try:
                    micro_batches = next(it)
                except StopIteration:  # a finite dataset ran out: keep what was learned
                    if self.step % self.cfg.ckpt_every:
                        self.save_checkpoint(data)
                    break
                out = self.train_step(micro_batches)
                records.append({"step": self.step, **out})
                window_tokens += out["tokens"]
                window_attended += out["attended"]
                window_labelled += out["labelled"]
                window_losses.append(out["loss"])
                bar.update(1)
                if self.step % self.cfg.log_every == 0 or self.step == total:
                    seconds = max(time.perf_counter() - window_start, 1e-9)
                    tok_s = window_tokens / seconds
                    # Attention FLOPs grow with how far each token looks back: its sample's length when packed.
                    context = window_attended / max(window_tokens, 1)
                    head_share = window_labelled / max(window_tokens, 1)  # the LM head sees labelled rows only
                    flops_per_token = self.model_config.flops_per_token(context, trained, head_share)
                    mfu = flops_per_token * tok_s / (peak * self.dist.world) if peak else None
                    rec = {"step": self.step, "loss": out["loss"], "loss_avg": sum(window_losses) / len(window_losses),
                           "lr": out["lr"], "grad_norm": out["grad_norm"], "tokens_seen": self.tokens_seen,
                           "tok_per_s": tok_s, "mfu": mfu, "memory_gb": self._memory_gb(),
                           "elapsed_s": time.perf_counter() - started}
                    if hasattr(data, "epochs"):
                        rec["epochs"] = data.epochs()
                    self._log(rec)
                    bar.set_postfix(loss=f"{rec['loss_avg']:.3f}", lr=f"{out['lr']:.2e}", tok_s=f"{tok_s:,.0f}",
                                    mfu=f"{mfu:.1%}" if mfu is not None else "n/a")
                    window_tokens = window_attended = window_labelled = 0
                    window_start, window_losses = time.perf_counter(), []
                if self.step % self.cfg.ckpt_every == 0 or self.step == total:
                    self.save_checkpoint(data)
        finally:
            bar.close()
        return records

    def _log(self, rec: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    # -- checkpoints ----------------------------------------------------------------------------------------
    def save_checkpoint(self, data: Any = None) -> Path:
        import torch.distributed.checkpoint as dcp

        tag = f"step_{self.step:08d}"
        final, tmp = self.ckpt_root / tag, self.ckpt_root / f".{tag}.tmp"
        if self.dist.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / "rng").mkdir(parents=True)
        barrier()
        model_sd, optim_sd, _ = self._train_state()
        with _single_process_dcp_quiet():
            dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp / "dcp"))
        torch.save(_rng_state(), tmp / "rng" / f"rank{self.dist.rank:05d}.pt")
        if self.cfg.export_hf:
            self.export_hf(tmp / "hf")
        if self.dist.is_main:
            state = {"step": self.step, "tokens_seen": self.tokens_seen, "world_size": self.dist.world,
                     "data": data.state_dict() if hasattr(data, "state_dict") else None,
                     "schedule": self.schedule.state_dict(), "train": asdict(self.cfg),
                     "model": self._model_record(),
                     "run": self.run_info}
            write_json_atomic(tmp / "trainer_state.json", state)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            (self.ckpt_root / "latest.tmp").write_text(tag + "\n")
            os.replace(self.ckpt_root / "latest.tmp", self.ckpt_root / "latest")
            self._prune()
        barrier()
        return final

    def _train_state(self) -> tuple[dict[str, Any], dict[str, Any], Any]:
        """(model, optimizer) state dicts of what a checkpoint holds, and the options to set them back with: every
        parameter, or under LoRA only the trained ones. The frozen base is the model the run loads again on resume
        (SmolLM2-135M's would be 540 MB per checkpoint for a 20 MB adapter); loading is then non-strict, after
        dcp.load has checked every requested key against the checkpoint."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        frozen = [name for name, p in self.model.named_parameters(remove_duplicate=False) if not p.requires_grad]
        options = StateDictOptions(ignore_frozen_params=bool(frozen), strict=not frozen)
        model_sd, optim_sd = get_state_dict(self.model, self.optimizer, options=options)
        for name in frozen:  # tied aliases (the output head of a tied embedding), which torch's option keeps
            model_sd.pop(name, None)
        return model_sd, optim_sd, options

    def _prune(self) -> None:
        done = sorted(p for p in self.ckpt_root.glob("step_*") if (p / "trainer_state.json").is_file())
        for old in done[:-self.cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)

    def export_hf(self, out: str | Path) -> Path | None:
        """Write the current weights as a Hugging Face directory (collective under FSDP; rank 0 writes)."""
        from nesso.checkpoint import load_state_dict_into, save_hf
        from nesso.model import empty_model

        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            sd = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        else:
            sd = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        if not self.dist.is_main:
            return None
        cfg = self.model_config
        export = empty_model(cfg, torch.float32)
        if cfg.tie_word_embeddings:
            sd.pop("lm_head.weight", None)
        load_state_dict_into(export, sd, "the trained model")
        return save_hf(export, self.tokenizer, out, dtype=self.cfg.export_dtype)

    def latest_checkpoint(self) -> Path | None:
        return latest_checkpoint(self.ckpt_root)

    def resume(self, data: Any = None, checkpoint: str | Path | None = None) -> int:
        """Load the newest complete checkpoint (or ``checkpoint``); returns the step it resumes from (0: none)."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_state_dict

        ck = Path(checkpoint) if checkpoint else self.latest_checkpoint()
        if ck is None:
            return 0
        try:
            state = json.loads((ck / "trainer_state.json").read_text())
        except (OSError, ValueError) as e:
            raise NessoError(f"checkpoint {ck} is incomplete or unreadable ({e}); delete it to use an older one") from None
        self._check_same_model(ck, state.get("model"))
        model_sd, optim_sd, options = self._train_state()
        try:
            with _single_process_dcp_quiet():
                dcp.load({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(ck / "dcp"))
            set_state_dict(self.model, self.optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd,
                           options=options)
        except (Exception, dcp.api.CheckpointException) as e:  # DCP's own exception is a BaseException
            # Mismatches surface as several exception types; DCP wraps each rank's traceback, the cause last.
            lines = [line.strip() for line in str(e).splitlines() if line.strip()]
            detail = lines[-1] if isinstance(e, dcp.api.CheckpointException) and lines else (
                f"{type(e).__name__}: {lines[0] if lines else ''}")
            raise NessoError(f"cannot load checkpoint {ck} into this model/optimizer ({detail}); was it written "
                             "with other model or LoRA settings? Resume with those, or start over with --fresh") from None
        self.step = int(state["step"])
        self.tokens_seen = int(state.get("tokens_seen", 0))
        if data is not None and hasattr(data, "load_state_dict") and state.get("data") is not None:
            data.load_state_dict(state["data"])
        rng_file = ck / "rng" / f"rank{self.dist.rank:05d}.pt"
        if state.get("world_size") == self.dist.world and rng_file.is_file():
            _set_rng_state(torch.load(rng_file, weights_only=False))
        else:  # another world size: derive fresh, deterministic streams
            _seed_everything(self.cfg.seed * 1_000_003 + self.step * 101 + self.dist.rank)
        if self.dist.is_main:
            self._truncate_log(self.step)
        barrier()
        return self.step

    def _model_record(self) -> dict[str, Any]:
        """The model config a checkpoint records (trainer_state.json "model")."""
        return {k: v for k, v in asdict(self.model_config).items() if k != "extra"}

    def _check_same_model(self, ck: Path, saved: Any) -> None:
        """A run resumes only the model it started: name what changed instead of a missing-key error."""
        if not isinstance(saved, dict):
            return  # checkpoints written before the config was recorded
        current = json.loads(json.dumps(self._model_record()))  # as trainer_state.json reads back
        changed = sorted(k for k in current.keys() & saved.keys() if current[k] != saved[k])
        if changed:
            shown = ", ".join(f"{k} {saved[k]!r} -> {current[k]!r}" for k in changed[:4])
            raise NessoError(f"{ck} was written for another model ({shown}); resume with the model it was trained "
                             "with, or start over with --fresh or another --out")

    def _truncate_log(self, step: int) -> None:
        if not self.log_path.is_file():
            return
        keep = [line for line in self.log_path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        write_text_atomic(self.log_path, "".join(line + "\n" for line in keep))

    def plot(self, title: str = "") -> Path | None:
        if not self.dist.is_main:
            return None
        return plot_loss_curve(self.log_path, self.out_dir / "loss.png", title)


@contextlib.contextmanager
def _single_process_dcp_quiet():
    # Without a process group DCP warns that it assumes a single process, which is exactly the intent here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; musl and macOS have none
    except (AttributeError, OSError):
        return None


def release_freed_memory() -> bool:
    """Give the heap's free pages back to the OS. On a CPU the step's activations are tensors of many sizes (packed
    rows vary in length), and glibc keeps the freed space of each step as holes it rarely reuses whole: a LoRA run's
    resident memory grew from 3 to 9 GB over 179 steps while its live tensors stayed at 0.6 GB. Trimming after each
    step keeps it at ~2 GB between steps (the run's peak, inside a step: 5.8 GB) for ~0.15 s a step. False where the
    C library has no ``malloc_trim``."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    return trim is not None


def process_memory_gb(field: str) -> float | None:
    """A memory field of /proc/self/status in GiB ("VmRSS": resident now, "VmHWM": its peak); None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    return None


def peak_rss_gb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: the latter survives exec, so a child started by a
    big parent would report the parent's peak."""
    peak = process_memory_gb("VmHWM")
    if peak is not None:
        return peak
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


_CHECKPOINT_ENTRY = re.compile(r"^(\.?step_\d{8}(\.tmp)?|latest(\.tmp)?)$")


def clear_run(out: Path, *, final: bool = False) -> None:
    """``--fresh``: delete the run state nesso keeps in ``out`` (checkpoints/, train_log.jsonl, and final/ when
    asked), refusing where checkpoints/ or final/ hold anything nesso did not write there."""
    from nesso.checkpoint import check_replaceable

    ckpt = out / "checkpoints"
    if ckpt.is_dir():
        foreign = sorted(p.name for p in ckpt.iterdir() if not _CHECKPOINT_ENTRY.match(p.name))
        if foreign:
            raise NessoError(f"--fresh would delete {ckpt}, which holds more than nesso's checkpoints "
                             f"({', '.join(foreign[:3])}); give another --out")
    if final:
        check_replaceable(out / "final", "a run's final model")
        shutil.rmtree(out / "final", ignore_errors=True)
    shutil.rmtree(ckpt, ignore_errors=True)
    (out / "train_log.jsonl").unlink(missing_ok=True)


def latest_checkpoint(root: Path) -> Path | None:
    pointer = root / "latest"
    if pointer.is_file():
        ck = root / pointer.read_text().strip()
        if (ck / "trainer_state.json").is_file():
            return ck
    done = sorted(p for p in root.glob("step_*") if (p / "trainer_state.json").is_file())
    return done[-1] if done else None


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    seed %= 2**32
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def plot_loss_curve(log_path: Path, out: Path, title: str = "") -> Path | None:
    if not log_path.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not recs:
        return None
    steps = [r["step"] for r in recs]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=[3, 1])
    ax1.plot(steps, [r["loss"] for r in recs], lw=0.8, alpha=0.5, label="loss (step)")
    ax1.plot(steps, [r.get("loss_avg", r["loss"]) for r in recs], lw=1.5, label="loss (mean since last log)")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax1.set_title(title or "training loss")
    ax2.plot(steps, [r["lr"] for r in recs], color="tab:green")
    ax2.set_ylabel("lr")
    ax2.set_xlabel("step")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


# ---- `nesso pretrain` ---------------------------------------------------------------------------------------
def run_pretrain(recipe_path: str | Path, overrides: list[str] | None = None, out_dir: str | None = None,
                 export_hf: str | None = None, fresh: bool = False, workers: int = 1,
                 echo: Callable[[str], None] = print) -> dict[str, Any]:
    from nesso.data.mix import MixedWindows, PretrainBatches, open_sources
    from nesso.data.tokenize import load_tokenizer, read_manifest, tokenize_recipe

    recipe = PretrainRecipe.load(recipe_path, overrides)
    cfg = recipe.train
    if out_dir:
        cfg.out_dir = out_dir
    if export_hf:  # refused now rather than after the training
        from nesso.checkpoint import check_replaceable

        check_replaceable(expand_path(export_hf))
    dist_info = init_distributed(cfg.device)
    say = echo if dist_info.is_main else (lambda _msg: None)
    if cfg.threads and dist_info.device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    _seed_everything(recipe.seed + dist_info.rank)
    out = expand_path(cfg.out_dir)
    if fresh and dist_info.is_main:
        clear_run(out)
    barrier()

    names = [s.name for s in recipe.data.sources]
    manifest = read_manifest(recipe.data.out)
    if manifest is None or not all(manifest["sources"].get(n, {}).get("complete") for n in names):
        if dist_info.world > 1:
            raise NessoError(f"the data of this recipe is not (fully) tokenised in {recipe.data.out}; run "
                             f"`nesso data tokenize {recipe_path}` once before launching with torchrun")
        say(f"tokenising the recipe's data into {recipe.data.out} first (resumable; `nesso data tokenize` does "
            "this alone)")
        tokenize_recipe(recipe.data, workers=workers, echo=say)
    streams, manifest = open_sources(recipe.data.out, names)
    vocab = manifest["tokenizer"]["vocab_size"]
    if vocab > recipe.model.vocab_size:
        raise NessoError(f"the tokens come from a tokenizer with {vocab:,} ids but the model has "
                         f"{recipe.model.vocab_size:,} embedding rows; raise model.vocab_size")
    tokenizer = load_tokenizer(recipe.data.tokenizer)

    grad_accum = cfg.resolve_grad_accum(dist_info.world)
    windows = MixedWindows(streams, recipe.data.weights, cfg.seq_len, recipe.seed)
    data = PretrainBatches(windows, cfg.micro_batch, grad_accum, dist_info.rank, dist_info.world,
                           document_masking=cfg.document_masking)
    if recipe.init_from:
        from nesso.loader import load_model

        model = load_model(recipe.init_from).model
        if model.config.vocab_size < vocab:
            raise NessoError(f"model.init_from {recipe.init_from} has fewer embedding rows than the tokenizer has ids")
    else:
        model = build_model(recipe.model, dtype=torch.float32, seed=recipe.seed)
    model_cfg = model.config
    schedule = Schedule(recipe.schedule, cfg.lr, cfg.steps)
    run_info = {"recipe": str(recipe_path), "name": recipe.name, "grad_accum": grad_accum, "world": dist_info.world}
    trainer = Trainer(model, cfg, schedule, out, dist_info, tokenizer=tokenizer, run_info=run_info)
    start = 0 if fresh else trainer.resume(data)
    tokens_per_step = cfg.micro_batch * cfg.seq_len * grad_accum * dist_info.world
    counts = model_cfg.num_parameters()
    say(f"{recipe.name}: {counts['total'] / 1e6:,.1f}M parameters on {dist_info.world} × {dist_info.device.type}, "
        f"{tokens_per_step:,} tokens/step (micro {cfg.micro_batch} × seq {cfg.seq_len} × accum {grad_accum} × "
        f"world {dist_info.world}), {cfg.steps:,} steps, {cfg.dtype}"
        + (f"; resuming at step {start}" if start else ""))
    records = trainer.fit(data) if start < cfg.steps else []
    plot = trainer.plot(recipe.name)
    final = trainer.latest_checkpoint()
    if export_hf:
        trainer.export_hf(expand_path(export_hf))
    barrier()
    summary = {"steps": trainer.step, "out_dir": str(out), "checkpoint": str(final) if final else None,
               "loss_plot": str(plot) if plot else None, "first_loss": records[0]["loss"] if records else None,
               "last_loss": records[-1]["loss"] if records else None, "epochs": windows.epochs()}
    if dist_info.is_main and records:
        say(f"step {trainer.step}: loss {records[0]['loss']:.3f} -> {records[-1]['loss']:.3f}; checkpoint {final}; "
            f"curve {plot}; log {trainer.log_path}")
    if math.isnan(summary["last_loss"] or 0.0):
        raise NessoError("the loss became NaN; lower train.lr or check the data")
    return summary
