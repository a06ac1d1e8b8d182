"""`nesso data tokenize RECIPE`: the recipe's sources -> datatrove-layout token shards (parallel, resumable)."""

from __future__ import annotations

import argparse

from nesso.commands._groups import get_group


def register(sub: argparse._SubParsersAction) -> None:
    group = get_group(sub, "data", "build and inspect training data")
    p = group.add_parser("tokenize", help="tokenise a recipe's data sources into token shards (resumable)")
    p.add_argument("recipe", help="recipe YAML, e.g. recipes/micro-cpu.yaml")
    p.add_argument("--out", help="output folder (default: the recipe's data.out)")
    p.add_argument("--workers", type=int, default=1, help="parallel tokenising processes (default 1)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set data.sources.0.max_tokens=10000 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_tokenize)


def cmd_tokenize(args: argparse.Namespace) -> int:
    from nesso.data.recipe import DataRecipe, expand_path, read_recipe_file
    from nesso.data.tokenize import tokenize_recipe

    recipe = DataRecipe.from_raw(read_recipe_file(args.recipe, args.overrides))
    tokenize_recipe(recipe, out=expand_path(args.out) if args.out else None, workers=args.workers,
                    show_progress=not args.quiet)
    return 0
