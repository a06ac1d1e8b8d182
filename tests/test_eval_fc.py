"""`nesso eval fc`: the cases, the AST-checker integration, the OpenAI-endpoint path against local HTTP servers
(a replay of the gold answers and a nesso Engine), and the command end to end on a small random model."""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from nesso.agentic_data.generator import make_row
from nesso.cli import main
from nesso.engine import Engine, SamplingParams
from nesso.errors import NessoError
from nesso.eval import fc
from nesso.toolcalls import parse_tool_calls


@pytest.fixture(scope="module")
def tiny(llama_tokenizer):
    """A random model with the real vocabulary and room for the benchmark's ~1k-token prompts."""
    from nesso.config import ModelConfig
    from nesso.loader import Loaded
    from nesso.model import build_model

    cfg = ModelConfig(hidden_size=64, intermediate_size=160, num_layers=2, num_heads=4, num_kv_heads=2,
                      head_dim=16, max_position_embeddings=2048)
    return Loaded(build_model(cfg, seed=5), llama_tokenizer, "tiny random")


def gold_message(case: fc.Case, turn: fc.Turn) -> dict:
    row = make_row(fc.SUITE_SEED, "heldout", int(case.id.split("-")[1]))
    return row["messages"][len(turn.messages)]


# ---- a local OpenAI-compatible server -----------------------------------------------------------------
class Server:
    """stdlib HTTP server answering /v1/models and /v1/chat/completions with ``answer(body) -> message``."""

    def __init__(self, answer) -> None:
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": "local-model", "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "not found"}})
                message = answer(body)
                finish = "tool_calls" if message.get("tool_calls") else "stop"
                self._send(200, {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                                 "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                                 "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


GOLD_CASES = fc.build_cases(1)


def replay_gold(body: dict) -> dict:
    """The dataset's own next assistant turn for the conversation sent (a perfect model)."""
    for case in GOLD_CASES:
        for turn in case.turns:
            if turn.messages == body["messages"]:
                return gold_message(case, turn)
    raise AssertionError("unknown conversation")


# ---- cases ----------------------------------------------------------------------------------------------
def test_cases_are_heldout_rows_per_category_and_language():
    cases = fc.build_cases(2)
    assert Counter((c.category, c.lang) for c in cases) == {(c, lang): 2 for c in fc.CATEGORIES for lang in fc.LANGS}
    assert [c.id for c in cases] == [c.id for c in fc.build_cases(2)]  # deterministic
    for case in cases:
        row = make_row(fc.SUITE_SEED, "heldout", int(case.id.split("-")[1]))
        assert row["category"] == fc.DATASET_CATEGORY.get(case.category, case.category) and row["lang"] == case.lang
        assert case.tools == row["tools"]
        assert len(case.turns) == (3 if case.category == "multi_turn" else 1)
        first = case.turns[0]
        assert first.messages == row["messages"][:len(first.messages)] and first.messages[-1]["role"] == "user"
        assert (first.truth == []) == (case.category in ("irrelevance", "missing_argument"))
    multi = next(c for c in cases if c.category == "multi_turn")
    assert multi.turns[1].messages[-1]["role"] == "tool" and multi.turns[2].truth == []
    only = fc.build_cases(1, ["parallel", "multi_turn"], ["it"])
    assert [(c.category, c.lang) for c in only] == [("parallel", "it"), ("multi_turn", "it")]
    with pytest.raises(NessoError, match="unknown category 'simpel'"):
        fc.build_cases(1, ["simpel"])
    with pytest.raises(NessoError, match="--limit"):
        fc.build_cases(0)


# ---- scoring ----------------------------------------------------------------------------------------------
def test_gold_answers_score_100_and_wrong_ones_fail_for_the_right_reason():
    cases = fc.build_cases(1)
    results = []
    for case in cases:
        turns = [fc.score_turn(t, case.tools, fc.prediction_from_message(gold_message(case, t), case.tools, 0.01))
                 for t in case.turns]
        results.append(fc.CaseResult(case.id, case.category, case.lang, all(t.passed for t in turns), turns))
    summary = fc.summarize(results, 1.0)
    assert summary["overall"] == 1.0 and summary["passed"] == len(cases) and summary["valid_call_rate"] == 1.0
    assert summary["failures"] == {}

    simple = next(c for c in cases if c.category == "simple")
    call = json.loads(json.dumps(gold_message(simple, simple.turns[0])["tool_calls"][0]))
    args = json.loads(call["function"]["arguments"])
    key = next(k for k, v in args.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
    args[key] += 1
    call["function"]["arguments"] = json.dumps(args)
    wrong = fc.score_turn(simple.turns[0], simple.tools, fc.prediction_from_message(
        {"content": None, "tool_calls": [call]}, simple.tools, 0.0))
    assert not wrong.passed and f".{key} = {json.dumps(args[key])} is not one of" in wrong.reason
    assert fc.failure_kind(wrong.reason) == "wrong value"

    parallel = next(c for c in cases if c.category == "parallel")
    calls = gold_message(parallel, parallel.turns[0])["tool_calls"]
    short = fc.score_turn(parallel.turns[0], parallel.tools,
                          fc.prediction_from_message({"tool_calls": calls[:1]}, parallel.tools, 0.0))
    assert fc.failure_kind(short.reason) == "wrong number of calls"
    irrelevant = next(c for c in cases if c.category == "irrelevance")
    stray = {"tool_calls": [{"function": {"name": irrelevant.tools[0]["function"]["name"], "arguments": "{}"}}]}
    got = fc.score_turn(irrelevant.turns[0], irrelevant.tools,
                        fc.prediction_from_message(stray, irrelevant.tools, 0.0))
    assert not got.passed and got.reason.startswith(("expected no call", "invalid call"))
    bad_json = {"tool_calls": [{"function": {"name": calls[0]["function"]["name"], "arguments": "{\"x\": "}}]}
    broken = fc.score_turn(parallel.turns[0], parallel.tools, fc.prediction_from_message(bad_json, parallel.tools, 0))
    assert broken.reason.startswith("invalid call: arguments of") and broken.errors
    unknown = {"tool_calls": [{"function": {"name": "launch_rocket", "arguments": "{}"}}]}
    assert "unknown tool 'launch_rocket'" in fc.score_turn(
        simple.turns[0], simple.tools, fc.prediction_from_message(unknown, simple.tools, 0)).reason
    # a server without a tool parser returns the model's <tool_call> text as content: read like nesso's own output
    text = "<tool_call>\n" + json.dumps({"name": call["function"]["name"],
                                         "arguments": json.loads(gold_message(simple, simple.turns[0])[
                                             "tool_calls"][0]["function"]["arguments"])}) + "\n</tool_call>"
    assert fc.score_turn(simple.turns[0], simple.tools,
                         fc.prediction_from_message({"content": text}, simple.tools, 0)).passed


# ---- endpoints ----------------------------------------------------------------------------------------------
def test_endpoint_replaying_gold_answers_scores_100(tmp_path):
    with Server(replay_gold) as server:
        report = fc.run_benchmark(server.url, per_cell=1, max_tokens=64)
    (run,) = report["runs"]
    s = run["summary"]
    assert report["kind"] == "endpoint" and "local-model" in report["source"]
    assert s["overall"] == 1.0 and s["cases"] == 14 and s["turns"] == 18 and s["valid_call_rate"] == 1.0
    assert s["latency"]["completion_tokens"] == 3 * 18
    sent = server.requests[0]
    assert sent["model"] == "local-model" and sent["temperature"] == 0 and sent["tool_choice"] == "auto"
    assert sent["tools"] and sent["max_tokens"] == 64
    paths = fc.write_report(report, tmp_path)
    md = paths["markdown"].read_text()
    assert "| multi_turn | 100.0 | 100.0 |" in md and "| endpoint | 100.0 | 100.0 | 100.0 | 14/14 |" in md
    assert json.loads(paths["json"].read_text())["runs"][0]["summary"]["overall"] == 1.0
    assert paths["chart"].read_bytes()[:4] == b"\x89PNG"
    assert "## endpoint: 0 of 18 turns" in paths["failures"].read_text()


def test_endpoint_that_never_calls_passes_only_the_no_call_categories(tmp_path):
    with Server(lambda body: {"role": "assistant", "content": "Non lo so."}) as server:
        report = fc.run_benchmark(server.url, per_cell=1, model_name="x")
    s = report["runs"][0]["summary"]
    assert {c: e["all"] for c, e in s["by_category"].items()} == {
        "simple": 0.0, "multiple": 0.0, "parallel": 0.0, "parallel_multiple": 0.0, "irrelevance": 1.0,
        "missing_argument": 1.0, "multi_turn": 0.0}
    assert s["overall"] == pytest.approx(2 / 7) and s["valid_call_rate"] is None
    assert s["turn_accuracy"] == pytest.approx(6 / 18)  # multi_turn's final answers need no call
    assert s["failures"] == {"no call": 4 * 2 + 2 * 2}  # four call categories, two multi_turn call turns
    # failures.md lists each failed turn with its request, the expected calls and what came back
    failures = fc.write_report(report, tmp_path)["failures"].read_text()
    assert "## endpoint: 12 of 18 turns" in failures and failures.count("\n- **") == 12
    simple = fc.build_cases(1, ["simple"], ["en"])[0]
    truth = simple.turns[0].truth[0]
    entry = failures[failures.index(f"- **{simple.id}** simple en"):].split("\n- **")[0]
    assert "(no call): " in entry and 'got: no call — text: "Non lo so."' in entry
    assert f"request: {simple.turns[0].messages[-1]['content'][:40]}" in " ".join(entry.split())
    assert f"expected: {truth['name']}(" in entry
    for key, values in truth["arguments"].items():  # each required argument with its first acceptable value
        if "" not in values:
            assert f"{key}={json.dumps(values[0], ensure_ascii=False)}" in entry
    assert "turn 2" in failures  # a multi_turn case's second call turn is named


def test_endpoint_backed_by_an_engine_matches_the_direct_run(tiny):
    engine = Engine(tiny.model, tiny.tokenizer)

    def generate(body: dict) -> dict:
        tok = engine.tokenizer
        prompt = tok.apply_chat_template(body["messages"], body["tools"], add_generation_prompt=True)
        text = engine.generate(prompt, SamplingParams(max_tokens=body["max_tokens"])).text
        parsed = parse_tool_calls(text, body["tools"])
        if parsed.errors:  # like a server without a tool parser: hand back the text
            return {"role": "assistant", "content": text}
        return {"role": "assistant", "content": parsed.content or None,
                "tool_calls": [c.to_openai() for c in parsed.calls] or None}

    cats = ["simple", "irrelevance", "multi_turn"]
    with Server(generate) as server:
        remote = fc.run_benchmark(server.url, per_cell=1, categories=cats, max_tokens=6)["runs"][0]
    direct = fc.run_benchmark("tiny", per_cell=1, categories=cats, max_tokens=6, loaded=tiny, modes=(False,),
                              batch_size=3)["runs"][0]
    assert direct["mode"] == "unconstrained"
    flat = [(t["passed"], t["content"], t["calls"]) for c in remote["cases"] for t in c["turns"]]
    assert flat == [(t["passed"], t["content"], t["calls"]) for c in direct["cases"] for t in c["turns"]]
    assert direct["summary"]["latency"]["completion_tokens"] == 6 * direct["summary"]["turns"]
    assert remote["summary"]["by_category"] == direct["summary"]["by_category"]


def test_constrained_and_unconstrained_side_by_side(tiny):
    report = fc.run_benchmark("tiny", per_cell=1, categories=["parallel", "missing_argument"], langs=["it"],
                              max_tokens=6, loaded=tiny, modes=(True, False))
    assert [r["mode"] for r in report["runs"]] == ["constrained", "unconstrained"]
    assert report["suite"]["langs"] == ["it"] and report["kind"] == "nesso"
    for run in report["runs"]:
        s = run["summary"]
        assert s["cases"] == 2 and set(s["by_category"]) == {"parallel", "missing_argument"}
        assert s["by_category"]["parallel"]["it"] == 0.0 and s["by_category"]["parallel"]["en"] is None
        assert s["latency"]["completion_tokens"] == 12
    md = fc.markdown(report)
    assert "| category | constrained EN | constrained IT | unconstrained EN | unconstrained IT |" in md
    assert "| parallel | — | 0.0 | — | 0.0 |" in md


def test_command_end_to_end_on_a_saved_model(tiny, tmp_path, capsys):
    from nesso.checkpoint import save_hf

    model_dir = save_hf(tiny.model, tiny.tokenizer, tmp_path / "tiny", dtype="float32")
    out = tmp_path / "fc"
    assert main(["eval", "fc", str(model_dir), "--limit", "1", "--category", "simple,irrelevance", "--lang", "en",
                 "--max-tokens", "4", "--no-constrain", "--dtype", "float32", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "results.json").read_text())
    assert [r["mode"] for r in report["runs"]] == ["unconstrained"]
    assert report["command"] == (f"nesso eval fc {model_dir} --limit 1 --lang en --category simple,irrelevance "
                                 "--no-constrain --max-tokens 4 --dtype float32")
    s = report["runs"][0]["summary"]
    assert s["cases"] == 2 and s["turns"] == 2 and s["by_category"]["simple"]["en"] == 0.0
    assert "| simple | 0.0 | — |" in printed and "unconstrained EN" in printed
    assert (out / "report.md").read_text() == printed
    assert (out / "chart.png").is_file()
    assert main(["eval", "fc", str(model_dir), "--limit", "1", "--category", "simple", "--lang", "it", "--suite",
                 "made-up-tools", "--max-tokens", "4", "--dtype", "float32", "--out", str(out)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["suite"]["name"] == "made-up-tools" and report["suite"]["seed"] == 2
    assert report["command"].endswith("--lang it --category simple --suite made-up-tools --max-tokens 4 --dtype float32")
    assert [c["id"][:10] for c in report["runs"][0]["cases"]] == ["synthetic-"]
    assert "synthetic split (tools made up per row) (seed 2)" in capsys.readouterr().out


def test_command_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["eval", "fc", "http://127.0.0.1:9/v1", "--no-constrain"]) == 2
    assert "apply to nesso models" in capsys.readouterr().err
    assert main(["eval", "fc", "default", "--category", "simple,nope", "--out", str(tmp_path)]) == 2
    assert "unknown category 'nope'" in capsys.readouterr().err
    assert main(["eval", "fc", "default", "--suite", "made-up-tools", "--category", "multi_turn"]) == 2
    assert "the made-up-tools suite has no multi_turn cases" in capsys.readouterr().err
    assert main(["eval", "fc", "default", "--suite", "nope"]) == 2
    assert "unknown suite 'nope'; choose from heldout, train-tools, made-up-tools, mapped-tools" in capsys.readouterr().err
    assert main(["eval", "fc", "default", "--limit", "0"]) == 2
    assert "--limit must be positive" in capsys.readouterr().err
    (tmp_path / "report.txt").write_text("mine")
    assert main(["eval", "fc", "default", "--out", str(tmp_path / "report.txt")]) == 2  # before any model runs
    assert "--out" in capsys.readouterr().err and (tmp_path / "report.txt").read_text() == "mine"
    assert main(["eval", "fc", "default", "--device", "tpu"]) == 2
    assert "--device 'tpu': use cpu or cuda" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["eval", "fc", "default", "--device", "cuda"]) == 2
        assert "no CUDA GPU is available" in capsys.readouterr().err
    assert main(["eval", "fc", "http://127.0.0.1:9/v1", "--limit", "1", "--out", str(tmp_path / "x")]) == 2
    assert "cannot reach http://127.0.0.1:9/v1" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_other_suites_locate_failures_on_training_tools_and_made_up_tools():
    from nesso.agentic_data import HELDOUT_TOOLS, TOOL_BY_NAME

    seen = fc.build_cases(1, suite="train-tools")
    assert {c.category for c in seen} == set(fc.CATEGORIES) and all(c.id.startswith("train-") for c in seen)
    names = {t["function"]["name"] for c in seen for t in c.tools}
    assert names <= set(TOOL_BY_NAME) and not names & HELDOUT_TOOLS
    for suite, split in (("made-up-tools", "synthetic"), ("mapped-tools", "mapped")):
        made_up = fc.build_cases(2, suite=suite)
        assert Counter((c.category, c.lang) for c in made_up) == {
            (c, lang): 2 for c in fc.CATEGORIES if c != "multi_turn" for lang in fc.LANGS}
        assert all(c.id.startswith(f"{split}-") for c in made_up)
        assert not {t["function"]["name"] for c in made_up for t in c.tools} & set(TOOL_BY_NAME)
        for case in made_up:  # the dataset's own answers score 100% here too
            row = make_row(fc.SUITES[suite][1], split, int(case.id.split("-")[1]))
            turn = case.turns[0]
            gold = row["messages"][len(turn.messages)]
            assert fc.score_turn(turn, case.tools, fc.prediction_from_message(gold, case.tools, 0.01)).passed, case.id
    with pytest.raises(NessoError, match="no multi_turn cases"):
        fc.build_cases(1, ["multi_turn"], suite="made-up-tools")
    with pytest.raises(NessoError, match="unknown suite"):
        fc.build_cases(1, suite="nope")
