"""DPO: preference pairs from the agentic rows (each kind really is a mistake), completion-only labels, the sigmoid
loss on precomputed reference log-probabilities, and `nesso data pairs` / `nesso dpo` end to end."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from test_sft_support import chat_tokenizer, tiny_chat_config

from nesso.agentic_data import generate
from nesso.cli import main
from nesso.dpo import (
    KINDS,
    DPOLoss,
    DPOTrainer,
    collate_pairs,
    completion_tokens,
    load_pairs,
    make_pairs,
    reference_logps,
    sequence_logps,
    tokenize_pairs,
)
from nesso.errors import NessoError
from nesso.fc_check import check_calls, ground_truth_from_calls
from nesso.model import build_model
from nesso.schedules import Schedule, ScheduleConfig
from nesso.sft import PostRecipe, StepBatches
from nesso.train import IGNORE_INDEX, TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def rows():
    return generate(200, 0)["train"]


def test_pairs_cover_every_kind_and_each_rejected_turn_is_a_real_mistake(rows):
    pairs, skipped = make_pairs(rows, seed=0)
    assert skipped == 0 and len(pairs) == len(rows)
    kinds = Counter(p["kind"] for p in pairs)
    assert set(kinds) == set(KINDS) and min(kinds.values()) >= 5
    assert make_pairs(rows[:20], seed=0)[0] == pairs[:20]  # deterministic per row
    assert make_pairs(rows[:20], seed=1)[0] != pairs[:20]
    by_id = {r["id"]: r for r in rows}
    for p in pairs:
        chosen, rejected = p["chosen"][0], p["rejected"][0]
        row = by_id[p["id"].rsplit("-t", 1)[0]]
        turn = int(p["id"].rsplit("-t", 1)[1])
        assert p["prompt"] == row["messages"][:turn] and chosen == row["messages"][turn]
        assert rejected["role"] == "assistant" and rejected != chosen
        truth = ground_truth_from_calls(chosen.get("tool_calls") or [], p["tools"])
        assert check_calls(chosen.get("tool_calls") or [], truth, p["tools"]).passed
        if p["kind"] == "invalid_json":
            try:
                obj = json.loads(rejected["content"])
            except json.JSONDecodeError:
                continue  # wrapped in prose: not the bare JSON object the schema asks for
            assert set(obj) < set(json.loads(chosen["content"]))  # a field is missing
        else:  # the AST checker (BFCL rules) rejects the rejected turn against the chosen one
            assert not check_calls(rejected.get("tool_calls") or [], truth, p["tools"]).passed, p
        if p["kind"] == "needless_call":
            assert not chosen.get("tool_calls") and rejected.get("tool_calls")
        if p["kind"] == "prose_instead_of_call":
            assert chosen.get("tool_calls") and not rejected.get("tool_calls")
        if p["kind"] == "wrong_tool":
            names = {t["function"]["name"] for t in p["tools"]}
            assert {c["function"]["name"] for c in rejected["tool_calls"]} <= names


def test_completion_labels_cover_only_the_final_assistant_turn(llama_tokenizer, rows):
    row = next(r for r in rows if r["category"] == "multi_step")
    messages = row["messages"]
    ids, labels = completion_tokens(llama_tokenizer, messages, row["tools"], "row")
    runs = [i for i, lab in enumerate(labels.tolist()) if lab != IGNORE_INDEX]
    assert runs == list(range(runs[0], runs[-1] + 1))  # one stretch
    text = llama_tokenizer.decode([int(labels[i]) for i in runs])
    assert text == messages[-1]["content"] + "<|im_end|>"


def test_sequence_logps_match_a_plain_log_softmax(rows):
    tok = chat_tokenizer()
    pairs, _ = make_pairs(rows[:3], seed=0)
    tokens, _ = tokenize_pairs(tok, pairs, 4096)
    model = build_model(tiny_chat_config(), seed=0)
    batch = collate_pairs(tokens, [0, 1, 2], tok.pad_id)
    with torch.no_grad():
        got = sequence_logps(model, batch)
        logp = torch.log_softmax(model(batch["input_ids"]).float(), -1)
    labels = batch["labels"]
    want = torch.where(labels != IGNORE_INDEX, logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1), 0.0)
    assert torch.allclose(got, want.sum(-1), atol=1e-4)
    assert batch["num_loss_tokens"] == 3 and batch["input_ids"].shape[0] == 6


def test_dpo_on_a_tiny_set_learns_the_preferences(tmp_path, rows):
    tok = chat_tokenizer()
    pairs, _ = make_pairs(rows, seed=0)
    tokens, _ = tokenize_pairs(tok, pairs, 4096)
    size = [len(t.chosen) + len(t.rejected) for t in tokens]
    picked = [min((i for i, p in enumerate(pairs) if p["kind"] == kind), key=size.__getitem__) for kind in KINDS]
    tokens = [tokens[i] for i in picked]  # the shortest pair of each kind: 6 pairs
    model = build_model(tiny_chat_config(), seed=4)
    cfg = TrainConfig(seq_len=4096, micro_batch=3, grad_accum=2, steps=8, lr=3e-3, dtype="fp32", device="cpu",
                      log_every=1, ckpt_every=1000, out_dir=str(tmp_path), export_hf=False)
    loss = DPOLoss(beta=0.1)
    trainer = DPOTrainer(model, cfg, Schedule(ScheduleConfig(name="constant"), cfg.lr, cfg.steps), tmp_path,
                         tokenizer=tok, dpo_loss=loss, show_progress=False)
    ref = reference_logps(trainer, tokens, tok.pad_id, micro=3)
    stream = StepBatches(len(tokens), lambda items: collate_pairs(tokens, items, tok.pad_id, ref), 3, 2, seed=0)
    records = trainer.fit(stream)
    assert records[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at the start: −log σ(0)
    assert records[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-4)
    assert records[-1]["rewards/accuracies"] > 0.9
    assert records[-1]["loss"] < 0.5
    after = reference_logps(trainer, tokens, tok.pad_id, micro=3)
    assert ((after[:, 0] - ref[:, 0]) > (after[:, 1] - ref[:, 1])).float().mean() > 0.9
    assert (after[:, 0] - ref[:, 0]).mean() > 0  # the chosen log-ratio grew
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"} <= set(log[-1])


def test_bad_pairs_are_clear_errors(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"prompt": [{"role": "user", "content": "hi"}], "chosen": "Hello!",
                             "rejected": [{"role": "user", "content": "no"}]}) + "\n")
    with pytest.raises(NessoError, match=r"pairs.jsonl:1: 'rejected' must be one assistant message"):
        load_pairs(str(f))
    f.write_text(json.dumps({"text": "hello"}) + "\n")
    with pytest.raises(NessoError, match="neither 'chosen'"):
        load_pairs(str(f))
    f.write_text(json.dumps({"prompt": [], "chosen": "a", "rejected": "b"}) + "\n")
    with pytest.raises(NessoError, match="'prompt' must be a non-empty list"):
        load_pairs(str(f))
    with pytest.raises(NessoError, match="beta"):
        DPOLoss(beta=0)


def test_nesso_data_pairs_and_nesso_dpo_end_to_end(tmp_path, capsys):
    from nesso.checkpoint import save_hf

    tok = chat_tokenizer()
    base = save_hf(build_model(tiny_chat_config(), seed=6), tok, tmp_path / "base", dtype="float32")
    pairs_file = tmp_path / "pairs.jsonl"
    assert main(["data", "pairs", "agentic:12:5", "--out", str(pairs_file)]) == 0
    assert "wrote 10 pairs" in capsys.readouterr().out  # the train split: 12 − round(0.2 × 12) = 10 rows
    assert main(["data", "pairs", "agentic:12:5", "--out", str(pairs_file)]) == 2  # refuses to overwrite
    assert "--force" in capsys.readouterr().err
    recipe = tmp_path / "dpo.yaml"
    recipe.write_text(f"""
name: tiny-dpo
model: {base}
data: {{pairs: {pairs_file}, max_pairs: 4}}
dpo: {{beta: 0.1}}
lora: {{r: 8, alpha: 16}}
train: {{epochs: 2, seq_len: 4096, micro_batch: 2, grad_accum: 1, lr: 2.0e-2, dtype: fp32, device: cpu,
         log_every: 1, ckpt_every: 100}}
schedule: {{name: constant}}
""")
    out = tmp_path / "run"
    assert main(["dpo", str(recipe), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "scoring 4 pairs with the reference" in text and "reward accuracy" in text
    assert (out / "reference_logps.pt").is_file() and (out / "final" / "adapter_config.json").is_file()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and log[-1]["rewards/margins"] > log[0]["rewards/margins"]
    # a fresh start reuses the cached reference log-probabilities of the same model and pairs
    assert main(["dpo", str(recipe), "--out", str(out), "--fresh", "--set", "train.steps=1"]) == 0
    assert "reference log-probabilities from" in capsys.readouterr().out
    assert main(["dpo", str(recipe), "--out", str(out), "--set", "dpo.gamma=1"]) == 2
    assert "unknown key 'gamma'" in capsys.readouterr().err
    # --pairs replaces the recipe's data.pairs (which is still a known key)
    assert main(["dpo", str(recipe), "--pairs", "agentic:6:7", "--out", str(tmp_path / "other"),
                 "--set", "train.steps=1"]) == 0
    assert "built from" in capsys.readouterr().out


def test_dpo_recipes_parse():
    recipes = Path(__file__).resolve().parent.parent / "recipes"
    cpu = PostRecipe.load(recipes / "smollm2-135m-agentic-dpo-cpu.yaml", extra_sections=("dpo",))
    assert cpu.model == "runs/smollm2-135m-agentic-lora-cpu/final" and cpu.lora is not None
    assert cpu.extra["dpo"].get("beta", float) == 0.1 and cpu.data.get("pairs", str).startswith("agentic:")
    shipped = PostRecipe.load(recipes / "nesso-smollm2-agentic-dpo-cpu.yaml", extra_sections=("dpo",))
    assert shipped.model == "default" and shipped.lora is not None and shipped.train.device == "cpu"
    gpu = PostRecipe.load(recipes / "nesso-0.4b-agentic-dpo.yaml", extra_sections=("dpo",))
    assert gpu.lora is None and gpu.train.device == "cuda" and gpu.schedule.name == "cosine"
