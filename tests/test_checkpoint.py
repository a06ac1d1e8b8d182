"""nesso <-> transformers checkpoint interop (fp32 logits within 1e-4) and clear errors on broken directories."""

import json
import shutil

import pytest
import torch

from nesso.checkpoint import load_hf, save_hf
from nesso.errors import NessoError
from nesso.loader import load_model

transformers = pytest.importorskip("transformers")


def test_nesso_saved_directory_loads_in_transformers_with_same_logits(tiny_model, tiny_dir):
    hf = transformers.AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    assert type(hf).__name__ == "LlamaForCausalLM"
    ids = torch.randint(0, 128_256, (2, 19), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (tiny_model(ids) - hf(ids).logits).abs().max().item()
    assert diff <= 1e-4


def test_transformers_saved_llama_loads_in_nesso_with_same_logits(tmp_path):
    cfg = transformers.LlamaConfig(vocab_size=512, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                                   num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=128,
                                   rope_theta=500_000.0, rms_norm_eps=1e-6, tie_word_embeddings=False)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    hf.save_pretrained(tmp_path / "hf")
    model, tok = load_hf(tmp_path / "hf")
    assert tok is None and not model.config.tie_word_embeddings and model.config.rope_theta == 500_000.0
    ids = torch.randint(0, 512, (3, 21))
    with torch.no_grad():
        diff = (model(ids) - hf(ids).logits).abs().max().item()
    assert diff <= 1e-4


def test_card_usage_snippet_runs_unmodified_on_a_nesso_directory(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.bfloat16, device_map="auto")
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Ritorna il meteo per una città",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    messages = [{"role": "system", "content": "Sei un assistente che può usare strumenti."},
                {"role": "user", "content": "Che tempo fa a Milano?"}]
    prompt = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
    outputs = model.generate(**inputs, max_new_tokens=8, do_sample=False, temperature=0.5, top_p=1.0,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
    text = tokenizer.decode(outputs[0], skip_special_tokens=False)
    assert text.startswith("<|im_start|>system\nSei un assistente")
    assert "<tools>" in text and text.count("<|im_start|>assistant\n") == 1
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == 128_003
    assert tokenizer.pad_token_id == 128_003


def test_saved_directory_has_the_hf_layout(tiny_dir):
    names = {p.name for p in tiny_dir.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json"} <= names
    cfg = json.loads((tiny_dir / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["architectures"] == ["LlamaForCausalLM"]
    assert cfg["eos_token_id"] == 128_003 and cfg["tie_word_embeddings"] is True
    tok_cfg = json.loads((tiny_dir / "tokenizer_config.json").read_text())
    assert "<tool_call>" in tok_cfg["chat_template"]


def test_save_replaces_an_existing_directory_atomically(tiny_model, llama_tokenizer, tmp_path):
    out = tmp_path / "m"
    save_hf(tiny_model, llama_tokenizer, out, dtype="bfloat16")
    save_hf(tiny_model, llama_tokenizer, out, dtype="float32")
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "float32"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary leftovers


def test_save_never_replaces_what_is_not_a_checkpoint(tiny_model, llama_tokenizer, tmp_path):
    """--out is replaced whole, so a mistyped one (a file, the home folder, a project) is refused untouched."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(NessoError, match="is not a directory"):
        save_hf(tiny_model, llama_tokenizer, notes)
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "config.json").write_text("{}")
    (project / "README.md").write_text("mine")
    with pytest.raises(NessoError, match=r"not part of a model checkpoint \(README.md, src\)"):
        save_hf(tiny_model, llama_tokenizer, project)
    assert notes.read_text() == "mine" and (project / "README.md").read_text() == "mine" and (project / "src").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "project"]  # nothing half-written
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (save_hf(tiny_model, llama_tokenizer, empty) / "model.safetensors").is_file()
    saved_by_others = tmp_path / "hf"  # what transformers writes (a BPE tokenizer's files, sharded .bin weights)
    saved_by_others.mkdir()
    for name in ("config.json", "vocab.json", "merges.txt", "pytorch_model-00001-of-00002.bin",
                 "pytorch_model.bin.index.json"):
        (saved_by_others / name).write_text("{}")
    save_hf(tiny_model, llama_tokenizer, saved_by_others)
    assert not (saved_by_others / "merges.txt").exists() and (saved_by_others / "model.safetensors").is_file()
    with pytest.raises(NessoError, match="could not write"):
        save_hf(tiny_model, llama_tokenizer, notes / "inside")


@pytest.fixture
def broken(tiny_dir, tmp_path):
    d = tmp_path / "broken"
    shutil.copytree(tiny_dir, d)
    return d


def test_missing_directory(tmp_path):
    with pytest.raises(NessoError, match="cannot find model"):
        load_model(str(tmp_path / "nope"))


def test_corrupt_safetensors(broken):
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(NessoError, match="unreadable"):
        load_hf(broken)


def test_truncated_safetensors(broken):
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(NessoError, match="unreadable"):
        load_hf(broken)


def test_config_weights_shape_mismatch(broken):
    cfg = json.loads((broken / "config.json").read_text())
    cfg["intermediate_size"] = 200
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(NessoError, match=r"mlp\.\w+_proj\.weight has shape .* config.json implies"):
        load_hf(broken)


def test_config_missing_key_and_bad_json(broken):
    cfg = json.loads((broken / "config.json").read_text())
    del cfg["hidden_size"]
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(NessoError, match="missing the key 'hidden_size'"):
        load_hf(broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(NessoError, match="not valid JSON"):
        load_hf(broken)


def test_tokenizer_vocab_smaller_than_model(broken, tmp_path):
    from nesso.gguf_io import _reader, read_tokenizer
    from nesso.loader import embedded_gguf_path

    read_tokenizer(_reader(embedded_gguf_path())).save(broken)  # 49,152 ids next to 128,256 rows
    with pytest.raises(NessoError, match="only 49152 ids but the model has 128256"):
        load_hf(broken)
