"""Training throughput: the nesso trainer against Hugging Face transformers on the same model, data and settings.

    .venv/bin/python benchmarks/train.py                 # micro-cpu recipe model and data, CPU
    .venv/bin/python benchmarks/train.py --steps 20 --rounds 2

Contenders (each in its own process, so peak memory is its own):
- nesso: nesso.train.Trainer (fused AdamW, fused LM-head + loss, bf16 autocast, SDPA); nesso-compile adds
  torch.compile per decoder layer;
- hf-loop: transformers LlamaForCausalLM (sdpa attention) + torch.optim.AdamW, a plain loop with the same
  autocast, accumulation and clipping;
- hf-trainer: transformers.Trainer with the equivalent TrainingArguments (bf16, adamw_torch, same batch).
All see the same windows of the micro-cpu recipe's tokenised data (tokenised first if needed) and the same model
shape (Llama-3.2 vocabulary). Reported: tokens/s over the timed steps (after warm-up) and peak RSS (CPU) or peak
CUDA memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_setup(args):
    from nesso.data.mix import MixedWindows, PretrainBatches, open_sources
    from nesso.data.tokenize import read_manifest, tokenize_recipe
    from nesso.train import PretrainRecipe

    recipe = PretrainRecipe.load(args.recipe, [f"data.out={args.data}"])
    names = [s.name for s in recipe.data.sources]
    manifest = read_manifest(recipe.data.out)
    if manifest is None or not all(manifest["sources"].get(n, {}).get("complete") for n in names):
        tokenize_recipe(recipe.data, show_progress=False, echo=lambda _m: None)
    streams, _ = open_sources(recipe.data.out, names)
    cfg = recipe.train
    windows = MixedWindows(streams, recipe.data.weights, cfg.seq_len, recipe.seed)
    data = PretrainBatches(windows, cfg.micro_batch, cfg.grad_accum or 1)
    return recipe, data


def peak_memory_gb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_nesso(args, recipe, data) -> dict:
    import torch

    from nesso.model import build_model
    from nesso.schedules import Schedule, ScheduleConfig
    from nesso.train import Trainer

    cfg = recipe.train
    cfg.compile, cfg.device, cfg.export_hf = args.worker == "nesso-compile", args.device, False
    cfg.steps = args.warmup + args.steps
    model = build_model(recipe.model, seed=recipe.seed)
    trainer = Trainer(model, cfg, Schedule(ScheduleConfig(name="constant"), cfg.lr, cfg.steps), "/tmp/nesso-bench",
                      show_progress=False)
    times, losses = [], []
    it = iter(data)
    for _ in range(cfg.steps):
        batch = next(it)
        sync(args.device)
        t = time.perf_counter()
        out = trainer.train_step(batch)
        sync(args.device)
        times.append(time.perf_counter() - t)
        losses.append(out["loss"])
    del torch
    return summarise(args, times, losses, data)


def run_hf_loop(args, recipe, data) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = recipe.train
    torch.manual_seed(recipe.seed)
    model = LlamaForCausalLM(LlamaConfig(**recipe.model.to_hf("float32")))
    model.config._attn_implementation = "sdpa"
    model.to(args.device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    autocast = torch.autocast(args.device, dtype=torch.bfloat16, enabled=cfg.dtype == "bf16")
    times, losses = [], []
    it = iter(data)
    for _ in range(args.warmup + args.steps):
        micro = next(it)
        sync(args.device)
        t = time.perf_counter()
        total = 0.0
        for b in micro:
            ids = b["input_ids"].to(args.device)
            with autocast:
                loss = model(input_ids=ids, labels=ids).loss / len(micro)
            loss.backward()
            total += float(loss)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(args.device)
        times.append(time.perf_counter() - t)
        losses.append(total)
    return summarise(args, times, losses, data)


def run_hf_trainer(args, recipe, data) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

    cfg = recipe.train
    accum = cfg.grad_accum or 1
    steps = args.warmup + args.steps
    rows = [b["input_ids"][i] for _ in range(steps) for b in next_step(data) for i in range(len(b["input_ids"]))]
    dataset = [{"input_ids": r, "labels": r} for r in rows]
    torch.manual_seed(recipe.seed)
    model = LlamaForCausalLM(LlamaConfig(**recipe.model.to_hf("float32")))
    model.config._attn_implementation = "sdpa"
    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *_a, **_k):
            stamps.append(time.perf_counter())

        def on_train_end(self, *_a, **_k):
            stamps.append(time.perf_counter())

    targs = TrainingArguments(output_dir="/tmp/nesso-bench-hf", per_device_train_batch_size=cfg.micro_batch,
                              gradient_accumulation_steps=accum, max_steps=steps, learning_rate=cfg.lr,
                              adam_beta1=cfg.betas[0], adam_beta2=cfg.betas[1], adam_epsilon=cfg.eps,
                              weight_decay=cfg.weight_decay, max_grad_norm=cfg.grad_clip, lr_scheduler_type="constant",
                              bf16=cfg.dtype == "bf16", use_cpu=args.device == "cpu", optim="adamw_torch",
                              logging_strategy="no", save_strategy="no", report_to=[], dataloader_num_workers=0,
                              disable_tqdm=True, seed=recipe.seed)
    trainer = Trainer(model=model, args=targs, train_dataset=dataset, callbacks=[Clock()],
                      data_collator=lambda feats: {k: torch.stack([f[k] for f in feats]) for k in feats[0]})
    trainer.train()
    times = [b - a for a, b in zip(stamps, stamps[1:])]
    return summarise(args, times, [], data)


def next_step(data):
    return data.next_step()


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def summarise(args, times, losses, data) -> dict:
    timed = times[args.warmup:]
    tokens_per_step = sum(b["input_ids"].numel() for b in data.next_step())
    return {"tok_per_s": tokens_per_step * len(timed) / sum(timed), "step_s": sum(timed) / len(timed),
            "first_step_s": times[0], "tokens_per_step": tokens_per_step, "peak_memory_gb": peak_memory_gb(args.device),
            "losses": losses[:3]}


WORKERS = {"nesso": run_nesso, "nesso-compile": run_nesso, "hf-loop": run_hf_loop, "hf-trainer": run_hf_trainer}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "micro-cpu.yaml"))
    p.add_argument("--data", default=str(ROOT / "runs" / "micro-cpu" / "tokens"), help="token folder of the recipe")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--steps", type=int, default=8, help="timed optimizer steps per contender")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compile, allocator)")
    p.add_argument("--contenders", default="nesso,nesso-compile,hf-loop,hf-trainer",
                   help="comma-separated; nesso-compile = nesso with torch.compile per decoder layer")
    p.add_argument("--rounds", type=int, default=1, help="run the contenders this many times, alternating; keep "
                   "each one's best (a shared machine is noisy)")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        recipe, data = load_setup(args)
        print("RESULT " + json.dumps(WORKERS[args.worker](args, recipe, data)))
        return

    load_setup(args)  # tokenise once, before any timing
    results: dict[str, dict] = {}
    for _ in range(args.rounds):
        for name in args.contenders.split(","):
            cmd = [sys.executable, __file__, "--worker", name, "--recipe", args.recipe, "--data", args.data,
                   "--device", args.device, "--steps", str(args.steps), "--warmup", str(args.warmup)]
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                print(f"{name}: failed\n{proc.stderr[-2000:]}")
                continue
            r = json.loads(line.removeprefix("RESULT "))
            if name not in results or r["tok_per_s"] > results[name]["tok_per_s"]:
                results[name] = r
    import torch

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"device {args.device}, {args.steps} timed steps after {args.warmup} warm-up")
    print(f"{'contender':<12} {'tok/s':>10} {'s/step':>8} {'first step s':>13} {'peak mem GB':>12}")
    for name, r in results.items():
        print(f"{name:<12} {r['tok_per_s']:>10,.0f} {r['step_s']:>8.3f} {r['first_step_s']:>13.2f} "
              f"{r['peak_memory_gb']:>12.2f}")
    for ours in ("nesso", "nesso-compile"):
        for other in ("hf-loop", "hf-trainer"):
            if ours in results and other in results:
                print(f"{ours} / {other}: {results[ours]['tok_per_s'] / results[other]['tok_per_s']:.2f}x tok/s")
    print("JSON " + json.dumps(results))


if __name__ == "__main__":
    main()
