"""Constrained decoding on the embedded model: (a) the cost of the grammar — decode tok/s with and without it on
the same prompts, in one run; (b) validity — N constrained generations over varied tool sets and JSON schemas
from nesso's bilingual agentic dataset, every one parsed and validated.

    python benchmarks/constrained.py                 # (a) and (b) with N=1000
    python benchmarks/constrained.py --n 200 --batch 8
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time

import jsonschema
import torch

from nesso.agentic_data import generate
from nesso.engine import Engine, SamplingParams
from nesso.grammar import compiler_for
from nesso.loader import load_model
from nesso.quantize import maybe_quantize
from nesso.toolcalls import parse_tool_calls


def prompt_for(tok, row, with_tools: bool) -> str:
    messages = [m for m in row["messages"] if m["role"] in ("system", "user")][:2]
    return tok.apply_chat_template(messages, row["tools"] if with_tools else None, add_generation_prompt=True)


def overhead(engine: Engine, rows: list[dict], tokens: int) -> None:
    """Same prompts, with the lazy 'auto' tool grammar and the 'required' grammar (every token constrained), each
    against no grammar for the same number of decode steps (a grammar often ends the output before ``tokens``;
    tok/s of a shorter run carries more fixed per-request cost), in one interleaved run. A step is one forward
    pass and one sampled token: an output the grammar ends takes one step more than its tokens (the end of
    sequence), an output cut at max_tokens does not, so steps, not output tokens, are what both sides count."""
    comp = compiler_for(engine.tokenizer, engine.model.config.vocab_size)
    modes = ("auto", "required")
    rates: dict[str, list[float]] = {m: [] for m in modes}
    plain: dict[str, list[float]] = {m: [] for m in modes}
    mask_ms = []

    steps = [0]
    engine.model.register_forward_hook(lambda *_: steps.__setitem__(0, steps[0] + 1))

    def rate(prompt: str, max_tokens: int, constraint=None) -> tuple[float, int]:
        # Cache the prompt first: the timed run then reuses it (a one-token prefill), so it measures decoding.
        engine.generate(prompt, SamplingParams(max_tokens=1))
        steps[0] = 0
        out = engine.generate(prompt, SamplingParams(max_tokens=max_tokens), constraint)
        return steps[0] / out.seconds, steps[0]

    for i, row in enumerate(rows):
        prompt = prompt_for(engine.tokenizer, row, True)
        probe = comp.for_tools(row["tools"], "required")  # time the mask alone, too, where it is never trivial
        t0 = time.perf_counter()
        for _ in range(20):
            probe.allowed()
        mask_ms.append((time.perf_counter() - t0) / 20 * 1000)
        for mode in modes:
            constrained, n = rate(prompt, tokens, comp.for_tools(row["tools"], mode))
            unconstrained, _ = rate(prompt, n)
            if i % 2:  # alternate which of the two runs goes second
                unconstrained, _ = rate(prompt, n)
                constrained, _ = rate(prompt, tokens, comp.for_tools(row["tools"], mode))
            rates[mode].append(constrained)
            plain[mode].append(unconstrained)
    print(f"(a) decode steps/s (tokens sampled per second), median over {len(rows)} prompts (tool sets of 1-4 tools), "
          "each grammar run against no grammar for the same number of steps, interleaved in one run:")
    for m in modes:
        c, u = statistics.median(rates[m]), statistics.median(plain[m])
        print(f"    {m} grammar {c:.1f} steps/s vs unconstrained {u:.1f} steps/s: ratio {c / u:.3f} "
              f"({(1 - c / u) * 100:+.1f}% slower)")
    print(f"    mask {statistics.median(mask_ms):.3f} ms/token (llguidance, 'required' grammar)")


def validity(engine: Engine, rows: list[dict], n: int, batch: int, seed: int, max_tokens: int,
             out_path: str | None = None) -> None:
    if n <= 0:
        return
    comp = compiler_for(engine.tokenizer, engine.model.config.vocab_size)
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        row = rows[i % len(rows)]
        if row.get("response_format"):
            schema = row["response_format"]["json_schema"]["schema"]
            jobs.append(("json", row, schema, comp.for_json(schema)))
            continue
        tools = row["tools"]
        kind = rng.choice(["required", "named", "required-single"])
        if kind == "named":
            choice = {"type": "function", "function": {"name": rng.choice(tools)["function"]["name"]}}
            jobs.append(("named", row, choice, comp.for_tools(tools, choice, parallel=False)))
        else:
            jobs.append((kind, row, "required", comp.for_tools(tools, "required", parallel=kind == "required")))
    valid, finished, calls, started = 0, 0, 0, time.perf_counter()
    failures = []
    prompts = [prompt_for(engine.tokenizer, row, kind != "json") for kind, row, _, _ in jobs]
    generated = 0

    def progress(i: int, _: object) -> None:
        nonlocal generated
        generated += 1
        if generated % 100 == 0:
            print(f"    {generated}/{n} generated, {time.perf_counter() - started:.0f} s", flush=True)

    # One continuous batch of `batch` rows over all the jobs (a finished row takes the next job at once).
    outs = engine.generate_batch(prompts, SamplingParams(max_tokens=max_tokens), [c for *_, c in jobs], slots=batch,
                                 on_done=progress)
    for (kind, row, spec, _), out in zip(jobs, outs):
        finished += out.finish_reason == "stop"
        ok = False
        if kind == "json":
            try:
                jsonschema.validate(json.loads(out.text), spec)
                ok = True
            except (json.JSONDecodeError, jsonschema.ValidationError):
                pass
        else:
            parsed = parse_tool_calls(out.text, row["tools"])
            calls += len(parsed.calls)
            ok = bool(parsed.calls) and not parsed.errors
            if kind == "named":
                ok = ok and all(c.name == spec["function"]["name"] for c in parsed.calls)
        valid += ok
        if not ok:
            failures.append((kind, out.finish_reason, out.text))
    secs = time.perf_counter() - started
    print(f"(b) {valid}/{n} constrained outputs parse and validate ({finished} ended by the grammar/eos, "
          f"{n - finished} reached max_tokens={max_tokens}); {calls} tool calls; {secs:.0f} s")
    cut = sum(f[1] == "length" for f in failures)
    print(f"    reached max_tokens and still valid (closed by the structure guard): {n - finished - cut}")
    print(f"    not valid: {len(failures)}, of which {cut} were cut by max_tokens (finish_reason 'length')")
    for kind, reason, text in failures[:3]:
        print("    not valid:", (kind, reason, text[:160]))
    if out_path:
        with open(out_path, "w", encoding="utf-8") as f:
            json.dump([{"kind": k, "finish_reason": r, "text": t} for k, r, t in failures], f, ensure_ascii=False, indent=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--n", type=int, default=1000, help="validity runs")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=6, help="prompts for the overhead measurement")
    ap.add_argument("--tokens", type=int, default=64, help="tokens per overhead run")
    ap.add_argument("--max-tokens", type=int, default=160, help="new tokens per validity run")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--failures", help="write every output that did not validate to this JSON file")
    args = ap.parse_args()
    torch.manual_seed(0)
    loaded = load_model(args.model, dtype=args.dtype)
    if args.device == "cpu":
        maybe_quantize(loaded.model, "none")  # the CPU decode kernels, as nesso's CLI uses them
    engine = Engine(loaded.model.to(args.device), loaded.tokenizer)
    data = generate(max(args.n, 200), seed=1)
    rows = data["train"] + data["heldout"]
    where = (torch.cuda.get_device_name() if args.device.startswith("cuda")
             else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(f"model {loaded.source} ({args.dtype}); {where}")
    if not args.skip_overhead:
        tool_rows = [r for r in rows if r["tools"]][: args.prompts]
        overhead(engine, tool_rows, args.tokens)
    validity(engine, rows, args.n, args.batch, seed=0, max_tokens=args.max_tokens,
             out_path=args.failures)


if __name__ == "__main__":
    main()
