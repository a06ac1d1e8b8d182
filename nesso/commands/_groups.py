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


def register(sub: argparse._SubParsersAction) -> None:
    """nesso.cli registers every module of nesso/commands; this one only offers helpers."""
