"""Where documents come from: Hugging Face datasets (streamed), local files, and text found on this machine.

A source is split into *tasks* (independent work units: a list of files, or one shard of a stream) that the
tokeniser runs in parallel. Each task yields, in a fixed order, either a document's text or a :class:`Skipped`
record (malformed or empty input), so that a resumed task can skip exactly the documents it already wrote.

The offline builtins read text that ships with this machine (nothing is copied into the repository):
- ``python-stdlib``: the ``.py`` files of the running interpreter's standard library (code);
- ``python-docstrings``: module/class/function docstrings of the installed packages in site-packages (English);
- ``gettext-it``: the Italian translations (``msgstr``) of the gettext catalogs installed for the system
  (``/usr/share/locale/it/LC_MESSAGES/*.mo``: coreutils, apt, bash, git, ...) and by Python packages (Italian).
"""

from __future__ import annotations

import ast
import codecs
import glob
import gzip
import json
import struct
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nesso.data.recipe import SourceSpec, expand_path
from nesso.errors import NessoError
from nesso.tokenizer import first_surrogate

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")
MIN_DOCSTRING_CHARS = 200


@dataclass
class Skipped:
    reason: str  # short category, e.g. "invalid JSON", "not UTF-8", "empty"
    where: str  # file[:line] for the report


Item = str | Skipped


# ---- planning ------------------------------------------------------------------------------------------
def plan_tasks(spec: SourceSpec, default_tasks: int) -> list[dict[str, Any]]:
    """JSON-serialisable task descriptors; fixed at the first run (stored in the manifest) so resumes line up."""
    if spec.kind == "hf":
        n = spec.tasks or default_tasks
        return [{"shard": i, "of": n} for i in range(n)]
    files = [str(p) for p in source_files(spec)]
    n = max(1, min(spec.tasks or default_tasks, len(files)))
    return [{"files": files[i::n]} for i in range(n)]


def source_files(spec: SourceSpec) -> list[Path]:
    if spec.kind == "files":
        files = _expand_file_patterns(spec.files)
        if not files:
            raise NessoError(f"source {spec.name!r}: files {spec.files} matched no files; give a folder, a glob "
                             "like ~/corpus/**/*.jsonl, or a list of files")
        return files
    if spec.builtin == "python-stdlib":
        return _stdlib_python_files()
    if spec.builtin == "python-docstrings":
        return _site_packages_python_files()
    if spec.builtin == "gettext-it":
        return _gettext_catalogs("it")
    raise NessoError(f"source {spec.name!r}: unknown builtin {spec.builtin!r}")


def _expand_file_patterns(patterns: list[str]) -> list[Path]:
    found: list[Path] = []
    for pattern in patterns:
        path = expand_path(pattern)
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*")) if p.is_file() and not _hidden(p.relative_to(path)))
        elif path.is_file():
            found.append(path)
        else:
            found.extend(Path(p) for p in sorted(glob.glob(str(path), recursive=True)) if Path(p).is_file())
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") or part == "__pycache__" for part in rel.parts)


def _stdlib_python_files() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in sorted(stdlib.rglob("*.py"))
             if not {"site-packages", "dist-packages", "__pycache__"} & set(p.relative_to(stdlib).parts)]
    if not files:
        raise NessoError(f"builtin python-stdlib found no .py files under {stdlib}; point the code source at your "
                         "own folder instead (files: /path/to/code)")
    return files


def _site_packages_python_files() -> list[Path]:
    roots = sorted({Path(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")})
    files: list[Path] = []
    for root in roots:
        if root.is_dir():
            files.extend(p for p in sorted(root.rglob("*.py")) if "__pycache__" not in p.parts)
    if not files:
        raise NessoError("builtin python-docstrings found no installed Python packages; point the English "
                         "source at your own folder instead (files: /path/to/english)")
    return files


def gettext_roots() -> list[Path]:
    roots = [Path(sys.prefix) / "share" / "locale", Path(sys.base_prefix) / "share" / "locale",
             Path("/usr/share/locale"), Path("/usr/local/share/locale"), Path("/usr/share/locale-langpack")]
    return list(dict.fromkeys(roots))


def _gettext_catalogs(lang: str) -> list[Path]:
    found: list[Path] = []
    for root in gettext_roots():
        for loc in (lang, f"{lang}_{lang.upper()}"):
            d = root / loc / "LC_MESSAGES"
            if d.is_dir():
                found.extend(sorted(d.glob("*.mo")))
    for key in ("purelib", "platlib"):
        site = Path(sysconfig.get_paths()[key])
        if site.is_dir():
            found.extend(sorted(site.glob(f"**/locale/{lang}/LC_MESSAGES/*.mo")))
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        where = ", ".join(str(r) for r in gettext_roots())
        raise NessoError(f"builtin gettext-{lang} found no {lang} gettext catalogs (*.mo) under {where} or in "
                         f"site-packages; install some (e.g. `apt-get install coreutils` ships them) or point the "
                         f"source at your own text: files: /path/to/{lang}/texts")
    return unique


# ---- reading --------------------------------------------------------------------------------------------
def iter_task(spec: SourceSpec, task: dict[str, Any]) -> Iterator[Item]:
    if spec.kind == "hf":
        yield from _iter_hf(spec, task["shard"], task["of"])
        return
    for name in task["files"]:
        path = Path(name)
        if spec.builtin == "python-docstrings":
            yield _docstrings(path)
        elif spec.builtin == "gettext-it":
            yield _gettext_text(path)
        elif _has_suffix(path, JSONL_SUFFIXES):
            yield from _iter_jsonl(path, spec.text_column)
        elif _has_suffix(path, (".parquet",)):
            yield from _iter_parquet(path, spec.text_column)
        else:
            yield _whole_file(path)


def _has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    return path.name.lower().endswith(suffixes)


def _read_bytes(path: Path) -> bytes:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            return f.read()
    return path.read_bytes()


def _whole_file(path: Path) -> Item:
    try:
        text = _read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError:
        return Skipped("not UTF-8", str(path))
    except (OSError, EOFError) as e:
        return Skipped(f"unreadable ({type(e).__name__})", str(path))
    return text if text.strip() else Skipped("empty", str(path))


def _iter_jsonl(path: Path, column: str) -> Iterator[Item]:
    try:
        opener = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")  # noqa: SIM115
        with opener as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                yield _jsonl_record(raw, column, f"{path}:{lineno}")
    except (OSError, EOFError) as e:
        yield Skipped(f"unreadable ({type(e).__name__})", str(path))


def _jsonl_record(raw: bytes, column: str, where: str) -> Item:
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return Skipped("not UTF-8", where)
    except json.JSONDecodeError:
        return Skipped("invalid JSON", where)
    if not isinstance(obj, dict):
        return Skipped("not a JSON object", where)
    if column not in obj:
        return Skipped(f"no '{column}' field", where)
    text = obj[column]
    if not isinstance(text, str):
        return Skipped(f"'{column}' is not a string", where)
    if b"\\u" in raw and first_surrogate(text) is not None:  # "\\ud800" alone: valid JSON, not text
        return Skipped("lone surrogate escape", where)
    return text if text.strip() else Skipped("empty", where)


def _iter_parquet(path: Path, column: str) -> Iterator[Item]:
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise NessoError(f"reading {path} needs pyarrow: pip install pyarrow (or pip install 'nesso[hub]')") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        yield Skipped(f"unreadable parquet ({type(e).__name__})", str(path))
        return
    names = pf.schema_arrow.names
    if column not in names:
        raise NessoError(f"{path} has no column {column!r} (columns: {', '.join(names)}); set text_column: in the "
                         "source")
    row = 0
    for batch in pf.iter_batches(batch_size=1024, columns=[column]):
        for value in batch.column(0).to_pylist():
            row += 1
            if not isinstance(value, str):
                yield Skipped(f"'{column}' is not a string", f"{path}#row{row}")
            elif not value.strip():
                yield Skipped("empty", f"{path}#row{row}")
            else:
                yield value


def _iter_hf(spec: SourceSpec, shard: int, of: int) -> Iterator[Item]:
    try:
        import datasets
        from datasets.distributed import split_dataset_by_node
    except ModuleNotFoundError:
        raise NessoError(f"source {spec.name!r} streams {spec.hf} from the Hugging Face hub, which needs the "
                         "datasets package: pip install 'nesso[hub]'") from None
    kwargs: dict[str, Any] = {"split": spec.split, "streaming": True}
    for key in ("data_dir", "data_files", "revision"):
        if getattr(spec, key) is not None:
            kwargs[key] = getattr(spec, key)
    try:
        ds = datasets.load_dataset(spec.hf, spec.config, **kwargs)
        if of > 1:
            ds = split_dataset_by_node(ds, rank=shard, world_size=of)
        rows = iter(ds)
    except Exception as e:  # network, auth (gated datasets), unknown config/split: all end here
        raise NessoError(f"source {spec.name!r}: cannot open {spec.describe()} ({type(e).__name__}: {e}). Online "
                         "with access (`huggingface-cli login` for gated sets like bigcode/starcoderdata)? Offline, "
                         "use files: with local copies instead") from None
    column, index = spec.text_column, 0
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as e:
            raise NessoError(f"source {spec.name!r}: streaming {spec.hf} failed after {index} rows of task {shard} "
                             f"({type(e).__name__}: {e}); run the command again to resume") from None
        index += 1
        where = f"{spec.hf}[task {shard}]#row{index}"
        value = row.get(column) if isinstance(row, dict) else None
        if value is None and (not isinstance(row, dict) or column not in row):
            yield Skipped(f"no '{column}' field", where)
        elif not isinstance(value, str):
            yield Skipped(f"'{column}' is not a string", where)
        elif not value.strip():
            yield Skipped("empty", where)
        else:
            yield value


# ---- builtins: docstrings and gettext catalogs -----------------------------------------------------------
def _docstrings(path: Path) -> Item:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError, RecursionError):
        return Skipped("unparsable Python", str(path))
    texts = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc) >= 40:
                texts.append(doc)
    text = "\n\n".join(texts)
    return text if len(text) >= MIN_DOCSTRING_CHARS else Skipped("too little docstring text", str(path))


def read_mo(data: bytes) -> dict[str, str]:
    """msgid -> msgstr from a GNU .mo catalog (either byte order); plural forms are joined with newlines."""
    if len(data) < 28:
        raise ValueError("too short for a .mo file")
    magic = struct.unpack("<I", data[:4])[0]
    order = "<" if magic == 0x950412DE else ">" if magic == 0xDE120495 else None
    if order is None:
        raise ValueError("not a .mo file (bad magic number)")
    _, count, orig_off, trans_off = struct.unpack(order + "4I", data[4:20])
    raw_pairs = []
    for i in range(count):
        olen, opos = struct.unpack(order + "2I", data[orig_off + 8 * i: orig_off + 8 * i + 8])
        tlen, tpos = struct.unpack(order + "2I", data[trans_off + 8 * i: trans_off + 8 * i + 8])
        if opos + olen > len(data) or tpos + tlen > len(data):
            raise ValueError("string table points past the end of the file")
        raw_pairs.append((data[opos:opos + olen], data[tpos:tpos + tlen]))
    charset = "utf-8"
    for msgid, msgstr in raw_pairs:
        if msgid == b"":
            for line in msgstr.decode("ascii", "replace").splitlines():
                if line.lower().startswith("content-type:") and "charset=" in line:
                    charset = line.split("charset=", 1)[1].strip() or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    catalog = {}
    for msgid, msgstr in raw_pairs:
        if msgid == b"":
            continue
        catalog[msgid.decode(charset)] = "\n".join(msgstr.decode(charset).split("\x00"))
    return catalog


def _gettext_text(path: Path) -> Item:
    try:
        catalog = read_mo(path.read_bytes())
    except (ValueError, UnicodeDecodeError, struct.error, OSError):
        return Skipped("unreadable .mo catalog", str(path))
    lines = [v.strip() for v in catalog.values() if v.strip()]
    return "\n".join(lines) if lines else Skipped("empty", str(path))
