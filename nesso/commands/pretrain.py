"""`nesso pretrain RECIPE`: train a model from scratch on a recipe's data (one process, or many under torchrun)."""

from __future__ import annotations

import argparse

from nesso.commands._groups import add_run_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pretrain on a recipe (CPU or GPU; multi-GPU/multi-node via torchrun)")
    p.add_argument("recipe", help="recipe YAML, e.g. recipes/micro-cpu.yaml or recipes/zagreus-0.4b-pretrain.yaml")
    add_run_options(p, "train.steps=20", "also write the final model as a Hugging Face folder here")
    p.add_argument("--workers", type=int, default=1, help="tokenising processes if the data is not tokenised yet")
    p.set_defaults(func=cmd_pretrain)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from nesso.distributed import shutdown
    from nesso.train import run_pretrain

    try:
        run_pretrain(args.recipe, args.overrides, out_dir=args.out, export_hf=args.export_hf, fresh=args.fresh,
                     workers=args.workers)
    finally:
        shutdown()
    return 0
