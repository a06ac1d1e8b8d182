"""How much 8-bit weights change a model's greedy choices: nesso int8 vs nesso bf16 next to llama.cpp Q8_0 vs
llama.cpp F16, on the same weights and the same 1,000 teacher-forced positions of real text, in one run.

    .venv/bin/python benchmarks/int8_quality.py                  # the embedded model
    .venv/bin/python benchmarks/int8_quality.py --model smollm2-135m-instruct

Text: the README shipped in the installed torch wheel (English prose and code; it does not change under us),
cut into ``--rows`` rows of ``--length`` tokens; the first 3 tokens of each row are a prefill and every later
token is one decode step, as in ``tests/test_decode_kernels.py``. Top-1 agreement is the share of positions where
two runtimes pick the same next token; the logit error is the median over positions of |a - b| / |b| (L2 over
the vocabulary). llama.cpp's GGUF files are written by nesso's own export from the same fp32 weights.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WARM = 3


def text_rows(tokenizer, rows: int, length: int) -> torch.Tensor:
    ids = tokenizer.encode(importlib.metadata.metadata("torch").get_payload() or "")
    if len(ids) < rows * length:
        raise SystemExit(f"torch's README has {len(ids)} tokens; ask for fewer --rows or a smaller --length")
    return torch.tensor(ids[: rows * length]).view(rows, length)


def llama_cpp_logits(path: Path, rows: torch.Tensor, threads: int) -> np.ndarray:
    from llama_cpp import Llama

    t = rows.shape[1]
    llm = Llama(model_path=str(path), n_ctx=t + 8, n_batch=t, n_threads=threads, n_threads_batch=threads,
                logits_all=True, verbose=False)
    outs = []
    for row in rows.tolist():
        llm.reset()
        llm.eval(row)
        outs.append(np.array(llm.scores[WARM:t], dtype=np.float32))  # scores[i]: the logits after token i
    return np.concatenate(outs)


def compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    n = min(a.shape[-1], b.shape[-1])  # a GGUF may pad the vocabulary
    a, b = a[:, :n], b[:, :n]
    agree = float((a.argmax(-1) == b.argmax(-1)).mean())
    err = float(np.median(np.linalg.norm(a - b, axis=-1) / np.linalg.norm(b, axis=-1)))
    return agree, err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--length", type=int, default=128, help="tokens per row (the first 3 are a prefill)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "nesso-bench-quality"))
    args = ap.parse_args()

    from nesso.gguf_export import export_gguf
    from nesso.loader import load_model
    from nesso.quantize import decode_logits, maybe_quantize

    torch.set_num_threads(args.threads)
    loaded = load_model(args.model, dtype=torch.float32)
    base, tok = loaded.model.eval(), loaded.tokenizer
    rows = text_rows(tok, args.rows, args.length)
    n = rows.shape[0] * (rows.shape[1] - WARM)
    print(f"model {loaded.source}; {n} positions of real text; {args.threads} threads")

    logits = {"nesso fp32": decode_logits(base, rows, WARM).numpy()}
    for name, quant in (("nesso bf16", "none"), ("nesso int8", "int8")):
        model = maybe_quantize(copy.deepcopy(base).to(torch.bfloat16).eval(), quant)
        logits[name] = decode_logits(model, rows, WARM).numpy()
    if importlib.util.find_spec("llama_cpp") is None:
        print("llama-cpp-python is not installed (`make dev` builds it): nesso's numbers only")
    else:
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
        for kind in ("f16", "q8_0"):
            path = work / f"{args.model.replace('/', '_')}.{kind}.gguf"
            export_gguf(base, tok, path, kind, name=args.model)
            logits[f"llama.cpp {kind.upper()}"] = llama_cpp_logits(path, rows, args.threads)

    pairs = [("nesso bf16", "nesso fp32"), ("nesso int8", "nesso bf16"), ("nesso int8", "nesso fp32"),
             ("llama.cpp F16", "nesso fp32"), ("llama.cpp Q8_0", "llama.cpp F16"), ("llama.cpp Q8_0", "nesso fp32"),
             ("nesso int8", "llama.cpp Q8_0")]
    print(f"{'comparison':36} {'top-1 agreement':>16} {'median logit error':>19}")
    for a, b in pairs:
        if a in logits and b in logits:
            agree, err = compare(logits[a], logits[b])
            print(f"{a + ' vs ' + b:36} {agree * 100:15.1f}% {err * 100:18.2f}%")
    if "llama.cpp Q8_0" in logits:
        ours, theirs = compare(logits["nesso int8"], logits["nesso bf16"]), compare(
            logits["llama.cpp Q8_0"], logits["llama.cpp F16"])
        print(f"8-bit vs 16-bit agreement, nesso / llama.cpp: {ours[0] / theirs[0]:.3f}x")


if __name__ == "__main__":
    main()
