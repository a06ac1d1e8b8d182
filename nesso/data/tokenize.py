"""Tokenise a recipe's sources into shards: parallel, resumable, with a manifest.

Layout of the output folder::

    manifest.json                       tokenizer, dtype, per-source tasks/shards/counts, completion
    <source>/t0003-00012.ds(.index)     task 3's 13th shard (datatrove layout, see nesso.data.shards)
    <source>/t0003.progress.json        what task 3 has committed: shards, documents consumed, skip counts

A task commits after every finalized shard (shard files renamed into place, then its progress file replaced), so an
interrupted run resumes by deleting anything a task had not committed and skipping the documents it already wrote.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import multiprocessing as mp
import os
import queue as queue_mod
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nesso.data.recipe import DataRecipe, SourceSpec, expand_path
from nesso.data.shards import ShardWriter, dtype_from_name, token_dtype, write_json_atomic
from nesso.data.sources import Skipped, iter_task, plan_tasks
from nesso.errors import NessoError

MANIFEST = "manifest.json"
FORMAT = "nesso-tokens/1"
EOS_CANDIDATES = ("<|end_of_text|>", "<|endoftext|>", "</s>")
BATCH_CHARS = 1_000_000  # encode_batch granularity


# ---- tokenizer ------------------------------------------------------------------------------------------
_TOKENIZERS: dict[str, Any] = {}


def load_tokenizer(spec: str):
    from nesso.tokenizer import Tokenizer

    if spec not in _TOKENIZERS:
        if spec == "llama32":
            _TOKENIZERS[spec] = Tokenizer.llama32()
        else:
            path = expand_path(spec)
            if not (path / "tokenizer.json").is_file():
                raise NessoError(f"tokenizer {spec!r} is neither 'llama32' nor a folder with tokenizer.json")
            _TOKENIZERS[spec] = Tokenizer.load(path)
    return _TOKENIZERS[spec]


def end_of_text(tokenizer, name: str | None) -> tuple[str, int]:
    """The token that ends every document: the recipe's ``eos_token``, else the base end-of-text token."""
    for candidate in ([name] if name else list(EOS_CANDIDATES)):
        tid = tokenizer.token_to_id(candidate)
        if tid is not None:
            return candidate, tid
    if name:
        raise NessoError(f"data.eos_token {name!r} is not a token of the tokenizer")
    return tokenizer.eos_token, tokenizer.eos_id


# ---- manifest --------------------------------------------------------------------------------------------
def read_manifest(out: Path) -> dict[str, Any] | None:
    import json

    path = out / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise NessoError(f"{path} is unreadable ({e}); delete {out} and tokenise again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise NessoError(f"{path} is not a nesso token manifest ({FORMAT}); choose another --out folder")
    return manifest


def _tokenizer_info(recipe: DataRecipe) -> dict[str, Any]:
    tok = load_tokenizer(recipe.tokenizer)
    eos_token, eos_id = end_of_text(tok, recipe.eos_token)
    return {"spec": recipe.tokenizer, "vocab_size": tok.vocab_size, "eos_token": eos_token, "eos_id": eos_id,
            "dtype": token_dtype(tok.vocab_size).name.replace("<", "")}


def _plan(recipe: DataRecipe, out: Path, workers: int) -> dict[str, Any]:
    info = _tokenizer_info(recipe)
    manifest = read_manifest(out) or {"format": FORMAT, "tokenizer": info, "shard_tokens": recipe.shard_tokens,
                                      "sources": {}}
    old = manifest["tokenizer"]
    if (old["vocab_size"], old["eos_id"], old["dtype"]) != (info["vocab_size"], info["eos_id"], info["dtype"]):
        raise NessoError(f"{out} holds tokens from another tokenizer (vocab {old['vocab_size']}, eos {old['eos_id']}); "
                         "use another --out folder or delete this one")
    for spec in recipe.sources:
        entry = manifest["sources"].get(spec.name)
        fingerprint = _jsonable(spec.fingerprint())
        if entry is not None and entry["fingerprint"] != fingerprint:
            raise NessoError(f"source {spec.name!r} changed since {out / spec.name} was written "
                             f"(now: {spec.describe()}); delete that folder to re-tokenise it, or use another --out")
        if entry is None:
            tasks = plan_tasks(spec, workers)
            manifest["sources"][spec.name] = {"fingerprint": fingerprint, "description": spec.describe(),
                                              "tasks": tasks, "complete": False}
    return manifest


def _jsonable(obj: Any) -> Any:
    import json

    return json.loads(json.dumps(obj, default=str))


# ---- one task --------------------------------------------------------------------------------------------
@dataclass
class TaskJob:
    out: str
    source: dict[str, Any]  # SourceSpec fields
    task_index: int
    num_tasks: int
    task: dict[str, Any]
    tokenizer: str
    eos_id: int
    dtype: str
    shard_tokens: int


_PROGRESS_QUEUE: Any = None


def _init_worker(q: Any) -> None:
    global _PROGRESS_QUEUE
    _PROGRESS_QUEUE = q
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the processes are the parallelism


def progress_path(out: Path, source: str, task_index: int) -> Path:
    return out / source / f"t{task_index:04d}.progress.json"


def read_progress(path: Path) -> dict[str, Any]:
    import json

    if not path.is_file():
        return {"docs_seen": 0, "shards": [], "skipped": {}, "examples": [], "tokens": 0, "documents": 0,
                "done": False}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise NessoError(f"{path} is unreadable; delete the folder {path.parent} to re-tokenise that source") from None


def run_task(job: TaskJob, report: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Tokenise one task, committing after each shard; returns the final progress record."""
    spec = SourceSpec(**job.source)
    out = Path(job.out)
    folder = out / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    ppath = progress_path(out, spec.name, job.task_index)
    progress = read_progress(ppath)
    if progress["done"]:
        return progress
    prefix = f"t{job.task_index:04d}-"
    committed = {s["file"] for s in progress["shards"]}
    for leftover in folder.glob(prefix + "*"):  # whatever an interrupted run had not committed
        base = leftover.name.removesuffix(".tmp").removesuffix(".index")
        if base not in committed:
            leftover.unlink()
    report = report or _queue_report
    tokenizer = load_tokenizer(job.tokenizer)
    dtype = dtype_from_name(job.dtype)
    max_tokens = math.ceil(spec.max_tokens / job.num_tasks) if spec.max_tokens else None
    max_docs = math.ceil(spec.max_documents / job.num_tasks) if spec.max_documents else None

    skipped: Counter[str] = Counter(progress["skipped"])
    examples: list[str] = list(progress["examples"])
    state = {"seen": progress["docs_seen"], "tokens": progress["tokens"], "docs": progress["documents"]}
    writer: ShardWriter | None = None
    # Each pending document carries the skipped items read just before it, so that counts and the input cursor
    # advance together and a commit never records more than what its shards hold.
    pending: list[tuple[str, list[Skipped]]] = []
    pending_chars = 0

    def count_skips(items: list[Skipped]) -> None:
        for item in items:
            skipped[item.reason] += 1
            if len(examples) < 5:
                examples.append(f"{item.reason}: {item.where}")
        state["seen"] += len(items)

    def commit(done: bool) -> None:
        nonlocal writer
        if writer is not None and writer.num_documents:
            writer.finalize()
            progress["shards"].append({"file": writer.path.name, "tokens": writer.num_tokens,
                                       "documents": writer.num_documents})
        elif writer is not None:
            writer.abort()
        writer = None
        progress.update(docs_seen=state["seen"], tokens=state["tokens"], documents=state["docs"],
                        skipped=dict(skipped), examples=examples[:5], done=done)
        write_json_atomic(ppath, progress)

    def capped() -> bool:
        return bool((max_tokens and state["tokens"] >= max_tokens) or (max_docs and state["docs"] >= max_docs))

    def flush() -> bool:
        """Encode the pending documents and write them; False once a cap is reached."""
        nonlocal writer, pending_chars
        encodings = tokenizer.backend.encode_batch([text for text, _ in pending], add_special_tokens=False)
        written = 0
        for (_, skips), enc in zip(pending, encodings):
            count_skips(skips)
            ids = np.fromiter(enc.ids, dtype=np.int64, count=len(enc.ids))
            if writer is None:
                writer = ShardWriter(folder / f"{prefix}{len(progress['shards']):05d}.ds", dtype)
            writer.add(np.append(ids, job.eos_id))
            state["seen"] += 1
            state["tokens"] += len(ids) + 1
            state["docs"] += 1
            written += len(ids) + 1
            if writer.num_tokens >= job.shard_tokens:
                commit(False)
            if capped():
                break
        report(spec.name, written, len(pending))
        pending.clear()
        pending_chars = 0
        return not capped()

    items = iter_task(spec, job.task)
    for _ in range(progress["docs_seen"]):  # already committed
        if next(items, None) is None:
            break
    skips: list[Skipped] = []
    going = not capped()
    if going:
        for item in items:
            if isinstance(item, Skipped):
                skips.append(item)
                continue
            pending.append((item, skips))
            skips = []
            pending_chars += len(item)
            if (pending_chars >= BATCH_CHARS or len(pending) >= 512) and not flush():
                going = False
                break
        if going and pending:
            going = flush()
        if going:
            count_skips(skips)  # trailing skipped items are part of this task's consumed input
    commit(True)
    return progress


def _queue_report(source: str, tokens: int, docs: int) -> None:
    if _PROGRESS_QUEUE is not None:
        _PROGRESS_QUEUE.put((source, tokens, docs))


# ---- the whole recipe -----------------------------------------------------------------------------------
def tokenize_recipe(recipe: DataRecipe, out: Path | None = None, workers: int = 1, show_progress: bool = True,
                    echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Tokenise every source of ``recipe`` into ``out`` (default ``recipe.out``); returns the manifest."""
    out = Path(out or recipe.out)
    if workers < 1:
        raise NessoError(f"--workers must be at least 1 (got {workers})")
    out.mkdir(parents=True, exist_ok=True)
    manifest = _plan(recipe, out, workers)
    write_json_atomic(out / MANIFEST, manifest)
    tok = manifest["tokenizer"]
    jobs = []
    for spec in recipe.sources:
        entry = manifest["sources"][spec.name]
        for i, task in enumerate(entry["tasks"]):
            if not read_progress(progress_path(out, spec.name, i))["done"]:
                jobs.append(TaskJob(str(out), dict(spec.__dict__), i, len(entry["tasks"]), task, tok["spec"],
                                    tok["eos_id"], tok["dtype"], manifest["shard_tokens"]))
    totals = {s.name: _committed(out, s.name, len(manifest["sources"][s.name]["tasks"])) for s in recipe.sources}
    cap = sum(s.max_tokens or 0 for s in recipe.sources) if all(s.max_tokens for s in recipe.sources) else None
    bar = _progress_bar(show_progress and bool(jobs), cap, sum(t for t, _ in totals.values()))
    try:
        if jobs and (workers == 1 or len(jobs) == 1):
            for job in jobs:
                run_task(job, report=lambda _s, n, _d: bar.update(n))
        elif jobs:
            _run_parallel(jobs, workers, bar)
    finally:
        bar.close()
    for spec in recipe.sources:
        manifest["sources"][spec.name].update(_summarise(out, spec, len(manifest["sources"][spec.name]["tasks"])))
    write_json_atomic(out / MANIFEST, manifest)
    for spec in recipe.sources:
        entry = manifest["sources"][spec.name]
        skipped = sum(entry["skipped"].values())
        detail = ", ".join(f"{n} {r}" for r, n in sorted(entry["skipped"].items(), key=lambda kv: -kv[1]))
        echo(f"{spec.name:<16} {entry['documents']:>10,} docs {entry['tokens']:>14,} tokens "
             f"{len(entry['shards']):>4} shards  skipped {skipped:,}{f' ({detail})' if detail else ''}")
        if entry["documents"] == 0:
            why = f"; e.g. {entry['examples'][0]}" if entry["examples"] else ""
            raise NessoError(f"source {spec.name!r} produced no documents ({spec.describe()}){why}; check its "
                             "files/text_column")
    echo(f"wrote {out / MANIFEST} ({tok['dtype']} ids, end-of-text {tok['eos_token']} = {tok['eos_id']})")
    return manifest


def _run_parallel(jobs: list[TaskJob], workers: int, bar: Any) -> None:
    ctx = mp.get_context("spawn")  # no fork after tokenizers/torch threads exist
    q = ctx.Queue()
    with cf.ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx, initializer=_init_worker,
                                initargs=(q,)) as pool:
        futures = [pool.submit(run_task, job) for job in jobs]
        pending = set(futures)
        try:
            while pending:
                _drain(q, bar, timeout=0.2)
                done = {f for f in pending if f.done()}
                for f in done:
                    f.result()  # re-raises a worker's NessoError here
                pending -= done
        except BaseException:
            for f in pending:
                f.cancel()
            raise
        _drain(q, bar, timeout=0.0)


def _drain(q: Any, bar: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _source, tokens, _docs = q.get(timeout=max(0.0, deadline - time.monotonic()))
        except (queue_mod.Empty, OSError, EOFError):
            return
        bar.update(tokens)


def _progress_bar(enabled: bool, total: int | None, initial: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=min(initial, total) if total else initial, unit="tok", unit_scale=True,
                disable=not enabled, desc="tokenize", dynamic_ncols=True)


def _committed(out: Path, source: str, num_tasks: int) -> tuple[int, int]:
    tokens = docs = 0
    for i in range(num_tasks):
        p = read_progress(progress_path(out, source, i))
        tokens, docs = tokens + p["tokens"], docs + p["documents"]
    return tokens, docs


def _summarise(out: Path, spec: SourceSpec, num_tasks: int) -> dict[str, Any]:
    shards, skipped, examples = [], Counter(), []
    tokens = docs = 0
    complete = True
    for i in range(num_tasks):
        p = read_progress(progress_path(out, spec.name, i))
        complete &= bool(p["done"])
        shards.extend(f"{spec.name}/{s['file']}" for s in p["shards"])
        tokens, docs = tokens + p["tokens"], docs + p["documents"]
        skipped.update(p["skipped"])
        examples.extend(p["examples"])
    return {"complete": complete, "shards": shards, "tokens": tokens, "documents": docs, "skipped": dict(skipped),
            "examples": examples[:5]}
