"""Read Llama GGUF files (llama.cpp's format) into the nesso model and tokenizer.

Weights are dequantized with the ``gguf`` package (writing lives in ``nesso.gguf_export``). llama.cpp's converter
permutes the rows of attn_q/attn_k so that RoPE rotates interleaved pairs; HF Llama (and nesso) rotate halves, so
those two are permuted back.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nesso.checkpoint import load_state_dict_into
from nesso.config import ModelConfig
from nesso.errors import NessoError
from nesso.model import Transformer, empty_model
from nesso.tokenizer import IM_END, Tokenizer

_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}
_TOP_NAMES = {"token_embd": "embed_tokens", "output_norm": "norm", "output": "lm_head"}


def gguf_to_nesso_name(name: str) -> str:
    stem, _, suffix = name.rpartition(".")
    if stem.startswith("blk."):
        _, layer, part = stem.split(".", 2)
        if part not in _LAYER_NAMES:
            raise NessoError(f"GGUF tensor {name} is not part of a Llama model")
        return f"layers.{layer}.{_LAYER_NAMES[part]}.{suffix}"
    if stem not in _TOP_NAMES:
        raise NessoError(f"GGUF tensor {name} is not part of a Llama model")
    return f"{_TOP_NAMES[stem]}.{suffix}"


def permute_rope_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k permutation (rotate-half layout -> interleaved pairs), as its HF converter applies it."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_rope_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's q/k permutation (interleaved pairs -> rotate-half layout)."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# llama.cpp stores Llama-3 frequency scaling as per-pair divisors in this tensor; nesso also keeps the original
# rope_scaling dict under ROPE_SCALING_KEY so that reading the file back gives the same config.
ROPE_FREQS = "rope_freqs.weight"
ROPE_SCALING_KEY = "nesso.rope_scaling"


class _Field:
    def __init__(self, value: Any) -> None:
        self.value = value

    def contents(self) -> Any:
        return self.value


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]  # ggml order: row length first, as gguf.GGUFReader reports it
    tensor_type: Any  # gguf.GGMLQuantizationType
    data: np.ndarray  # (rows..., row length) for F32/F16, (rows..., bytes per row) uint8 for block types


class GGUFFile:
    """A GGUF file opened read-only: ``fields`` (key -> value via ``.contents()``) and memory-mapped ``tensors``.

    The same surface as ``gguf.GGUFReader`` for what nesso reads, parsed in one pass: GGUFReader builds a numpy
    view per array element, which takes many seconds for a 128k-token vocabulary and its merges."""

    _SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
    _NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8", 11: "<i8",
              12: "<f8"}
    STRING, ARRAY = 8, 9

    def __init__(self, path: Path) -> None:
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        self.path = path
        self._buf = np.memmap(path, dtype=np.uint8, mode="r")
        self._mv = memoryview(self._buf)
        self._pos = 4
        if bytes(self._mv[:4]) != b"GGUF":
            raise ValueError("no GGUF magic number at the start")
        version, n_tensors, n_kv = self._unpack("<I"), self._unpack("<Q"), self._unpack("<Q")
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} (nesso reads versions 2 and 3)")
        if n_tensors * 24 + n_kv * 12 > len(self._buf):
            raise ValueError("the header counts more entries than the file can hold")
        self.fields: dict[str, _Field] = {"GGUF.version": _Field(version), "GGUF.tensor_count": _Field(n_tensors),
                                          "GGUF.kv_count": _Field(n_kv)}
        for _ in range(n_kv):
            key = self._string()
            self.fields[key] = _Field(self._value(self._unpack("<I")))
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            dims = tuple(self._unpack("<Q") for _ in range(self._unpack("<I")))
            infos.append((name, dims, GGMLQuantizationType(self._unpack("<I")), self._unpack("<Q")))
        align = int(self.fields["general.alignment"].value) if "general.alignment" in self.fields else 32
        start = -(-self._pos // align) * align
        self.tensors = []
        for name, dims, qtype, offset in infos:
            block, size = GGML_QUANT_SIZES[qtype]
            rows = tuple(reversed(dims[1:]))
            n_rows = int(np.prod(rows)) if rows else 1
            if qtype == GGMLQuantizationType.F32 or qtype == GGMLQuantizationType.F16:
                dtype, row = np.dtype("<f4" if qtype == GGMLQuantizationType.F32 else "<f2"), dims[0]
            else:
                dtype, row = np.dtype(np.uint8), dims[0] // block * size
            nbytes = n_rows * row * dtype.itemsize
            if start + offset + nbytes > len(self._buf):
                raise ValueError(f"tensor {name} runs past the end of the file")
            data = self._buf[start + offset:start + offset + nbytes].view(dtype).reshape(*rows, row)
            self.tensors.append(_Tensor(name, dims, qtype, data))

    def _unpack(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self._mv, self._pos)
        self._pos += struct.calcsize(fmt)
        return value

    def _string(self) -> str:
        n = self._unpack("<Q")
        if self._pos + n > len(self._buf):
            raise ValueError("a string runs past the end of the file")
        s = str(self._mv[self._pos:self._pos + n], "utf-8", errors="replace")
        self._pos += n
        return s

    def _value(self, vtype: int) -> Any:
        if vtype == self.STRING:
            return self._string()
        if vtype == self.ARRAY:
            item, n = self._unpack("<I"), self._unpack("<Q")
            if item in self._NUMPY:  # numbers in one slice instead of n unpacks
                dt = np.dtype(self._NUMPY[item])
                if self._pos + n * dt.itemsize > len(self._buf):
                    raise ValueError("an array runs past the end of the file")
                values = np.frombuffer(self._mv, dtype=dt, count=n, offset=self._pos).tolist()
                self._pos += n * dt.itemsize
                return values
            if n > len(self._buf):
                raise ValueError("an array is longer than the file")
            return [self._value(item) for _ in range(n)]
        if vtype not in self._SCALARS:
            raise ValueError(f"unknown metadata value type {vtype}")
        return self._unpack(self._SCALARS[vtype])


def _reader(path: str | Path) -> GGUFFile:
    p = Path(path)
    if not p.is_file():
        raise NessoError(f"GGUF file {p} does not exist")
    try:
        return GGUFFile(p)
    except (OSError, ValueError, KeyError, IndexError, OverflowError, struct.error) as e:  # unreadable/garbage
        raise NessoError(f"{p} is not a readable GGUF file: {e}") from None


def _field(reader: Any, key: str, default: Any = None) -> Any:
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def read_config(reader: Any) -> ModelConfig:
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise NessoError(f"GGUF architecture is {arch!r}; nesso reads Llama GGUF files")
    p = "llama."
    heads = int(_field(reader, p + "attention.head_count"))
    hidden = int(_field(reader, p + "embedding_length"))
    tokens = _field(reader, "tokenizer.ggml.tokens") or []
    vocab = int(_field(reader, p + "vocab_size", len(tokens)))
    names = {t.name for t in reader.tensors}
    head_dim = int(_field(reader, p + "rope.dimension_count", hidden // heads))
    scaling = _field(reader, ROPE_SCALING_KEY)
    if scaling is None and ROPE_FREQS in names:
        raise NessoError("this GGUF scales RoPE frequencies with a rope_freqs tensor but does not say how "
                         "(no nesso.rope_scaling key); load the original Hugging Face checkpoint instead")
    return ModelConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=int(_field(reader, p + "feed_forward_length")),
        num_layers=int(_field(reader, p + "block_count")),
        num_heads=heads,
        num_kv_heads=int(_field(reader, p + "attention.head_count_kv", heads)),
        head_dim=head_dim,
        max_position_embeddings=int(_field(reader, p + "context_length", 2048)),
        rope_theta=_f32(_field(reader, p + "rope.freq_base", 10_000.0)),
        rope_scaling=_rope_scaling(scaling) if scaling else None,
        rms_norm_eps=_f32(_field(reader, p + "attention.layer_norm_rms_epsilon", 1e-5)),
        tie_word_embeddings="output.weight" not in names,
        bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_field(reader, "tokenizer.ggml.eos_token_id"),
        pad_token_id=_field(reader, "tokenizer.ggml.padding_token_id"),
    )


def _f32(value: float) -> float:
    """A float32 metadata value as the shortest decimal that rounds to it (9.99999974e-06 -> 1e-05), so that a
    config written by nesso reads back equal."""
    return float(str(np.float32(value)))


def _rope_scaling(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        value = None
    if not isinstance(value, dict):
        raise NessoError(f"GGUF key {ROPE_SCALING_KEY} must hold a JSON object (got {str(text)[:80]!r})")
    return value


def read_state_dict(reader: Any, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    from gguf import quants

    sd = {}
    for t in reader.tensors:
        if t.name == ROPE_FREQS:  # derived from config.rope_scaling, which read_config already took
            continue
        name = gguf_to_nesso_name(t.name)
        w = np.asarray(quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        if name.endswith("self_attn.q_proj.weight"):
            w = unpermute_rope_rows(w, cfg.num_heads)
        elif name.endswith("self_attn.k_proj.weight"):
            w = unpermute_rope_rows(w, cfg.num_kv_heads)
        sd[name] = torch.from_numpy(np.array(w, dtype=np.float32, order="C", copy=True))
    return sd


def read_tokenizer(reader: Any) -> Tokenizer:
    """Rebuild a fast tokenizer from GGUF metadata (BPE 'gpt2' models: vocab, merges, special tokens)."""
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as Backend

    kind = _field(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise NessoError(f"GGUF tokenizer model {kind!r} is not supported (byte-level BPE 'gpt2' only)")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    types = _field(reader, "tokenizer.ggml.token_type") or [1] * len(tokens)
    vocab = {tok: i for i, tok in enumerate(tokens)}
    pre = _field(reader, "tokenizer.ggml.pre", "default")
    # Llama-3's BPE takes a pre-token that is already a vocabulary entry as is (llama.cpp does the same for
    # llama-bpe); merging it piece by piece can give a different split.
    backend = Backend(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=pre == "llama-bpe"))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=pre != "llama-bpe")
    if pre == "llama-bpe":  # Llama-3 split rule
        split = pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated")
        backend.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    elif pre in ("smollm", "starcoder", "refact"):  # digits one by one, then GPT-2's rule
        backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        backend.pre_tokenizer = byte_level
    backend.decoder = decoders.ByteLevel()
    # CONTROL (3) and USER_DEFINED (4) tokens are matched whole, never split by BPE.
    specials = [AddedToken(tokens[i], special=True, normalized=False) for i, ty in enumerate(types) if ty in (3, 4)]
    backend.add_special_tokens(specials)

    def name(key: str) -> str | None:
        i = _field(reader, key)
        return tokens[i] if i is not None and 0 <= i < len(tokens) else None

    eos = name("tokenizer.ggml.eos_token_id")
    if IM_END in vocab:
        eos = IM_END
    return Tokenizer(backend, bos_token=name("tokenizer.ggml.bos_token_id"), eos_token=eos or tokens[0],
                     pad_token=name("tokenizer.ggml.padding_token_id") or eos)


_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def load_gguf(path: str | Path, dtype: torch.dtype = torch.float32) -> tuple[Transformer, Tokenizer]:
    reader = _reader(path)
    cfg = read_config(reader)
    model = empty_model(cfg, dtype)
    load_state_dict_into(model, read_state_dict(reader, cfg), str(path))
    return model, read_tokenizer(reader)


def gguf_metadata(path: str | Path) -> dict[str, Any]:
    reader = _reader(path)
    out = {}
    for key in reader.fields:
        if key.startswith("tokenizer.ggml.") and key.split(".")[-1] in ("tokens", "merges", "token_type", "scores"):
            continue
        try:
            out[key] = _field(reader, key)
        except Exception:  # noqa: BLE001 - metadata of unknown layout is skipped, not fatal
            continue
    return json.loads(json.dumps(out, default=str))
