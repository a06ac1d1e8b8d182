"""`nesso dpo RECIPE` (direct preference optimisation, full or LoRA) and `nesso data pairs` (preference pairs
built from function-calling rows)."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from nesso.commands._groups import LORA_EXPORT_HELP, add_run_options, get_group
from nesso.errors import NessoError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dpo", help="direct preference optimisation on preference pairs (full or LoRA)")
    p.add_argument("recipe", help="recipe YAML, e.g. recipes/smollm2-135m-agentic-dpo-cpu.yaml")
    p.add_argument("--pairs", metavar="SOURCE",
                   help="override data.pairs: a pairs JSONL, a rows JSONL, a dataset directory or agentic:N:SEED")
    add_run_options(p, "dpo.beta=0.2", LORA_EXPORT_HELP)
    p.set_defaults(func=cmd_dpo)

    group = get_group(sub, "data", "build and inspect training data")
    q = group.add_parser("pairs", help="preference pairs (chosen = the right call/answer, rejected = a typical "
                                       "mistake) from function-calling rows")
    q.add_argument("source", help="rows: a JSONL file, a dataset directory (its train.jsonl) or agentic:N:SEED")
    q.add_argument("--out", required=True, help="output JSONL (TRL conversational preference format)")
    q.add_argument("--seed", type=int, default=0, help="picks the turn and the mistake of each row (default 0)")
    q.add_argument("--force", action="store_true", help="replace --out if it exists")
    q.set_defaults(func=cmd_pairs)


def cmd_dpo(args: argparse.Namespace) -> int:
    from nesso.distributed import shutdown
    from nesso.dpo import run_dpo

    try:
        run_dpo(args.recipe, args.overrides, out_dir=args.out, export_hf=args.export_hf, fresh=args.fresh,
                pairs_source=args.pairs)
    finally:
        shutdown()
    return 0


def cmd_pairs(args: argparse.Namespace) -> int:
    from nesso.agentic_data import write_jsonl
    from nesso.dpo import make_pairs
    from nesso.sft import load_rows

    out = Path(args.out)
    if out.is_dir():
        raise NessoError(f"{out} is a directory; --out must be a file path")
    if out.exists() and not args.force:
        raise NessoError(f"{out} already exists; pass --force to replace it or pick another --out")
    src = Path(args.source)
    if src.is_file() and out.exists() and out.resolve() == src.resolve():
        raise NessoError("--out is the input file; write the pairs to a new file")
    rows = load_rows(args.source)
    pairs, skipped = make_pairs(rows, args.seed)
    if not pairs:
        raise NessoError(f"none of the {len(rows)} rows gives a preference pair")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NessoError(f"cannot create {out.parent}: {e.strerror or e}") from None
    write_jsonl(out, pairs)
    kinds = Counter(p["kind"] for p in pairs)
    print(f"wrote {len(pairs)} pairs to {out} from {len(rows)} rows ({skipped} without a pair): "
          + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    return 0
