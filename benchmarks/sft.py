"""LoRA SFT step time: nesso's trainer against Hugging Face transformers + PEFT, same model, same packed batches.

    .venv/bin/python benchmarks/sft.py                    # the embedded adapter's CPU recipe, 6 timed steps
    .venv/bin/python benchmarks/sft.py --rows 120 --steps 10
    python benchmarks/sft.py --recipe recipes/nesso-smollm2-agentic-gpu.yaml --device cuda --rows 600 --steps 5

Both sides train the recipe's LoRA (rank, alpha, target modules) on the recipe's base model, with bf16 autocast,
AdamW and gradient clipping, on the same optimizer steps: the recipe's rows rendered by nesso's chat template,
packed into ``seq_len`` sequences, ``micro_batch × grad_accum`` sequences a step, the loss on the assistant
turns only.

- nesso: ``nesso.train.Trainer.train_step`` as ``nesso sft`` runs it (packed samples attending sample by sample on
  a CPU, fused LM head and loss over the rows that have a target), eager and, as ``nesso-compiled``, with the
  decoder layers compiled (``train.compile: true``; the compilation falls in the untimed warm-up step);
- hf-peft: ``peft.get_peft_model(LlamaForCausalLM)`` with SDPA attention, the same ``position_ids`` (restarting
  at 0 for every packed sample) and a 4-D block-diagonal causal ``attention_mask`` (position ids alone do not
  keep packed samples apart in transformers' SDPA path), labels -100 outside the assistant turns,
  ``model(..., labels=...).loss`` in a plain loop.

The first step's losses are printed side by side (both start from the base model: LoRA's B matrices are zero), as
a check that both compute the same thing. A shared machine's speed drifts, so the contenders run in ONE process
and alternate step by step; the medians are compared. On a GPU (``--device cuda``) each step is timed to the
end of its kernels.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup(args):
    from nesso.sft import (
        PostRecipe,
        StepBatches,
        collate,
        load_rows,
        load_start_model,
        pack_ffd,
        tokenize_rows,
    )

    recipe = PostRecipe.load(args.recipe)
    if recipe.lora is None:
        raise SystemExit(f"{args.recipe} has no lora section; this benchmark compares LoRA training")
    cfg = recipe.train
    cfg.device, cfg.export_hf = args.device, False
    loaded, model = load_start_model(recipe, cfg.seq_len, lambda _m: None)
    rows = load_rows(recipe.data.get("train", (str, list), None), args.rows)
    samples, rep = tokenize_rows(loaded.tokenizer, rows, cfg.seq_len)
    bins = pack_ffd([len(s.input_ids) for s in samples], cfg.seq_len)
    accum = cfg.grad_accum or 1
    stream = StepBatches(len(bins), lambda items: collate(samples, [bins[i] for i in items], loaded.tokenizer.pad_id),
                         cfg.micro_batch, accum, 0, 1, recipe.seed)
    steps = [stream.batches_for(k) for k in range(args.warmup + args.steps)]
    return recipe, model, steps, rep


def make_nesso(recipe, model, compile_layers: bool):
    from nesso.schedules import Schedule, ScheduleConfig
    from nesso.train import Trainer

    cfg = copy.copy(recipe.train)
    cfg.compile = compile_layers
    trainer = Trainer(model, cfg, Schedule(ScheduleConfig(name="constant"), cfg.lr, 10**9), "/tmp/nesso-bench-sft",
                      show_progress=False)
    return lambda micro: trainer.train_step(micro)["loss"]


def make_hf_peft(recipe, model):
    from decode import hf_model  # benchmarks/decode.py: transformers' Llama with a nesso model's weights
    from peft import LoraConfig, get_peft_model

    device = torch.device(recipe.train.device)
    hf = hf_model(model, torch.float32).to(device)  # the base only: nesso's LoRA weights are not Llama keys
    lc = recipe.lora
    hf = get_peft_model(hf, LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
                                       target_modules=list(lc.target_modules), use_rslora=lc.use_rslora))
    hf.train()
    cfg = recipe.train
    params = [p for p in hf.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)

    def step(micro):
        from nesso.packed_attention import packed_causal_mask
        from nesso.train import IGNORE_INDEX

        targets = sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in micro)
        total = 0.0
        for b in micro:
            b = {k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()}
            labels = torch.full_like(b["labels"], IGNORE_INDEX)  # transformers shifts labels itself
            labels[:, 1:] = b["labels"][:, :-1]
            n = int((b["labels"] != IGNORE_INDEX).sum())
            mask = packed_causal_mask(b["doc_ids"]) if "doc_ids" in b else None
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.dtype == "bf16"):
                loss = hf(input_ids=b["input_ids"], position_ids=b["positions"], attention_mask=mask,
                          labels=labels).loss * (n / targets)
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return total

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "nesso-smollm2-agentic.yaml"))
    p.add_argument("--rows", type=int, default=60, help="data rows to pack (the first of the recipe's train split)")
    p.add_argument("--steps", type=int, default=6, help="timed optimizer steps per contender")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda: where both contenders train")
    p.add_argument("--compile", choices=("recipe", "both"), default="both",
                   help="nesso's layers compiled as the recipe says, or nesso both eager and compiled (default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe, model, steps, rep = setup(args)
    contenders = {"hf-peft": make_hf_peft(recipe, model)}
    if args.compile == "both":
        contenders["nesso"] = make_nesso(recipe, copy.deepcopy(model), False)
        contenders["nesso-compiled"] = make_nesso(recipe, copy.deepcopy(model), True)
    else:
        contenders["nesso"] = make_nesso(recipe, copy.deepcopy(model), recipe.train.compile)
    names = list(contenders)
    times: dict[str, list[float]] = {n: [] for n in names}
    first: dict[str, float] = {}
    for i, micro in enumerate(steps):
        for name in names[i % len(names):] + names[:i % len(names)]:
            t = time.perf_counter()
            loss = contenders[name](micro)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t
            first.setdefault(name, loss)
            if i >= args.warmup:
                times[name].append(dt)
            print(f"  step {i} {name}: {dt:.1f} s, loss {loss:.4f}", flush=True)

    tokens = statistics.mean(sum(int(b["input_ids"].numel()) for b in micro) for micro in steps)
    targets = statistics.mean(sum(int((b["labels"] != -100).sum()) for b in micro) for micro in steps)
    cfg = recipe.train
    gpu = f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs{gpu}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads; {recipe.model} + LoRA r={recipe.lora.r} on {len(recipe.lora.target_modules)} modules; "
          f"{len(steps)} steps of {cfg.micro_batch} × {cfg.grad_accum} packed sequences (~{tokens:,.0f} tokens, "
          f"~{targets:,.0f} with a target: {targets / tokens:.0%}), {args.steps} timed after {args.warmup} warm-up, "
          f"alternating")
    print("first-step loss: " + ", ".join(f"{name} {first[name]:.4f}" for name in names))
    print(f"{'contender':<15} {'median s/step':>14} {'tok/s':>8}")
    for name in names:
        med = statistics.median(times[name])
        print(f"{name:<15} {med:>14.2f} {tokens / med:>8,.0f}")
    for name in names[1:]:
        ratio = statistics.median(times["hf-peft"]) / statistics.median(times[name])
        print(f"{name} / hf-peft: {ratio:.2f}x step speed")


if __name__ == "__main__":
    main()
