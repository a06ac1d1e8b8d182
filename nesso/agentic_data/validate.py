"""Checks every row must pass, generated or imported: OpenAI message shapes, calls to offered tools only, arguments
that validate against the tool's JSON schema, tool results that answer a pending call."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from nesso.agentic_data.generator import OPT_IN_SPLITS, SPLITS

ROLES = ("system", "user", "assistant", "tool")
LANG_CODES = ("en", "it")
SPLIT_NAMES = (*SPLITS, *OPT_IN_SPLITS)  # opt-in: nesso's own tools (shipped), made-up tools (synthetic, mapped)


@lru_cache(maxsize=4096)
def _validator(schema_json: str):
    from jsonschema import Draft202012Validator, FormatChecker
    from jsonschema.exceptions import SchemaError

    schema = json.loads(schema_json)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        return f"invalid JSON schema: {e.message}"
    return Draft202012Validator(schema, format_checker=FormatChecker())


def schema_errors(instance: Any, schema: dict[str, Any]) -> list[str]:
    """Messages of every way ``instance`` breaks ``schema`` (formats such as date, email and ipv4 are checked)."""
    v = _validator(json.dumps(schema, sort_keys=True))
    if isinstance(v, str):
        return [v]
    try:
        return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in v.iter_errors(instance)]
    except Exception as e:  # e.g. a $ref that cannot be resolved offline
        return [f"the JSON schema cannot be applied ({type(e).__name__}: {str(e)[:120]})"]


def tool_functions(tools: Any) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``{name: function entry}`` of an OpenAI tool list, and what is wrong with it."""
    problems: list[str] = []
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(tools, list):
        return out, ["'tools' must be a list"]
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) and t.get("type", "function") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            problems.append(f"tools[{i}] is not {{'type': 'function', 'function': {{'name': ...}}}}")
            continue
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict) or params.get("type", "object") != "object":
            problems.append(f"tools[{i}] ({fn['name']}): parameters must be a JSON-schema object")
            continue
        out[fn["name"]] = fn
    return out, problems


def parse_arguments(raw: Any) -> tuple[dict[str, Any] | None, str | None]:
    if isinstance(raw, dict):
        return raw, None
    if not isinstance(raw, str):
        return None, f"arguments must be a JSON string or object, not {type(raw).__name__}"
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError as e:
        return None, f"arguments are not valid JSON ({e.msg})"
    if not isinstance(value, dict):
        return None, "arguments must be a JSON object"
    return value, None


def validate_messages(messages: Any, tools: Any) -> list[str]:
    if not isinstance(messages, list) or not messages:
        return ["'messages' must be a non-empty list"]
    functions, problems = tool_functions(tools)
    pending: dict[str, str] = {}
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            problems.append(f"{where}: role must be one of {', '.join(ROLES)}")
            continue
        role, content = m["role"], m.get("content")
        if role == "tool":
            call_id = m.get("tool_call_id")
            if call_id not in pending:
                problems.append(f"{where}: tool message answers no pending call (tool_call_id {call_id!r})")
            else:
                del pending[call_id]
            if not isinstance(content, str):
                problems.append(f"{where}: tool content must be a string")
            continue
        if pending and role != "tool":
            problems.append(f"{where}: calls {sorted(pending)} got no tool result before this message")
            pending.clear()
        if content is not None and not isinstance(content, str):
            problems.append(f"{where}: content must be a string or null")
        calls = m.get("tool_calls") or []
        if role != "assistant":
            if calls:
                problems.append(f"{where}: only assistant messages may have tool_calls")
            if not content:
                problems.append(f"{where}: empty {role} message")
            continue
        if not calls and not content:
            problems.append(f"{where}: assistant message with neither content nor tool_calls")
        if not isinstance(calls, list):
            problems.append(f"{where}: tool_calls must be a list")
            continue
        for j, call in enumerate(calls):
            cw = f"{where}.tool_calls[{j}]"
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict) or not isinstance(call.get("id"), str) or call.get("type", "function") != "function":
                problems.append(f"{cw}: must be {{'id', 'type': 'function', 'function': {{'name', 'arguments'}}}}")
                continue
            name = fn.get("name")
            if name not in functions:
                problems.append(f"{cw}: calls {name!r}, which is not among the offered tools")
                continue
            args, err = parse_arguments(fn.get("arguments"))
            if err:
                problems.append(f"{cw} ({name}): {err}")
                continue
            params = functions[name].get("parameters") or {"type": "object"}
            problems += [f"{cw} ({name}) {e}" for e in schema_errors(args, params)]
            pending[call["id"]] = name
    # A conversation may end on the assistant's calls (as xLAM rows do): the calls are then the training target.
    return problems


def validate_row(row: Any) -> list[str]:
    """Everything wrong with a dataset row (an empty list when it is fine)."""
    if not isinstance(row, dict):
        return ["a row must be a JSON object"]
    problems = []
    if row.get("lang") not in LANG_CODES:
        problems.append(f"lang must be 'en' or 'it' (got {row.get('lang')!r})")
    if row.get("split") not in SPLIT_NAMES:
        problems.append(f"split must be 'train', 'heldout' or 'shipped' (got {row.get('split')!r})")
    if not isinstance(row.get("category"), str):
        problems.append("category must be a string")
    problems += validate_messages(row.get("messages"), row.get("tools", []))
    rf = row.get("response_format")
    if rf is not None:
        schema = (rf.get("json_schema") or {}).get("schema") if isinstance(rf, dict) else None
        last = row["messages"][-1] if isinstance(row.get("messages"), list) and row["messages"] else {}
        if not isinstance(schema, dict):
            problems.append("response_format.json_schema.schema must be a JSON schema object")
        else:
            try:
                answer = json.loads(last.get("content") or "")
            except (json.JSONDecodeError, AttributeError, TypeError):
                problems.append("the final answer of a structured_json row must be a JSON object")
            else:
                problems += [f"final answer {e}" for e in schema_errors(answer, schema)]
    return problems
