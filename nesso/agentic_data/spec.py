"""What a tool is in the generator: its OpenAI schema plus how to ask for it, answer it and fake its result."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from nesso.agentic_data.render import Val


@dataclass
class Ctx:
    """Per-row generation context: the row's random generator, its language and the day it is set on."""

    rng: random.Random
    lang: str
    today: date

    def t(self, en: str, it: str) -> str:
        return en if self.lang == "en" else it

    def pick(self, en: list[str], it: list[str]) -> str:
        options = en if self.lang == "en" else it
        return options[self.rng.randrange(len(options))]


@dataclass
class Missing:
    """A way of asking for the tool that leaves out one required argument, and the question that asks for it."""

    arg: str
    templates: dict[str, list[str]]
    question: dict[str, str]


Sampler = Callable[[Ctx], dict[str, Val]]
Resulter = Callable[[dict[str, Any], random.Random, str], dict[str, Any]]  # (args, rng, lang)
Answerer = Callable[[Ctx, dict[str, Any], dict[str, Any]], str]


@dataclass
class ToolSpec:
    name: str
    domain: str
    description: str
    parameters: dict[str, Any]
    sample: Sampler
    result: Resulter
    answer: Answerer
    templates: dict[str, list[str]]
    missing: list[Missing] = field(default_factory=list)

    def schema(self) -> dict[str, Any]:
        """The OpenAI tool entry offered in a conversation."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}

    @property
    def required(self) -> list[str]:
        return list(self.parameters.get("required", []))


# ---- JSON-schema shorthands ------------------------------------------------------------------------
def obj(properties: dict[str, Any], required: list[str], description: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object"}
    if description:
        out["description"] = description
    out.update(properties=properties, required=required, additionalProperties=False)
    return out


def s(description: str, **kw: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **kw}


def enum(description: str, values: list[str], **kw: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, "enum": values, **kw}


def number(description: str, **kw: Any) -> dict[str, Any]:
    return {"type": "number", "description": description, **kw}


def integer(description: str, **kw: Any) -> dict[str, Any]:
    return {"type": "integer", "description": description, **kw}


def boolean(description: str, default: bool) -> dict[str, Any]:
    return {"type": "boolean", "description": description, "default": default}


def array(description: str, items: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"type": "array", "description": description, "items": items, **kw}


def date_param(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description + " (ISO 8601, YYYY-MM-DD)", "format": "date"}


def time_param(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description + " (24-hour HH:MM)", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}


def T(en: list[str], it: list[str]) -> dict[str, list[str]]:
    return {"en": en, "it": it}
