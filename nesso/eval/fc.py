"""Function-calling benchmark: BFCL-style categories over nesso's bilingual held-out tools, scored by AST match.

Cases are rows of the held-out split of ``nesso data agentic`` (seed 0), built by index with
``nesso.agentic_data.make_row``, so every run of the same ``--limit`` sees the same conversations. The held-out
split offers tools that the training split never shows, so a model trained on nesso's train split is scored on
unseen schemas.

| category | dataset rows | what is checked |
|---|---|---|
| simple, multiple, parallel, parallel_multiple | same name | the first assistant turn's calls |
| irrelevance, missing_argument | same name | the first assistant turn makes no call |
| multi_turn | multi_step | every assistant turn, each given the gold history before it (call, call that uses the first result, final answer without a call); the case passes when every turn does |

A target is a nesso model (generated here, batched, greedy; grammar-constrained unless ``constrained=False``) or
an OpenAI-compatible endpoint (``http://host:port/v1``: vLLM, llama.cpp server, Ollama, ``nesso serve``), asked
with ``temperature=0`` and ``tool_choice="auto"``.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nesso.errors import NessoError, one_line
from nesso.fc_check import check_calls, expected_turns, parse_call
from nesso.toolcalls import parse_tool_calls, validate_arguments

CATEGORIES = ("simple", "multiple", "parallel", "parallel_multiple", "irrelevance", "missing_argument", "multi_turn")
DATASET_CATEGORY = {"multi_turn": "multi_step"}
LANGS = ("en", "it")
SUITE_SEED = 0
# Which rows a suite's cases come from: (dataset split, seed, description). "heldout" is the benchmark; the others
# locate a model's failures: the training tools on rows of a seed no recipe trains on, tools made up per row (the
# synthetic split) that no adapter has seen under those names and keys, and made-up tools whose values the request
# says in another shape (the mapped split: hours for minutes, phrases for enum codes, yes/no flags, ranges).
SUITES: dict[str, tuple[str, int, str]] = {
    "heldout": ("heldout", SUITE_SEED, "held-out split (tools never trained on)"),
    "train-tools": ("train", 2, "train split (the training tools; rows no recipe trains on)"),
    "made-up-tools": ("synthetic", 2, "synthetic split (tools made up per row)"),
    "mapped-tools": ("mapped", 2, "mapped split (made-up tools whose values need converting)"),
}
DEFAULT_PER_CELL = 20
DEFAULT_MAX_TOKENS = 256


@dataclass
class Turn:
    messages: list[dict[str, Any]]  # the gold conversation before this assistant turn
    truth: list[dict[str, Any]]  # fc_check ground truth; [] = no call expected


@dataclass
class Case:
    id: str
    category: str
    lang: str
    tools: list[dict[str, Any]]
    turns: list[Turn]


@dataclass
class Prediction:
    content: str
    calls: list[dict[str, Any]]  # {"name", "arguments"} of the calls that parsed and validated
    errors: list[str]  # one message per emitted call that did not parse or validate
    seconds: float
    completion_tokens: int | None = None
    http_error: str | None = None


@dataclass
class TurnResult:
    passed: bool
    reason: str
    content: str
    calls: list[dict[str, Any]]
    errors: list[str]
    seconds: float
    completion_tokens: int | None = None
    request: str = ""  # the message the turn answers (the last user or tool message)
    expected: list[dict[str, Any]] = field(default_factory=list)  # fc_check ground truth; [] = no call


@dataclass
class CaseResult:
    id: str
    category: str
    lang: str
    passed: bool
    turns: list[TurnResult] = field(default_factory=list)


# ---- cases ----------------------------------------------------------------------------------------------
def build_cases(per_cell: int = DEFAULT_PER_CELL, categories: list[str] | None = None,
                langs: list[str] | None = None, suite: str = "heldout") -> list[Case]:
    """The first ``per_cell`` rows of each (category, language) cell of the suite's split, in index order."""
    from nesso.agentic_data.generator import categories_of, make_row

    if suite not in SUITES:
        raise NessoError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    split, seed, _ = SUITES[suite]
    row_categories = categories_of(split)
    offered = [c for c in CATEGORIES if DATASET_CATEGORY.get(c, c) in row_categories]
    if not isinstance(per_cell, int) or per_cell < 1:
        raise NessoError(f"--limit must be a positive number of cases per category and language (got {per_cell})")
    categories = list(categories or offered)
    langs = list(langs or LANGS)
    for c in categories:
        if c not in CATEGORIES:
            raise NessoError(f"unknown category {c!r}; choose from {', '.join(CATEGORIES)}")
        if c not in offered:
            raise NessoError(f"the {suite} suite has no {c} cases; choose from {', '.join(offered)}")
    for lang in langs:
        if lang not in LANGS:
            raise NessoError(f"unknown language {lang!r}; choose en or it")
    wanted = {DATASET_CATEGORY.get(c, c): c for c in categories}
    need = {(row_cat, lang): per_cell for row_cat in wanted for lang in langs}
    cases: list[Case] = []
    # Rows cycle through the dataset's categories two at a time (en, it), so one cycle holds one row per cell.
    cycle = 2 * len(row_categories)
    for index in range(per_cell * cycle + cycle):
        if not any(need.values()):
            break
        if (row_categories[(index // 2) % len(row_categories)], LANGS[index % 2]) not in need:
            continue
        row = make_row(seed, split, index)
        key = (row["category"], row["lang"])
        if not need.get(key):
            continue
        need[key] -= 1
        turns = [Turn(prefix, truth) for prefix, truth in expected_turns(row)]
        category = wanted[row["category"]]
        if category != "multi_turn":
            turns = turns[:1]
        cases.append(Case(row["id"], category, row["lang"], row["tools"], turns))
    order = {c: i for i, c in enumerate(categories)}
    return sorted(cases, key=lambda c: (order[c.category], langs.index(c.lang), c.id))


# ---- predictions ------------------------------------------------------------------------------------------
def _check_one(call: dict[str, Any], tools: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str | None]:
    """An emitted call -> ({"name", "arguments"}, None) when it parses and validates, else (None, why)."""
    try:
        name, args = parse_call(call)
    except ValueError as e:
        return None, str(e)
    schemas = {t["function"]["name"]: t["function"].get("parameters") or {"type": "object"} for t in tools}
    if name not in schemas:
        return None, f"unknown tool {name!r}"
    error = validate_arguments(schemas[name], args, name)
    return (None, error) if error else ({"name": name, "arguments": args}, None)


def prediction_from_text(text: str, tools: list[dict[str, Any]], seconds: float,
                         completion_tokens: int | None = None) -> Prediction:
    parsed = parse_tool_calls(text, tools)
    calls = [{"name": c.name, "arguments": c.arguments} for c in parsed.calls]
    return Prediction(parsed.content, calls, [e.message for e in parsed.errors], seconds, completion_tokens)


def prediction_from_message(message: dict[str, Any], tools: list[dict[str, Any]], seconds: float,
                            completion_tokens: int | None = None) -> Prediction:
    """An OpenAI ``choices[0].message``. A server that leaves ``<tool_call>`` blocks in the content (no tool
    parser configured) is read the same way nesso reads its own output."""
    content = message.get("content") or ""
    if not isinstance(content, str):
        content = json.dumps(content, ensure_ascii=False)
    tool_calls = message.get("tool_calls") or []
    if not tool_calls and "<tool_call>" in content:
        return prediction_from_text(content, tools, seconds, completion_tokens)
    calls, errors = [], []
    for tc in tool_calls if isinstance(tool_calls, list) else [tool_calls]:
        ok, why = _check_one(tc, tools)
        if ok:
            calls.append(ok)
        else:
            errors.append(why or "invalid call")
    return Prediction(content.strip(), calls, errors, seconds, completion_tokens)


class NessoTarget:
    """Generates with a nesso model: chat template with the tools, greedy, batched, optionally constrained."""

    def __init__(self, engine: Any, constrained: bool = True, max_tokens: int = DEFAULT_MAX_TOKENS,
                 batch_size: int = 8, progress: Any = None) -> None:
        self.engine, self.constrained = engine, constrained
        self.max_tokens, self.batch_size = max_tokens, max(1, int(batch_size))
        self.progress = progress
        self.label = "constrained" if constrained else "unconstrained"

    def predict(self, turns: list[tuple[Turn, list[dict[str, Any]]]]) -> list[Prediction]:
        from nesso.engine import SamplingParams
        from nesso.grammar import compiler_for

        tok, model = self.engine.tokenizer, self.engine.model
        prompts = [tok.encode(tok.apply_chat_template(t.messages, tools, add_generation_prompt=True))
                   for t, tools in turns]
        limit = self.engine.max_len
        for p in prompts:
            if len(p) + 1 >= limit:
                raise NessoError(f"a benchmark prompt has {len(p)} tokens; the model's context is {limit}")
        params = SamplingParams(max_tokens=self.max_tokens, temperature=0.0)
        compiler = compiler_for(tok, model.config.vocab_size) if self.constrained else None
        out: list[Prediction | None] = [None] * len(turns)
        order = sorted(range(len(turns)), key=lambda i: len(prompts[i]), reverse=True)  # less padding off a CPU
        constraints = [compiler.for_tools(turns[i][1], "auto", parallel=True) if compiler else None for i in order]

        def done(k: int, g: Any) -> None:
            i = order[k]
            out[i] = prediction_from_text(g.text, turns[i][1], g.seconds, g.completion_tokens)
            if self.progress:
                self.progress(1)

        self.engine.generate_batch([prompts[i] for i in order], params, constraints, slots=self.batch_size,
                                   on_done=done)
        return out  # type: ignore[return-value]


class OpenAITarget:
    """Scores an OpenAI-compatible chat-completions endpoint (stdlib HTTP; no client library needed)."""

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None,
                 max_tokens: int = DEFAULT_MAX_TOKENS, timeout: float = 120.0, concurrency: int = 1,
                 progress: Any = None) -> None:
        self.base = base_url.rstrip("/")
        self.api_key, self.max_tokens, self.timeout = api_key, max_tokens, timeout
        self.concurrency = max(1, int(concurrency))
        self.progress = progress
        served = self._served_model()  # also stops here, with one line, when nothing answers
        self.model = model or served
        self.label = "endpoint"

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))

    def _served_model(self) -> str:
        try:
            listing = self._request("GET", "/models")
        except urllib.error.HTTPError:
            return "default"  # some servers have no /models; they ignore the name anyway
        except (urllib.error.URLError, OSError) as e:
            raise NessoError(f"cannot reach {self.base}: {getattr(e, 'reason', e)} (is the server running? "
                             "the URL should end in /v1)") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise NessoError(f"{self.base}/models did not answer JSON; is this an OpenAI-compatible /v1 URL?") from None
        models = listing.get("data") if isinstance(listing, dict) else None
        if isinstance(models, list) and models and isinstance(models[0], dict) and models[0].get("id"):
            return str(models[0]["id"])
        return "default"

    def _one(self, turn: Turn, tools: list[dict[str, Any]]) -> Prediction:
        body = {"model": self.model, "messages": turn.messages, "tools": tools, "tool_choice": "auto",
                "temperature": 0, "max_tokens": self.max_tokens, "seed": SUITE_SEED, "stream": False}
        start = time.perf_counter()
        try:
            reply = self._request("POST", "/chat/completions", body)
            message = reply["choices"][0]["message"]
            if not isinstance(message, dict):
                raise TypeError("message is not an object")
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")[:200]
            return Prediction("", [], [], time.perf_counter() - start, http_error=f"HTTP {e.code}: {detail}")
        except (urllib.error.URLError, OSError) as e:
            return Prediction("", [], [], time.perf_counter() - start, http_error=f"request failed: {e}")
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError) as e:
            return Prediction("", [], [], time.perf_counter() - start,
                              http_error=f"not a chat.completions response ({type(e).__name__}: {e})")
        seconds = time.perf_counter() - start
        usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
        return prediction_from_message(message, tools, seconds, usage.get("completion_tokens"))

    def predict(self, turns: list[tuple[Turn, list[dict[str, Any]]]]) -> list[Prediction]:
        def run(item: tuple[Turn, list[dict[str, Any]]]) -> Prediction:
            p = self._one(*item)
            if self.progress:
                self.progress(1)
            return p

        if self.concurrency == 1:
            return [run(t) for t in turns]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(run, turns))


# ---- scoring ----------------------------------------------------------------------------------------------
def score_turn(turn: Turn, tools: list[dict[str, Any]], pred: Prediction) -> TurnResult:
    if pred.http_error:
        passed, reason = False, pred.http_error
    elif pred.errors:
        passed, reason = False, f"invalid call: {pred.errors[0]}"
    else:
        result = check_calls(pred.calls, turn.truth, tools)
        passed, reason = result.passed, result.reason
    last = next((m for m in reversed(turn.messages) if m.get("role") in ("user", "tool")), {})
    return TurnResult(passed, reason, pred.content, pred.calls, pred.errors, pred.seconds, pred.completion_tokens,
                      str(last.get("content") or ""), turn.truth)


def failure_kind(reason: str) -> str:
    if reason.startswith(("HTTP ", "request failed", "not a chat.completions")):
        return "endpoint error"
    if reason.startswith("invalid call"):
        return "invalid call"
    if reason.startswith("expected no call"):
        return "called when no call was expected"
    if reason.endswith("got none"):
        return "no call"
    if reason.startswith("expected ") and "call(s), got" in reason:
        return "wrong number of calls"
    if "wrong function" in reason or "no expected call is named" in reason or "not among the offered" in reason:
        return "wrong function"
    if "wrong type" in reason:
        return "wrong type"
    if "missing" in reason or "unknown parameter" in reason or "not expected here" in reason:
        return "wrong parameters"
    return "wrong value"


def run_target(target: Any, cases: list[Case]) -> list[CaseResult]:
    flat = [(c, t) for c in cases for t in c.turns]
    preds = target.predict([(t, c.tools) for c, t in flat])
    by_case: dict[str, CaseResult] = {c.id: CaseResult(c.id, c.category, c.lang, True) for c in cases}
    for (case, turn), pred in zip(flat, preds):
        r = by_case[case.id]
        tr = score_turn(turn, case.tools, pred)
        r.turns.append(tr)
        r.passed = r.passed and tr.passed
    return [by_case[c.id] for c in cases]


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def summarize(results: list[CaseResult], wall_seconds: float) -> dict[str, Any]:
    by_cat: dict[str, dict[str, Any]] = {}
    cells: list[float] = []
    for cat in CATEGORIES:
        rows = [r for r in results if r.category == cat]
        if not rows:
            continue
        entry: dict[str, Any] = {"cases": len(rows)}
        for lang in LANGS:
            sub = [r.passed for r in rows if r.lang == lang]
            entry[lang] = _mean([float(x) for x in sub])
            if sub:
                cells.append(entry[lang])
        entry["all"] = _mean([float(r.passed) for r in rows])
        by_cat[cat] = entry
    turns = [t for r in results for t in r.turns]
    emitted = sum(len(t.calls) + len(t.errors) for t in turns)
    valid = sum(len(t.calls) for t in turns)
    secs = sorted(t.seconds for t in turns)
    tokens = [t.completion_tokens for t in turns if t.completion_tokens is not None]
    fails = Counter(failure_kind(t.reason) for t in turns if not t.passed)
    return {
        "overall": _mean(cells),  # unweighted mean over (category, language) cells
        "cases": len(results),
        "passed": sum(r.passed for r in results),
        "by_category": by_cat,
        "by_lang": {lang: _mean([float(r.passed) for r in results if r.lang == lang]) for lang in LANGS
                    if any(r.lang == lang for r in results)},
        "turns": len(turns),
        "turn_accuracy": _mean([float(t.passed) for t in turns]),
        "calls_emitted": emitted,
        "calls_valid": valid,
        "valid_call_rate": valid / emitted if emitted else None,
        "failures": dict(fails.most_common()),
        "latency": {
            "wall_s": round(wall_seconds, 3),
            "per_turn_s": round(wall_seconds / len(turns), 4) if turns else None,
            "request_p50_s": round(statistics.median(secs), 4) if secs else None,
            "request_p95_s": round(secs[min(len(secs) - 1, math.ceil(0.95 * len(secs)) - 1)], 4) if secs else None,
            "completion_tokens": sum(tokens) if tokens else None,
            "tokens_per_s": round(sum(tokens) / wall_seconds, 2) if tokens and wall_seconds > 0 else None,
        },
    }


def evaluate(target: Any, cases: list[Case]) -> dict[str, Any]:
    start = time.perf_counter()
    results = run_target(target, cases)
    wall = time.perf_counter() - start
    return {"mode": target.label, "summary": summarize(results, wall), "cases": [asdict(r) for r in results]}


def machine() -> dict[str, Any]:
    import os

    import torch

    info = {"platform": platform.platform(), "processor": _cpu_name(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    if hasattr(os, "getloadavg"):  # timings on a shared machine mean little without it
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def suite_info(per_cell: int, categories: list[str] | None, langs: list[str] | None,
               suite: str = "heldout") -> dict[str, Any]:
    split, seed, what = SUITES[suite]
    return {"name": suite, "dataset": f"nesso data agentic, {what}", "seed": seed, "per_cell": per_cell,
            "categories": list(categories or CATEGORIES), "langs": list(langs or LANGS)}


# ---- reports ----------------------------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def markdown(report: dict[str, Any]) -> str:
    runs = report["runs"]
    suite = report["suite"]
    out = [f"# Function-calling benchmark: {report['target']}", "",
           f"- cases: {suite['dataset']} (seed {suite['seed']}), {suite['per_cell']} per category and language; "
           f"greedy; max {report['max_tokens']} new tokens",
           f"- date: {report['date']}; machine: {report['machine'].get('processor')}, "
           f"{report['machine'].get('cpus')} CPUs" + (f", {report['machine']['gpu']}" if report['machine'].get('gpu') else "")
           + (f" (load average at the end {report['machine']['load_average'][0]})"
              if report['machine'].get('load_average') else ""),
           f"- command: `{report['command']}`" if report.get("command") else "", ""]
    out += ["## Accuracy (%) by category and language", "",
            "| category | " + " | ".join(f"{r['mode']} EN | {r['mode']} IT" for r in runs) + " |",
            "|---|" + "---|---|" * len(runs)]
    for cat in CATEGORIES:
        if not any(cat in r["summary"]["by_category"] for r in runs):
            continue
        cells = []
        for r in runs:
            e = r["summary"]["by_category"].get(cat, {})
            cells += [_pct(e.get("en")), _pct(e.get("it"))]
        out.append(f"| {cat} | " + " | ".join(cells) + " |")
    out += ["", "## Summary", "",
            "| mode | overall % | EN % | IT % | cases passed | turn accuracy % | valid calls | "
            "s/turn | p50 request s | tokens/s |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        s = r["summary"]
        lat = s["latency"]
        valid = "—" if s["valid_call_rate"] is None else f"{_pct(s['valid_call_rate'])}% of {s['calls_emitted']}"
        out.append(f"| {r['mode']} | {_pct(s['overall'])} | {_pct(s['by_lang'].get('en'))} | "
                   f"{_pct(s['by_lang'].get('it'))} | {s['passed']}/{s['cases']} | {_pct(s['turn_accuracy'])} | "
                   f"{valid} | {lat['per_turn_s']} | {lat['request_p50_s']} | {lat['tokens_per_s'] or '—'} |")
    out += ["", "## Why turns failed", ""]
    for r in runs:
        fails = r["summary"]["failures"]
        out.append(f"- {r['mode']}: " + (", ".join(f"{k} {v}" for k, v in fails.items()) or "none"))
    out += ["", "Overall is the unweighted mean over (category, language) cells; a multi_turn case passes when "
            "every assistant turn does. Valid calls: emitted calls that parse and validate against the tool's "
            "schema. s/turn: wall time divided by turns (batched generation shares time across a batch).", ""]
    return "\n".join(x for x in out if x is not None) + "\n"


def _call_text(name: str, args: dict[str, Any]) -> str:
    return f"{name}({', '.join(f'{k}={json.dumps(v, ensure_ascii=False)}' for k, v in args.items())})"


def _expected_text(truth: list[dict[str, Any]]) -> str:
    """Ground truth as calls: each argument's first acceptable value; '?' marks one that may be left out."""
    if not truth:
        return "no call"
    calls = []
    for call in truth:
        args = {}
        for key, values in call["arguments"].items():
            said = [v for v in values if v != ""]
            if said:
                args[key + ("?" if len(said) < len(values) else "")] = said[0]
        calls.append(_call_text(call["name"], args))
    return "; ".join(calls)


def failures_markdown(report: dict[str, Any]) -> str:
    """Every failed turn: the request, what was expected, what came back and why it failed."""
    out = [f"# Failed turns: {report['target']}", "", f"- command: `{report.get('command') or ''}`", ""]
    for run in report["runs"]:
        failed = [(c, i, t) for c in run["cases"] for i, t in enumerate(c["turns"]) if not t["passed"]]
        out += [f"## {run['mode']}: {len(failed)} of {run['summary']['turns']} turns", ""]
        for case, i, turn in failed:
            got = "; ".join(_call_text(c["name"], c["arguments"]) for c in turn["calls"]) or "no call"
            text = one_line(turn["content"], 200)
            if text:
                got += f' — text: "{text}"'
            out += [f"- **{case['id']}** {case['category']} {case['lang']}" + (f" turn {i + 1}" if i else "")
                    + f" ({failure_kind(turn['reason'])}): {turn['reason']}",
                    f"  - request: {one_line(turn.get('request', ''))}",
                    f"  - expected: {_expected_text(turn.get('expected', []))}",
                    f"  - got: {got}" + "".join(f"; invalid: {e}" for e in turn["errors"])]
        out.append("")
    return "\n".join(out)


def chart(report: dict[str, Any], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    cats = [c for c in CATEGORIES if any(c in r["summary"]["by_category"] for r in runs)]
    bars = [(r["mode"], lang) for r in runs for lang in LANGS]
    width = 0.8 / max(len(bars), 1)
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(cats) + 2), 4.5))
    for i, (mode, lang) in enumerate(bars):
        run = next(r for r in runs if r["mode"] == mode)
        ys = [100 * (run["summary"]["by_category"].get(c, {}).get(lang) or 0.0) for c in cats]
        xs = [j + (i - (len(bars) - 1) / 2) * width for j in range(len(cats))]
        ax.bar(xs, ys, width, label=f"{mode} {lang.upper()}", hatch="//" if lang == "it" else None)
    ax.set_xticks(range(len(cats)), cats, fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("accuracy %")
    ax.set_title(f"Function calling (AST match): {report['target']}", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    try:
        fig.savefig(path, dpi=110)
    except OSError as e:
        raise NessoError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    return path


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "results.json", "markdown": out / "report.md", "failures": out / "failures.md",
                 "chart": out / "chart.png"}
        tmp = out / ".results.json.tmp"
        tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(paths["json"])
        paths["markdown"].write_text(markdown(report), encoding="utf-8")
        paths["failures"].write_text(failures_markdown(report), encoding="utf-8")
    except OSError as e:
        raise NessoError(f"cannot write the report to {out}: {e.strerror or e}") from None
    chart(report, paths["chart"])
    return paths


def run_benchmark(target_ref: str, *, per_cell: int = DEFAULT_PER_CELL, categories: list[str] | None = None,
                  langs: list[str] | None = None, modes: tuple[bool, ...] = (True,), dtype: str = "bfloat16",
                  max_tokens: int = DEFAULT_MAX_TOKENS, batch_size: int = 8, device: str = "cpu",
                  model_name: str | None = None,
                  api_key: str | None = None, concurrency: int = 1, timeout: float = 120.0,
                  loaded: Any = None, command: str | None = None, progress: Any = None,
                  suite: str = "heldout") -> dict[str, Any]:
    """Build the cases and score ``target_ref`` (a nesso model reference or an http(s) base URL).

    ``modes``: for a nesso model, the constrained settings to run (``(True, False)`` compares both);
    ``loaded``: an already loaded nesso model (``nesso.loader.Loaded``) to use instead of loading ``target_ref``."""
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise NessoError(f"--max-tokens must be a positive integer (got {max_tokens})")
    cases = build_cases(per_cell, categories, langs, suite)
    is_url = target_ref.startswith(("http://", "https://"))
    runs = []
    if is_url:
        target = OpenAITarget(target_ref, model_name, api_key, max_tokens, timeout, concurrency, progress)
        runs.append(evaluate(target, cases))
        source = f"{target_ref} (model {target.model})"
    else:
        from nesso.engine import Engine

        if loaded is None:
            from nesso.loader import load_model
            from nesso.quantize import maybe_quantize

            loaded = load_model(target_ref, dtype=dtype)
            maybe_quantize(loaded.model.to(device), "none")  # the CPU decode kernels, as `nesso chat` uses them
        engine = Engine(loaded.model.to(device), loaded.tokenizer)
        for constrained in modes:
            target = NessoTarget(engine, constrained, max_tokens, batch_size, progress)
            runs.append(evaluate(target, cases))
        source = loaded.source
    return {"target": target_ref, "source": source, "kind": "endpoint" if is_url else "nesso",
            "suite": suite_info(per_cell, categories or sorted({c.category for c in cases}, key=CATEGORIES.index),
                                langs, suite), "max_tokens": max_tokens,
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "command": command, "runs": runs}
