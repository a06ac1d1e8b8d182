"""Convert public function-calling datasets a user has locally into nesso rows.

Formats: ``openai`` (``{"messages": [...], "tools": [...]}``), ``sharegpt`` a.k.a. ``hermes`` (``conversations``
with from: system/human/gpt/tool and ``<tool_call>`` blocks in the text) and ``xlam`` (``query``, ``tools``,
``answers``). Input is JSON Lines or one JSON array. A row that cannot be converted is reported with its line
(or array item) number and the reason, and skipped; it never stops the import.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nesso.agentic_data.validate import ROLES, parse_arguments, validate_row
from nesso.errors import NessoError
from nesso.tokenizer import surrogate_path

FORMATS = ("openai", "sharegpt", "hermes", "xlam")


class BadRow(Exception):
    """A row that cannot be converted; the message says why."""


@dataclass
class ImportReport:
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line or item number, reason)
    total: int = 0


# ---- shared helpers ----------------------------------------------------------------------------------
IT_WORDS = set("il lo la gli le di che è per non un una uno sono del della dei degli delle con mi ti ci si puoi quanto "
               "quale qual come cosa nel nella alla al dal dalla sul sulla tra fa sta ciao grazie vorrei dove quando "
               "perché anche ho hai oggi domani mio mia miei questo questa".split())
EN_WORDS = set("the and is are of to for what my can you please with how this that on me an which where when "
               "thanks do does it your will would today tomorrow".split())  # not "a"/"i": Italian words too


def detect_lang(messages: list[dict[str, Any]]) -> str:
    """'it' when the user turns hold more Italian than English function words, else 'en'."""
    text = " ".join(m.get("content") or "" for m in messages if m.get("role") == "user").lower()
    words = re.findall(r"[a-zàèéìòù']+", text)
    it = sum(w in IT_WORDS for w in words)
    en = sum(w in EN_WORDS for w in words)
    return "it" if it > en else "en"


def infer_category(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
    turns = [m for m in messages if m.get("role") == "assistant" and m.get("tool_calls")]
    if not turns:
        return "no_call" if tools else "chat"
    if len(turns) > 1:
        return "multi_step"
    calls = turns[0]["tool_calls"]
    if len(calls) == 1:
        return "simple" if len(tools) <= 1 else "multiple"
    return "parallel" if len({c["function"]["name"] for c in calls}) == 1 else "parallel_multiple"


def _loads(value: Any, what: str) -> Any:
    """JSON text, or the Python-literal text some datasets use (single quotes, True/False/None)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise BadRow(f"{what} is neither JSON nor a Python literal") from None


def _text(content: Any, where: str) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if len(parts) != len(content):
            raise BadRow(f"{where}: only text content parts can be imported")
        return "".join(parts)
    raise BadRow(f"{where}: content must be text")


def _function(entry: Any, where: str) -> dict[str, Any]:
    """An OpenAI tool entry from either ``{"type": "function", "function": {...}}`` or a bare function."""
    fn = entry.get("function") if isinstance(entry, dict) and "function" in entry else entry
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise BadRow(f"{where}: a tool needs a name")
    params = fn.get("parameters")
    if params is None:
        params = {"type": "object", "properties": {}}
    elif not isinstance(params, dict):
        raise BadRow(f"{where} ({fn['name']}): parameters must be an object")
    elif "properties" not in params and params.get("type") != "object":
        params = xlam_parameters(params, f"{where} ({fn['name']})")
    out = {"name": fn["name"], "description": str(fn.get("description") or ""), "parameters": params}
    return {"type": "function", "function": out}


def _tools(value: Any, where: str = "tools") -> list[dict[str, Any]]:
    value = _loads(value, where) if value not in (None, "") else []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise BadRow(f"{where} must be a list")
    return [_function(t, f"{where}[{i}]") for i, t in enumerate(value)]


def _call(name: Any, arguments: Any, call_id: str, where: str) -> dict[str, Any]:
    if not isinstance(name, str) or not name:
        raise BadRow(f"{where}: a tool call needs a function name")
    args, err = parse_arguments(arguments if arguments is not None else {})
    if err:
        raise BadRow(f"{where} ({name}): {err}")
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}


class _Ids:
    def __init__(self) -> None:
        self.n = 0
        self.pending: list[str] = []

    def new(self) -> str:
        self.n += 1
        call_id = f"call_{self.n}"
        self.pending.append(call_id)
        return call_id

    def answer(self, call_id: str | None, where: str) -> str:
        if call_id is None:
            if not self.pending:
                raise BadRow(f"{where}: a tool result with no call before it")
            return self.pending.pop(0)
        if call_id in self.pending:
            self.pending.remove(call_id)
        return call_id


# ---- OpenAI messages ------------------------------------------------------------------------------------
def from_openai(obj: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not isinstance(obj, dict) or not isinstance(obj.get("messages"), list):
        raise BadRow("expected an object with a 'messages' list")
    tools = _tools(obj.get("tools") or obj.get("functions") or [])
    ids, messages = _Ids(), []
    for i, m in enumerate(obj["messages"]):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise BadRow(f"{where} must be an object")
        role = m.get("role")
        if role == "function":  # the legacy function-calling result
            role = "tool"
        if role not in ROLES:
            raise BadRow(f"{where}: unknown role {role!r}")
        content = _text(m.get("content"), where)
        if role == "tool":
            call_id = ids.answer(m.get("tool_call_id"), where)
            out = {"role": "tool", "tool_call_id": call_id, "content": content if content is not None else ""}
            if m.get("name"):
                out["name"] = m["name"]
            messages.append(out)
            continue
        out = {"role": role, "content": content}
        raw_calls = m.get("tool_calls") or ([dict(function=m["function_call"])] if m.get("function_call") else [])
        if raw_calls:
            if role != "assistant" or not isinstance(raw_calls, list):
                raise BadRow(f"{where}: tool_calls must be a list on an assistant message")
            calls = []
            for j, c in enumerate(raw_calls):
                fn = c.get("function") if isinstance(c, dict) else None
                if not isinstance(fn, dict):
                    raise BadRow(f"{where}.tool_calls[{j}] has no 'function'")
                call_id = c.get("id") if isinstance(c.get("id"), str) and c.get("id") else None
                if call_id:
                    ids.pending.append(call_id)
                calls.append(_call(fn.get("name"), fn.get("arguments"), call_id or ids.new(), f"{where}.tool_calls[{j}]"))
            out["tool_calls"] = calls
        messages.append(out)
    return messages, tools


# ---- ShareGPT / Hermes ----------------------------------------------------------------------------------
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "tool": "tool", "function_response": "tool", "observation": "tool", "function_call": "call"}
TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)
TOOL_RESPONSE = re.compile(r"<tool_response>\s*(.*?)\s*</tool_response>", re.S)
TOOLS_BLOCK = re.compile(r"<tools>\s*(.*?)\s*</tools>", re.S)


def _tools_from_system(text: str) -> list[dict[str, Any]] | None:
    # Hermes prompts mention "<tools></tools> XML tags" before the real block: only non-empty blocks count.
    blocks = [b.strip() for b in TOOLS_BLOCK.findall(text) if b.strip()]
    if not blocks:
        return None
    tools: list[dict[str, Any]] = []
    for body in blocks:
        try:
            value = _loads(body, "the <tools> block")
        except BadRow:  # one JSON object per line, as the nesso/Qwen template writes them
            value = [_loads(line, "a line of the <tools> block") for line in body.splitlines() if line.strip()]
        tools += _tools(value, "<tools>")
    return tools


def _parse_call(raw: Any, call_id: str, where: str) -> dict[str, Any]:
    obj = _loads(raw, where) if isinstance(raw, str) else raw
    if not isinstance(obj, dict):
        raise BadRow(f"{where}: a tool call must be an object with name and arguments")
    return _call(obj.get("name"), obj.get("arguments", obj.get("parameters")), call_id, where)


def from_sharegpt(obj: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    turns = obj.get("conversations") if isinstance(obj, dict) else None
    if not isinstance(turns, list):
        raise BadRow("expected an object with a 'conversations' list")
    tools = _tools(obj.get("tools")) if obj.get("tools") else None
    ids, messages = _Ids(), []
    for i, t in enumerate(turns):
        where = f"conversations[{i}]"
        if not isinstance(t, dict) or not isinstance(t.get("value"), str):
            raise BadRow(f"{where} must be an object with 'from' and a text 'value'")
        role = SHAREGPT_ROLES.get(str(t.get("from")).lower())
        value = t["value"]
        if role is None:
            raise BadRow(f"{where}: unknown speaker {t.get('from')!r}")
        if role == "system":
            found = _tools_from_system(value)
            if found is not None:  # the tools become the row's tools; nesso's template writes its own tool prompt
                tools = (tools or []) + found
                continue
            messages.append({"role": "system", "content": value})
        elif role == "user":
            messages.append({"role": "user", "content": value})
        elif role == "call":  # glaive / LLaMA-Factory style: the value is one JSON call
            call = _parse_call(value, ids.new(), where)
            if messages and messages[-1]["role"] == "assistant" and messages[-1].get("tool_calls") is not None \
                    and not messages[-1]["content"]:
                messages[-1]["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif role == "assistant":
            blocks = TOOL_CALL.findall(value)
            text = TOOL_CALL.sub("", value).strip() or None
            msg: dict[str, Any] = {"role": "assistant", "content": text}
            if blocks:
                msg["tool_calls"] = [_parse_call(b, ids.new(), f"{where} <tool_call> {k + 1}") for k, b in enumerate(blocks)]
            messages.append(msg)
        else:
            responses = TOOL_RESPONSE.findall(value) or [value.strip()]
            for r in responses:
                messages.append({"role": "tool", "tool_call_id": ids.answer(None, where), "content": r})
    return messages, tools or []


# ---- xLAM -----------------------------------------------------------------------------------------------
XLAM_TYPES = {"str": "string", "string": "string", "int": "integer", "integer": "integer", "float": "number",
              "number": "number", "double": "number", "bool": "boolean", "boolean": "boolean", "dict": "object",
              "object": "object", "list": "array", "array": "array", "tuple": "array"}


def _xlam_type(raw: str) -> dict[str, Any]:
    t = raw.strip()
    m = re.fullmatch(r"(?i)(list|tuple|array)\[(.+)\]", t)
    if m:
        inner = _xlam_type(m.group(2))
        return {"type": "array", "items": inner} if inner else {"type": "array"}
    base = re.split(r"[\[,]", t, maxsplit=1)[0].strip().lower()
    return {"type": XLAM_TYPES[base]} if base in XLAM_TYPES else {}  # Union, Any, ...: no constraint


def xlam_parameters(params: dict[str, Any], where: str) -> dict[str, Any]:
    """xLAM's ``{name: {"type": "str, optional", "description", "default"}}`` as a JSON-schema object."""
    props, required = {}, []
    for name, spec in params.items():
        if not isinstance(spec, dict):
            raise BadRow(f"{where}: parameter {name!r} must be an object")
        raw_type = str(spec.get("type", ""))
        optional = "optional" in raw_type.lower() or "default" in spec
        prop = _xlam_type(raw_type.replace(", optional", "").replace(",optional", ""))
        if spec.get("description"):
            prop["description"] = str(spec["description"])
        if "default" in spec and spec["default"] not in ("", None):
            prop["default"] = spec["default"]
        props[name] = prop
        if not optional:
            required.append(name)
    return {"type": "object", "properties": props, "required": required}


def from_xlam(obj: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not isinstance(obj, dict) or not isinstance(obj.get("query"), str) or "answers" not in obj:
        raise BadRow("expected an object with 'query', 'tools' and 'answers'")
    tools = _tools(obj.get("tools"))
    answers = _loads(obj["answers"], "answers")
    if not isinstance(answers, list):
        raise BadRow("answers must be a list of {name, arguments}")
    ids = _Ids()
    calls = [_parse_call(a, ids.new(), f"answers[{k}]") for k, a in enumerate(answers)]
    if not calls:
        raise BadRow("answers is empty: an xLAM row without a call has no assistant turn to import")
    return [{"role": "user", "content": obj["query"]}, {"role": "assistant", "content": None, "tool_calls": calls}], tools


CONVERTERS = {"openai": from_openai, "sharegpt": from_sharegpt, "hermes": from_sharegpt, "xlam": from_xlam}


def convert(fmt: str, obj: Any, *, split: str = "train", lang: str | None = None, row_id: str = "") -> dict[str, Any]:
    """One source record as a nesso row, or BadRow with the reason."""
    messages, tools = CONVERTERS[fmt](obj)
    row = {"id": row_id, "split": split, "category": infer_category(messages, tools),
           "lang": lang or detect_lang(messages), "messages": messages, "tools": tools}
    problems = validate_row(row)
    if problems:
        raise BadRow("; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""))
    return row


def _records(path: Path) -> list[tuple[int, Any]]:
    """(line or item number, parsed value or the JSON error as an exception)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NessoError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise NessoError(f"cannot read {path}: {e}") from None
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise NessoError(f"{path} starts like a JSON array but is not valid JSON ({e.msg} at line {e.lineno}); "
                             "fix it or convert it to JSON Lines") from None
        return list(enumerate(items, 1))
    out: list[tuple[int, Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            out.append((n, BadRow(f"not valid JSON ({e.msg})")))
    return out


def import_file(fmt: str, path: str | Path, *, split: str = "train", lang: str | None = None) -> ImportReport:
    fmt = fmt.lower()
    if fmt not in CONVERTERS:
        raise NessoError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if split not in ("train", "heldout"):
        raise NessoError(f"--split must be train or heldout (got {split!r})")
    if lang not in (None, "en", "it"):
        raise NessoError(f"--lang must be auto, en or it (got {lang!r})")
    path = Path(path)
    report = ImportReport()
    for n, obj in _records(path):
        report.total += 1
        try:
            if isinstance(obj, BadRow):
                raise obj
            row = convert(fmt, obj, split=split, lang=lang, row_id=f"{path.stem}-{n:06d}")
            found = surrogate_path(row)
            if found:
                raise BadRow(f"{found[0]}: a lone \\ud800-\\udfff escape: the text is not Unicode")
            report.rows.append(row)
        except BadRow as e:
            report.skipped.append((n, str(e)))
        except (RecursionError, MemoryError):
            report.skipped.append((n, "record too deeply nested or too large"))
    return report
