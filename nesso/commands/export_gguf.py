"""`nesso export gguf`: a GGUF file for llama.cpp, Ollama and LM Studio."""

from __future__ import annotations

import argparse

from nesso.commands._groups import get_group
from nesso.commands.model import EXPORT_HELP, MODEL_HELP


def register(sub: argparse._SubParsersAction) -> None:
    e = get_group(sub, "export", EXPORT_HELP).add_parser(
        "gguf", help="a GGUF file (weights, tokenizer, chat template) for llama.cpp, Ollama and LM Studio")
    e.add_argument("model", help=MODEL_HELP)
    e.add_argument("--out", required=True, help="output file, e.g. nesso.Q8_0.gguf")
    e.add_argument("--type", default="f16",  # checked in the command: importing gguf_export needs torch
                   help="weight type: f16 (default), q8_0 or q4_0 (norms stay f32), or f32")
    e.add_argument("--name", default=None, help="general.name in the file (default: the model reference)")
    e.set_defaults(func=cmd_export_gguf)


def cmd_export_gguf(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nesso.gguf_export import check_export_type, export_gguf
    from nesso.loader import load_model

    check_export_type(args.type)  # before the model loads
    loaded = load_model(args.model)
    name = args.name or Path(args.model.rstrip("/")).name.removesuffix(".gguf") or "nesso"
    summary = export_gguf(loaded.model, loaded.tokenizer, args.out, args.type, name=name)
    types = ", ".join(f"{n} {t}" for t, n in sorted(summary.tensor_types.items()))
    print(f"wrote {summary.path} ({args.type}, {summary.bytes / 1e6:,.1f} MB; tensors: {types}) from {loaded.source}")
    return 0
