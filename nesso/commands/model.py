"""`nesso info`, `nesso generate`, `nesso export hf`."""

from __future__ import annotations

import argparse
import json
import sys

from nesso.commands._groups import get_group

MODEL_HELP = "model: 'default' (embedded), a preset, a nesso/HF directory, a .gguf file or a hub id"
EXPORT_HELP = "write a model in another format"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="parameter counts, config, dtype and size of a model")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("generate", help="plain text continuation (greedy unless --temperature)")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--raw", action="store_true", help="continue the prompt as is (no chat template)")
    add_model_options(p)
    p.set_defaults(func=cmd_generate)

    esub = get_group(sub, "export", EXPORT_HELP)
    e = esub.add_parser("hf", help="a Hugging Face Llama directory (config.json, model.safetensors, tokenizer)")
    e.add_argument("model", help=MODEL_HELP)
    e.add_argument("--out", required=True, help="output directory")
    e.add_argument("--dtype", default="bfloat16", help="bfloat16 (default), float16 or float32")
    e.set_defaults(func=cmd_export_hf)


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dtype", default="bfloat16", help="weights dtype for inference: bfloat16 (default) or float32")
    p.add_argument("--quantize", choices=["none", "int8"], default="none",
                   help="int8 weight-only quantization of the linear layers")


def load_for_inference(args: argparse.Namespace):
    from nesso.loader import load_model
    from nesso.quantize import maybe_quantize

    loaded = load_model(args.model, dtype=args.dtype)
    maybe_quantize(loaded.model, getattr(args, "quantize", "none"))
    return loaded


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from nesso.config import PRESETS
    from nesso.loader import load_model

    if args.model in PRESETS:  # no need to materialise a preset's weights to describe it
        cfg = PRESETS[args.model]
        dtype, source = "float32 (bfloat16 when saved)", f"preset {args.model}"
    else:
        loaded = load_model(args.model)
        cfg, source = loaded.model.config, loaded.source
        dtype = str(loaded.model.embed_tokens.weight.dtype).removeprefix("torch.")
    counts = cfg.num_parameters()
    info = {
        "source": source,
        "parameters": counts,
        "bytes": {"bf16": counts["total"] * 2, "fp32": counts["total"] * 4},
        "dtype": dtype,
        "config": {k: v for k, v in cfg.__dict__.items() if k != "extra"},
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    del torch
    print(f"model       {source}")
    print(f"parameters  {counts['total']:,} total = {counts['embedding']:,} embedding + "
          f"{counts['non_embedding']:,} non-embedding")
    print(f"size        {counts['total'] * 2 / 1e6:,.1f} MB in bf16, {counts['total'] * 4 / 1e6:,.1f} MB in fp32")
    print(f"dtype       {dtype}")
    for k, v in info["config"].items():
        print(f"  {k:<24} {v}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from nesso.engine import Engine, SamplingParams

    params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p,
                            top_k=args.top_k, repetition_penalty=args.repetition_penalty, seed=args.seed)
    loaded = load_for_inference(args)
    tok = loaded.tokenizer
    prompt = args.prompt
    if not args.raw and tok.has_chatml:
        prompt = tok.apply_chat_template([{"role": "user", "content": args.prompt}], add_generation_prompt=True)
    engine = Engine(loaded.model, tok)
    for delta in engine.stream(prompt, params):
        sys.stdout.write(delta)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def cmd_export_hf(args: argparse.Namespace) -> int:
    from nesso.checkpoint import parse_dtype, save_hf
    from nesso.loader import load_model

    dtype = parse_dtype(args.dtype)
    loaded = load_model(args.model)
    out = save_hf(loaded.model, loaded.tokenizer, args.out, dtype=dtype)
    print(f"wrote {out} ({loaded.source}, {args.dtype})")
    return 0
