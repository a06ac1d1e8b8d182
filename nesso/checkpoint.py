"""Hugging Face Llama checkpoint directories: config.json + model.safetensors + generation_config.json + tokenizer.

The state-dict adapter is a rename: nesso's parameter names are HF's without the ``model.`` prefix.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from nesso.config import ModelConfig
from nesso.errors import NessoError
from nesso.model import Transformer, empty_model
from nesso.tokenizer import Tokenizer

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise NessoError(f"unknown dtype {name!r}; use one of {', '.join(sorted(DTYPES))}")
    return DTYPES[name]


def to_hf_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    sd = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            if not model.config.tie_word_embeddings:
                sd[name] = tensor
            continue
        sd["model." + name] = tensor
    return sd


def from_hf_state_dict(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in sd.items():
        if name.endswith("rotary_emb.inv_freq"):
            continue
        out[name.removeprefix("model.")] = tensor
    if cfg.tie_word_embeddings:
        out.pop("lm_head.weight", None)
    return out


def load_state_dict_into(model: Transformer, sd: dict[str, torch.Tensor], source: str) -> None:
    """Copy weights in, with errors that name the tensor and both shapes."""
    expected = {k: v for k, v in model.state_dict().items()
                if not (k == "lm_head.weight" and model.config.tie_word_embeddings)}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing:
        raise NessoError(f"{source} lacks {len(missing)} tensors the config needs, e.g. {missing[:3]} "
                         "(is config.json from the same model as the weights?)")
    if unexpected:
        raise NessoError(f"{source} has {len(unexpected)} tensors the config does not describe, e.g. "
                         f"{unexpected[:3]} (is config.json from the same model as the weights?)")
    for k, v in expected.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise NessoError(f"{source}: tensor {k} has shape {tuple(sd[k].shape)} but config.json implies "
                             f"{tuple(v.shape)}; the config and the weights do not belong together")
    with torch.no_grad():
        for k, v in expected.items():
            v.copy_(sd[k].to(v.dtype))


def save_hf(model: Transformer, tokenizer: Tokenizer | None, out_dir: str | Path,
            dtype: torch.dtype | str | None = None) -> Path:
    """Write a directory that transformers, vLLM and nesso load unchanged. Written to a temporary sibling and
    renamed into place so an interrupted save never leaves a half-written checkpoint."""
    out = Path(out_dir).expanduser()
    dtype = parse_dtype(dtype) if dtype is not None else model.embed_tokens.weight.dtype
    return write_dir(out, lambda tmp: _write_hf(model, tokenizer, tmp, dtype))


def _write_hf(model: Transformer, tokenizer: Tokenizer | None, tmp: Path, dtype: torch.dtype) -> None:
    from safetensors.torch import save_file

    dtype_name = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]
    cfg = model.config
    if tokenizer is not None:
        cfg = cfg.replace(eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id, bos_token_id=tokenizer.bos_id)
    sd = {k: v.detach().to("cpu", dtype).contiguous() for k, v in to_hf_state_dict(model).items()}
    save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    hf_config = cfg.to_hf(dtype_name)
    # transformers inspects this field (e.g. to rule out an old Mistral regex bug); we write its v5 layout.
    hf_config["transformers_version"] = "5.0.0"
    (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    stop = sorted(tokenizer.stop_ids) if tokenizer is not None else cfg.eos_token_id
    gen = {"bos_token_id": cfg.bos_token_id, "eos_token_id": stop, "pad_token_id": cfg.pad_token_id,
           "do_sample": False}
    (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save(tmp)


# What a model or adapter directory holds (nesso's files, and those transformers and PEFT write: sharded weights,
# other tokenizer formats); anything else in an existing output directory means it is not one, and it is left alone.
MODEL_FILES = {"config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
               "pytorch_model.bin", "pytorch_model.bin.index.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "chat_template.jinja", "vocab.json", "merges.txt", "tokenizer.model",
               "added_tokens.json", "adapter_config.json", "adapter_model.safetensors"}


def is_model_file(name: str) -> bool:
    shard = name.startswith(("model-", "pytorch_model-")) and name.endswith((".safetensors", ".bin"))
    return name in MODEL_FILES or shard


def check_replaceable(out: Path, what: str = "a model checkpoint") -> None:
    """A directory nesso writes replaces ``out`` whole; refuse where ``out`` is a file, or a directory holding
    anything but model files (a mistyped --out such as the home folder must never be deleted)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise NessoError(f"{out} exists and is not a directory; {what} is a directory: give a new path")
    foreign = sorted(p.name for p in out.iterdir() if not is_model_file(p.name))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise NessoError(f"{out} already holds files that are not part of {what} ({shown}); it would be replaced "
                         "whole, so give a new or empty directory")


def write_dir(out: Path, write: Callable[[Path], None], what: str = "a model checkpoint") -> Path:
    """Have ``write`` fill a private directory next to ``out`` (same file system), then put it at ``out``, so an
    interrupted write never leaves a half-written one; an earlier ``out`` (see check_replaceable) is deleted only
    after the new one is in place. OS errors become one-line errors."""
    check_replaceable(out, what)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as e:
        raise NessoError(f"could not write {out}: {e.strerror or e}") from None
    try:
        write(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            try:
                os.replace(out, old)  # onto an empty directory: allowed by rename(2)
            except OSError:
                old.rmdir()
                raise
            os.replace(tmp, out)
            _rmtree(old)
        else:
            os.replace(tmp, out)
    except OSError as e:
        raise NessoError(f"could not write {out}: {e.strerror or e}") from None
    finally:
        _rmtree(tmp)
    return out


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def read_hf_config(directory: Path) -> ModelConfig:
    path = directory / "config.json"
    if not path.is_file():
        raise NessoError(f"{directory} has no config.json; a model directory needs config.json and "
                         "model.safetensors (write one with `nesso export hf`)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise NessoError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise NessoError(f"{path} must hold a JSON object")
    return ModelConfig.from_hf(raw)


def read_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    try:
        if single.is_file():
            return load_file(str(single))
        if index.is_file():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            sd: dict[str, torch.Tensor] = {}
            for f in files:
                sd.update(load_file(str(directory / f)))
            return sd
    except (SafetensorError, OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise NessoError(f"the weights in {directory} are unreadable (corrupt or truncated safetensors?): {e}") from None
    raise NessoError(f"{directory} has no model.safetensors (nor a sharded index); nesso reads safetensors only")


def load_hf(directory: str | Path, dtype: torch.dtype | str = torch.float32,
            device: str = "cpu") -> tuple[Transformer, Tokenizer | None]:
    d = Path(directory)
    if not d.is_dir():
        raise NessoError(f"model directory {d} does not exist")
    cfg = read_hf_config(d)
    sd = from_hf_state_dict(read_safetensors(d), cfg)
    model = empty_model(cfg, parse_dtype(dtype), device)
    load_state_dict_into(model, sd, str(d))
    tokenizer = Tokenizer.load(d) if (d / "tokenizer.json").is_file() else None
    check_vocab(cfg, tokenizer, str(d))
    return model, tokenizer


def check_vocab(cfg: ModelConfig, tokenizer: Tokenizer | None, source: str) -> None:
    if tokenizer is None:
        return
    if tokenizer.vocab_size > cfg.vocab_size:
        raise NessoError(f"{source}: the tokenizer has {tokenizer.vocab_size} ids but the model only "
                         f"{cfg.vocab_size} embedding rows; use the tokenizer the model was trained with")
    # Embedding tables are often padded past the tokenizer (to a multiple of 64/128); far more rows than
    # ids means the tokenizer belongs to another model.
    if tokenizer.vocab_size < cfg.vocab_size - 1024:
        raise NessoError(f"{source}: the tokenizer has only {tokenizer.vocab_size} ids but the model has "
                         f"{cfg.vocab_size} embedding rows; the tokenizer is from a different model")
