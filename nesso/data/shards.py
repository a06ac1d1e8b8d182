"""Token shards in datatrove's layout.

``NAME.ds`` holds the token ids of consecutive documents as little-endian uint32 (uint16 when the vocabulary has
at most 65,536 ids); ``NAME.ds.index`` holds one little-endian uint64 per document: the cumulative token offset
where that document ends. Every document ends with the end-of-text token.
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nesso.errors import NessoError

INDEX_SUFFIX = ".index"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 65_536 else np.dtype("<u4")


def dtype_from_name(name: str) -> np.dtype:
    if name not in ("uint16", "uint32"):
        raise NessoError(f"token dtype {name!r} is neither uint16 nor uint32; the manifest is damaged")
    return np.dtype("<u2") if name == "uint16" else np.dtype("<u4")


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ShardWriter:
    """Appends documents to ``path.tmp``; ``finalize`` makes the shard appear under its real name, index first,
    so a shard that exists under its final name is always complete."""

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        self.path, self.dtype = path, dtype
        self.tmp = path.with_name(path.name + ".tmp")
        self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed in finalize/abort
        self.ends: list[int] = []
        self.num_tokens = 0

    def add(self, ids: Sequence[int] | np.ndarray) -> None:
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(self.dtype).max):
            raise NessoError(f"token id {int(arr.max())} does not fit the shard dtype {self.dtype.name}")
        self.file.write(arr.astype(self.dtype).tobytes())
        self.num_tokens += int(arr.size)
        self.ends.append(self.num_tokens)

    @property
    def num_documents(self) -> int:
        return len(self.ends)

    def finalize(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        index_tmp = self.path.with_name(self.path.name + INDEX_SUFFIX + ".tmp")
        with open(index_tmp, "wb") as f:
            f.write(np.asarray(self.ends, dtype="<u8").tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(index_tmp, self.path.with_name(self.path.name + INDEX_SUFFIX))
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.tmp.unlink(missing_ok=True)


class Shard:
    """One finalized shard, memory-mapped."""

    def __init__(self, path: str | Path, dtype: np.dtype) -> None:
        self.path = Path(path)
        index_path = self.path.with_name(self.path.name + INDEX_SUFFIX)
        if not self.path.is_file() or not index_path.is_file():
            raise NessoError(f"token shard {self.path} (or its .index) is missing; run `nesso data tokenize` again")
        size = self.path.stat().st_size
        if size % dtype.itemsize or index_path.stat().st_size % 8:
            raise NessoError(f"token shard {self.path} has a truncated file; delete it and re-run `nesso data tokenize`")
        self.tokens = np.memmap(self.path, dtype=dtype, mode="r") if size else np.zeros(0, dtype)
        self.ends = np.fromfile(index_path, dtype="<u8").astype(np.int64)
        if len(self.ends) and (self.ends[-1] != len(self.tokens) or np.any(np.diff(self.ends) <= 0)):
            raise NessoError(f"token shard {self.path}: its index does not match the tokens (corrupt); delete it and "
                             "re-run `nesso data tokenize`")

    @property
    def num_documents(self) -> int:
        return len(self.ends)

    def __len__(self) -> int:
        return len(self.tokens)

    def document(self, i: int) -> np.ndarray:
        start = int(self.ends[i - 1]) if i > 0 else 0
        return np.asarray(self.tokens[start:int(self.ends[i])])


class TokenStream:
    """Several shards read as one token sequence (a source's shards, in manifest order)."""

    def __init__(self, paths: Sequence[str | Path], dtype: np.dtype) -> None:
        self.shards = [Shard(p, dtype) for p in paths]
        self.shards = [s for s in self.shards if len(s)]
        self.starts = [0]
        for s in self.shards:
            self.starts.append(self.starts[-1] + len(s))

    def __len__(self) -> int:
        return self.starts[-1]

    @property
    def num_documents(self) -> int:
        return sum(s.num_documents for s in self.shards)

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start+length) as int64, crossing shard boundaries."""
        if start < 0 or start + length > len(self):
            raise IndexError(f"read [{start}, {start + length}) outside a stream of {len(self)} tokens")
        out = np.empty(length, dtype=np.int64)
        pos, filled = start, 0
        i = bisect.bisect_right(self.starts, pos) - 1
        while filled < length:
            shard = self.shards[i]
            offset = pos - self.starts[i]
            n = min(length - filled, len(shard) - offset)
            out[filled:filled + n] = shard.tokens[offset:offset + n]
            filled, pos, i = filled + n, pos + n, i + 1
        return out

    def document_starts(self, start: int, length: int) -> np.ndarray:
        """Offsets (relative to ``start``) in (0, length) where a new document begins."""
        found = []
        for i, shard in enumerate(self.shards):
            lo, hi = self.starts[i], self.starts[i + 1]
            if hi <= start or lo >= start + length:
                continue
            ends = shard.ends + lo  # a document starts right after each end
            sel = ends[(ends > start) & (ends < start + length)]
            found.append(sel - start)
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
