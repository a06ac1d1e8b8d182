"""The open bilingual (EN/IT) function-calling dataset: a seeded generator over 46 tools in 10 domains, a held-out
split by tool, and importers for public formats. Rows are OpenAI chat messages plus the tools offered.

    from nesso.agentic_data import generate, write_dataset
    rows = generate(500, seed=0)            # {"train": [...], "heldout": [...]}
    write_dataset("data/agentic", n=5000, seed=0)
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from nesso.agentic_data.catalog import DOMAINS, HELDOUT_TOOLS, TOOL_BY_NAME, TOOLS
from nesso.agentic_data.generator import (
    CATEGORIES,
    HELDOUT_FRACTION,
    MAPPED_SPLIT,
    OPENINGS_SPLIT,
    SHIPPED_SPLIT,
    SPLITS,
    SYNTHETIC_SPLIT,
    generate,
    generate_opt_in,
    generate_shipped,
    make_row,
    split_sizes,
)
from nesso.agentic_data.importers import FORMATS, ImportReport, import_file
from nesso.agentic_data.validate import validate_row
from nesso.errors import NessoError

__all__ = ["CATEGORIES", "DOMAINS", "FORMATS", "HELDOUT_FRACTION", "HELDOUT_TOOLS", "MAPPED_SPLIT", "OPENINGS_SPLIT",
           "SHIPPED_SPLIT", "SPLITS", "SYNTHETIC_SPLIT", "TOOLS", "TOOL_BY_NAME", "ImportReport", "generate",
           "generate_opt_in", "generate_shipped", "import_file", "make_row", "split_sizes", "stats", "validate_row",
           "write_dataset", "write_jsonl"]


def stats(rows: dict[str, list[dict[str, Any]]], **meta: Any) -> dict[str, Any]:
    out: dict[str, Any] = {**meta, "tools": len(TOOLS), "domains": DOMAINS, "heldout_tools": sorted(HELDOUT_TOOLS),
                           "splits": {}}
    for split, items in rows.items():
        called: Counter[str] = Counter()
        offered: Counter[str] = Counter()
        for r in items:
            offered.update(t["function"]["name"] for t in r["tools"])
            for m in r["messages"]:
                called.update(c["function"]["name"] for c in m.get("tool_calls") or [])
        out["splits"][split] = {
            "rows": len(items),
            "by_category": dict(sorted(Counter(r["category"] for r in items).items())),
            "by_lang": dict(sorted(Counter(r["lang"] for r in items).items())),
            "calls": sum(called.values()),
            "tools_called": dict(sorted(called.items())),
            "tools_offered": len(offered),
        }
    return out


def write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write atomically: a temporary file in the same directory, renamed over ``path`` once complete."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as e:
        raise NessoError(f"cannot write {path}: {e.strerror or e}") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual permissions
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise NessoError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_dataset(out_dir: str | Path, n: int, seed: int = 0, heldout_fraction: float = HELDOUT_FRACTION,
                  overwrite: bool = False, shipped: int = 0, synthetic: int = 0,
                  mapped: int = 0, openings: int = 0) -> dict[str, Any]:
    """Generate ``n`` rows into ``out_dir``/train.jsonl, heldout.jsonl and stats.json (and, with ``shipped`` /
    ``synthetic`` / ``mapped`` / ``openings``, that many rows of those opt-in splits into <split>.jsonl); returns
    the stats."""
    if not isinstance(n, int) or n < 1:
        raise NessoError(f"--n must be a positive number of rows (got {n})")
    opt_in = {SHIPPED_SPLIT: shipped, SYNTHETIC_SPLIT: synthetic, MAPPED_SPLIT: mapped, OPENINGS_SPLIT: openings}
    for split, k in opt_in.items():
        if not isinstance(k, int) or k < 0:
            raise NessoError(f"--{split} must be a number of rows, 0 or more (got {k})")
    if not 0 <= heldout_fraction < 1:
        raise NessoError(f"--heldout-fraction must be in [0, 1) (got {heldout_fraction})")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NessoError(f"{out} exists and is not a directory; pass a directory for --out")
    targets = [out / f"{s}.jsonl" for s in (*SPLITS, *(s for s, k in opt_in.items() if k))] + [out / "stats.json"]
    existing = [p.name for p in targets if p.exists()]
    if existing and not overwrite:
        raise NessoError(f"{out} already holds {', '.join(existing)}; pass --force to replace them or pick another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NessoError(f"cannot create {out}: {e.strerror or e}") from None
    rows = generate(n, seed, heldout_fraction)
    for split, k in opt_in.items():
        if k:
            rows[split] = generate_opt_in(split, k, seed)
    for split, items in rows.items():
        write_jsonl(out / f"{split}.jsonl", items)
    info = stats(rows, seed=seed, n=n, heldout_fraction=heldout_fraction, generator="nesso.agentic_data",
                 **{s: k for s, k in opt_in.items() if k})
    try:
        (out / "stats.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as e:
        raise NessoError(f"cannot write {out / 'stats.json'}: {e.strerror or e}") from None
    return info
