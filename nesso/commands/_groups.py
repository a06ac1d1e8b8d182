"""Command groups that several modules add to (e.g. `nesso data ...`): get the group's sub-subparsers, creating
the group on first use, so that registration order between modules does not matter."""

from __future__ import annotations

import argparse


def get_group(sub: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    parser = sub.choices.get(name)
    if parser is None:
        parser = sub.add_parser(name, help=help)
        parser.set_defaults(func=lambda _args, p=parser: p.print_help() or 2)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")


LORA_EXPORT_HELP = "also write the final model as a Hugging Face folder here (LoRA: merged into the base)"


def add_run_options(p: argparse.ArgumentParser, set_example: str, export_help: str) -> None:
    """The options every recipe-driven training command shares (pretrain, sft, dpo)."""
    p.add_argument("--out", help="run folder for checkpoints, logs and the result (default: train.out_dir)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a recipe value, e.g. --set {set_example} (repeatable)")
    p.add_argument("--export-hf", metavar="DIR", help=export_help)
    p.add_argument("--fresh", action="store_true", help="ignore (and delete) earlier checkpoints of this run")


def register(sub: argparse._SubParsersAction) -> None:
    """nesso.cli registers every module of nesso/commands; this one only offers helpers."""
