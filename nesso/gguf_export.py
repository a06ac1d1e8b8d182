"""Write a nesso model + tokenizer as a Llama GGUF file that llama.cpp, Ollama and LM Studio load.

Layout follows llama.cpp's own HF converter: tensor names ``token_embd``/``blk.N.*``/``output_norm``; q/k rows
permuted for llama.cpp's interleaved RoPE; no ``output.weight`` when embeddings are tied; 1-D tensors (norms) in
F32; a tensor whose rows do not split into 32-wide blocks stays F16 under Q8_0/Q4_0. Under Q4_0 the tensor that
also serves as the output head stays Q8_0: llama-quantize keeps it at higher precision too (Q6_K there, which
needs 256-wide rows that a 960-wide model does not have). The tokenizer travels as byte-level BPE
("gpt2") with its merges, token types, special ids and nesso's chat template.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nesso.config import ModelConfig
from nesso.errors import NessoError
from nesso.gguf_io import _LAYER_NAMES, _LLAMA3_SPLIT, ROPE_FREQS, ROPE_SCALING_KEY, permute_rope_rows
from nesso.model import Transformer, rope_inv_freq
from nesso.tokenizer import Tokenizer

EXPORT_TYPES = ("f16", "q8_0", "q4_0", "f32")
QUANT_BLOCK = 32  # Q8_0 and Q4_0 quantize rows in blocks of 32 values

# llama.cpp token types (gguf.TokenType)
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5


@dataclass
class GGUFVocab:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str  # tokenizer.ggml.pre: which pre-tokenizer llama.cpp applies


@dataclass
class ExportSummary:
    path: Path
    bytes: int
    tensor_types: dict[str, int]  # GGML type name -> number of tensors


# ---- tokenizer -----------------------------------------------------------------------------------

def _pre_tokenizer_name(pre: dict[str, Any] | None) -> str:
    """Name llama.cpp's pre-tokenizer that splits text exactly like this tokenizers pre-tokenizer."""
    steps = (pre.get("pretokenizers") or []) if pre and pre.get("type") == "Sequence" else ([pre] if pre else [])
    kinds = [s.get("type") for s in steps]
    if kinds == ["Split", "ByteLevel"]:
        pattern = (steps[0].get("pattern") or {}).get("Regex")
        if pattern == _LLAMA3_SPLIT and steps[0].get("behavior") == "Isolated" and not steps[1].get("use_regex"):
            return "llama-bpe"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True) and not steps[0].get("add_prefix_space"):
        return "gpt-2"
    raise NessoError(f"the tokenizer's pre-tokenizer ({' + '.join(map(str, kinds)) or 'none'}) is not one that "
                     "llama.cpp reproduces; nesso exports Llama-3 (llama-bpe), SmolLM2 (smollm) and GPT-2 "
                     "byte-level BPE tokenizers")


def gguf_vocab(tokenizer: Tokenizer, n_vocab: int) -> GGUFVocab:
    """Tokens, types and merges padded to the model's ``n_vocab`` embedding rows, as llama.cpp expects."""
    data = json.loads(tokenizer.backend.to_str())
    model = data.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise NessoError(f"GGUF export needs a byte-level BPE tokenizer (got a {model.get('type')} model); "
                         "sentencepiece-style tokenizers are not supported")
    if data.get("normalizer"):
        raise NessoError("the tokenizer has a normalizer, which llama.cpp's byte-level BPE would not apply")
    pre = _pre_tokenizer_name(data.get("pre_tokenizer"))
    by_id: dict[int, str] = {i: tok for tok, i in model["vocab"].items()}
    added = {t["id"]: t for t in data.get("added_tokens", [])}
    for i, t in added.items():
        by_id[i] = t["content"]
    top = max(by_id) + 1
    if top > n_vocab:
        raise NessoError(f"the tokenizer has ids up to {top - 1} but the model has only {n_vocab} embedding rows; "
                         "resize the embeddings or use the tokenizer the model was trained with")
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(CONTROL if added[i].get("special") else USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return GGUFVocab(tokens, types, merges, pre)


# ---- tensors -------------------------------------------------------------------------------------

_NESSO_TO_GGUF = {v: k for k, v in _LAYER_NAMES.items()}


def nesso_to_gguf_name(name: str) -> str:
    if name.startswith("layers."):
        _, layer, rest = name.split(".", 2)
        part, _, suffix = rest.rpartition(".")
        return f"blk.{layer}.{_NESSO_TO_GGUF[part]}.{suffix}"
    return {"embed_tokens.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
            "lm_head.weight": "output.weight"}[name]


def gguf_tensors(model: Transformer) -> list[tuple[str, np.ndarray]]:
    """(GGUF name, fp32 array) in llama.cpp's layout, tied head left out."""
    cfg = model.config
    out = []
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        w = t.detach().to(torch.float32).cpu().numpy()
        if name.endswith("self_attn.q_proj.weight"):
            w = permute_rope_rows(w, cfg.num_heads)
        elif name.endswith("self_attn.k_proj.weight"):
            w = permute_rope_rows(w, cfg.num_kv_heads)
        out.append((nesso_to_gguf_name(name), np.ascontiguousarray(w)))
    if cfg.rope_scaling:
        plain = rope_inv_freq(cfg.replace(rope_scaling=None))
        out.append((ROPE_FREQS, (plain / rope_inv_freq(cfg)).numpy().astype(np.float32)))
    return out


def tensor_type(name: str, shape: tuple[int, ...], export_type: str, tied: bool):
    """The GGML type llama.cpp's tools would give this tensor under ``export_type``."""
    from gguf import GGMLQuantizationType as T

    if len(shape) == 1 or export_type == "f32":
        return T.F32
    if export_type == "f16" or shape[-1] % QUANT_BLOCK:
        return T.F16
    is_head = name == "output.weight" or (tied and name == "token_embd.weight")
    if export_type == "q4_0":
        return T.Q8_0 if is_head else T.Q4_0
    return T.Q8_0


def _file_type(export_type: str) -> int:
    from gguf import LlamaFileType as F

    return {"f32": F.ALL_F32, "f16": F.MOSTLY_F16, "q8_0": F.MOSTLY_Q8_0, "q4_0": F.MOSTLY_Q4_0}[export_type]


# ---- the file ------------------------------------------------------------------------------------

def _write_metadata(w: Any, cfg: ModelConfig, tokenizer: Tokenizer, vocab: GGUFVocab, name: str,
                    export_type: str) -> None:
    import gguf

    w.add_type("model")
    w.add_name(name)
    w.add_file_type(_file_type(export_type))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_vocab_size(cfg.vocab_size)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_heads)
    w.add_head_count_kv(cfg.num_kv_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_rope_freq_base(float(cfg.rope_theta))
    w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    if cfg.rope_scaling:
        w.add_string(ROPE_SCALING_KEY, json.dumps(cfg.rope_scaling, sort_keys=True))

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(vocab.pre)
    w.add_token_list(vocab.tokens)
    w.add_token_types(vocab.types)
    w.add_token_merges(vocab.merges)
    if tokenizer.bos_id is not None:
        w.add_bos_token_id(tokenizer.bos_id)
    w.add_eos_token_id(tokenizer.eos_id)
    w.add_pad_token_id(tokenizer.pad_id)
    # The chat template carries no BOS, and ids must equal what nesso gets for the rendered string.
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)
    w.add_chat_template(tokenizer.chat_template)


def check_export_type(export_type: str) -> None:
    if export_type not in EXPORT_TYPES:
        raise NessoError(f"unknown GGUF type {export_type!r}; use one of {', '.join(EXPORT_TYPES)}")


def _is_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def export_gguf(model: Transformer, tokenizer: Tokenizer, out: str | Path, export_type: str = "f16",
                name: str = "nesso") -> ExportSummary:
    """Write ``out`` atomically (a temporary sibling renamed into place), so a failed export never leaves a
    truncated file that a runtime would try to load."""
    import gguf
    from gguf import quants

    check_export_type(export_type)
    out = Path(out).expanduser()
    if out.is_dir():
        raise NessoError(f"--out {out} is a directory; give a file name such as {out / 'model.gguf'}")
    if out.exists() and not _is_gguf(out):
        raise NessoError(f"--out {out} exists and is not a GGUF file; nesso overwrites only GGUF files: give a new "
                         "file name")
    cfg = model.config
    vocab = gguf_vocab(tokenizer, cfg.vocab_size)
    if tokenizer.eos_id is None or tokenizer.pad_id is None:
        raise NessoError("the tokenizer needs an eos and a pad token to be exported")

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as e:
        raise NessoError(f"could not write {out}: {e.strerror or e}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    counts: dict[str, int] = {}
    try:
        w = gguf.GGUFWriter(str(tmp), arch="llama")
        _write_metadata(w, cfg, tokenizer, vocab, name, export_type)
        for tname, arr in gguf_tensors(model):
            qtype = tensor_type(tname, arr.shape, export_type, cfg.tie_word_embeddings)
            data = quants.quantize(arr, qtype)
            w.add_tensor(tname, data, raw_dtype=qtype if data.dtype == np.uint8 else None)
            counts[qtype.name] = counts.get(qtype.name, 0) + 1
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, out)
    except OSError as e:
        raise NessoError(f"could not write {out}: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return ExportSummary(out, out.stat().st_size, counts)
