"""Real tools that ship with nesso: a calculator, unit conversion, the current time anywhere, and a read-only
SQLite database (a small bilingual demo shop by default). Pass them with ``--tools nesso.tools:DEFAULT_TOOLS``
or build an Agent with ``default_tools()``."""

from __future__ import annotations

from nesso.agent import Tool
from nesso.tools.calculator import calculator
from nesso.tools.clock import get_current_time
from nesso.tools.database import database_tools
from nesso.tools.units import convert_units


def default_tools() -> list[Tool]:
    return [calculator, convert_units, get_current_time, *database_tools()]


def __getattr__(name: str):
    if name == "DEFAULT_TOOLS":  # built lazily: the database tools create the demo file on first use
        return default_tools()
    raise AttributeError(name)


__all__ = ["calculator", "convert_units", "get_current_time", "database_tools", "default_tools"]
