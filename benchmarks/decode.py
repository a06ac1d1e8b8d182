"""CPU decode and prefill speed, batch 1: nesso's engine (bf16, int8) vs HF transformers ``generate`` (fp32, bf16)
vs llama.cpp (GGUF F16 and Q8_0 of the same weights, written by nesso's own GGUF export).

    .venv/bin/python benchmarks/decode.py                               # nesso-0.4B shape + the embedded model
    .venv/bin/python benchmarks/decode.py --models nesso-0.4b --only nesso-bf16,llama-f16 --rounds 5
    .venv/bin/python benchmarks/decode.py --markdown --json out.json

Every runtime decodes the same prompt (64 fixed random token ids) greedily for 128 new tokens and prefills the same
1,024 ids, with the same number of threads (``--threads``, default: every core). Decode tok/s is
127 / (time of 128 new tokens - time of 1 new token), i.e. the tokens after the first, which comes from the
prefill; prefill tok/s is 1,024 / time of a 1-token generation from a 1,024-token prompt. Runtimes are measured
interleaved, round after round, and each number is the median over rounds, so a burst of load from other
processes hits all of them alike; the 1-minute load average is printed with each round.

* nesso: ``Engine.generate`` (greedy, stop tokens disabled so that all 128 tokens are decoded, the KV-cache prefix
  reuse reset before each call) on the model as ``nesso generate [--quantize int8]`` prepares it
  (``nesso.quantize.maybe_quantize``); its decode steps after the first replay the recorded one
  (``nesso.decode_graph``), as in every batch-1 generation.
* HF: ``LlamaForCausalLM.generate`` with its default cache, ``min_new_tokens`` = ``max_new_tokens``.
* llama.cpp: llama-cpp-python's ``Llama.eval`` token by token with an argmax in numpy, the same greedy loop.

GB/s is decode tok/s times the bytes one decode step reads (every matrix once, the tied output head included;
the embedding row is negligible). nesso's kernel build time (once per machine, cached) is printed separately.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

ALL = ("nesso-bf16", "nesso-int8", "hf-fp32", "hf-bf16", "llama-f16", "llama-q8_0")
PEERS = {"nesso-bf16": "llama-f16", "nesso-int8": "llama-q8_0"}


def load1() -> float:
    return os.getloadavg()[0]


def token_ids(vocab: int, n: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return rng.integers(1000, min(vocab, 100_000), n).tolist()


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes one decode step reads: every projection and the output head (once even when tied)."""
    from nesso.quantize import Int8Linear

    total, seen = 0, set()
    for m in model.modules():
        if isinstance(m, Int8Linear):
            total += m.weight_int8.numel() + m.scale.numel() * m.scale.element_size()
        elif isinstance(m, torch.nn.Linear) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            total += m.weight.numel() * m.weight.element_size()
    return total


# ---- runtimes ------------------------------------------------------------------------------------------------

class GenerateRunner:
    """A runtime timed through whole generate calls: decode = (N - 1 tokens) / (time of N - time of 1)."""

    def _generate(self, prompt: list[int], new: int) -> float:
        raise NotImplementedError

    def decode(self, prompt: list[int], new: int) -> float:
        first = self._generate(prompt, 1)
        total = self._generate(prompt, new)
        return (new - 1) / max(total - first, 1e-9)

    def prefill(self, ids: list[int]) -> float:
        return len(ids) / self._generate(ids, 1)


class NessoRunner(GenerateRunner):
    def __init__(self, name: str, model: torch.nn.Module, tokenizer) -> None:
        from nesso.engine import Engine

        self.name, self.bytes = name, weight_bytes(model)
        self.engine = Engine(model, tokenizer)
        self.engine.stop_ids = set()  # random weights may pick an end token: decode all the tokens asked for

    def _generate(self, prompt: list[int], new: int) -> float:
        from nesso.engine import SamplingParams

        self.engine.model.cached_ids = []  # no KV-cache prefix reuse from the previous call
        start = time.perf_counter()
        out = self.engine.generate(prompt, SamplingParams(max_tokens=new))
        elapsed = time.perf_counter() - start
        assert out.completion_tokens == new, out.completion_tokens
        return elapsed



class HFRunner(GenerateRunner):
    def __init__(self, name: str, model, nbytes: int) -> None:
        self.name, self.model, self.bytes = name, model, nbytes

    @torch.inference_mode()
    def _generate(self, prompt: list[int], new: int) -> float:
        ids = torch.tensor([prompt])
        start = time.perf_counter()
        self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                            do_sample=False, pad_token_id=0)
        return time.perf_counter() - start



class LlamaCppRunner:
    def __init__(self, name: str, path: Path, threads: int, ctx: int) -> None:
        from llama_cpp import Llama

        self.name, self.path = name, path
        self.llm = Llama(model_path=str(path), n_ctx=ctx, n_batch=ctx, n_ubatch=ctx, n_threads=threads,
                         n_threads_batch=threads, logits_all=False, verbose=False)
        self.bytes = gguf_tensor_bytes(path)

    def decode(self, prompt: list[int], new: int) -> float:
        llm = self.llm
        llm.reset()
        llm.eval(prompt)
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        start = time.perf_counter()
        for _ in range(new - 1):
            llm.eval([tok])
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        return (new - 1) / (time.perf_counter() - start)

    def prefill(self, ids: list[int]) -> float:
        self.llm.reset()
        start = time.perf_counter()
        self.llm.eval(ids)
        return len(ids) / (time.perf_counter() - start)


def gguf_tensor_bytes(path: Path) -> int:
    """Bytes a decode step reads from a GGUF: every tensor but the embedding, which is read in full only when it
    doubles as the output head (no output.weight)."""
    from gguf import GGUFReader

    tensors = {t.name: int(t.n_bytes) for t in GGUFReader(str(path)).tensors}
    total = sum(tensors.values())
    if "output.weight" in tensors:
        total -= tensors.get("token_embd.weight", 0)
    return total


# ---- setup ---------------------------------------------------------------------------------------------------

def hf_model(model, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from nesso.checkpoint import to_hf_state_dict

    cfg = LlamaConfig(**model.config.to_hf("float32"))
    with torch.device("meta"):  # no random init of weights that are overwritten next
        hf = LlamaForCausalLM(cfg)
    sd = {k: v.detach().to(dtype).clone() for k, v in to_hf_state_dict(model).items()}
    hf.load_state_dict(sd, strict=False, assign=True)
    hf.tie_weights()
    hf.model.rotary_emb = LlamaRotaryEmbedding(config=cfg)  # its buffers are not in the state dict
    return hf.to(dtype).eval()


def build_runners(ref: str, only: list[str], threads: int, workdir: Path, ctx: int):
    from nesso.gguf_export import export_gguf
    from nesso.loader import load_model
    from nesso.quantize import maybe_quantize

    loaded = load_model(ref, dtype=torch.float32, seed=0)
    base, tok = loaded.model.eval(), loaded.tokenizer
    runners = []
    for name in only:
        t = time.perf_counter()
        if name.startswith("nesso-"):  # as `nesso generate [--quantize int8]` prepares it (bf16 is the default)
            m = copy.deepcopy(base).to(torch.bfloat16)
            runners.append(NessoRunner(name, maybe_quantize(m, "int8" if name == "nesso-int8" else "none"), tok))
        elif name.startswith("hf-"):
            hf = hf_model(base, torch.float32 if name == "hf-fp32" else torch.bfloat16)
            runners.append(HFRunner(name, hf, weight_bytes(hf)))
        elif name.startswith("llama-"):
            if importlib.util.find_spec("llama_cpp") is None:
                print(f"  {name}: llama-cpp-python is not installed (`make dev` builds it); skipped")
                continue
            kind = name.split("-", 1)[1]
            path = workdir / f"{ref.replace('/', '_')}.{kind}.gguf"
            if not path.is_file():
                export_gguf(base, tok, path, kind, name=ref)
            runners.append(LlamaCppRunner(name, path, threads, ctx))
        print(f"  {name}: ready in {time.perf_counter() - t:.0f} s", flush=True)
    return runners, loaded.source, base.config


def measure(runners, prompt, new, prefill_ids, rounds):
    results = {r.name: {"decode": [], "prefill": []} for r in runners}
    loads = []
    for rnd in range(rounds):
        for r in runners:
            loads.append(load1())
            results[r.name]["decode"].append(r.decode(prompt, new))
            if prefill_ids:
                results[r.name]["prefill"].append(r.prefill(prefill_ids))
        line = "  ".join(f"{r.name} {results[r.name]['decode'][-1]:.1f}" for r in runners)
        print(f"  round {rnd + 1}/{rounds} (load {load1():.1f}) decode tok/s: {line}", flush=True)
    return results, loads


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def report(label: str, runners, results, loads, markdown: bool) -> list[dict]:
    rows = []
    for r in runners:
        res = results[r.name]
        dec = statistics.median(res["decode"])
        pre = statistics.median(res["prefill"]) if res["prefill"] else None
        rows.append({"runtime": r.name, "decode_tok_s": dec, "prefill_tok_s": pre, "bytes_per_token": r.bytes,
                     "decode_gb_s": dec * r.bytes / 1e9, "decode_all": res["decode"], "prefill_all": res["prefill"]})
    by = {row["runtime"]: row for row in rows}

    def get(name: str | None, key: str) -> float | None:
        return by[name][key] if name in by else None

    print(f"\n{label}: load average during the run min {min(loads):.1f} / mean {statistics.mean(loads):.1f} / "
          f"max {max(loads):.1f}")
    head = ("runtime", "decode tok/s", "MB/token", "GB/s", "prefill tok/s", "decode vs llama.cpp",
            "decode vs HF bf16", "decode vs HF fp32", "prefill vs llama.cpp")
    lines = []
    for row in rows:
        name = row["runtime"]
        peer = PEERS.get(name)
        nesso = name.startswith("nesso")
        lines.append((name, f"{row['decode_tok_s']:.1f}", f"{row['bytes_per_token'] / 1e6:.0f}",
                      f"{row['decode_gb_s']:.1f}", f"{row['prefill_tok_s']:.0f}" if row["prefill_tok_s"] else "-",
                      ratio(row["decode_tok_s"], get(peer, "decode_tok_s")) if peer else "",
                      ratio(row["decode_tok_s"], get("hf-bf16", "decode_tok_s")) if nesso else "",
                      ratio(row["decode_tok_s"], get("hf-fp32", "decode_tok_s")) if nesso else "",
                      ratio(row["prefill_tok_s"], get(peer, "prefill_tok_s")) if peer else ""))
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for cells in lines:
            print("| " + " | ".join(cells) + " |")
    else:
        widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
        print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        for cells in lines:
            print("  ".join(c.ljust(w) for c, w in zip(cells, widths)))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="nesso-0.4b,default", help="comma-separated model references")
    p.add_argument("--only", default=",".join(ALL), help=f"runtimes to measure ({', '.join(ALL)})")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for torch and llama.cpp")
    p.add_argument("--prompt", type=int, default=64, help="prompt tokens before decoding")
    p.add_argument("--new", type=int, default=128, help="tokens to decode")
    p.add_argument("--prefill", type=int, default=1024, help="prefill length (0: skip)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "nesso-bench-decode"),
                   help="where the GGUF exports are kept between runs")
    p.add_argument("--json", default=None, help="write all numbers here")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    args = p.parse_args()

    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in ALL]
    if unknown:
        p.error(f"unknown runtime {unknown[0]!r}; choose from {', '.join(ALL)}")
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    from nesso import cpu_kernels

    t = time.perf_counter()
    status = cpu_kernels.status()  # builds the kernels if this machine has no cached build yet
    kernel_s = time.perf_counter() - t
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch "
          f"{torch.__version__}, {args.threads} threads; nesso kernels: {status} (ready in {kernel_s:.1f} s)")
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")

    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "threads": args.threads, "kernels": status,
           "kernel_build_s": kernel_s, "models": {}}
    for ref in [m.strip() for m in args.models.split(",") if m.strip()]:
        print(f"\n== {ref} ==", flush=True)
        runners, label, cfg = build_runners(ref, only, args.threads, workdir,
                                            ctx=max(args.prefill, args.prompt + args.new) + 8)
        prompt = token_ids(cfg.vocab_size, args.prompt, seed=0)
        prefill_ids = token_ids(cfg.vocab_size, args.prefill, seed=1) if args.prefill else []
        results, loads = measure(runners, prompt, args.new, prefill_ids, args.rounds)
        rows = report(label, runners, results, loads, args.markdown)
        out["models"][ref] = {"label": label, "rows": rows, "load": loads}
        del runners
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
