"""BFCL-style AST checking of function calls.

A prediction passes when:

- the number of calls matches the ground truth (in any order when there are several: calls are matched one to
  one), and an empty ground truth means "no call" (irrelevance, missing argument);
- each call's name matches;
- every required parameter of the tool's schema is present and no parameter is unknown;
- every value has the schema's type (an int is accepted for a number; a bool is never an int or a number),
  recursively through arrays and objects;
- every value is one of the ground truth's acceptable values. Strings are compared after lower-casing and
  dropping spaces and ``,./-_*^``; an empty string among the acceptable values means "may be omitted".

Ground truth: ``[{"name": str, "arguments": {param: [acceptable, ...]}}]`` (BFCL's ``[{name: {param: [...]}}]``
is accepted too). An acceptable value that is a dict is a spec of its own (``{key: [acceptable, ...]}``, ``""``
meaning the key may be omitted); one that is a list is compared element by element, each element being one
acceptable value (scalar, list or dict spec).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

_DROP = re.compile(r"[ ,./\-_*^]")


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.passed


def normalize(s: str) -> str:
    return _DROP.sub("", s.lower())


# ---- parsing predictions and tools ------------------------------------------------------------------
def parse_call(call: Any) -> tuple[str, dict[str, Any]]:
    """``(name, arguments)`` of ``{"name", "arguments"}``, an OpenAI tool call (``{"function": {...}}``) or a
    BFCL ``{name: {args}}``; arguments may be a JSON string. Raises ValueError with the reason."""
    if not isinstance(call, dict):
        raise ValueError(f"a call must be an object, got {type(call).__name__}")
    fn = call.get("function", call)
    if isinstance(fn, dict) and "name" in fn:
        name, args = fn["name"], fn.get("arguments", fn.get("parameters", {}))
    elif len(call) == 1:
        name, args = next(iter(call.items()))
    else:
        raise ValueError("a call needs a name")
    if not isinstance(name, str) or not name:
        raise ValueError("a call needs a name")
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as e:
            raise ValueError(f"arguments of {name} are not valid JSON ({e.msg})") from None
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ValueError(f"arguments of {name} must be a JSON object")
    return name, args


def _functions(tools: Any) -> dict[str, dict[str, Any]] | None:
    if tools is None:
        return None
    out = {}
    for t in tools:
        fn = t.get("function", t) if isinstance(t, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            out[fn["name"]] = fn
    return out


def _gt_entries(ground_truth: Any) -> list[tuple[str, dict[str, list[Any]]]]:
    out = []
    for g in ground_truth or []:
        if isinstance(g, dict) and "name" in g and isinstance(g.get("arguments"), dict):
            out.append((g["name"], g["arguments"]))
        elif isinstance(g, dict) and len(g) == 1:
            name, args = next(iter(g.items()))
            out.append((name, args or {}))
        else:
            raise ValueError(f"bad ground-truth entry {g!r}")
    return [(n, {k: v if isinstance(v, list) else [v] for k, v in a.items()}) for n, a in out]


# ---- types --------------------------------------------------------------------------------------------
def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


_TYPE_ALIASES = {"float": "number", "int": "integer", "str": "string", "bool": "boolean", "dict": "object",
                 "list": "array", "tuple": "array"}


def _is_type(v: Any, t: str) -> bool:
    t = _TYPE_ALIASES.get(t, t)
    actual = _json_type(v)
    if t == "number":
        return actual in ("integer", "number")  # an int is fine where a float is expected, a bool is not
    if t in ("any",):
        return True
    return actual == t


def type_error(value: Any, schema: dict[str, Any], path: str) -> str | None:
    """Why ``value`` does not have the type ``schema`` asks for (recursively), or None."""
    if not isinstance(schema, dict):
        return None
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        if not any(_is_type(value, x) for x in types):
            return f"{path} should be {' or '.join(types)}, got {_json_type(value)} {json.dumps(value)[:40]}"
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            err = type_error(v, schema["items"], f"{path}[{i}]")
            if err:
                return err
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        props = schema["properties"]
        for k, v in value.items():
            if k not in props:
                if schema.get("additionalProperties") is True:
                    continue
                return f"unknown parameter {path}.{k}"
            err = type_error(v, props[k], f"{path}.{k}")
            if err:
                return err
        for k in schema.get("required", []):
            if k not in value:
                return f"missing required parameter {path}.{k}"
    return None


# ---- values -------------------------------------------------------------------------------------------
def value_matches(value: Any, acceptable: Any) -> bool:
    """Whether ``value`` equals one acceptable alternative (see the module docstring for the rules)."""
    if isinstance(acceptable, dict):
        if not isinstance(value, dict) or any(k not in acceptable for k in value):
            return False
        for k, alts in acceptable.items():
            alts = alts if isinstance(alts, list) else [alts]
            if k in value:
                if not any(value_matches(value[k], a) for a in alts):
                    return False
            elif "" not in alts:
                return False
        return True
    if isinstance(acceptable, list):
        return isinstance(value, list) and len(value) == len(acceptable) and all(
            value_matches(v, a) for v, a in zip(value, acceptable))
    if isinstance(acceptable, str):
        return isinstance(value, str) and normalize(value) == normalize(acceptable)
    if isinstance(acceptable, bool) or isinstance(value, bool):
        return isinstance(acceptable, bool) and isinstance(value, bool) and value == acceptable
    if isinstance(acceptable, (int, float)):
        return isinstance(value, (int, float)) and math.isclose(value, acceptable, rel_tol=1e-9, abs_tol=1e-12)
    return value == acceptable


def _show(alts: list[Any]) -> str:
    return ", ".join("(omitted)" if a == "" else json.dumps(a, ensure_ascii=False) for a in alts)[:160]


def check_call(name: str, args: dict[str, Any], gt_name: str, gt_args: dict[str, list[Any]],
               functions: dict[str, dict[str, Any]] | None) -> CheckResult:
    """One predicted call against one ground-truth call."""
    if name != gt_name:
        return CheckResult(False, f"wrong function: expected {gt_name}, got {name}")
    schema: dict[str, Any] = {}
    if functions is not None:
        if name not in functions:
            return CheckResult(False, f"{name} is not among the offered tools")
        schema = functions[name].get("parameters") or {}
    props = schema.get("properties")
    known = props if isinstance(props, dict) else gt_args
    for k in args:
        if k not in known:
            return CheckResult(False, f"{name}: unknown parameter '{k}'")
    for k in schema.get("required", []):
        if k not in args:
            return CheckResult(False, f"{name}: missing required parameter '{k}'")
    for k, v in args.items():
        if isinstance(props, dict):
            err = type_error(v, props[k], f"{name}.{k}")
            if err:
                return CheckResult(False, f"wrong type: {err}")
        if k not in gt_args:
            return CheckResult(False, f"{name}: parameter '{k}' is not expected here")
        if not any(value_matches(v, a) for a in gt_args[k]):
            return CheckResult(False, f"{name}.{k} = {json.dumps(v, ensure_ascii=False)[:80]} is not one of: "
                                      f"{_show(gt_args[k])}")
    for k, alts in gt_args.items():
        if k not in args and "" not in alts:
            return CheckResult(False, f"{name}: missing parameter '{k}' (expected {_show(alts)})")
    return CheckResult(True, "ok")


def _matching(ok: list[list[bool]]) -> list[int] | None:
    """A perfect matching predicted[i] -> ground_truth[match[i]] in a square boolean matrix, or None."""
    n = len(ok)
    owner = [-1] * n

    def augment(i: int, seen: list[bool]) -> bool:
        for j in range(n):
            if ok[i][j] and not seen[j]:
                seen[j] = True
                if owner[j] == -1 or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    for i in range(n):
        if not augment(i, [False] * n):
            return None
    match = [0] * n
    for j, i in enumerate(owner):
        match[i] = j
    return match


def check_calls(predicted_calls: Any, ground_truth: Any, tools: Any = None) -> CheckResult:
    """Check a model's calls (list of calls in any accepted shape, or None for "no call") against the ground
    truth, with the offered ``tools`` (OpenAI tool list) giving names, required parameters and types."""
    predicted_calls = list(predicted_calls or [])
    try:
        gt = _gt_entries(ground_truth)
    except ValueError as e:
        return CheckResult(False, str(e))
    parsed = []
    for i, call in enumerate(predicted_calls):
        try:
            parsed.append(parse_call(call))
        except ValueError as e:
            return CheckResult(False, f"call {i + 1}: {e}")
    if not gt:
        if parsed:
            return CheckResult(False, f"expected no call, got {len(parsed)}: {', '.join(n for n, _ in parsed)}")
        return CheckResult(True, "no call, as expected")
    if not parsed:
        return CheckResult(False, f"expected {len(gt)} call(s) ({', '.join(n for n, _ in gt)}), got none")
    if len(parsed) != len(gt):
        return CheckResult(False, f"expected {len(gt)} call(s), got {len(parsed)}")
    functions = _functions(tools)
    results = [[check_call(n, a, gn, ga, functions) for gn, ga in gt] for n, a in parsed]
    if len(parsed) == 1:
        return results[0][0]
    if _matching([[r.passed for r in row] for row in results]) is not None:
        return CheckResult(True, "ok")
    for i, (name, args) in enumerate(parsed):  # explain the first call that has no partner
        if any(r.passed for r in results[i]):
            continue
        # against the expected call of that name that no other call answers and that it is closest to (most
        # argument values right), so that a wrong flag on the second of two calls is named as such, not as a
        # different id of the first
        taken = {j for k, row in enumerate(results) if k != i for j, r in enumerate(row) if r.passed}
        named = [j for j, (gn, _) in enumerate(gt) if gn == name]
        if not named:
            return CheckResult(False, f"call {i + 1}: no expected call is named {name}")
        right_values = {j: sum(any(value_matches(v, a) for a in gt[j][1].get(key, [])) for key, v in args.items())
                        for j in ([j for j in named if j not in taken] or named)}
        closest = max(right_values, key=right_values.__getitem__)  # the first of equals
        return CheckResult(False, f"call {i + 1}: {results[i][closest].reason}")
    return CheckResult(False, "the calls cannot be matched one to one with the expected calls")


# ---- ground truth from a dataset row ---------------------------------------------------------------
def _place_aliases() -> dict[str, list[str]]:
    from nesso.agentic_data.render import PLACE_ALIASES

    out: dict[str, list[str]] = {}
    for group in PLACE_ALIASES:
        for name in group:
            out.setdefault(normalize(name), [])
            out[normalize(name)] += [g for g in group if g not in out[normalize(name)]]
    return out


_ALIASES: dict[str, list[str]] | None = None


def _omitted(schema: dict[str, Any]) -> list[Any]:
    return ([schema["default"]] if isinstance(schema, dict) and "default" in schema else []) + [""]


def _spec(value: Any, schema: dict[str, Any]) -> Any:
    """One acceptable alternative for ``value`` (dicts become specs, lists stay element by element)."""
    schema = schema if isinstance(schema, dict) else {}
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        req = set(schema.get("required", []))
        spec: dict[str, list[Any]] = {}
        for k in {**props, **value}:
            sub = props.get(k, {})
            spec[k] = acceptable(value[k], sub, k in req) if k in value else _omitted(sub)
        return spec
    if isinstance(value, list):
        return [_spec(v, schema.get("items") or {}) for v in value]
    return value


def acceptable(value: Any, schema: dict[str, Any], required: bool = True) -> list[Any]:
    """Acceptable values for one reference argument: the value itself; for a place name its English/Italian
    forms; for a date its ISO form; and omission when an optional argument equals its default."""
    global _ALIASES
    alts: list[Any] = [_spec(value, schema)]
    if isinstance(value, str):
        if isinstance(schema, dict) and schema.get("format") == "date":
            try:
                iso = date.fromisoformat(value.strip()).isoformat()
            except ValueError:
                iso = None
            if iso and iso != value:
                alts.append(iso)
        if _ALIASES is None:
            _ALIASES = _place_aliases()
        alts += [a for a in _ALIASES.get(normalize(value), []) if normalize(a) != normalize(value)]
    if not required and isinstance(schema, dict) and "default" in schema and value_matches(value, schema["default"]):
        alts.append("")
    return alts


def ground_truth_from_calls(calls: list[Any], tools: Any) -> list[dict[str, Any]]:
    """Ground truth for an expected assistant turn's ``tool_calls``: every parameter of the tool gets a list of
    acceptable values; parameters the reference left out accept omission or their default."""
    functions = _functions(tools) or {}
    out = []
    for call in calls:
        name, args = parse_call(call)
        params = (functions.get(name) or {}).get("parameters") or {}
        props = params.get("properties") or {}
        req = set(params.get("required", []))
        gt_args = {k: acceptable(args[k], props.get(k, {}), k in req) if k in args else _omitted(props[k])
                   for k in {**props, **args}}
        out.append({"name": name, "arguments": gt_args})
    return out


def expected_turns(row: dict[str, Any]) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """For each assistant turn of a row: (the messages before it, its ground truth). A turn without calls has
    the ground truth [] ("no call"), so irrelevance and missing-argument rows expect no call."""
    out = []
    messages = row["messages"]
    for i, m in enumerate(messages):
        if m.get("role") == "assistant":
            out.append((messages[:i], ground_truth_from_calls(m.get("tool_calls") or [], row.get("tools"))))
    return out


def ground_truth_from_row(row: dict[str, Any], turn: int = 0) -> list[dict[str, Any]]:
    """Ground truth of the row's ``turn``-th assistant turn (the first by default)."""
    turns = expected_turns(row)
    if not turns:
        raise ValueError(f"row {row.get('id', '?')} has no assistant turn")
    return turns[turn][1]
