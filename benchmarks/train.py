"""Training throughput: the nesso trainer against Hugging Face transformers on the same model, data and settings.

    .venv/bin/python benchmarks/train.py                  # micro-cpu recipe model and data, CPU
    .venv/bin/python benchmarks/train.py --steps 16 --contenders nesso,hf-loop

Contenders:
- nesso: nesso.train.Trainer.train_step (fused AdamW, fused LM head + loss, bf16 autocast, SDPA);
- nesso-compile: the same with torch.compile on every decoder layer;
- hf-loop: transformers LlamaForCausalLM (sdpa attention) + torch.optim.AdamW in a plain loop with the same
  autocast, accumulation and gradient clipping;
- hf-trainer: transformers.Trainer with the equivalent TrainingArguments (bf16, adamw_torch, same batch).
All train the same model shape (the micro-cpu recipe: Llama-3.2 vocabulary) on the same windows of the recipe's
tokenised data (tokenised first if needed), from the same initial loss.

A shared machine's speed drifts by several times within minutes, so the timing runs every contender in ONE process
and interleaves them step by step (rotating the order), and compares medians of per-step times; hf-trainer is
interleaved with nesso steps from inside a TrainerCallback. Peak memory is measured separately, one process per
contender (peak RSS = VmHWM on CPU, max allocated on CUDA); hf-trainer's process also holds a nesso model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
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

    def stream():
        windows = MixedWindows(streams, recipe.data.weights, cfg.seq_len, recipe.seed)
        return PretrainBatches(windows, cfg.micro_batch, cfg.grad_accum or 1)

    return recipe, stream


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def peak_memory_gb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    from nesso.train import peak_rss_gb

    return peak_rss_gb()


# ---- contenders: each returns a function (micro-batches) -> loss -----------------------------------------------
def make_nesso(args, recipe, compile_layers: bool):
    from nesso.model import build_model
    from nesso.schedules import Schedule, ScheduleConfig
    from nesso.train import Trainer

    cfg = recipe.train
    cfg.compile, cfg.device, cfg.export_hf = compile_layers, args.device, False
    model = build_model(recipe.model, seed=recipe.seed)
    trainer = Trainer(model, cfg, Schedule(ScheduleConfig(name="constant"), cfg.lr, 10**9), "/tmp/nesso-bench",
                      show_progress=False)
    return lambda micro: trainer.train_step(micro)["loss"]


def hf_model(args, recipe):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(recipe.seed)
    model = LlamaForCausalLM(LlamaConfig(**recipe.model.to_hf("float32")))
    model.config._attn_implementation = "sdpa"
    return model.to(args.device).train()


def make_hf_loop(args, recipe):
    import torch

    cfg = recipe.train
    model = hf_model(args, recipe)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)

    def step(micro):
        total = 0.0
        for b in micro:
            ids = b["input_ids"].to(args.device)
            with torch.autocast(args.device, dtype=torch.bfloat16, enabled=cfg.dtype == "bf16"):
                loss = model(input_ids=ids, labels=ids).loss / len(micro)
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return total

    return step


def timed(fn, micro, device):
    sync(device)
    t = time.perf_counter()
    fn(micro)
    sync(device)
    return time.perf_counter() - t


def interleaved_loops(args, recipe, stream, names) -> dict[str, list[float]]:
    makers = {"nesso": lambda: make_nesso(args, recipe, False), "nesso-compile": lambda: make_nesso(args, recipe, True),
              "hf-loop": lambda: make_hf_loop(args, recipe)}
    steps = {n: makers[n]() for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    data = stream()
    for i in range(args.warmup + args.steps):
        micro = data.next_step()
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            t = timed(steps[name], micro, args.device)
            if i >= args.warmup:
                times[name].append(t)
    return times


def interleaved_hf_trainer(args, recipe, stream) -> dict[str, list[float]]:
    """transformers.Trainer steps, each followed (from a callback) by one nesso step on the same batch."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    cfg = recipe.train
    accum = cfg.grad_accum or 1
    total = args.warmup + args.steps
    data = stream()
    steps = [data.next_step() for _ in range(total)]
    dataset = [{"input_ids": row, "labels": row} for micro in steps for b in micro for row in b["input_ids"]]
    nesso = make_nesso(args, recipe, False)
    times: dict[str, list[float]] = {"hf-trainer": [], "nesso (vs hf-trainer)": []}
    clock = {"t": 0.0, "i": 0}

    class Interleave(TrainerCallback):
        def on_step_begin(self, *_a, **_k):
            sync(args.device)
            clock["t"] = time.perf_counter()

        def on_step_end(self, *_a, **_k):
            sync(args.device)
            hf = time.perf_counter() - clock["t"]
            ours = timed(nesso, steps[clock["i"]], args.device)
            if clock["i"] >= args.warmup:
                times["hf-trainer"].append(hf)
                times["nesso (vs hf-trainer)"].append(ours)
            clock["i"] += 1

    targs = TrainingArguments(output_dir="/tmp/nesso-bench-hf", per_device_train_batch_size=cfg.micro_batch,
                              gradient_accumulation_steps=accum, max_steps=total, learning_rate=cfg.lr,
                              adam_beta1=cfg.betas[0], adam_beta2=cfg.betas[1], adam_epsilon=cfg.eps,
                              weight_decay=cfg.weight_decay, max_grad_norm=cfg.grad_clip, lr_scheduler_type="constant",
                              bf16=cfg.dtype == "bf16", use_cpu=args.device == "cpu", optim="adamw_torch",
                              logging_strategy="no", save_strategy="no", report_to=[], dataloader_num_workers=0,
                              disable_tqdm=True, seed=recipe.seed)
    trainer = Trainer(model=hf_model(args, recipe), args=targs, train_dataset=dataset, callbacks=[Interleave()],
                      data_collator=lambda feats: {k: torch.stack([f[k] for f in feats]) for k in feats[0]})
    trainer.train()
    return times


def memory_worker(args, recipe, stream) -> dict:
    name = args.worker
    if name == "hf-trainer":
        interleaved_hf_trainer(args, recipe, stream)  # includes a nesso model: reported as an upper bound
    else:
        step = {"nesso": lambda: make_nesso(args, recipe, False),
                "nesso-compile": lambda: make_nesso(args, recipe, True),
                "hf-loop": lambda: make_hf_loop(args, recipe)}[name]()
        data = stream()
        for _ in range(args.warmup + args.steps):
            step(data.next_step())
    return {"peak_memory_gb": peak_memory_gb(args.device)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "micro-cpu.yaml"))
    p.add_argument("--data", default=str(ROOT / "runs" / "micro-cpu" / "tokens"), help="token folder of the recipe")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--steps", type=int, default=8, help="timed optimizer steps per contender")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compile, allocator)")
    p.add_argument("--contenders", default="nesso,nesso-compile,hf-loop,hf-trainer")
    p.add_argument("--no-memory", action="store_true", help="skip the per-contender memory processes")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    recipe, stream = load_setup(args)
    if args.worker:
        args.steps = 2
        print("RESULT " + json.dumps(memory_worker(args, recipe, stream)))
        return

    names = args.contenders.split(",")
    memory = {}
    if not args.no_memory:  # first, while this process is still small
        for name in names:
            cmd = [sys.executable, __file__, "--worker", name, "--recipe", args.recipe, "--data", args.data,
                   "--device", args.device, "--warmup", "1"]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            memory[name] = json.loads(line.removeprefix("RESULT "))["peak_memory_gb"] if line else None
    loops = [n for n in names if n != "hf-trainer"]
    times = interleaved_loops(args, recipe, stream, loops) if loops else {}
    if "hf-trainer" in names:
        times.update(interleaved_hf_trainer(args, recipe, stream))

    import torch

    tokens = recipe.train.micro_batch * recipe.train.seq_len * (recipe.train.grad_accum or 1)
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}, device {args.device}; model "
          f"{recipe.model.num_parameters()['total'] / 1e6:.1f}M params, {tokens} tokens/step, {args.steps} timed steps "
          f"after {args.warmup} warm-up, interleaved")
    from nesso.train import device_peak_flops

    peak = device_peak_flops(torch.device(args.device), recipe.train.dtype)
    if args.device == "cuda":
        gpu = torch.cuda.get_device_name()
        print(f"gpu: {gpu}, dense bf16 peak {peak / 1e12:.0f} TFLOP/s" if peak else f"gpu: {gpu} (peak unknown)")
    flops_per_token = recipe.model.flops_per_token(recipe.train.seq_len)
    print(f"{'contender':<24} {'median s/step':>14} {'tok/s':>9} {'MFU':>7} {'peak mem GB':>12}")
    summary = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        mfu = flops_per_token * tokens / med / peak if peak else None
        summary[name] = {"median_step_s": med, "tok_per_s": tokens / med, "mfu": mfu, "step_s": ts,
                         "peak_memory_gb": memory.get(name)}
        mem = memory.get(name)
        mem_text = "-" if mem is None else f"{mem:.2f}"
        mfu_text = "-" if mfu is None else f"{mfu:.1%}"
        print(f"{name:<24} {med:>14.3f} {tokens / med:>9,.0f} {mfu_text:>7} {mem_text:>12}")
    for ours, other in (("nesso", "hf-loop"), ("nesso-compile", "hf-loop"), ("nesso (vs hf-trainer)", "hf-trainer")):
        if ours in summary and other in summary:
            ratio = summary[ours]["tok_per_s"] / summary[other]["tok_per_s"]
            print(f"{ours} / {other}: {ratio:.2f}x tok/s")
    print("JSON " + json.dumps(summary))


if __name__ == "__main__":
    main()
