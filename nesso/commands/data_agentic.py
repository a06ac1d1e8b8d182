"""`nesso data agentic` (generate the bilingual function-calling set) and `nesso data import` (convert public
function-calling datasets to the same row format)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nesso.commands._groups import get_group
from nesso.errors import NessoError

MAX_REPORTED = 50


def register(sub: argparse._SubParsersAction) -> None:
    group = get_group(sub, "data", "build and inspect training data")
    p = group.add_parser("agentic", help="generate the EN/IT function-calling SFT set (train/heldout JSONL + stats)")
    p.add_argument("--out", required=True, help="output directory (train.jsonl, heldout.jsonl, stats.json)")
    p.add_argument("--n", type=int, default=5000, help="rows in all, train + heldout (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same files (default 0)")
    p.add_argument("--heldout-fraction", type=float, default=0.2,
                   help="share of rows in the held-out split, built only from held-out tools (default 0.2)")
    p.add_argument("--shipped", type=int, default=0,
                   help="also write this many rows whose requests target nesso's own tools (calculator, clock, unit "
                        "conversion, the demo shop database) to shipped.jsonl (default 0)")
    p.add_argument("--synthetic", type=int, default=0,
                   help="also write this many rows over tools made up per row (fresh names, argument keys and "
                        "optional arguments) to synthetic.jsonl (default 0)")
    p.add_argument("--mapped", type=int, default=0,
                   help="also write this many rows over made-up tools whose values the request says in another shape "
                        "(hours for minutes, phrases for enum codes, yes/no flags, date ranges, cents) to mapped.jsonl "
                        "(default 0)")
    p.add_argument("--openings", type=int, default=0,
                   help="also write this many rows of what people type first in a chat (greetings, 'what can you "
                        "do?', the shop database's tables) over nesso's own tools to openings.jsonl (default 0)")
    p.add_argument("--force", action="store_true", help="replace files already in --out")
    p.set_defaults(func=cmd_agentic)

    p = group.add_parser("import", help="convert a local function-calling dataset (openai, sharegpt/hermes, xlam)")
    p.add_argument("format", choices=["openai", "sharegpt", "hermes", "xlam"], help="input format")
    p.add_argument("file", help="input file: JSON Lines or one JSON array")
    p.add_argument("--out", required=True, help="output JSONL file in nesso's row format")
    p.add_argument("--split", choices=["train", "heldout"], default="train", help="split written in every row")
    p.add_argument("--lang", choices=["auto", "en", "it"], default="auto",
                   help="row language; 'auto' guesses en/it from the user turns (default)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_import)


def cmd_agentic(args: argparse.Namespace) -> int:
    from nesso.agentic_data import write_dataset
    from nesso.agentic_data.generator import SPLITS

    info = write_dataset(args.out, n=args.n, seed=args.seed, heldout_fraction=args.heldout_fraction,
                         overwrite=args.force, shipped=args.shipped, synthetic=args.synthetic,
                         mapped=args.mapped, openings=args.openings)
    for split, s in info["splits"].items():
        cats = ", ".join(f"{k} {v}" for k, v in s["by_category"].items())
        langs = ", ".join(f"{k} {v}" for k, v in s["by_lang"].items())
        print(f"{split:8s} {s['rows']:6d} rows, {s['calls']} calls ({langs}; {cats})")
    extra = "".join(f", {s}.jsonl" for s in info["splits"] if s not in SPLITS)
    print(f"{info['tools']} tools in {len(info['domains'])} domains, {len(info['heldout_tools'])} held out; "
          f"wrote {Path(args.out) / 'train.jsonl'}, heldout.jsonl{extra}, stats.json")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from nesso.agentic_data import import_file, write_jsonl

    src, out = Path(args.file), Path(args.out)
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise NessoError("--out is the input file; write the converted rows to a new file")
    if out.exists() and not args.force:
        raise NessoError(f"{out} already exists; pass --force to replace it or pick another --out")
    if out.exists() and out.is_dir():
        raise NessoError(f"{out} is a directory; --out must be a file path")
    report = import_file(args.format, src, split=args.split, lang=None if args.lang == "auto" else args.lang)
    for n, reason in report.skipped[:MAX_REPORTED]:
        print(f"{src.name}:{n}: skipped: {reason}", file=sys.stderr)
    if len(report.skipped) > MAX_REPORTED:
        print(f"... and {len(report.skipped) - MAX_REPORTED} more skipped records", file=sys.stderr)
    if not report.rows:
        raise NessoError(f"none of the {report.total} records of {src} could be read as {args.format}; "
                         "check the format name (openai, sharegpt/hermes, xlam) and the file")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NessoError(f"cannot create {out.parent}: {e.strerror or e}") from None
    write_jsonl(out, report.rows)
    print(f"converted {len(report.rows)} of {report.total} records to {out}; skipped {len(report.skipped)}")
    return 0
