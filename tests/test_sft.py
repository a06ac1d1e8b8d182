"""SFT: assistant-only labels, first-fit-decreasing packing without attention across samples, the epoch stream,
bad input, and `nesso sft` end to end (LoRA) on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_sft_support import chat_tokenizer, tiny_chat_config

from nesso.agentic_data import generate
from nesso.cli import main
from nesso.errors import NessoError
from nesso.model import build_model
from nesso.schedules import Schedule, ScheduleConfig
from nesso.sft import (
    PostRecipe,
    StepBatches,
    collate,
    load_rows,
    pack_ffd,
    tokenize_row,
    tokenize_rows,
)
from nesso.train import IGNORE_INDEX, TrainConfig, Trainer, causal_lm_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def labelled_runs(sample) -> list[list[int]]:
    """The label ids of each contiguous labelled stretch."""
    runs, current = [], []
    for lab in sample.labels.tolist():
        if lab == IGNORE_INDEX:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(lab)
    return runs + ([current] if current else [])


GOLDEN = [
    {"role": "system", "content": "You are Nesso."},
    {"role": "user", "content": "Weather in Rome?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Roma\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"temp_c\": 21}"},
    {"role": "assistant", "content": "It is 21 °C in Rome."},
    {"role": "user", "content": "Grazie!"},
    {"role": "assistant", "content": "Prego!"},
]
GOLDEN_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                                                   "parameters": {"type": "object",
                                                                  "properties": {"city": {"type": "string"}},
                                                                  "required": ["city"]}}}]


def test_labels_cover_exactly_the_assistant_turns_and_their_im_end(llama_tokenizer):
    tok = llama_tokenizer
    s = tokenize_row(tok, GOLDEN, GOLDEN_TOOLS)
    full = tok.encode(tok.apply_chat_template(GOLDEN, GOLDEN_TOOLS))
    assert s.input_ids.tolist() == full[:-1]
    runs = [tok.decode(r) for r in labelled_runs(s)]
    assert runs == [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Roma"}}\n</tool_call><|im_end|>',
        "It is 21 °C in Rome.<|im_end|>",
        "Prego!<|im_end|>",
    ]
    # next-token labels: position t predicts token t+1
    labelled = np.flatnonzero(s.labels != IGNORE_INDEX)
    assert all(s.labels[t] == full[t + 1] for t in labelled)
    # nothing of the system/user/tool turns, nor the "<|im_start|>assistant\n" headers, is trained
    assert tok.decode([full[t + 1] for t in labelled]).count("<|im_start|>") == 0


def test_first_fit_decreasing_packs_every_item_once_within_capacity():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 100, size=300).tolist()
    bins = pack_ffd(lengths, 100)
    assert sorted(i for b in bins for i in b) == list(range(300))
    assert all(sum(lengths[i] for i in b) <= 100 for b in bins)
    assert len(bins) <= int(11 / 9 * np.ceil(sum(lengths) / 100)) + 1  # FFD's worst-case bound
    assert pack_ffd([60, 50, 40, 30], 100) == [[0, 2], [1, 3]]  # first fit, longest first
    with pytest.raises(NessoError):
        pack_ffd([101], 100)


def test_packed_and_unpacked_batches_give_the_same_loss():
    tok = chat_tokenizer()
    rows = generate(12, 3)["train"][:5]
    samples, _ = tokenize_rows(tok, rows, 4096)
    model = build_model(tiny_chat_config(), seed=2).eval()
    bins = pack_ffd([len(s.input_ids) for s in samples], 4096)
    assert any(len(b) > 1 for b in bins)
    with torch.no_grad():
        packed = sum(float(causal_lm_loss(model, collate(samples, [b], tok.pad_id))) for b in bins)
        two_rows = float(causal_lm_loss(model, collate(samples, bins[:2], tok.pad_id)))  # padded micro-batch
        alone = [float(causal_lm_loss(model, collate(samples, [[i]], tok.pad_id))) for i in range(len(samples))]
        two_alone = sum(alone[i] for b in bins[:2] for i in b)
    tokens = sum(int((s.labels != IGNORE_INDEX).sum()) for s in samples)
    assert packed / tokens == pytest.approx(sum(alone) / tokens, abs=1e-5)
    assert two_rows == pytest.approx(two_alone, rel=1e-5)
    batch = collate(samples, [bins[0]], tok.pad_id)
    starts = np.flatnonzero(batch["positions"][0].numpy() == 0)
    assert len(starts) == len(bins[0]) and "doc_ids" in batch  # positions restart for every packed sample


def test_step_batches_cover_each_item_once_per_epoch_and_resume_exactly():
    seen = []
    stream = StepBatches(10, lambda items: {"items": items}, micro=2, accum=1, seed=4)
    it = iter(stream)
    for _ in range(10):  # 2 epochs of 5 steps
        seen += next(it)[0]["items"]
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert seen[:10] != seen[10:]  # reshuffled
    ranks = [StepBatches(10, lambda items: {"items": items}, micro=1, accum=2, rank=r, world=2, seed=4)
             for r in range(2)]
    first = [i for s in ranks for b in s.batches_for(0) for i in b["items"]]
    assert first == seen[:4]  # ranks split one global step
    again = StepBatches(10, lambda items: {"items": items}, micro=2, accum=1, seed=4)
    again.load_state_dict({"step": 7, "items": 10})
    assert next(iter(again))[0]["items"] == seen[14:16]
    with pytest.raises(NessoError, match="--fresh"):
        again.load_state_dict({"step": 1, "items": 11})


def test_full_fine_tuning_on_a_few_rows_drives_the_loss_down(tmp_path):
    tok = chat_tokenizer()
    samples, _ = tokenize_rows(tok, generate(10, 1)["train"][:3], 4096)
    bins = pack_ffd([len(s.input_ids) for s in samples], 4096)
    model = build_model(tiny_chat_config(), seed=3)
    cfg = TrainConfig(seq_len=4096, micro_batch=1, grad_accum=len(bins), steps=10, lr=2e-2, dtype="fp32",
                      device="cpu", log_every=5, ckpt_every=1000, out_dir=str(tmp_path), export_hf=False)
    sched = Schedule(ScheduleConfig(name="cosine", constant_ratio=0.8, min_ratio=0.3), cfg.lr, cfg.steps)
    trainer = Trainer(model, cfg, sched, tmp_path, tokenizer=tok, show_progress=False)
    stream = StepBatches(len(bins), lambda items: collate(samples, [bins[i] for i in items], tok.pad_id), 1,
                         len(bins), seed=0)
    records = trainer.fit(stream)
    first, last = records[0]["loss"], records[-1]["loss"]
    assert first > 5.5  # ~ln(512) at random init
    assert last < first - 1.0


def test_bad_data_is_a_clear_error(tmp_path, llama_tokenizer):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": GOLDEN}) + "\n{not json\n")
    with pytest.raises(NessoError, match=r"bad.jsonl:2: not valid JSON"):
        load_rows(str(bad))
    bad.write_text(json.dumps({"messages": [{"role": "wizard", "content": "hi"}]}) + "\n")
    with pytest.raises(NessoError, match=r"bad.jsonl:1: .*unknown role"):
        tokenize_rows(llama_tokenizer, load_rows(str(bad)), 4096)
    bad.write_text(json.dumps({"conversation": []}) + "\n")
    with pytest.raises(NessoError, match="messages"):
        tokenize_rows(llama_tokenizer, load_rows(str(bad)), 4096)
    for spec in ("agentic:ten:0", "agentic:10", "agentic:10:0:dev", str(tmp_path / "missing.jsonl")):
        with pytest.raises(NessoError):
            load_rows(spec)
    with pytest.raises(NessoError, match="longer than train.seq_len"):
        tokenize_rows(llama_tokenizer, [{"messages": GOLDEN, "tools": GOLDEN_TOOLS}], 16)
    assert len(load_rows("agentic:10:0")) == 8 and len(load_rows("agentic:10:0:heldout")) == 2


RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def test_recipes_parse_and_reject_unknown_keys(tmp_path):
    card = PostRecipe.load(RECIPES / "nesso-0.4b-agentic-sft.yaml")
    assert (card.train.lr, card.train.micro_batch, card.train.grad_accum, card.train.seq_len) == (1e-3, 1, 8, 4096)
    assert (card.schedule.name, card.schedule.constant_ratio, card.schedule.min_ratio) == ("cosine", 0.8, 0.3)
    assert (card.epochs, card.train.grad_clip, card.train.dtype, card.lora) == (3.0, 1.0, "bf16", None)
    cpu_recipe = RECIPES / "smollm2-135m-agentic-lora-cpu.yaml"
    cpu = PostRecipe.load(cpu_recipe)
    assert cpu.model == "smollm2-135m-instruct" and cpu.lora is not None and cpu.train.device == "cpu"
    shipped = PostRecipe.load(RECIPES / "nesso-smollm2-agentic.yaml")  # the recipe of the embedded adapter
    assert shipped.model == "smollm2-135m-instruct" and shipped.lora is not None and shipped.epochs == 1.0
    shipped_cpu = PostRecipe.load(RECIPES / "nesso-smollm2-agentic-shipped-cpu.yaml")  # lists two data sources
    assert shipped_cpu.lora_init == "nesso/models/nesso-smollm2-agentic" and shipped_cpu.lora.r == 16
    assert shipped_cpu.data.get("train", list) == ["agentic:300:1", "agentic:300:0:shipped"]
    with pytest.raises(NessoError, match="unknown key 'rank'"):
        PostRecipe.load(cpu_recipe, ["lora.rank=8"])
    with pytest.raises(NessoError, match="target_modules"):
        PostRecipe.load(cpu_recipe, ["lora.target_modules=[embed_tokens]"])
    with pytest.raises(NessoError, match="epochs"):
        PostRecipe.load(cpu_recipe, ["train.epochs=0"])


def test_nesso_sft_lora_end_to_end(tmp_path, capsys):
    from nesso.checkpoint import save_hf
    from nesso.loader import load_model

    tok = chat_tokenizer()
    base = save_hf(build_model(tiny_chat_config(), seed=5), tok, tmp_path / "base", dtype="float32")
    recipe = tmp_path / "sft.yaml"
    recipe.write_text(f"""
name: tiny-sft
seed: 1
model: {base}
data:
  train: agentic:10:2
  max_rows: 4
lora: {{r: 8, alpha: 16, dropout: 0.0}}
train:
  epochs: 6
  seq_len: 2048
  micro_batch: 1
  grad_accum: 1
  lr: 5.0e-2
  dtype: fp32
  device: cpu
  log_every: 1
  ckpt_every: 6
  export_dtype: float32
schedule: {{name: cosine, constant_ratio: 0.8, min_ratio: 0.3, warmup_steps: 1}}
""")
    out = tmp_path / "run"
    assert main(["sft", str(recipe), "--out", str(out), "--export-hf", str(tmp_path / "merged")]) == 0
    text = capsys.readouterr().out
    assert "3 of 4 rows (1 longer than 2048 dropped)" in text and "trainable of" in text
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 12 and all(np.isfinite(r["loss"]) for r in log)  # 6 epochs of 2 packed sequences
    assert sorted(p.name for p in (out / "final").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert (out / "checkpoints" / "step_00000006" / "hf" / "adapter_config.json").is_file()
    assert json.loads((out / "final" / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base)
    # the adapter loads onto its base through the ordinary loader, merged, equals the merged export, and fits the
    # training rows better than the base (a LoRA on a random base learns slowly, but it learns)
    ids = torch.tensor([tok.encode("<|im_start|>user\nciao<|im_end|>")])
    samples, rep = tokenize_rows(tok, load_rows("agentic:10:2", 4), 2048)

    def loss_of(model):
        with torch.no_grad():
            return sum(float(causal_lm_loss(model, collate(samples, [[i]], tok.pad_id)))
                       for i in range(len(samples))) / rep.target_tokens

    adapted, merged, plain = (load_model(str(p)).model for p in (out / "final", tmp_path / "merged", base))
    with torch.no_grad():
        assert torch.allclose(adapted(ids), merged(ids), atol=1e-5)
    assert loss_of(adapted) < loss_of(plain) - 0.1
    # a second call resumes from the last checkpoint: nothing left to train
    assert main(["sft", str(recipe), "--out", str(out)]) == 0
    assert "resuming at step" in capsys.readouterr().out
    # lora.init: a new run starts from this adapter's weights (same r, alpha and targets, or a clear error)
    from nesso.lora import lora_state_dict, read_adapter_weights
    from nesso.sft import load_start_model

    text = recipe.read_text()
    again = tmp_path / "again.yaml"
    again.write_text(text.replace("lora: {r: 8, alpha: 16, dropout: 0.0}",
                                  f"lora: {{r: 8, alpha: 16, dropout: 0.0, init: {out / 'final'}}}"))
    _, model = load_start_model(PostRecipe.load(again), 2048, lambda _: None)
    saved = read_adapter_weights(out / "final")
    started = lora_state_dict(model)
    assert started and all(torch.equal(v, saved[k]) for k, v in started.items())
    assert all(p.requires_grad == (k in started) for k, p in model.named_parameters())
    again.write_text(text.replace("lora: {r: 8, alpha: 16, dropout: 0.0}",
                                  f"lora: {{r: 8, alpha: 16, dropout: 0.2, init: {out / 'final'}}}"))
    _, model = load_start_model(PostRecipe.load(again), 2048, lambda _: None)
    assert model.lora_config.dropout == 0.2  # the recipe's training settings, the adapter's weights
    again.write_text(text.replace("lora: {r: 8, alpha: 16, dropout: 0.0}",
                                  f"lora: {{r: 4, alpha: 16, dropout: 0.0, init: {out / 'final'}}}"))
    with pytest.raises(NessoError, match="r=8"):
        load_start_model(PostRecipe.load(again), 2048, lambda _: None)
    # --data replaces the recipe's data.train (which is still a known key)
    assert main(["sft", str(recipe), "--data", "agentic:10:3", "--set", "train.epochs=1", "--out",
                 str(tmp_path / "other"), "--fresh"]) == 0
    assert "of 4 rows" in capsys.readouterr().out
    # a bad data source is refused before a run folder exists or a model is loaded
    assert main(["sft", str(recipe), "--data", "agentic:10:3:synthetc", "--out", str(tmp_path / "typo")]) == 2
    captured = capsys.readouterr()
    assert "agentic:N:SEED:synthetic" in captured.err and "LoRA" not in captured.out
    assert not (tmp_path / "typo").exists()
    # an --export-hf that is not a model directory is refused before the training, and left as it was
    assert main(["sft", str(recipe), "--out", str(tmp_path / "third"), "--export-hf", str(recipe)]) == 2
    captured = capsys.readouterr()
    assert "is not a directory" in captured.err and not (tmp_path / "third").exists() and recipe.read_text() == text
