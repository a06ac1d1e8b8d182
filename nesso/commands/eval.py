"""`nesso eval lm`, `nesso eval table`, `nesso eval fc`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from nesso.commands._groups import get_group
from nesso.errors import NessoError

MODEL_HELP = "model: 'default' (embedded), a preset, a nesso/HF directory, a .gguf file or a hub id"


def register(sub: argparse._SubParsersAction) -> None:
    esub = get_group(sub, "eval", "benchmarks: the card's lm-eval tables and the function-calling benchmark")

    p = esub.add_parser("lm", help="run lm-evaluation-harness tasks (default: the card's eight) on a nesso model")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--tasks", default="card",
                   help="'card' (m_mmlu_it, hellaswag_it, arc_it, ifeval-ita, mmlu, hellaswag, arc_challenge, "
                        "ifeval) or a comma-separated list of lm-eval tasks ('card' may be one item)")
    p.add_argument("--limit", type=float, default=None,
                   help="at most N documents per task (a value below 1 is a fraction); for smoke tests only")
    p.add_argument("--output", default="runs/eval/lm", help="directory for results.json, table.md, chart.png")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--dtype", default="bfloat16", help="bfloat16 (default) or float32")
    p.add_argument("--device", default=None, help="cpu (default) or cuda")
    p.add_argument("--chat-template", choices=["instruct", "all", "none"], default="instruct",
                   help="instruct: chat template for the instruction-following (IFEval) tasks only (default); "
                        "none: as the card's commands; all: every task")
    p.add_argument("--num-fewshot", type=int, default=None, help="override every task's shots (card: 5 for MMLU)")
    p.add_argument("--include-path", action="append", default=[], help="extra directory of lm-eval task YAMLs")
    p.add_argument("--log-samples", action="store_true", help="also write samples.jsonl (prompts and answers)")
    p.set_defaults(func=cmd_lm)

    p = esub.add_parser("table", help="the card's EN / IT / Overall tables from lm-eval results, next to the card's")
    p.add_argument("results", nargs="*", help="lm-eval result JSON files or directories (none: the card's rows only)")
    p.add_argument("--name", default=None, help="row name for the results (default: the model in each file)")
    p.add_argument("--no-card", action="store_true", help="leave out the card's published rows")
    p.add_argument("--out", default=None, help="also write table.md and chart.png to this directory")
    p.set_defaults(func=cmd_table)

    p = esub.add_parser("fc", help="function-calling benchmark (BFCL-style AST match, EN + IT)")
    p.add_argument("target", help=MODEL_HELP + ", or an OpenAI-compatible base URL (http://host:port/v1)")
    p.add_argument("--limit", type=int, default=20, help="cases per category and language (default 20)")
    p.add_argument("--lang", choices=["en", "it"], default=None, help="one language only")
    p.add_argument("--category", default=None,
                   help="comma-separated categories: simple, multiple, parallel, parallel_multiple, irrelevance, "
                        "missing_argument, multi_turn (default: all)")
    p.add_argument("--suite", default="heldout",  # checked by fc.build_cases before a model loads
                   help="heldout (default): tools never trained on; train-tools: the training tools on rows no recipe "
                        "trains on; made-up-tools: tools made up per row; mapped-tools: made-up tools whose values "
                        "need converting (neither has multi_turn cases)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--no-constrain", action="store_true", help="nesso model: generate without the tool grammar")
    mode.add_argument("--compare-constrained", action="store_true",
                      help="nesso model: run constrained and unconstrained, side by side")
    p.add_argument("--out", default="runs/eval/fc",
                   help="directory for results.json, report.md, failures.md (every failed turn), chart.png")
    p.add_argument("--max-tokens", type=int, default=256, help="new tokens per assistant turn (default 256)")
    p.add_argument("--dtype", default="bfloat16", help="nesso model: bfloat16 (default) or float32")
    p.add_argument("--batch-size", type=int, default=8, help="nesso model: sequences generated together")
    p.add_argument("--device", default="cpu", help="nesso model: cpu (default) or cuda")
    p.add_argument("--model", dest="model_name", default=None,
                   help="endpoint: the model name to request (default: the first of GET /models)")
    p.add_argument("--api-key", default=None, help="endpoint: bearer token (default: $OPENAI_API_KEY if set)")
    p.add_argument("--concurrency", type=int, default=1, help="endpoint: requests in flight (default 1)")
    p.add_argument("--timeout", type=float, default=120.0, help="endpoint: seconds per request")
    p.set_defaults(func=cmd_fc)


def _positive(value: float | int | None, flag: str) -> None:
    if value is not None and value <= 0:
        raise NessoError(f"{flag} must be positive (got {value})")


def _require_cuda(device: str | None) -> None:
    """A --device cuda[:N] on a machine whose torch sees no GPU is a clear error, before anything is loaded."""
    if device and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise NessoError(f"--device {device}: no CUDA GPU is available to this torch; leave --device out")


def cmd_lm(args: argparse.Namespace) -> int:
    _positive(args.limit, "--limit")
    _positive(args.batch_size, "--batch-size")
    if args.num_fewshot is not None and args.num_fewshot < 0:
        raise NessoError(f"--num-fewshot must be >= 0 (got {args.num_fewshot})")
    for d in args.include_path:
        if not Path(d).is_dir():
            raise NessoError(f"--include-path {d} is not a directory")
    _require_cuda(args.device)
    from nesso.eval import lm, table

    tasks = lm.parse_tasks(args.tasks)
    limit = int(args.limit) if args.limit is not None and args.limit >= 1 else args.limit
    results = lm.evaluate(args.model, tasks, limit=limit, chat_template=args.chat_template,
                          num_fewshot=args.num_fewshot, include_path=args.include_path, log_samples=args.log_samples,
                          model_args={"dtype": args.dtype, "batch_size": args.batch_size, "device": args.device})
    path = lm.write_results(results, args.output)
    from lm_eval.utils import make_table

    print(make_table(results))
    rows = table.rows_from_results([str(path)]) if any(t in table.METRICS for t in tasks) else []
    if rows:
        md = table.markdown(table.card_rows() + rows)
        (Path(args.output) / "table.md").write_text(md, encoding="utf-8")
        table.chart(table.card_rows() + rows, Path(args.output) / "chart.png")
        print(md)
    print(f"wrote {path}" + (f", {Path(args.output) / 'table.md'}, {Path(args.output) / 'chart.png'}" if rows else ""),
          file=sys.stderr)
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from nesso.eval import table

    rows = [] if args.no_card else table.card_rows()
    if args.results:
        rows += table.rows_from_results(args.results, args.name)
    if not rows:
        raise NessoError("nothing to show: give result files, or leave out --no-card")
    md = table.markdown(rows)
    print(md, end="")
    if args.out:
        out = Path(args.out)
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / "table.md").write_text(md, encoding="utf-8")
        except OSError as e:
            raise NessoError(f"cannot write to {out}: {e.strerror or e}") from None
        table.chart(rows, out / "chart.png")
        print(f"wrote {out / 'table.md'}, {out / 'chart.png'}", file=sys.stderr)
    return 0


def _fc_command(args: argparse.Namespace, modes: tuple[bool, ...]) -> str:
    """The command line that reproduces this run (recorded in the report)."""
    parts = ["nesso", "eval", "fc", args.target, "--limit", str(args.limit)]
    if args.lang:
        parts += ["--lang", args.lang]
    if args.category:
        parts += ["--category", args.category]
    if args.suite != "heldout":
        parts += ["--suite", args.suite]
    if modes == (True, False):
        parts.append("--compare-constrained")
    elif modes == (False,) and not args.target.startswith(("http://", "https://")):
        parts.append("--no-constrain")
    if args.max_tokens != 256:
        parts += ["--max-tokens", str(args.max_tokens)]
    if args.dtype != "bfloat16":
        parts += ["--dtype", args.dtype]
    if args.device != "cpu":
        parts += ["--device", args.device]
    if args.model_name:
        parts += ["--model", args.model_name]
    return shlex.join(parts)


def cmd_fc(args: argparse.Namespace) -> int:
    import os

    from tqdm import tqdm

    from nesso.eval import fc

    _positive(args.limit, "--limit")
    _positive(args.max_tokens, "--max-tokens")
    _positive(args.batch_size, "--batch-size")
    _positive(args.concurrency, "--concurrency")
    _positive(args.timeout, "--timeout")
    is_url = args.target.startswith(("http://", "https://"))
    if is_url and (args.no_constrain or args.compare_constrained):
        raise NessoError("--no-constrain / --compare-constrained apply to nesso models; an endpoint decides its "
                         "own decoding")
    categories = [c.strip() for c in args.category.split(",") if c.strip()] if args.category else None
    if args.category is not None and not categories:
        raise NessoError("--category is empty")
    langs = [args.lang] if args.lang else None
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        raise NessoError(f"--device {args.device!r}: use cpu or cuda")
    _require_cuda(args.device)
    modes = (True, False) if args.compare_constrained else ((False,) if args.no_constrain else (True,))
    cases = fc.build_cases(args.limit, categories, langs, args.suite)  # validates before a model is loaded
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise NessoError(f"--out {args.out} is a file; give the directory for the report")
    turns = sum(len(c.turns) for c in cases) * (1 if is_url else len(modes))
    bar = tqdm(total=turns, desc="fc turns", file=sys.stderr, disable=None)
    report = fc.run_benchmark(args.target, per_cell=args.limit, categories=categories, langs=langs, modes=modes,
                              dtype=args.dtype, max_tokens=args.max_tokens, batch_size=args.batch_size,
                              device=args.device, model_name=args.model_name, api_key=args.api_key or os.environ.get("OPENAI_API_KEY"),
                              concurrency=args.concurrency, timeout=args.timeout,
                              command=_fc_command(args, modes), suite=args.suite,
                              progress=bar.update)
    bar.close()
    paths = fc.write_report(report, args.out)
    print(paths["markdown"].read_text(encoding="utf-8"), end="")
    print(f"wrote {paths['json']}, {paths['markdown']}, {paths['failures']}, {paths['chart']}", file=sys.stderr)
    return 0
