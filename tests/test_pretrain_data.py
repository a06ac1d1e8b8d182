"""Pretraining data: recipes, sources, tokenisation to shards (exact tokens, skipped input, resume, workers),
and weighted mixing."""

from __future__ import annotations

import gettext
import io
import json
import struct

import numpy as np
import pytest

from nesso.data.mix import MixedWindows, PretrainBatches, open_sources
from nesso.data.recipe import DataRecipe, read_recipe_file
from nesso.data.shards import Shard, ShardWriter, TokenStream, token_dtype
from nesso.data.sources import iter_task, read_mo, source_files
from nesso.data.tokenize import MANIFEST, TaskJob, read_manifest, run_task, tokenize_recipe
from nesso.errors import NessoError

EOT = 128_001  # <|end_of_text|> of the Llama-3.2 tokenizer


# ---- shards ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("vocab, expected", [(50_000, "<u2"), (65_536, "<u2"), (65_537, "<u4"), (128_256, "<u4")])
def test_token_dtype_follows_datatrove(vocab, expected):
    assert token_dtype(vocab) == np.dtype(expected)


def test_shard_reader_returns_the_exact_tokens_written(tmp_path):
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 128_256, size=n) for n in (5, 1, 17, 300, 2)]
    paths = []
    for part, chunk in enumerate((docs[:2], docs[2:])):
        w = ShardWriter(tmp_path / f"s{part}.ds", np.dtype("<u4"))
        for d in chunk:
            w.add(d)
        assert not (tmp_path / f"s{part}.ds").exists()  # invisible until finalized
        w.finalize()
        paths.append(tmp_path / f"s{part}.ds")
    # The bytes are datatrove's layout: little-endian uint32 ids, uint64 cumulative document ends.
    raw = np.fromfile(paths[1], dtype="<u4")
    assert raw.tolist() == np.concatenate(docs[2:]).tolist()
    assert np.fromfile(str(paths[1]) + ".index", dtype="<u8").tolist() == [17, 317, 319]
    shard = Shard(paths[1], np.dtype("<u4"))
    for i, d in enumerate(docs[2:]):
        assert shard.document(i).tolist() == d.tolist()
    stream = TokenStream(paths, np.dtype("<u4"))
    flat = np.concatenate(docs)
    assert len(stream) == len(flat) and stream.num_documents == 5
    for start, length in ((0, len(flat)), (3, 10), (5, 1), (4, 30), (len(flat) - 7, 7)):
        assert stream.read(start, length).tolist() == flat[start:start + length].tolist()
    assert stream.document_starts(4, 30).tolist() == [1, 2, 19]  # documents 1-3 begin at tokens 5, 6 and 23


def test_truncated_shard_is_a_clear_error(tmp_path):
    w = ShardWriter(tmp_path / "a.ds", np.dtype("<u4"))
    w.add([1, 2, 3])
    w.finalize()
    with open(tmp_path / "a.ds", "ab") as f:
        f.write(b"\x00\x00")
    with pytest.raises(NessoError, match="truncated"):
        Shard(tmp_path / "a.ds", np.dtype("<u4"))


# ---- tokenising local files ----------------------------------------------------------------------------------
def write_corpus(root):
    (root / "en").mkdir()
    (root / "en" / "a.txt").write_text("The quick brown fox jumps over the lazy dog.\n")
    (root / "en" / "b.md").write_text("# Title\n\nA second English document.")
    (root / "en" / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))  # not UTF-8
    (root / "en" / "empty.txt").write_text("  \n")
    lines = [json.dumps({"text": "Il gatto dorme sul divano."}),
             "{not json",
             json.dumps({"testo": "wrong field"}),
             json.dumps({"text": 42}),
             "",
             json.dumps(["a list"]),
             json.dumps({"text": "Oggi piove a Milano e fa freddo."}),
             json.dumps({"text": ""}),
             '{"text": "caff\\u00e8 \\ud800"}']  # a lone surrogate escape: valid JSON, not text
    (root / "it.jsonl").write_text("\n".join(lines) + "\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"content": ["def f(x):\n    return x + 1\n", None, "print('ciao')\n"]}),
                   root / "code.parquet")
    return {"en": ["The quick brown fox jumps over the lazy dog.\n", "# Title\n\nA second English document."],
            "it": ["Il gatto dorme sul divano.", "Oggi piove a Milano e fa freddo."],
            "code": ["def f(x):\n    return x + 1\n", "print('ciao')\n"]}


def corpus_recipe(root, out, shard_tokens=1024, tasks=None):
    extra = {"tasks": tasks} if tasks else {}
    return DataRecipe.from_raw({"name": "t", "data": {"out": str(out), "shard_tokens": shard_tokens, "sources": [
        {"name": "en", "weight": 0.4, "files": str(root / "en"), **extra},
        {"name": "it", "weight": 0.4, "files": str(root / "*.jsonl")},
        {"name": "code", "weight": 0.2, "files": [str(root / "code.parquet")], "text_column": "content"},
    ]}})


def all_documents(out, name):
    manifest = read_manifest(out)
    docs = []
    for rel in manifest["sources"][name]["shards"]:
        shard = Shard(out / rel, np.dtype("<u4"))
        docs.extend(shard.document(i).tolist() for i in range(shard.num_documents))
    return docs


def test_tokenize_writes_exact_documents_and_counts_malformed_input(tmp_path, llama_tokenizer):
    texts = write_corpus(tmp_path)
    out = tmp_path / "out"
    lines = []
    manifest = tokenize_recipe(corpus_recipe(tmp_path, out), show_progress=False, echo=lines.append)
    assert manifest["tokenizer"]["dtype"] == "uint32" and manifest["tokenizer"]["eos_id"] == EOT
    for name, expected in texts.items():
        docs = all_documents(out, name)
        assert docs == [llama_tokenizer.encode(t) + [EOT] for t in expected], name
        entry = manifest["sources"][name]
        assert entry["complete"] and entry["documents"] == len(expected)
        assert entry["tokens"] == sum(len(d) for d in docs)
    assert manifest["sources"]["en"]["skipped"] == {"not UTF-8": 1, "empty": 1}
    assert manifest["sources"]["it"]["skipped"] == {"invalid JSON": 1, "no 'text' field": 1,
                                                    "'text' is not a string": 1, "not a JSON object": 1, "empty": 1,
                                                    "lone surrogate escape": 1}
    assert manifest["sources"]["code"]["skipped"] == {"'content' is not a string": 1}
    assert any("it.jsonl:2" in e for e in manifest["sources"]["it"]["examples"])
    assert any(line.startswith("it ") and "skipped 6" in line for line in lines)


def test_interrupted_tokenization_resumes_to_identical_shards(tmp_path, monkeypatch):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "en").mkdir()
    rng = np.random.default_rng(1)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    for i in range(40):
        (root / "en" / f"{i:03d}.txt").write_text(" ".join(rng.choice(words, size=30 + i)))
    (root / "it.jsonl").write_text("".join(json.dumps({"text": f"documento numero {i}"}) + "\n" for i in range(30)))
    (root / "en" / "broken.parquet").write_bytes(b"PAR1 garbage")  # unreadable parquet: counted, not fatal
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"content": [f"x = {i}\n" for i in range(20)]}), root / "code.parquet")
    import nesso.data.tokenize as tk

    monkeypatch.setattr(tk, "BATCH_CHARS", 1)  # flush (and maybe commit) after every document

    reference = tmp_path / "ref"
    tokenize_recipe(corpus_recipe(root, reference, shard_tokens=100), show_progress=False, echo=lambda _: None)

    out = tmp_path / "out"
    recipe = corpus_recipe(root, out, shard_tokens=100)
    manifest = tk._plan(recipe, out, workers=1)
    entry = manifest["sources"]["en"]
    job = TaskJob(str(out), dict(recipe.sources[0].__dict__), 0, 1, entry["tasks"][0], "llama32", EOT, "uint32", 100)
    calls = {"n": 0}

    def crash(_source, _tokens, _docs):
        calls["n"] += 1
        if calls["n"] >= 20 and list((out / "en").glob("*.ds.tmp")):
            raise KeyboardInterrupt  # e.g. Ctrl-C while a shard is half written

    with pytest.raises(KeyboardInterrupt):
        run_task(job, report=crash)
    progress = json.loads((out / "en" / "t0000.progress.json").read_text())
    assert not progress["done"] and progress["shards"], "some shards were committed before the crash"
    assert list((out / "en").glob("*.tmp")), "the open shard was left behind as .tmp"
    tokenize_recipe(recipe, show_progress=False, echo=lambda _: None)
    assert not list((out / "en").glob("*.tmp"))
    got, ref = read_manifest(out), read_manifest(reference)
    assert ref["sources"]["en"]["skipped"] == {"unreadable parquet (ArrowInvalid)": 1}
    for name in ("en", "it", "code"):
        assert all_documents(out, name) == all_documents(reference, name), name
        for key in ("tokens", "documents", "skipped", "shards"):
            assert got["sources"][name][key] == ref["sources"][name][key], (name, key)


def test_parallel_workers_write_the_same_tokens(tmp_path):
    write_corpus(tmp_path)
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    tokenize_recipe(corpus_recipe(tmp_path, serial, tasks=2), workers=1, show_progress=False, echo=lambda _: None)
    tokenize_recipe(corpus_recipe(tmp_path, parallel, tasks=2), workers=2, show_progress=False, echo=lambda _: None)
    a, b = read_manifest(serial), read_manifest(parallel)
    assert len(a["sources"]["en"]["tasks"]) == 2
    for name in ("en", "it", "code"):
        assert all_documents(serial, name) == all_documents(parallel, name)
        assert a["sources"][name]["skipped"] == b["sources"][name]["skipped"]


def test_changed_source_is_refused_on_resume(tmp_path):
    write_corpus(tmp_path)
    out = tmp_path / "out"
    tokenize_recipe(corpus_recipe(tmp_path, out), show_progress=False, echo=lambda _: None)
    changed = corpus_recipe(tmp_path, out)
    changed.sources[1].text_column = "testo"
    with pytest.raises(NessoError, match="changed since"):
        tokenize_recipe(changed, show_progress=False, echo=lambda _: None)


def test_hf_source_streams_through_datasets(tmp_path):
    """The hub code path (load_dataset streaming + split across tasks), fed by datasets' local json builder."""
    pytest.importorskip("datasets")
    rows = [{"text": f"riga {i}", "id": i} for i in range(10)] + [{"text": None, "id": 10}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = DataRecipe.from_raw({"name": "hf", "data": {"out": str(tmp_path / "out"), "sources": [
        {"name": "web", "weight": 1, "hf": "json", "data_files": str(tmp_path / "d.jsonl"), "tasks": 2}]}})
    manifest = tokenize_recipe(recipe, show_progress=False, echo=lambda _: None)
    entry = manifest["sources"]["web"]
    assert entry["documents"] == 10 and entry["skipped"] == {"'text' is not a string": 1}
    items = [x for t in entry["tasks"] for x in iter_task(recipe.sources[0], t) if isinstance(x, str)]
    assert sorted(items) == sorted(f"riga {i}" for i in range(10))


# ---- offline builtins ---------------------------------------------------------------------------------------
def write_mo(catalog: dict[str, str]) -> bytes:
    items = sorted({"": "Content-Type: text/plain; charset=UTF-8\n", **catalog}.items())
    ids = [k.encode() for k, _ in items]
    strs = [v.encode() for _, v in items]
    n = len(items)
    start = 28 + 16 * n
    blob, otab, ttab = b"", [], []
    for s in ids:
        otab.append((len(s), start + len(blob)))
        blob += s + b"\0"
    for s in strs:
        ttab.append((len(s), start + len(blob)))
        blob += s + b"\0"
    head = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    return head + b"".join(struct.pack("<2I", *p) for p in otab + ttab) + blob


def test_mo_reader_agrees_with_gettext():
    data = write_mo({"File not found": "File non trovato", "Cancel": "Annulla", "%d file": "%d file\x00%d file"})
    ours = read_mo(data)
    theirs = gettext.GNUTranslations(io.BytesIO(data))
    assert ours["Cancel"] == theirs.gettext("Cancel") == "Annulla"
    assert ours["File not found"] == "File non trovato"
    with pytest.raises(ValueError, match="magic"):
        read_mo(b"\x00" * 40)


def test_offline_builtins_find_real_text():
    from nesso.data.recipe import SourceSpec

    it = SourceSpec("it", 1, "builtin", builtin="gettext-it")
    catalogs = source_files(it)
    text = next(x for x in iter_task(it, {"files": [str(p) for p in catalogs[:5]]}) if isinstance(x, str))
    words = text.lower().split()
    assert sum(w in {"di", "il", "non", "per", "la", "che", "un", "del", "file", "è"} for w in words) > 0.05 * len(words)
    code = SourceSpec("code", 1, "builtin", builtin="python-stdlib")
    files = source_files(code)
    assert any(p.name == "os.py" for p in files) and not any("site-packages" in p.parts for p in files)


# ---- recipes --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("data: [unclosed", "not valid YAML at line 1"),
    ("- just\n- a list\n", "must be a YAML mapping"),
    ("data:\n  sources: []\n", "sources is empty"),
    ("data:\n  sources:\n    - {name: a, files: x}\n", r"sources\[0\] \(a\).weight is required"),
    ("data:\n  sources:\n    - {name: a, weight: -1, files: x}\n", "must be > 0"),
    ("data:\n  sources:\n    - {name: a, weight: 1, files: x, hf: y}\n", "exactly one of"),
    ("data:\n  sources:\n    - {name: a, weight: 1, builtin: wikipedia}\n", "choose one of: python-stdlib"),
    ("data:\n  sources:\n    - {name: a, weight: one, files: x}\n", "must be a number"),
    ("data:\n  sources:\n    - {name: a, weight: 1, files: x, text_colum: t}\n", "did you mean 'text_column'"),
    ("data:\n  sources:\n    - {name: a/b, weight: 1, files: x}\n", "names a folder"),
    ("data:\n  sources:\n    - {name: a, weight: 1, files: x}\n    - {name: a, weight: 1, files: y}\n", "duplicate"),
])
def test_bad_recipe_yaml_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(NessoError, match=message):
        DataRecipe.from_raw(read_recipe_file(path))


def test_cli_reports_recipe_errors_in_one_line(tmp_path, capsys):
    from nesso.cli import main

    path = tmp_path / "r.yaml"
    path.write_text("data:\n  sources:\n    - {name: a, weight: 1, files: /nonexistent/*.txt}\n")
    assert main(["data", "tokenize", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nesso: error:") and "matched no files" in err and "\n" not in err
    assert main(["data", "tokenize", str(tmp_path / "missing.yaml")]) == 2


def test_shipped_recipes_parse():
    from nesso.train import PretrainRecipe

    z = PretrainRecipe.load("recipes/zagreus-0.4b-pretrain.yaml")
    assert z.train.seq_len == 4096 and z.train.micro_batch == 4 and z.train.lr == 3e-3
    assert z.train.resolve_grad_accum(64) == 1 and z.train.resolve_grad_accum(8) == 8
    assert z.train.betas == (0.9, 0.95) and z.train.eps == 1e-8 and z.train.weight_decay == 0.01
    assert (z.schedule.warmup_steps, z.schedule.decay_start, z.schedule.decay_steps) == (4000, 750_000, 50_000)
    assert z.model.num_parameters()["total"] == 437_760_960
    w = z.data.weights
    assert sum(v for k, v in w.items() if k.startswith("code")) == pytest.approx(0.2)
    assert w["fineweb-en"] == pytest.approx(0.4)
    m = PretrainRecipe.load("recipes/micro-cpu.yaml")
    assert {s.builtin for s in m.data.sources} == {"python-docstrings", "gettext-it", "python-stdlib"}
    with pytest.raises(NessoError, match="not a multiple"):
        z.train.resolve_grad_accum(3)


# ---- mixing -------------------------------------------------------------------------------------------------
def synthetic_streams(tmp_path, sizes=(4000, 2500, 1200)):
    streams = {}
    for k, n in enumerate(sizes):
        w = ShardWriter(tmp_path / f"src{k}.ds", np.dtype("<u2"))
        w.add(np.full(n, k, dtype=np.int64) * 1000 + np.arange(n) % 1000)
        w.finalize()
        streams[f"s{k}"] = TokenStream([tmp_path / f"src{k}.ds"], np.dtype("<u2"))
    return streams


def test_mixing_follows_weights_and_is_deterministic(tmp_path):
    streams = synthetic_streams(tmp_path)
    weights = {"s0": 0.5, "s1": 0.3, "s2": 0.2}
    a = MixedWindows(streams, weights, seq_len=16, seed=7)
    picks = a.take(1000)
    counts = np.bincount([i for i, _ in picks], minlength=3)
    assert counts.tolist() == [500, 300, 200]
    b = MixedWindows(streams, weights, seq_len=16, seed=7)
    assert b.take(1000) == picks
    c = MixedWindows(streams, weights, seq_len=16, seed=8)
    assert c.take(1000) != picks
    # Within an epoch every window of a source is used exactly once (s2 has (1200-1)//16 = 74 windows).
    starts = [s for i, s in picks if i == 2][:74]
    assert sorted(starts) == [16 * j for j in range(74)]
    window = a.read(1, 32)
    assert window.tolist() == [1000 + (32 + j) % 1000 for j in range(17)]


def test_batches_resume_and_split_across_ranks(tmp_path):
    streams = synthetic_streams(tmp_path)
    weights = {"s0": 0.4, "s1": 0.4, "s2": 0.2}

    def batches(rank=0, world=1, accum=2):
        return PretrainBatches(MixedWindows(streams, weights, 16, seed=3), micro_batch=2, grad_accum=accum,
                               rank=rank, world=world)

    full = batches()
    steps = [full.next_step() for _ in range(3)]
    state = json.loads(json.dumps(full.state_dict()))
    later = full.next_step()
    resumed = batches()
    resumed.load_state_dict(state)
    assert all((x["input_ids"] == y["input_ids"]).all() for x, y in zip(resumed.next_step(), later))
    # 2 ranks × accumulation 1 see exactly the micro-batches of 1 rank × accumulation 2.
    r0, r1 = batches(0, 2, 1), batches(1, 2, 1)
    for step in steps:
        a, b = r0.next_step(), r1.next_step()
        assert (a[0]["input_ids"] == step[0]["input_ids"]).all() and (b[0]["input_ids"] == step[1]["input_ids"]).all()
        assert (a[0]["labels"][:, :-1] == a[0]["input_ids"][:, 1:]).all()


def test_document_masking_layout(tmp_path):
    w = ShardWriter(tmp_path / "d.ds", np.dtype("<u2"))
    for n in (5, 3, 10):
        w.add(np.arange(n))
    w.finalize()
    windows = MixedWindows({"d": TokenStream([tmp_path / "d.ds"], np.dtype("<u2"))}, {"d": 1.0}, 8, 0, shuffle=False)
    batch = PretrainBatches(windows, 1, 1, document_masking=True).next_step()[0]
    assert batch["doc_ids"].tolist() == [[0, 0, 0, 0, 0, 1, 1, 1]]
    assert batch["positions"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2]]


def test_open_sources_requires_complete_tokenization(tmp_path):
    with pytest.raises(NessoError, match="nesso data tokenize"):
        open_sources(tmp_path, ["en"])
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(NessoError, match="not a nesso token manifest"):
        open_sources(tmp_path, ["en"])
