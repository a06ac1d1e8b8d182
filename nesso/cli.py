"""The `nesso` command. Each stage adds its subcommands from a module in ``nesso/commands/`` that defines
``register(subparsers)``; every command returns an exit code, and NessoError becomes one clear line."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from nesso.errors import NessoError


def build_parser() -> argparse.ArgumentParser:
    import nesso.commands as commands

    parser = argparse.ArgumentParser(prog="nesso", description="Small bilingual agentic language models, end to end.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"nesso.commands.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except NessoError as e:  # one line, even where it quotes a library's multi-line message
        print(f"nesso: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nesso: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
