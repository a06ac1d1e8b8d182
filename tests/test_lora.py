"""LoRA: only the adapters train, PEFT file layout and loading by PEFT itself, save/load round trip, merging, and
adapter directories as model references."""

from __future__ import annotations

import json

import pytest
import torch
from test_sft_support import chat_tokenizer, tiny_chat_config

from nesso.checkpoint import save_hf
from nesso.errors import NessoError
from nesso.lora import (
    TARGETS,
    LoraConfig,
    add_lora,
    freeze_base,
    load_adapter,
    merge_lora,
    read_adapter_weights,
    save_adapter,
)
from nesso.model import build_model
from nesso.schedules import Schedule, ScheduleConfig
from nesso.sft import StepBatches, collate, tokenize_rows
from nesso.train import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return save_hf(build_model(tiny_chat_config(), seed=11), chat_tokenizer(), tmp_path_factory.mktemp("lora") / "base",
                   dtype="float32")


def trained_adapter(model, seed=0, r=4, alpha=8.0):
    """Attach an adapter with random (non-zero) B, as after training."""
    add_lora(model, LoraConfig(r=r, alpha=alpha), seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


IDS = torch.tensor([[5, 17, 200, 33, 480, 2, 9, 77, 300, 12]])


def test_only_adapter_parameters_train(tmp_path):
    tok = chat_tokenizer()
    from nesso.agentic_data import generate

    samples, _ = tokenize_rows(tok, generate(10, 0)["train"][:2], 4096)
    model = build_model(tiny_chat_config(), seed=1)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    add_lora(model, LoraConfig(r=4, alpha=8), seed=0)
    with torch.no_grad():
        assert torch.equal(model(IDS), build_model(tiny_chat_config(), seed=1)(IDS))  # B = 0: unchanged at start
    trainable, total = freeze_base(model)
    assert trainable == sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) < total / 10
    cfg = TrainConfig(seq_len=4096, micro_batch=1, grad_accum=1, steps=4, lr=1e-2, dtype="fp32", device="cpu",
                      weight_decay=0.1, log_every=10, ckpt_every=100, out_dir=str(tmp_path), export_hf=False)
    trainer = Trainer(model, cfg, Schedule(ScheduleConfig(name="constant"), cfg.lr, 4), tmp_path,
                      show_progress=False)
    trainer.fit(StepBatches(2, lambda items: collate(samples, [[i] for i in items], tok.pad_id), 1, 1))
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in base.items())  # base weights untouched (even with decay)
    assert all(after[k].abs().sum() > 0 for k in after if ".lora_B." in k)  # the adapters learned
    assert {k.rsplit(".", 3)[1] for k in after if ".lora_A." in k} == set(TARGETS)


def test_adapter_files_use_peft_layout_and_round_trip(tmp_path, base_dir):
    model = trained_adapter(build_model(tiny_chat_config(), seed=11))
    out = save_adapter(model, tmp_path / "adapter", model.lora_config, base=str(base_dir))
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    assert (config["r"], config["lora_alpha"], config["base_model_name_or_path"]) == (4, 8, str(base_dir))
    assert config["target_modules"] == list(TARGETS)
    from safetensors import safe_open

    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        keys = set(f.keys())
        assert f.get_tensor("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight").shape == (64, 4)
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in keys
    assert len(keys) == 2 * len(TARGETS) * 2  # A and B, 7 projections, 2 layers
    assert set(read_adapter_weights(out)) == {k for k in model.state_dict() if "lora_" in k}

    assert save_adapter(model, out, model.lora_config, base=str(base_dir)) == out  # an adapter is replaced
    (out / "mine.txt").write_text("mine")
    with pytest.raises(NessoError, match=r"not part of a LoRA adapter \(mine.txt\)"):
        save_adapter(model, out, model.lora_config, base=str(base_dir))
    (out / "mine.txt").unlink()

    fresh = build_model(tiny_chat_config(), seed=11)
    load_adapter(fresh, out)
    with torch.no_grad():
        assert torch.equal(fresh(IDS), model(IDS))
        unmerged = model(IDS)
        merge_lora(model)
        assert not any("lora_" in k for k in model.state_dict())
        assert torch.allclose(model(IDS), unmerged, atol=1e-5)


def test_load_model_resolves_an_adapter_directory_onto_its_base(tmp_path, base_dir):
    from nesso.loader import load_model

    model = trained_adapter(build_model(tiny_chat_config(), seed=11), seed=3)
    save_adapter(model, tmp_path / "adapter", model.lora_config, base=str(base_dir))
    loaded = load_model(str(tmp_path / "adapter"))
    assert "LoRA adapter" in loaded.source and loaded.tokenizer.eos_token == "<|im_end|>"
    with torch.no_grad():
        assert torch.allclose(loaded.model(IDS), model(IDS), atol=1e-5)
    assert not any("lora_" in k for k in loaded.model.state_dict())  # merged for inference


def test_peft_loads_the_adapter_onto_transformers_with_the_same_logits(tmp_path, base_dir):
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    model = trained_adapter(build_model(tiny_chat_config(), seed=11), seed=7, r=8, alpha=16.0)
    out = save_adapter(model, tmp_path / "adapter", model.lora_config, base=str(base_dir))
    hf = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    peft_model = peft.PeftModel.from_pretrained(hf, str(out)).eval()
    with torch.no_grad():
        theirs = peft_model(input_ids=IDS).logits
        ours = model(IDS)
    assert torch.allclose(theirs, ours, atol=1e-4), (theirs - ours).abs().max()
    with torch.no_grad():
        base_logits = build_model(tiny_chat_config(), seed=11)(IDS)
    assert not torch.allclose(ours, base_logits, atol=1e-3)  # the adapter matters


def test_bad_adapters_are_clear_errors(tmp_path, base_dir):
    model = trained_adapter(build_model(tiny_chat_config(), seed=11))
    out = save_adapter(model, tmp_path / "adapter", model.lora_config, base=str(base_dir))
    other = build_model(tiny_chat_config().replace(hidden_size=32, num_heads=2, num_kv_heads=1, head_dim=16,
                                                   intermediate_size=64), seed=0)
    with pytest.raises(NessoError, match="belongs to another base model"):
        load_adapter(other, out)
    assert not any("lora_" in k for k in other.state_dict())  # left as it was
    config = json.loads((out / "adapter_config.json").read_text())
    for change, message in (({"peft_type": "IA3"}, "LoRA adapters only"), ({"use_dora": True}, "use_dora"),
                            ({"target_modules": "q_proj|v_proj"}, "pattern"), ({"r": 0}, "positive"),
                            ({"target_modules": ["embed_tokens"]}, "not a projection")):
        (out / "adapter_config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(NessoError, match=message):
            load_adapter(build_model(tiny_chat_config(), seed=11), out)
    (out / "adapter_config.json").write_text(json.dumps({**config, "r": 8}))
    with pytest.raises(NessoError, match="another base model|shape"):
        load_adapter(build_model(tiny_chat_config(), seed=11), out)
    (out / "adapter_config.json").write_text("{broken")
    with pytest.raises(NessoError, match="not valid JSON"):
        load_adapter(build_model(tiny_chat_config(), seed=11), out)
    (out / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": ""}))
    from nesso.loader import load_model

    with pytest.raises(NessoError, match="base_model_name_or_path"):
        load_model(str(out))
    with pytest.raises(NessoError, match="already has LoRA"):
        add_lora(model, LoraConfig())
