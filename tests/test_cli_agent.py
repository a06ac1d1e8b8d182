"""`nesso run`, `nesso chat` and `nesso demo` on the embedded model, offline."""

import datetime
import json
import subprocess
import sys

import pytest

from nesso.cli import main
from nesso.commands.agent import _agent, guess_language, system_prompt


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_with_a_named_tool_and_trace(capsys, tmp_path):
    trace = tmp_path / "trace.json"
    code, out, _ = run(capsys, "run", "What time is it in Tokyo?", "--tool-choice", "get_current_time", "--max-tokens", "60",
                       "--max-steps", "2", "--trace", str(trace))
    assert "→ get_current_time(" in out and "← {" in out
    data = json.loads(trace.read_text())
    assert data["steps"][0]["calls"][0]["function"]["name"] == "get_current_time"
    assert data["steps"][1]["kind"] == "tool" and '"datetime"' in data["steps"][1]["result"]
    assert code in (0, 1)


def test_run_json_schema(capsys, tmp_path):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                               "country": {"type": "string", "maxLength": 20}},
              "required": ["city", "country"], "additionalProperties": False}
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    code, out, _ = run(capsys, "run", "Where is the Colosseum?", "--json-schema", str(path), "--max-tokens", "60")
    assert code == 0
    value = json.loads(out)
    assert set(value) == {"city", "country"}


def test_run_json_schema_cut_by_max_tokens_is_still_valid(capsys, tmp_path):
    schema = {"type": "object", "properties": {"description": {"type": "string"}}, "required": ["description"]}
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    code, out, err = run(capsys, "run", "Describe the Colosseum in great detail.", "--json-schema", str(path),
                         "--max-tokens", "10")
    assert code != 0 and "closed early so that it stays valid" in err and "raise --max-tokens" in err
    assert set(json.loads(out)) == {"description"}


@pytest.mark.parametrize("argv,message", [
    (["run", "x", "--json-schema", "/nope/schema.json"], "does not exist"),
    (["run", "x", "--tool-choice", "nonexistent_tool"], "is not one of the tools"),
    (["run", "x", "--tools", "nesso.tools:nothing"], "has no attribute 'nothing'"),
    (["run", "x", "--max-steps", "0"], "--max-steps must be at least 1"),
])
def test_run_bad_input(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_run_bad_schema_file(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    code, _, err = run(capsys, "run", "x", "--json-schema", str(bad))
    assert code == 2 and "not valid JSON" in err
    bad.write_bytes('{"type": "object", "properties": {"caf\xe9": {}}}'.encode("latin-1"))
    code, _, err = run(capsys, "run", "x", "--json-schema", str(bad))
    assert code == 2 and "is not UTF-8" in err
    bad.write_text('{"type": "object", "description": "\\ud800"}')  # valid JSON, not Unicode text
    code, _, err = run(capsys, "run", "x", "--json-schema", str(bad), "--max-tokens", "8")
    assert code == 2 and "not Unicode" in err and "Traceback" not in err


def test_chat_reads_commands_and_turns_from_stdin():
    stdin = "/tools\n/trace\nWhat is 2 + 2?\n/trace\n/reset\n/quit\n"
    proc = subprocess.run([sys.executable, "-m", "nesso", "chat", "--tools", "nesso.tools:calculator",
                           "--max-tokens", "40", "--max-steps", "2"],
                          input=stdin, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "tools: calculator" in out and "calculator: Evaluate an arithmetic expression" in out
    assert "(no turn yet)" in out and '"steps"' in out and "(conversation cleared)" in out


def test_chat_drops_a_failed_or_interrupted_turn_and_goes_on(capsys, monkeypatch):
    """A turn that fails (text that is not Unicode: invalid UTF-8 on stdin arrives as surrogates) or that Ctrl-C
    interrupts is reported and dropped whole; the chat goes on, and the next turn follows no dangling request."""
    import nesso.commands.agent as cli

    lines = iter(["ciao \udcff", "tell me a story", "What is 2 + 2?", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    made = []
    monkeypatch.setattr(cli, "_agent", lambda *a: made.append(_agent(*a)) or made[-1])
    show = cli._show

    def ctrl_c_during(events, out=None):
        first = next(events)  # the turn has started: the request is in the conversation
        if made[0][0].messages[-1]["content"] == "tell me a story":
            raise KeyboardInterrupt
        return show(iter([first, *events]), out)

    monkeypatch.setattr(cli, "_show", ctrl_c_during)
    code, out, _ = run(capsys, "chat", "--tools", "nesso.tools:calculator", "--max-tokens", "40", "--max-steps", "2")
    assert code == 0
    assert "(error: the text has an unpaired surrogate (U+DCFF) after 'ciao '" in out
    assert "(interrupted; the turn was dropped" in out and "`2 + 2` = 4" in out
    messages = made[0][0].messages
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert messages[1]["content"] == "What is 2 + 2?"


def test_demo_runs_offline(capsys):
    code, out, _ = run(capsys, "demo", "--limit", "1")
    assert code == 0
    assert "[en] What time is it in Tokyo right now?" in out
    assert "→ " in out and "← " in out  # a real tool ran
    assert "1 tasks reached a final answer" in out or "0/1 tasks" in out


@pytest.mark.parametrize("text,lang", [
    ("Che ore sono a Tokyo?", "it"), ("Quanti chilometri sono 26,2 miglia?", "it"), ("Ciao!", "it"),
    ("Quanti ordini ha fatto Giulia a marzo 2026?", "it"), ("Converti 100 dollari in euro", "it"),
    ("Qual è la capitale della Francia?", "it"), ("Trova 45 minuti il 19 giugno con james.reed@example.it", "it"),
    ("What time is it in Tokyo right now?", "en"), ("Convert 100 dollars to euros", "en"), ("Hi!", "en"),
    ("Which product category brought the most revenue in the shop database?", "en"), ("2 + 2", "en"),
])
def test_the_default_system_turn_speaks_the_requests_language(text, lang):
    """The embedded model was trained with the system turn in the request's language (an Italian request under an
    English one gets an English answer), so `nesso chat`/`run`/`demo` open in the language of the first request."""
    assert guess_language(text) == lang
    opening = {"it": "Sei Nesso", "en": "You are Nesso"}[lang]
    assert system_prompt(datetime.date(2026, 11, 27), lang).startswith(opening)
    assert "27 novembre 2026" in system_prompt(datetime.date(2026, 11, 27), "it")
