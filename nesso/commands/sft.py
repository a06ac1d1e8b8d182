"""`nesso sft RECIPE`: supervised fine-tuning (full or LoRA) on chat rows, one process or many under torchrun."""

from __future__ import annotations

import argparse

from nesso.commands._groups import LORA_EXPORT_HELP, add_run_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sft", help="supervised fine-tuning on chat/function-calling rows (full or LoRA)")
    p.add_argument("recipe", help="recipe YAML, e.g. recipes/smollm2-135m-agentic-lora-cpu.yaml or "
                                  "recipes/nesso-0.4b-agentic-sft.yaml")
    p.add_argument("--data", metavar="SOURCE",
                   help="override data.train: a JSONL file, a dataset directory or agentic:N:SEED")
    add_run_options(p, "train.epochs=1", LORA_EXPORT_HELP)
    p.set_defaults(func=cmd_sft)


def cmd_sft(args: argparse.Namespace) -> int:
    from nesso.distributed import shutdown
    from nesso.sft import run_sft

    try:
        run_sft(args.recipe, args.overrides, out_dir=args.out, export_hf=args.export_hf, fresh=args.fresh,
                data=args.data)
    finally:
        shutdown()
    return 0
