"""`nesso serve` under concurrent streaming clients: aggregate decode throughput and time to first token.

    .venv/bin/python benchmarks/serve.py                          # embedded model, bf16, 1/4/8 clients
    .venv/bin/python benchmarks/serve.py --model DIR --clients 1,2,4,8 --max-tokens 128
    .venv/bin/python benchmarks/serve.py --url http://127.0.0.1:8000 --api-key KEY   # a server already running

The server runs as its own process (`python -m nesso serve`, as users run it) and the clients are asyncio tasks
on the official openai client, streaming over loopback. For each level N, N clients each send ``--rounds``
requests back to back (a short unmeasured round first warms that batch size up); tokens are counted from the
server's usage numbers. Reported: aggregate tok/s, the ratio N-clients / 1-client, and p50/p95 time to first
token (first non-empty content chunk).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [
    "Write a long story about a lighthouse keeper and a storm.",
    "Explain in detail how a bicycle works, part by part.",
    "Describe a walk through Rome from the Colosseum to the Vatican.",
    "Write a long letter to a friend about learning to cook pasta.",
    "Tell the history of the printing press in many paragraphs.",
    "Describe the life cycle of a star, from nebula to remnant.",
    "Write a detailed travel guide to the Dolomites in summer.",
    "Explain how a compiler turns source code into a program.",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def one_request(client, model: str, prompt: str, max_tokens: int) -> tuple[float, int]:
    """(time to first token, completion tokens) of one streamed request."""
    start = time.perf_counter()
    ttft, tokens = None, 0
    stream = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0.0,
        stream=True, stream_options={"include_usage": True})
    async for chunk in stream:
        if ttft is None and any(c.delta.content for c in chunk.choices):
            ttft = time.perf_counter() - start
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return (ttft if ttft is not None else time.perf_counter() - start), tokens


async def level(url: str, api_key: str, model: str, clients: int, rounds: int, max_tokens: int) -> dict:
    import openai

    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=api_key, max_retries=0, timeout=3600)

    async def worker(i: int, n_rounds: int, n_tokens: int) -> list[tuple[float, int]]:
        out = []
        for r in range(n_rounds):
            out.append(await one_request(client, model, PROMPTS[(i + r) % len(PROMPTS)], n_tokens))
        return out

    await asyncio.gather(*(worker(i, 1, 8) for i in range(clients)))  # warm this batch size up
    start = time.perf_counter()
    results = await asyncio.gather(*(worker(i, rounds, max_tokens) for i in range(clients)))
    wall = time.perf_counter() - start
    await client.close()
    flat = [x for per_client in results for x in per_client]
    ttfts = [t for t, _ in flat]
    tokens = sum(n for _, n in flat)
    return {"clients": clients, "requests": len(flat), "tokens": tokens, "seconds": wall,
            "tok_s": tokens / wall, "ttft_p50": percentile(ttfts, 0.5), "ttft_p95": percentile(ttfts, 0.95)}


def start_server(args) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "nesso", "serve", args.model, "--port", str(port), "--dtype", args.dtype,
           "--quantize", args.quantize, "--slots", str(max(args.clients))]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NESSO_API_KEY": ""})
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stderr.read()}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not come up within 10 minutes")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--quantize", default="none")
    p.add_argument("--clients", default="1,4,8", help="comma-separated concurrency levels")
    p.add_argument("--rounds", type=int, default=2, help="requests per client per level")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--url", help="benchmark a server that is already running instead of starting one")
    p.add_argument("--api-key", default=os.environ.get("NESSO_API_KEY", "unused"))
    p.add_argument("--served-model", default=None, help="model id to send (default: the server's first model)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args()
    args.clients = [int(x) for x in args.clients.split(",")]

    proc = None
    url = args.url
    if url is None:
        proc, url = start_server(args)
    try:
        import httpx

        headers = {"Authorization": f"Bearer {args.api_key}"}
        model = args.served_model or httpx.get(url + "/v1/models", headers=headers).json()["data"][0]["id"]
        rows = []
        for n in args.clients:
            row = asyncio.run(level(url, args.api_key, model, n, args.rounds, args.max_tokens))
            rows.append(row)
            print(f"{n:>3} clients  {row['requests']:>3} requests  {row['tokens']:>5} tokens  {row['seconds']:7.1f} s  "
                  f"{row['tok_s']:7.1f} tok/s  TTFT p50 {row['ttft_p50']:.2f} s  p95 {row['ttft_p95']:.2f} s",
                  flush=True)
        health = httpx.get(url + "/health", headers=headers).json()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    base = next((r["tok_s"] for r in rows if r["clients"] == 1), None)
    if base:
        for r in rows:
            r["vs_1_client"] = r["tok_s"] / base
        top = rows[-1]
        print(f"ratio {top['clients']} clients / 1 client: {top['vs_1_client']:.2f}x (target >= 3x)")
    print(f"server: peak batch {health.get('peak_batch')}, {health.get('steps')} decode steps")
    if args.json:
        info = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                "load_avg": os.getloadavg(), "model": args.model, "dtype": args.dtype, "quantize": args.quantize,
                "max_tokens": args.max_tokens, "rounds": args.rounds, "rows": rows, "server": health}
        Path(args.json).write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
