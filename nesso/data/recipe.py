"""Recipe YAML: reading the file, typed access with clear errors, and the ``data`` section (sources + mix).

A recipe is one YAML mapping with the sections ``model``, ``tokenizer``, ``data``, ``train`` and ``schedule``;
this module owns the file and the ``data`` section, ``nesso.train`` and ``nesso.schedules`` parse the rest with
the same :class:`Section` reader so every mistake is reported the same way.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nesso.errors import NessoError

_REQUIRED = object()
BUILTINS = ("python-stdlib", "python-docstrings", "gettext-it")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def read_recipe_file(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Load a recipe YAML file into a dict, then apply ``key.sub=value`` overrides (values parsed as YAML)."""
    import yaml

    p = Path(path).expanduser()
    if not p.is_file():
        raise NessoError(f"recipe {p} does not exist (try recipes/micro-cpu.yaml or recipes/zagreus-0.4b-pretrain.yaml)")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise NessoError(f"recipe {p} is not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise NessoError(f"cannot read recipe {p}: {e}") from None
    if not isinstance(raw, dict):
        raise NessoError(f"recipe {p} must be a YAML mapping with sections like model:, data:, train: "
                         f"(got {type(raw).__name__})")
    for item in overrides or []:
        apply_override(raw, item)
    raw.setdefault("name", p.stem)
    return raw


def apply_override(raw: dict[str, Any], item: str) -> None:
    import yaml

    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise NessoError(f"override {item!r} must look like section.key=value, e.g. train.steps=20")
    node: Any = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[_list_index(node, part, item)]
            continue
        child = node.setdefault(part, {})
        if not isinstance(child, (dict, list)):
            raise NessoError(f"override {item!r}: {part!r} is not a section")
        node = child
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    if isinstance(node, list):
        node[_list_index(node, parts[-1], item)] = parsed
    else:
        node[parts[-1]] = parsed


def _list_index(node: list, part: str, item: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise NessoError(f"override {item!r}: {part!r} is not an index of a list of {len(node)} items")
    return int(part)


def expand_path(value: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(value)))


class Section:
    """Typed reads from one mapping of the recipe; unknown keys are an error that suggests the closest key."""

    def __init__(self, raw: Any, where: str) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise NessoError(f"{where} must be a mapping of key: value (got {type(raw).__name__}: {raw!r})")
        self.raw, self.where, self.seen = raw, where, set()

    def has(self, key: str) -> bool:
        return self.raw.get(key) is not None

    def get(self, key: str, kind: type | tuple = str, default: Any = _REQUIRED, *, minimum: float | None = None,
            above: float | None = None, choices: tuple | None = None) -> Any:
        self.seen.add(key)
        if self.raw.get(key) is None:
            if default is _REQUIRED:
                raise NessoError(f"{self.where}.{key} is required")
            return default
        value = _coerce(self.raw[key], kind, f"{self.where}.{key}")
        if choices is not None and value not in choices:
            raise NessoError(f"{self.where}.{key} is {value!r}; choose one of: {', '.join(map(str, choices))}")
        if minimum is not None and value < minimum:
            raise NessoError(f"{self.where}.{key} must be >= {minimum} (got {value})")
        if above is not None and value <= above:
            raise NessoError(f"{self.where}.{key} must be > {above} (got {value})")
        return value

    def section(self, key: str) -> Section:
        self.seen.add(key)
        return Section(self.raw.get(key), f"{self.where}.{key}")

    def finish(self) -> None:
        unknown = sorted(set(self.raw) - self.seen)
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(str(key), sorted(self.seen), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(sorted(self.seen))})"
            raise NessoError(f"{self.where} has an unknown key {key!r}{hint}")


def _coerce(value: Any, kind: type | tuple, where: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if bool in kinds:
        if isinstance(value, bool):
            return value
        raise NessoError(f"{where} must be true or false (got {value!r})")
    if isinstance(value, bool):  # bool is an int in Python; never accept it as a number
        raise NessoError(f"{where} must be a {_kind_name(kinds)} (got {value!r})")
    if float in kinds or int in kinds:
        number: Any = value
        if isinstance(value, str):  # PyYAML reads 3e-3 (no dot) as a string
            try:
                number = float(value.replace("_", ""))
            except ValueError:
                number = None
        if isinstance(number, (int, float)) and math.isfinite(number):
            if int in kinds and float not in kinds:
                if float(number) != int(number):
                    raise NessoError(f"{where} must be a whole number (got {value!r})")
                return int(number)
            return float(number) if float in kinds else number
        if not (str in kinds or list in kinds or dict in kinds):
            raise NessoError(f"{where} must be a {_kind_name(kinds)} (got {value!r})")
    for k in kinds:
        if k in (str, list, dict) and isinstance(value, k):
            return value
    raise NessoError(f"{where} must be a {_kind_name(kinds)} (got {type(value).__name__}: {value!r})")


def _kind_name(kinds: tuple) -> str:
    names = {int: "whole number", float: "number", str: "string", list: "list", dict: "mapping", bool: "boolean"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


# ---- the data section ------------------------------------------------------------------------------------
@dataclass
class SourceSpec:
    name: str
    weight: float
    kind: str  # "hf" | "files" | "builtin"
    # hf
    hf: str | None = None
    config: str | None = None
    split: str = "train"
    data_dir: str | None = None
    data_files: Any = None
    revision: str | None = None
    # files
    files: list[str] = field(default_factory=list)
    # builtin
    builtin: str | None = None
    text_column: str = "text"
    max_tokens: int | None = None
    max_documents: int | None = None
    tasks: int | None = None  # how many parallel work units this source is split into (fixed at first run)

    def describe(self) -> str:
        if self.kind == "hf":
            extra = "".join(f" {k}={v}" for k, v in (("config", self.config), ("data_dir", self.data_dir)) if v)
            return f"hf {self.hf}{extra} split={self.split} column={self.text_column}"
        if self.kind == "files":
            return "files " + ", ".join(self.files)
        return f"builtin {self.builtin}"

    def fingerprint(self) -> dict[str, Any]:
        """What decides the tokens of this source (weight excluded: mixing happens at read time)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("weight", "tasks")}


@dataclass
class DataRecipe:
    sources: list[SourceSpec]
    out: Path
    tokenizer: str = "llama32"
    shard_tokens: int = 100_000_000
    eos_token: str | None = None

    @property
    def weights(self) -> dict[str, float]:
        total = sum(s.weight for s in self.sources)
        return {s.name: s.weight / total for s in self.sources}

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> DataRecipe:
        name = str(raw.get("name") or "run")
        top = Section({"tokenizer": raw.get("tokenizer"), "data": raw.get("data")}, "recipe")
        tokenizer = top.get("tokenizer", str, "llama32")
        data = top.section("data")
        out = expand_path(data.get("out", str, f"runs/{name}/tokens"))
        shard_tokens = data.get("shard_tokens", int, 100_000_000, minimum=1)
        eos_token = data.get("eos_token", str, None)
        raw_sources = data.get("sources", list)
        data.finish()
        if not raw_sources:
            raise NessoError("recipe data.sources is empty; list at least one source (hf:, files: or builtin:)")
        sources = [_parse_source(item, i) for i, item in enumerate(raw_sources)]
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise NessoError(f"recipe data.sources has duplicate names {dupes}; each source needs its own name")
        return cls(sources=sources, out=out, tokenizer=tokenizer, shard_tokens=shard_tokens, eos_token=eos_token)


def _parse_source(item: Any, i: int) -> SourceSpec:
    where = f"data.sources[{i}]"
    s = Section(item, where)
    name = s.get("name", str)
    if not _NAME.match(name):
        raise NessoError(f"{where}.name {name!r} must be letters, digits, '.', '_' or '-' (it names a folder)")
    where = f"data.sources[{i}] ({name})"
    s.where = where
    weight = s.get("weight", float, above=0.0)
    given = [k for k in ("hf", "files", "builtin") if s.has(k)]
    if len(given) != 1:
        raise NessoError(f"{where} needs exactly one of hf: (a Hugging Face dataset id), files: (a folder, glob or "
                         f"list of them) or builtin: ({', '.join(BUILTINS)}); it has {given or 'none'}")
    spec = SourceSpec(name=name, weight=weight, kind=given[0])
    spec.text_column = s.get("text_column", str, "text")
    spec.max_tokens = s.get("max_tokens", int, None, minimum=1)
    spec.max_documents = s.get("max_documents", int, None, minimum=1)
    spec.tasks = s.get("tasks", int, None, minimum=1)
    if spec.kind == "hf":
        spec.hf = s.get("hf", str)
        spec.config = s.get("config", str, None) or s.get("subset", str, None)
        spec.split = s.get("split", str, "train")
        spec.data_dir = s.get("data_dir", str, None)
        spec.data_files = s.get("data_files", (str, list, dict), None)
        spec.revision = s.get("revision", str, None)
    elif spec.kind == "files":
        files = s.get("files", (str, list))
        files = [files] if isinstance(files, str) else files
        if not files or not all(isinstance(f, str) and f for f in files):
            raise NessoError(f"{where}.files must be a path, a glob or a list of them (got {files!r})")
        spec.files = files
    else:
        spec.builtin = s.get("builtin", str, choices=BUILTINS)
    s.finish()
    return spec
