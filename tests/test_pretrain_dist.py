"""Data parallelism on CPU: 2 processes (gloo, FSDP2 fully_shard per layer + root) against 1 process with the same
global batch, and a distributed checkpoint written by 2 processes resumed by 1 (another world size)."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_pretrain_train import make_run

pytestmark = pytest.mark.usefixtures("one_thread")


# fp32: exact comparison; bf16: FSDP2 mixed precision (bf16 compute, fp32 reduce) with activation checkpointing
# and the chunked LM-head loss, against bf16 autocast in one process.
VARIANTS = {"fp32": {}, "bf16": {"dtype": "bf16", "activation_checkpointing": True, "loss_chunk_tokens": 24}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, folder: str, out: str, port: int) -> None:
    from pathlib import Path

    from nesso.distributed import init_distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    try:
        for name, options in VARIANTS.items():
            trainer, data = make_run(Path(folder), Path(out) / name, steps=4, ckpt_every=2, accum=1, dist_info=info,
                                     **options)
            assert trainer.fsdp and type(trainer.model.layers[0]).__name__.startswith("FSDP")
            records = trainer.fit(data)
            if rank == 0:
                (Path(out) / name / "records.json").write_text(json.dumps(records))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built in")
def test_two_processes_match_one_and_checkpoints_reshard(tmp_path):
    single, _ = make_run(tmp_path, tmp_path / "single", steps=4, ckpt_every=2, accum=2)
    reference = single.fit(_)

    out = tmp_path / "fsdp"
    mp.spawn(_worker, args=(2, str(tmp_path), str(out), _free_port()), nprocs=2, join=True)
    records = json.loads((out / "fp32" / "records.json").read_text())
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for a, b in zip(reference, records):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5), a["step"]
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
        assert b["tokens"] == a["tokens"]
    assert (out / "fp32" / "checkpoints" / "step_00000004" / "hf" / "model.safetensors").is_file()

    bf16, data = make_run(tmp_path, tmp_path / "bf16", steps=4, accum=2, dtype="bf16", export_hf=False)
    for a, b in zip(bf16.fit(data), json.loads((out / "bf16" / "records.json").read_text())):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-2), a["step"]

    # The 2-process checkpoint at step 2 (model + optimizer sharded over 2 ranks) resumes in 1 process.
    resumed, data = make_run(tmp_path, tmp_path / "resumed", steps=4, accum=2)
    assert resumed.resume(data, checkpoint=out / "fp32" / "checkpoints" / "step_00000002") == 2
    after = resumed.fit(data)
    assert [r["step"] for r in after] == [3, 4]
    for a, b in zip(after, records[2:]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
