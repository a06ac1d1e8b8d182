"""The trainer on CPU: learning, exact resume after a crash, HF export, the loss interface SFT reuses, and
`nesso pretrain` end to end on the shipped CPU recipe."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nesso.config import ModelConfig
from nesso.data.mix import MixedWindows, PretrainBatches
from nesso.data.recipe import Section
from nesso.data.shards import ShardWriter, TokenStream
from nesso.errors import NessoError
from nesso.lora import LoraConfig, add_lora, freeze_base
from nesso.model import build_model
from nesso.packed_attention import attends_span_by_span
from nesso.schedules import Schedule, ScheduleConfig
from nesso.train import (
    TrainConfig,
    Trainer,
    attended_pairs,
    causal_lm_loss,
    clear_run,
    cpu_matmul_flops,
    device_peak_flops,
    linear_cross_entropy,
    process_memory_gb,
    release_freed_memory,
)

VOCAB = 64
TINY = ModelConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                   head_dim=8, max_position_embeddings=64, bos_token_id=None, eos_token_id=VOCAB - 1,
                   pad_token_id=VOCAB - 1)


pytestmark = pytest.mark.usefixtures("one_thread")


def counting_corpus(folder, seed=0):
    """Two sources of documents that count up (mod 63) with random starts and strides 1 or 2: learnable."""
    rng = np.random.default_rng(seed)
    streams = {}
    for name, stride in (("one", 1), ("two", 2)):
        if (folder / f"{name}.ds").is_file():  # written once (data-parallel workers only read it)
            streams[name] = TokenStream([folder / f"{name}.ds"], np.dtype("<u2"))
            continue
        w = ShardWriter(folder / f"{name}.ds", np.dtype("<u2"))
        for _ in range(60):
            start = rng.integers(0, 63)
            w.add(np.append((start + stride * np.arange(rng.integers(20, 60))) % 63, VOCAB - 1))
        w.finalize()
        streams[name] = TokenStream([folder / f"{name}.ds"], np.dtype("<u2"))
    return streams


def make_run(folder, out, steps, ckpt_every=1000, accum=2, lr=1e-2, schedule=None, dist_info=None, lora=False,
             **train):
    streams = counting_corpus(folder)
    train = {"dtype": "fp32", **train}
    cfg = TrainConfig(seq_len=16, micro_batch=4, grad_accum=accum, steps=steps, lr=lr, device="cpu", log_every=1,
                      ckpt_every=ckpt_every, export_dtype="float32", out_dir=str(out), seed=5, **train)
    schedule = schedule or {"name": "wsd", "warmup_steps": min(3, steps // 4)}
    sched = Schedule(ScheduleConfig.from_section(Section(schedule, "s")),
                     cfg.lr, steps)
    rank, world = (dist_info.rank, dist_info.world) if dist_info else (0, 1)
    data = PretrainBatches(MixedWindows(streams, {"one": 0.6, "two": 0.4}, cfg.seq_len, seed=11), cfg.micro_batch,
                           accum, rank, world)
    model = build_model(TINY, seed=3)
    if lora:
        add_lora(model, LoraConfig(r=4))
        freeze_base(model)
    trainer = Trainer(model, cfg, sched, out, dist_info=dist_info, show_progress=False)
    return trainer, data


def test_loss_goes_down_on_a_tiny_corpus(tmp_path):
    trainer, data = make_run(tmp_path, tmp_path / "run", steps=40)
    records = trainer.fit(data)
    first = np.mean([r["loss"] for r in records[:3]])
    last = np.mean([r["loss"] for r in records[-3:]])
    assert first > 3.5 and last < 0.6 * first, (first, last)
    assert (tmp_path / "run" / "checkpoints" / "step_00000040" / "hf" / "model.safetensors").is_file()
    assert trainer.plot("tiny").is_file()
    rec = json.loads((tmp_path / "run" / "train_log.jsonl").read_text().splitlines()[-1])
    assert rec["step"] == 40 and rec["tok_per_s"] > 0 and 0 < rec["mfu"] < 1 and rec["memory_gb"] > 0


def test_crash_and_resume_reproduces_the_uninterrupted_run_exactly(tmp_path):
    full, data = make_run(tmp_path, tmp_path / "full", steps=8, ckpt_every=3)
    expected = {r["step"]: r["loss"] for r in full.fit(data)}

    crashed, data = make_run(tmp_path, tmp_path / "crash", steps=8, ckpt_every=3)
    before = crashed.fit(data, stop_after=5)  # dies at step 5; the last checkpoint is step 3
    assert [r["step"] for r in before] == [1, 2, 3, 4, 5]
    del crashed, data

    resumed, data = make_run(tmp_path, tmp_path / "crash", steps=8, ckpt_every=3)
    assert resumed.resume(data) == 3
    after = resumed.fit(data)
    assert [r["step"] for r in after] == [4, 5, 6, 7, 8]
    for r in before + after:
        assert r["loss"] == expected[r["step"]], r["step"]  # bit-identical on CPU
    log_steps = [json.loads(line)["step"] for line in (tmp_path / "crash" / "train_log.jsonl").read_text().splitlines()]
    assert log_steps == list(range(1, 9))  # the crashed run's steps 4-5 were replaced, not duplicated
    ckpts = sorted(p.name for p in (tmp_path / "crash" / "checkpoints").glob("step_*"))
    assert ckpts == ["step_00000003", "step_00000006", "step_00000008"]
    assert (tmp_path / "crash" / "checkpoints" / "latest").read_text().strip() == "step_00000008"


def test_lora_checkpoints_hold_the_adapters_only_and_resume_exactly(tmp_path):
    """Under LoRA a checkpoint keeps the trained parameters and their optimizer state, not the frozen base (the
    run loads that again), and resuming from it gives the uninterrupted run's losses."""
    import torch.distributed.checkpoint as dcp

    full, data = make_run(tmp_path, tmp_path / "full", steps=6, ckpt_every=3, lora=True, export_hf=False)
    expected = {r["step"]: r["loss"] for r in full.fit(data)}
    crashed, data = make_run(tmp_path, tmp_path / "crash", steps=6, ckpt_every=3, lora=True, export_hf=False)
    crashed.fit(data, stop_after=4)
    resumed, data = make_run(tmp_path, tmp_path / "crash", steps=6, ckpt_every=3, lora=True, export_hf=False)
    assert resumed.resume(data) == 3
    assert {r["step"]: r["loss"] for r in resumed.fit(data)} == {s: expected[s] for s in (4, 5, 6)}
    meta = dcp.FileSystemReader(str(tmp_path / "crash" / "checkpoints" / "step_00000003" / "dcp")).read_metadata()
    model_keys = [k for k in meta.state_dict_metadata if k.startswith("model.")]
    assert model_keys and all("lora_" in k for k in model_keys), [k for k in model_keys if "lora_" not in k]


def test_checkpoint_hf_folder_loads_with_nesso(tmp_path):
    from nesso.loader import load_model

    trainer, data = make_run(tmp_path, tmp_path / "run", steps=2)
    trainer.tokenizer = _tiny_tokenizer()
    trainer.fit(data)
    loaded = load_model(str(tmp_path / "run" / "checkpoints" / "step_00000002" / "hf"))
    ids = torch.arange(10).unsqueeze(0)
    with torch.no_grad():
        assert torch.equal(loaded.model(ids), trainer.model(ids))


def _tiny_tokenizer():
    """A 64-id word-level tokenizer (the checkpoint test needs one that fits the tiny vocabulary)."""
    from tokenizers import Tokenizer as Backend
    from tokenizers import models, pre_tokenizers

    from nesso.tokenizer import Tokenizer

    vocab = {f"w{i}": i for i in range(VOCAB - 1)} | {"<|end_of_text|>": VOCAB - 1}
    backend = Backend(models.WordLevel(vocab, unk_token="w0"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return Tokenizer(backend, bos_token=None, eos_token="<|end_of_text|>")


@pytest.mark.parametrize("chunk", [0, 7, 30])
def test_fused_linear_cross_entropy_matches_autograd(chunk):
    torch.manual_seed(0)
    hidden = torch.randn(3, 10, 16, requires_grad=True)
    weight = torch.randn(50, 16, requires_grad=True)
    labels = torch.randint(0, 50, (3, 10))
    labels[0, :4] = -100
    labels[2, 9] = -100
    reference = torch.nn.functional.cross_entropy((hidden @ weight.T).reshape(-1, 50), labels.reshape(-1),
                                                  ignore_index=-100, reduction="sum")
    g_ref = torch.autograd.grad(2.5 * reference, (hidden, weight))
    fused = linear_cross_entropy(hidden, weight, labels, chunk)
    g_fused = torch.autograd.grad(2.5 * fused, (hidden, weight))
    assert torch.allclose(fused, reference, rtol=1e-5)
    for a, b in zip(g_ref, g_fused):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(linear_cross_entropy(hidden, weight, labels, chunk), reference, rtol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 matmuls, fp32 softmax
        low = linear_cross_entropy(hidden, weight, labels, chunk)
    assert torch.allclose(low, reference, rtol=2e-2)


def test_fused_linear_cross_entropy_frozen_head_and_no_targets():
    """Under LoRA the head is frozen: only the hidden states get a gradient, the same one. Rows without a target
    get a zero gradient, and a batch without any target a zero loss."""
    torch.manual_seed(0)
    hidden = torch.randn(2, 9, 16, requires_grad=True)
    weight = torch.randn(40, 16)
    labels = torch.randint(0, 40, (2, 9))
    labels[:, :6] = -100
    reference = torch.nn.functional.cross_entropy((hidden @ weight.T).reshape(-1, 40), labels.reshape(-1),
                                                  ignore_index=-100, reduction="sum")
    (g_ref,) = torch.autograd.grad(reference, hidden)
    for chunk in (0, 4):
        fused = linear_cross_entropy(hidden, weight, labels, chunk)
        (g_fused,) = torch.autograd.grad(fused, hidden)
        assert torch.allclose(fused, reference, rtol=1e-5)
        assert torch.allclose(g_fused, g_ref, rtol=1e-4, atol=1e-6)
        assert g_fused[:, :6].abs().max() == 0
    none = linear_cross_entropy(hidden, weight, torch.full_like(labels, -100))
    (g_none,) = torch.autograd.grad(none, hidden)
    assert none.item() == 0 and g_none.abs().max() == 0


def test_attention_flops_follow_the_packed_samples():
    ids = torch.zeros(2, 10, dtype=torch.long)
    assert attended_pairs({"input_ids": ids}) == 2 * 10**2
    doc_ids = torch.tensor([[0] * 4 + [1] * 6, [0] * 3 + [1] * 3 + [-1] * 4])
    assert attended_pairs({"input_ids": ids, "doc_ids": doc_ids}) == 16 + 36 + 9 + 9 + 16


def test_packed_sft_batches_use_masked_loss_and_document_masks(tmp_path):
    """The interface SFT plugs into: -100 labels are ignored, doc_ids keep packed samples apart, and the step's
    loss is the mean over the target tokens of all micro-batches."""
    model = build_model(TINY, seed=1)
    ids = torch.randint(0, 60, (1, 12))
    labels = ids.clone()
    labels[0, :5] = -100
    doc_ids = torch.tensor([[0] * 6 + [1] * 6])
    positions = torch.tensor([list(range(6)) * 2])
    packed = {"input_ids": ids, "labels": labels, "doc_ids": doc_ids, "positions": positions}
    with torch.no_grad():
        packed_loss = causal_lm_loss(model, packed)
        # Equal to running the two samples separately.
        first = causal_lm_loss(model, {"input_ids": ids[:, :6], "labels": labels[:, :6]})
        second = causal_lm_loss(model, {"input_ids": ids[:, 6:], "labels": labels[:, 6:]})
    assert torch.allclose(packed_loss, first + second, rtol=1e-5)
    cfg = TrainConfig(seq_len=12, micro_batch=1, steps=1, lr=1e-3, dtype="fp32", device="cpu", export_hf=False,
                      out_dir=str(tmp_path))
    trainer = Trainer(model, cfg, Schedule(ScheduleConfig(name="constant"), 1e-3, 1), tmp_path, show_progress=False)
    other = {"input_ids": ids, "labels": ids.clone()}
    with torch.no_grad():
        expected = float(packed_loss + causal_lm_loss(model, other)) / (int((labels != -100).sum()) + 12)
    out = trainer.train_step([packed, other])
    assert out["loss"] == pytest.approx(expected, rel=1e-5)
    assert out["attended"] == 6**2 + 6**2 + 12**2


def test_packed_samples_attend_span_by_span_only_on_a_cpu():
    """Span by span is the CPU's fast path; elsewhere (a GPU: launch-bound per-span kernels) the packed rows go
    through one block-diagonal mask."""
    doc_ids = torch.tensor([[0] * 6 + [1] * 6])
    assert attends_span_by_span(doc_ids)
    assert not attends_span_by_span(doc_ids.to("meta"))


def test_activation_checkpointing_gives_the_same_step(tmp_path):
    a, data_a = make_run(tmp_path, tmp_path / "a", steps=2, export_hf=False)
    b, data_b = make_run(tmp_path, tmp_path / "b", steps=2, export_hf=False, activation_checkpointing=True)
    ra, rb = a.fit(data_a), b.fit(data_b)
    assert [r["loss"] for r in ra] == pytest.approx([r["loss"] for r in rb], rel=1e-6)
    assert list(dict(a.model.named_parameters())) == list(dict(b.model.named_parameters()))


def test_pretrain_cli_runs_the_cpu_recipe(tmp_path, capsys):
    """`nesso pretrain recipes/micro-cpu.yaml` end to end (offline builtin text), shrunk to seconds."""
    from nesso.cli import main

    sets = ["model.hidden_size=32", "model.intermediate_size=64", "model.num_layers=1", "model.num_heads=2",
            "model.num_kv_heads=1", "model.head_dim=16", "train.seq_len=32", "train.micro_batch=2",
            "train.grad_accum=1", "train.steps=3", "train.ckpt_every=2", "train.log_every=1", "schedule.warmup_steps=1",
            "schedule.decay_start=2", "schedule.decay_steps=1", f"data.out={tmp_path / 'tokens'}",
            "data.sources.0.max_tokens=3000", "data.sources.1.max_tokens=3000", "data.sources.2.max_tokens=3000"]
    args = ["pretrain", "recipes/micro-cpu.yaml", "--out", str(tmp_path / "run")]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "step 3: loss" in out and "resuming" not in out
    run = tmp_path / "run"
    assert (run / "loss.png").stat().st_size > 1000
    assert (run / "checkpoints" / "step_00000003" / "hf" / "tokenizer.json").is_file()
    assert (run / "checkpoints" / "step_00000002" / "dcp" / ".metadata").is_file()
    manifest = json.loads((tmp_path / "tokens" / "manifest.json").read_text())
    assert all(manifest["sources"][n]["tokens"] >= 3000 for n in ("en", "it", "code"))
    # Asking for more steps resumes from the checkpoint instead of starting over.
    assert main(args + ["--set", "train.steps=4"]) == 0
    assert "resuming at step 3" in capsys.readouterr().out
    bad = args + ["--set", "train.seq_len=100000"]
    assert main(bad) == 2
    assert "max_position_embeddings" in capsys.readouterr().err


def test_compiling_on_a_cpu_without_a_cpp_compiler_says_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("nesso.train.shutil.which", lambda _name: None)
    cfg = TrainConfig(seq_len=8, micro_batch=1, steps=1, device="cpu", compile=True, out_dir=str(tmp_path))
    with pytest.raises(NessoError, match="needs a C\\+\\+ compiler.*train.compile: false"):
        Trainer(build_model(TINY, seed=0), cfg, Schedule(ScheduleConfig(name="constant"), 1e-3, 1), tmp_path,
                show_progress=False)


@pytest.mark.skipif(process_memory_gb("VmRSS") is None, reason="VmRSS is Linux's")
def test_freed_heap_memory_goes_back_to_the_os():
    blocks = [torch.ones(16_384) for _ in range(4_096)]  # 64 KiB each: heap chunks, not mmaps
    kept = blocks[::8]  # every eighth stays, so the freed space is holes, not the heap's top
    del blocks
    before = process_memory_gb("VmRSS")
    if not release_freed_memory():
        pytest.skip("malloc_trim is glibc's")
    assert before - process_memory_gb("VmRSS") > 0.1  # of the ~224 MiB freed
    assert all(float(b[0]) == 1.0 for b in kept)


def test_cpu_mfu_is_relative_to_this_machines_measured_matmul_rate():
    threads = torch.get_num_threads()
    rate = device_peak_flops(torch.device("cpu"), "fp32")
    assert rate == cpu_matmul_flops("fp32", threads)  # measured once per dtype and thread count
    assert torch.get_num_threads() == threads
    assert 1e9 < rate < 1e14  # CPUs do tens to thousands of GFLOP/s; outside that the timing is broken
    torch.set_num_threads(1)
    try:
        assert device_peak_flops(torch.device("cpu"), "fp32") == cpu_matmul_flops("fp32", 1)
    finally:
        torch.set_num_threads(threads)


def test_fresh_deletes_only_the_run_state_nesso_wrote(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "step_00000040" / "dcp").mkdir(parents=True)
    (run / "checkpoints" / ".step_00000050.tmp").mkdir()
    (run / "checkpoints" / "latest").write_text("step_00000040\n")
    (run / "final").mkdir()
    (run / "final" / "adapter_config.json").write_text("{}")
    (run / "train_log.jsonl").write_text("{}\n")
    (run / "data.jsonl").write_text("mine")
    clear_run(run, final=True)
    assert sorted(p.name for p in run.iterdir()) == ["data.jsonl"]

    other = tmp_path / "lightning"  # someone else's checkpoints/ folder, or final/
    (other / "checkpoints").mkdir(parents=True)
    (other / "checkpoints" / "epoch=3.ckpt").write_text("mine")
    with pytest.raises(NessoError, match=r"holds more than nesso's checkpoints \(epoch=3.ckpt\)"):
        clear_run(other)
    (other / "checkpoints" / "epoch=3.ckpt").rename(other / "epoch=3.ckpt")
    (other / "final").mkdir()
    (other / "final" / "notes.txt").write_text("mine")
    with pytest.raises(NessoError, match="not part of a run's final model"):
        clear_run(other, final=True)
    assert (other / "final" / "notes.txt").read_text() == "mine" and (other / "checkpoints").is_dir()


def test_resuming_with_another_model_names_what_changed(tmp_path):
    trainer, data = make_run(tmp_path, tmp_path / "run", steps=2, ckpt_every=2)
    trainer.fit(data)
    other = Trainer(build_model(TINY.replace(num_layers=3), seed=3), trainer.cfg, trainer.schedule, tmp_path / "run",
                    show_progress=False)
    with pytest.raises(NessoError, match=r"written for another model \(num_layers 2 -> 3\).*--fresh"):
        other.resume(data)


def test_resuming_with_another_lora_rank_is_a_clear_error(tmp_path):
    trainer, data = make_run(tmp_path, tmp_path / "run", steps=2, ckpt_every=2, lora=True, export_hf=False)
    trainer.fit(data)
    model = build_model(TINY, seed=3)
    add_lora(model, LoraConfig(r=8))
    freeze_base(model)
    other = Trainer(model, trainer.cfg, trainer.schedule, tmp_path / "run", show_progress=False)
    with pytest.raises(NessoError, match=r"Size mismatch .*lora_A.*--fresh"):  # DCP's BaseException, unwrapped
        other.resume(data)
