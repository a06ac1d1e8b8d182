"""GPU checks of the training stack on one CUDA device, for the numbers in benchmarks/RESULTS.md ("GPU"):

1. attention: which SDPA kernels accept nesso's attention call (bf16, causal, grouped-query heads) at the
   nesso-0.4B shape, their forward+backward time, their error against an fp32 reference, and which kernel the
   model's own forward actually launches (from the profiler's kernel names);
2. FSDP2: the nesso-0.4B model sharded with ``nesso.distributed.apply_fsdp`` (a one-rank NCCL process group) against
   the same model unsharded with autocast: same initial weights and batches, losses side by side, tok/s and MFU.

    python benchmarks/gpu.py                      # --steps 6 --seq-len 4096 --micro-batch 4
Training MFU against Hugging Face on real text: benchmarks/train.py with recipes/nesso-0.4b-gpu-throughput.yaml.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

from nesso.config import get_preset
from nesso.model import build_model
from nesso.train import device_peak_flops


def timed(fn, repeats: int) -> float:
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats


def attention(cfg, batch: int, seq: int) -> dict:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    g = torch.Generator(device="cuda").manual_seed(0)

    def qkv(t: int, dtype: torch.dtype) -> list[torch.Tensor]:
        shapes = [(batch, cfg.num_heads, t, cfg.head_dim)] + [(batch, cfg.num_kv_heads, t, cfg.head_dim)] * 2
        return [torch.randn(s, device="cuda", generator=g, dtype=dtype).requires_grad_() for s in shapes]

    def call(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=cfg.num_kv_heads != cfg.num_heads)

    small = qkv(1024, torch.float32)
    with sdpa_kernel([SDPBackend.MATH]):
        ref = call(*small)
    small_bf16 = [t.detach().bfloat16() for t in small]
    big = qkv(seq, torch.bfloat16)
    out: dict = {"shape": f"B={batch} Hq={cfg.num_heads} Hkv={cfg.num_kv_heads} T={seq} D={cfg.head_dim} bf16 causal"}
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                    SDPBackend.MATH):
        name = backend.name.lower()
        try:
            with sdpa_kernel([backend]):
                err = (call(*small_bf16).float() - ref).abs().max().item()
                ms = timed(lambda: call(*big).sum().backward(), 5) * 1000  # noqa: B023
            out[name] = {"fwd_bwd_ms": ms, "max_abs_err_vs_fp32": err}
        except RuntimeError as e:
            out[name] = {"error": str(e).splitlines()[0][:160]}
    # What the model's own forward launches, with no backend forced.
    model = build_model(cfg, dtype=torch.bfloat16, seed=0).cuda()
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), device="cuda", generator=g)
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        model(ids, return_hidden=True)
        torch.cuda.synchronize()
    kernels = sorted({e.key for e in prof.key_averages() if any(w in e.key.lower() for w in ("flash", "fmha", "attention",
                                                                                            "efficient", "cudnn"))})
    out["model_forward_kernels"] = kernels
    del model
    torch.cuda.empty_cache()
    return out


def fsdp(cfg, batch: int, seq: int, steps: int, device: str = "cuda") -> dict:
    import torch.distributed as dist

    from nesso.distributed import DistInfo
    from nesso.schedules import Schedule, ScheduleConfig
    from nesso.train import TrainConfig, Trainer

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    cuda = device == "cuda"
    dev = torch.device("cuda", 0) if cuda else torch.device("cpu")
    dist.init_process_group("nccl" if cuda else "gloo", rank=0, world_size=1, device_id=dev if cuda else None)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    g = torch.Generator().manual_seed(0)
    windows = [torch.randint(0, cfg.vocab_size, (batch, seq + 1), generator=g) for _ in range(steps)]
    batches = [[{"input_ids": w[:, :-1], "labels": w[:, 1:]}] for w in windows]
    tcfg = TrainConfig(seq_len=seq, micro_batch=batch, grad_accum=1, lr=1e-3, dtype="bf16", device=device,
                       loss_chunk_tokens=4096, export_hf=False)
    info = DistInfo(rank=0, world=1, local_rank=0, device=dev)
    tokens = batch * seq
    peak = device_peak_flops(dev)
    out: dict = {}
    for name, use_fsdp in (("fsdp2", True), ("autocast", False)):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        trainer = Trainer(build_model(cfg, seed=0), tcfg, Schedule(ScheduleConfig(name="constant"), tcfg.lr, 10**9),
                          "/tmp/nesso-gpu-check", dist_info=info, use_fsdp=use_fsdp, show_progress=False)
        losses, times = [], []
        for micro in batches:
            sync()
            t = time.perf_counter()
            losses.append(trainer.train_step(micro)["loss"])
            sync()
            times.append(time.perf_counter() - t)
        step_s = sorted(times[1:])[len(times[1:]) // 2]
        out[name] = {"sharded": type(trainer.model.layers[0]).__name__, "losses": losses, "median_step_s": step_s,
                     "tok_per_s": tokens / step_s,
                     "mfu": cfg.flops_per_token(seq) * tokens / step_s / peak if peak else None,
                     "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}
        del trainer
        if cuda:
            torch.cuda.empty_cache()
    out["max_loss_diff"] = max(abs(a - b) for a, b in zip(out["fsdp2"]["losses"], out["autocast"]["losses"]))
    dist.destroy_process_group()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="nesso-0.4b")
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py needs a CUDA GPU")
    torch.backends.cuda.matmul.allow_tf32 = True
    cfg = get_preset(args.preset)
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}; "
          f"model {args.preset} ({cfg.num_parameters()['total'] / 1e6:.1f}M)")
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "preset": args.preset}
    results["attention"] = att = attention(cfg, args.micro_batch, args.seq_len)
    print(f"attention {att['shape']}:")
    for k, v in att.items():
        if isinstance(v, dict):
            print(f"  {k:<22} " + (f"fwd+bwd {v['fwd_bwd_ms']:.2f} ms, max |err| vs fp32 {v['max_abs_err_vs_fp32']:.2e}"
                                   if "error" not in v else f"not available: {v['error']}"))
    print(f"  the model's forward launches: {att['model_forward_kernels']}")
    results["fsdp"] = fs = fsdp(cfg, args.micro_batch, args.seq_len, args.steps)
    print(f"training step, {args.micro_batch}×{args.seq_len} tokens, median of {args.steps - 1} after 1 warm-up:")
    for name in ("fsdp2", "autocast"):
        r = fs[name]
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        print(f"  {name:<9} ({r['sharded']}) {r['tok_per_s']:>9,.0f} tok/s, MFU {mfu}, "
              f"peak {r['peak_memory_gb']:.1f} GB, losses {[round(x, 4) for x in r['losses']]}")
    print(f"  fsdp2 / autocast: {fs['fsdp2']['tok_per_s'] / fs['autocast']['tok_per_s']:.2f}x tok/s; "
          f"max loss difference {fs['max_loss_diff']:.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
