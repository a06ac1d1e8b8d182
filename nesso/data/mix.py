"""Training windows mixed from several tokenised sources by weight, deterministic given a seed.

Each source is one token stream (its shards in order) cut into windows of ``seq_len + 1`` tokens that overlap by
one token (inputs and shifted labels); windows cross document boundaries, as in Nanotron. Within a source the
window order is a seeded permutation per epoch; a source that runs out starts a new epoch. Which source feeds
the next window is chosen greedily so that every prefix of the stream follows the weights as closely as
possible; the whole position is a sample counter plus per-source counters, which checkpoints store.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nesso.data.shards import TokenStream, dtype_from_name
from nesso.data.tokenize import read_manifest
from nesso.errors import NessoError


def open_sources(out: Path, names: list[str]) -> tuple[dict[str, TokenStream], dict[str, Any]]:
    manifest = read_manifest(Path(out))
    if manifest is None:
        raise NessoError(f"no tokenised data in {out}; run `nesso data tokenize RECIPE` first")
    dtype = dtype_from_name(manifest["tokenizer"]["dtype"])
    streams = {}
    for name in names:
        entry = manifest["sources"].get(name)
        if entry is None or not entry.get("complete"):
            raise NessoError(f"source {name!r} is not fully tokenised in {out}; run `nesso data tokenize RECIPE` "
                             "(it resumes where it stopped)")
        streams[name] = TokenStream([Path(out) / s for s in entry["shards"]], dtype)
    return streams, manifest


def _seeded_int(*parts: Any) -> int:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


class WindowPermutation:
    """A bijection of range(n): i -> (a*i + b) mod n with gcd(a, n) = 1; O(1) memory at any corpus size."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        a = _seeded_int(seed, "a") % n if n > 1 else 1
        a = max(a, 1)
        while math.gcd(a, n) != 1:
            a += 1
        self.a, self.b = a, _seeded_int(seed, "b") % n

    def __call__(self, i: int) -> int:
        return (self.a * i + self.b) % self.n


class MixedWindows:
    def __init__(self, streams: dict[str, TokenStream], weights: dict[str, float], seq_len: int, seed: int,
                 shuffle: bool = True) -> None:
        if set(weights) != set(streams):
            raise NessoError("weights and sources differ")
        self.names = list(streams)
        total = sum(weights.values())
        self.weights = np.array([weights[n] / total for n in self.names])
        self.streams, self.seq_len, self.seed, self.shuffle = streams, seq_len, seed, shuffle
        self.num_windows = {}
        for name, stream in streams.items():
            n = (len(stream) - 1) // seq_len
            if n < 1:
                raise NessoError(f"source {name!r} has {len(stream)} tokens, fewer than one window of seq_len+1 = "
                                 f"{seq_len + 1}; add data or lower train.seq_len")
            self.num_windows[name] = n
        self.sample = 0
        self.counts = np.zeros(len(self.names), dtype=np.int64)
        self._perms: dict[tuple[str, int], WindowPermutation] = {}

    # -- position ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"sample": self.sample, "counts": {n: int(c) for n, c in zip(self.names, self.counts)},
                "seq_len": self.seq_len, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sample = int(state["sample"])
        counts = state.get("counts", {})
        self.counts = np.array([int(counts.get(n, 0)) for n in self.names], dtype=np.int64)

    def epochs(self) -> dict[str, float]:
        return {n: float(c) / self.num_windows[n] for n, c in zip(self.names, self.counts)}

    # -- sampling ---------------------------------------------------------------------------------------
    def next_source(self) -> int:
        # Greedy: the source furthest behind its share of the samples so far (ties -> first listed).
        deficit = self.weights * (self.sample + 1) - self.counts
        i = int(np.argmax(deficit))
        self.sample += 1
        self.counts[i] += 1
        return i

    def window_start(self, source: int, k: int) -> int:
        name = self.names[source]
        n = self.num_windows[name]
        epoch, local = divmod(k, n)
        if self.shuffle:
            perm = self._perms.get((name, epoch))
            if perm is None:
                self._perms = {key: p for key, p in self._perms.items() if key[0] != name}
                perm = self._perms[(name, epoch)] = WindowPermutation(n, _seeded_int(self.seed, name, epoch))
            local = perm(local)
        return local * self.seq_len

    def take(self, count: int, keep: bool = True) -> list[tuple[int, int]]:
        """Advance by ``count`` samples; return (source, start token) for each when ``keep``."""
        picked = []
        for _ in range(count):
            i = self.next_source()
            if keep:
                picked.append((i, self.window_start(i, int(self.counts[i]) - 1)))
        return picked

    def read(self, source: int, start: int) -> np.ndarray:
        return self.streams[self.names[source]].read(start, self.seq_len + 1)


class PretrainBatches:
    """Per optimizer step, the micro-batches of this rank. The step's global batch is samples
    [g, g + micro*accum*world) in stream order; micro-step a of rank r holds the slice at (a*world + r)*micro, so
    1 process with accumulation k*m and k processes with accumulation m train on the same samples."""

    def __init__(self, windows: MixedWindows, micro_batch: int, grad_accum: int, rank: int = 0, world: int = 1,
                 document_masking: bool = False) -> None:
        self.windows, self.micro_batch, self.grad_accum = windows, micro_batch, grad_accum
        self.rank, self.world, self.document_masking = rank, world, document_masking

    def state_dict(self) -> dict[str, Any]:
        return self.windows.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.windows.load_state_dict(state)

    def epochs(self) -> dict[str, float]:
        return self.windows.epochs()

    def __iter__(self) -> Iterator[list[dict[str, torch.Tensor]]]:
        while True:
            yield self.next_step()

    def next_step(self) -> list[dict[str, torch.Tensor]]:
        micro = []
        for _ in range(self.grad_accum):
            for r in range(self.world):
                picked = self.windows.take(self.micro_batch, keep=r == self.rank)
                if r == self.rank:
                    micro.append(self._batch(picked))
        return micro

    def _batch(self, picked: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        rows = np.stack([self.windows.read(i, start) for i, start in picked])
        tokens = torch.from_numpy(rows)
        batch = {"input_ids": tokens[:, :-1].contiguous(), "labels": tokens[:, 1:].contiguous()}
        if self.document_masking:
            batch.update(self._document_layout(picked))
        return batch

    def _document_layout(self, picked: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        """Per-token document ids and positions restarting at each document (attention stays inside one)."""
        t = self.windows.seq_len
        doc_ids = np.zeros((len(picked), t), dtype=np.int64)
        positions = np.zeros((len(picked), t), dtype=np.int64)
        for row, (i, start) in enumerate(picked):
            stream = self.windows.streams[self.windows.names[i]]
            starts = stream.document_starts(start, t)
            marks = np.zeros(t, dtype=np.int64)
            marks[starts] = 1
            doc_ids[row] = np.cumsum(marks)
            first = np.concatenate([[0], starts])
            positions[row] = np.arange(t) - first[doc_ids[row]]
        return {"doc_ids": torch.from_numpy(doc_ids), "positions": torch.from_numpy(positions)}
