"""Helpers shared by the SFT, LoRA and DPO tests (no tests here): a small ChatML BPE tokenizer trained on rendered
agentic rows, so that tiny models train in milliseconds per step, and a tiny model on its 512-id vocabulary."""

from __future__ import annotations

import functools

from nesso.config import ModelConfig

VOCAB = 512


@functools.lru_cache(maxsize=1)
def chat_tokenizer():
    from tokenizers import Tokenizer as Backend
    from tokenizers import decoders, models, pre_tokenizers, trainers

    from nesso.agentic_data import generate
    from nesso.tokenizer import CHAT_TEMPLATE, Tokenizer, render_chat

    rows = generate(30, 0)["train"]
    texts = [render_chat(CHAT_TEMPLATE, r["messages"], r["tools"]) for r in rows]
    backend = Backend(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer)
    return Tokenizer(backend, bos_token=None, eos_token="<|im_end|>")


def tiny_chat_config(layers: int = 2) -> ModelConfig:
    im_end = chat_tokenizer().eos_id
    return ModelConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_layers=layers, num_heads=4,
                       num_kv_heads=2, head_dim=16, max_position_embeddings=4096, bos_token_id=None,
                       eos_token_id=im_end, pad_token_id=im_end)


def write_recipe(path, text: str):
    path.write_text(text)
    return path
