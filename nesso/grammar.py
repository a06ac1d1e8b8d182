"""Grammar-constrained decoding with llguidance: tool calls and JSON outputs that are valid by construction.

Tool calls follow the one nesso format: ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``, blocks
separated by a newline. The JSON inside is pinned to the canonical spacing (``", "`` and ``": "``) that the chat
template renders, so constrained output looks exactly like the training data.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nesso.engine import Constraint, loop_continuation
from nesso.errors import NessoError, one_line
from nesso.tokenizer import Tokenizer, first_surrogate
from nesso.toolcalls import TOOL_CLOSE, TOOL_OPEN

BRANCH = 32  # the most options the closing path tries at one choice (see LLGuidanceConstraint._walk)
CANONICAL_JSON = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Free text never contains the opening tag (that starts a constrained call) nor a <tool_response>, which only
# tools write (small models like to echo it instead of answering).
_TEXT = r'/(.|\n)*/ & ~/(.|\n)*<tool_(call|response)>(.|\n)*/'
_HEAD = r'/(.|\n)*<tool_call>/ & ~/(.|\n)*<tool_response>(.|\n)*/'


@dataclass(frozen=True)
class ToolChoice:
    mode: str  # "auto" | "none" | "required" | "named"
    name: str | None = None

    @classmethod
    def parse(cls, value: Any) -> ToolChoice:
        """Accepts OpenAI's forms: "auto", "none", "required", {"type": "function", "function": {"name": X}}."""
        if value is None:
            return cls("auto")
        if isinstance(value, ToolChoice):
            return value
        if isinstance(value, str):
            if value not in ("auto", "none", "required"):
                raise NessoError(f"tool_choice {value!r} is not one of 'auto', 'none', 'required' or "
                                 "{'type': 'function', 'function': {'name': ...}}")
            return cls(value)
        if isinstance(value, dict):
            fn = value.get("function")
            name = fn.get("name") if isinstance(fn, dict) else value.get("name")
            if isinstance(name, str) and name:
                return cls("named", name)
        raise NessoError("tool_choice must be 'auto', 'none', 'required' or "
                         "{'type': 'function', 'function': {'name': ...}}")


def normalize_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Check an OpenAI tool list and return it in canonical form; errors name the offending tool."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if tools is None:
        return []
    if not isinstance(tools, list):
        raise NessoError("tools must be a list of {'type': 'function', 'function': {...}} objects")
    out, seen = [], set()
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict) or (t.get("type", "function") != "function"):
            raise NessoError(f"tools[{i}] must look like {{'type': 'function', 'function': {{'name': ..., "
                             "'parameters': {...}}}")
        name = fn.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise NessoError(f"tools[{i}].function.name must be 1-64 letters, digits, '_', '-' or '.' (got {name!r})")
        if name in seen:
            raise NessoError(f"tools[{i}]: the tool name {name!r} appears twice")
        seen.add(name)
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, dict):
            raise NessoError(f"tools[{i}] ({name}): parameters must be a JSON schema object")
        try:
            Draft202012Validator.check_schema(params)
        except SchemaError as e:
            raise NessoError(f"tools[{i}] ({name}): parameters is not a valid JSON schema: {e.message}") from None
        if params.get("type", "object") != "object":
            raise NessoError(f"tools[{i}] ({name}): parameters must describe an object (type 'object')")
        desc = fn.get("description")
        entry = {"name": name, **({"description": desc} if desc else {}), "parameters": params}
        if "strict" in fn:
            entry["strict"] = fn["strict"]
        out.append({"type": "function", "function": entry})
    return out


def _closed(schema: Any) -> Any:
    """Objects in tool arguments admit only their declared properties (BFCL: no unknown parameters)."""
    if isinstance(schema, dict):
        schema = {k: _closed(v) for k, v in schema.items()}
        if schema.get("type") == "object" and "additionalProperties" not in schema and "properties" in schema:
            schema["additionalProperties"] = False
        if schema.get("type") == "object" and "properties" not in schema and "additionalProperties" not in schema:
            schema["properties"] = {}
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def call_schema(tools: list[dict[str, Any]]) -> dict[str, Any]:
    variants = []
    for t in tools:
        fn = t["function"]
        variants.append({
            "type": "object",
            "properties": {"name": {"const": fn["name"]}, "arguments": _closed(fn["parameters"])},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        })
    schema = variants[0] if len(variants) == 1 else {"anyOf": variants}
    return {**schema, "x-guidance": CANONICAL_JSON}


def tool_call_lark(tools: list[dict[str, Any]], choice: ToolChoice, parallel: bool = True) -> str:
    if choice.mode == "none" or not tools:
        return f"%llguidance {{}}\nstart: TEXT\nTEXT: {_TEXT}\n"
    if choice.mode == "named":
        tools = [t for t in tools if t["function"]["name"] == choice.name]
        if not tools:
            raise NessoError(f"tool_choice names {choice.name!r}, which is not among the tools offered")
    more = f' ("\\n" "{TOOL_OPEN}" body)*' if parallel else ""
    body = f'body: "\\n" %json {json.dumps(call_schema(tools), ensure_ascii=False)} "\\n{TOOL_CLOSE}"\n'
    if choice.mode == "auto":
        return (f"%llguidance {{}}\nstart: TEXT | head body{more}\nhead[lazy]: HEAD\n"
                f"{body}TEXT: {_TEXT}\nHEAD: {_HEAD}\n")
    return f'%llguidance {{}}\nstart: "{TOOL_OPEN}" body{more}\n{body}'


def json_lark(schema: dict[str, Any] | None) -> str:
    schema = {"type": "object"} if schema is None else schema
    if not isinstance(schema, dict):
        raise NessoError("a JSON schema must be an object")
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        raise NessoError(f"response_format schema is not a valid JSON schema: {e.message}") from None
    spaced = {**schema, "x-guidance": {**CANONICAL_JSON, **schema.get("x-guidance", {})}}
    return f"%llguidance {{}}\nstart: %json {json.dumps(spaced, ensure_ascii=False)}\n"


class GrammarCompiler:
    """Per-tokenizer llguidance state; compiled grammars are cached by their text (one per tool set/schema)."""

    def __init__(self, tokenizer: Tokenizer, vocab_size: int) -> None:
        import llguidance

        self._ll = llguidance
        self.vocab_size = vocab_size
        self.lltok = llguidance.LLTokenizer(tokenizer.backend.to_str(), n_vocab=vocab_size,
                                            eos_token=sorted(tokenizer.stop_ids))
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()
        self.closers = _closers(tokenizer, vocab_size)  # ~0.2 s for 128k ids, here rather than in a timed decode
        single = [tokenizer.backend.token_to_id(ch) for ch in "@.a0-:"]
        self.repair = [i for i in single if i is not None and i < vocab_size]
        self.letter = single[2] if single[2] is not None and single[2] < vocab_size else None
        self.eos = self.closers[0][0] if self.closers[0] else None

    def compile(self, lark: str) -> str:
        with self._lock:
            cached = self._cache.get(lark)
        if cached is not None:
            return cached
        if first_surrogate(lark) is not None:  # llguidance takes UTF-8 only
            raise NessoError("the tools or the JSON schema have text that is not Unicode (a lone \\ud800-\\udfff "
                             "escape); fix that text")
        grammar = self._ll.LLMatcher.grammar_from_lark(lark)
        is_error, messages = self._ll.LLMatcher.validate_grammar_with_warnings(grammar, self.lltok)
        if is_error:
            raise NessoError(_explain("; ".join(m.strip() for m in messages) or "invalid grammar"))
        with self._lock:
            self._cache[lark] = grammar
        return grammar

    def constraint(self, lark: str, structured: bool) -> LLGuidanceConstraint:
        return LLGuidanceConstraint(self, self.compile(lark), structured)

    def for_tools(self, tools: list[dict[str, Any]], tool_choice: Any = "auto",
                  parallel: bool = True) -> LLGuidanceConstraint:
        choice = ToolChoice.parse(tool_choice)
        lark = tool_call_lark(normalize_tools(tools), choice, parallel)
        return self.constraint(lark, structured=choice.mode in ("required", "named"))

    def for_json(self, schema: dict[str, Any] | None) -> LLGuidanceConstraint:
        return self.constraint(json_lark(schema), structured=True)


def _closers(tokenizer: Tokenizer, vocab_size: int) -> list[list[int]]:
    """Token ids that finish an output, best first: end of sequence; a quote (closing the open string) with only
    closing brackets after it; closing brackets alone; a comma (ends a number or literal where a required key must
    follow). Within a tier the longest text comes first."""
    n = min(tokenizer.vocab_size, vocab_size)
    texts = tokenizer.backend.decode_batch([[i] for i in range(n)], skip_special_tokens=False)
    quote, bracket, comma = [], [], []
    for i, text in enumerate(texts):
        t = text.strip()
        if not t or "\ufffd" in t:
            continue
        if t[0] == '"' and set(t[1:]) <= set('"}]'):
            quote.append(i)
        elif set(t) <= set("}]"):
            bracket.append(i)
        elif text == ",":
            comma.append(i)

    def longest_first(ids: list[int]) -> list[int]:
        return sorted(ids, key=lambda i: (-len(texts[i]), i))

    stops = sorted(i for i in tokenizer.stop_ids if i < vocab_size)
    return [stops, longest_first(quote), longest_first(bracket), comma]


def _explain(detail: str) -> str:
    detail = detail.split(" 1 | ")[0]  # drop llguidance's echo of the grammar
    keys = re.search(r"Unimplemented keys: \[([^\]]*)\]", detail)
    if keys:
        names = ", ".join(k.strip().strip('"') for k in keys.group(1).split(","))
        return (f"the JSON schema uses {names}, which constrained decoding does not support; remove it "
                "(and check it after generation) or turn constraints off")
    detail = re.sub(r"^at \d+\(\d+\): ", "", detail.strip())
    return f"the schema cannot be enforced: {one_line(detail)}"


class LLGuidanceConstraint(Constraint):
    def __init__(self, compiler: GrammarCompiler, grammar: str, structured: bool) -> None:
        self.compiler = compiler
        self.matcher = compiler._ll.LLMatcher(compiler.lltok, grammar, log_level=0)
        if self.matcher.is_error():
            raise NessoError(f"the grammar cannot be used: {one_line(self.matcher.get_error())}")
        self._structured = structured

    def allowed(self) -> torch.Tensor:
        bits = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
        return torch.from_numpy(np.unpackbits(bits, bitorder="little")[: self.compiler.vocab_size].view(bool))

    def accepts(self, token: int) -> bool:
        return token < self.compiler.vocab_size and self.matcher.validate_tokens([token]) == 1

    def _closing_step(self, matcher: Any, previous: int | None, options: list[int] | None = None) -> int | None:
        """The closing path's next token: the best legal closer, else (a digit, a required key, a string's
        minLength or format) a legal one of a few characters that formats need ("@", ".", "a", "0", "-", ":"),
        else the lowest legal id; never ``previous`` again where another is legal (a number that must be > 0
        would grow "0.0000…" forever). Where no closer is legal and at most BRANCH ids are (a tool name, an enum
        value), they are added to ``options`` (when given)."""
        # The few closers are tested one by one (~0.4 us each); the full mask (~20 us) only where none is legal.
        legal = matcher.validate_tokens
        letter = self.compiler.letter
        # Where a letter is legal the path is inside a string, and brackets or commas would be its content.
        in_string = letter is not None and legal([letter]) == 1
        for tier in self.compiler.closers[: 2 if in_string else 4]:
            for tok in tier:
                if legal([tok]) == 1:
                    return tok
        ids = self._legal_ids(matcher) if options is not None else None
        if ids is not None and len(ids) <= BRANCH:
            options.extend(ids)
        for tok in self.compiler.repair:  # characters that let formats progress: "@" and "." of an e-mail, …
            if tok != previous and legal([tok]) == 1:
                return tok
        ids = self._legal_ids(matcher) if ids is None else ids
        return next((i for i in ids if i != previous), ids[0] if ids else None)

    def _legal_ids(self, matcher: Any) -> list[int]:
        """The lowest legal ids, at most BRANCH + 1 of them (more: the choice is too wide to try each)."""
        bits = np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8)
        ids: list[int] = []
        for byte in np.flatnonzero(bits)[: BRANCH + 1].tolist():
            v = int(bits[byte])
            while v and len(ids) <= BRANCH:
                low = v & -v
                ids.append(byte * 8 + low.bit_length() - 1)
                v ^= low
        return [i for i in ids if i < self.compiler.vocab_size]

    def closing_path(self, after: int | None, limit: int, previous: int | None = None) -> list[int] | None:
        m = self.matcher.deep_copy()
        if after is not None:
            if not m.consume_token(after):
                return None
            previous = after
        path = self._walk(m.deep_copy(), previous, limit, branch=False)
        if path is None:  # the greedy path is too long; at its first small choice, take the option closing soonest
            path = self._walk(m, previous, limit, branch=True)
        return path

    def _walk(self, m: Any, previous: int | None, limit: int, branch: bool) -> list[int] | None:
        path: list[int] = []
        while len(path) <= limit:
            if m.is_accepting() or m.is_stopped():
                return path
            forced = m.compute_ff_tokens()  # tags and keys: a run of single-choice tokens in one call
            if forced:
                m.consume_tokens(forced)
                path += forced
                previous = forced[-1]
                continue
            options: list[int] | None = [] if branch else None
            tok = self._closing_step(m, previous, options)
            if options and len(options) > 1:  # e.g. which tool: the lowest id may name the one with most arguments
                best: list[int] | None = None
                for option in options:
                    sub = m.deep_copy()
                    room = limit - len(path) - 1 if best is None else len(best) - 2
                    rest = self._walk(sub, option, room, branch=False) if sub.consume_token(option) else None
                    if rest is not None:
                        best = [option, *rest]
                return None if best is None else path + best
            # No completion found: no legal token, or the path runs in a loop (brackets as the content of an
            # e-mail string whose closing quote needs an "@" first).
            if tok is None or loop_continuation(path) == tok or not m.consume_token(tok):
                break
            path.append(tok)
            previous = tok
        return None

    def completes(self, tokens: list[int]) -> bool:
        # An end-of-sequence token is legal only where the output may end.
        return self.compiler.eos is not None and self.matcher.validate_tokens([*tokens, self.compiler.eos]) == len(tokens) + 1

    def closing_token(self, previous: int | None = None) -> int:
        tok = self._closing_step(self.matcher, previous)
        if tok is None:
            raise NessoError("the grammar allows no token here (constraint error)")
        return tok

    def advance(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            raise NessoError(f"constrained decoding failed: {one_line(self.matcher.get_error())}")

    @property
    def done(self) -> bool:
        return self.matcher.is_stopped()

    @property
    def structured(self) -> bool:
        return self._structured


def compiler_for(tokenizer: Tokenizer, vocab_size: int) -> GrammarCompiler:
    """One compiler per tokenizer (building llguidance's token trie takes ~0.1-1 s), kept on the tokenizer."""
    comp = getattr(tokenizer, "_grammar_compiler", None)
    if comp is None or comp.vocab_size != vocab_size:
        comp = GrammarCompiler(tokenizer, vocab_size)
        tokenizer._grammar_compiler = comp
    return comp
