"""`nesso eval table`: the card's tables from its own numbers, lm-eval result files, Markdown and PNG."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from nesso.cli import main
from nesso.errors import NessoError
from nesso.eval import table

CARD_OVERALL = {"Qwen/Qwen3-0.6B": "0.3545", "Nesso-0.4B-instruct": "0.3345", "Nesso-0.4B-agentic": "0.3039",
                "LiquidAI/LFM2-350M": "0.2576"}


def lm_eval_file(path, scores: dict[str, float], pretrained: str = "my-model"):
    """A results file shaped like lm-eval's (results[task]["metric,filter"], config.model_args)."""
    results = {task: {"alias": task, f"{table.METRICS[task]},none": v, f"{table.METRICS[task]}_stderr,none": 0.01}
               for task, v in scores.items()}
    path.write_text(json.dumps({"results": results, "config": {"model": "nesso",
                                                               "model_args": f"pretrained={pretrained},dtype=bfloat16"}}))
    return path


def test_card_averages_and_overall_reproduce_the_published_columns():
    rows = table.card_rows()
    assert [r.name for r in rows] == list(CARD_OVERALL)
    for r in rows:
        assert str(r.overall()) == CARD_OVERALL[r.name]
        assert r.average("en") == Decimal(str(r.published["avg_en"]))
        assert r.average("it") == Decimal(str(r.published["avg_it"]))
        assert r.overall() == Decimal(str(r.published["overall"]))


def test_cli_table_prints_the_three_tables(capsys, tmp_path):
    assert main(["eval", "table", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for title in ("### English", "### Italian", "### Overall"):
        assert title in out
    assert "| Qwen/Qwen3-0.6B | 0.3736 | 0.3353 | **0.3545** |" in out
    assert "| LiquidAI/LFM2-350M | 0.2647 | 0.2504 | 0.2576 |" in out
    assert (tmp_path / "table.md").read_text() == out
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_files_become_a_row_beside_the_card(tmp_path, capsys):
    agentic = next(r for r in table.card_rows() if r.name == "Nesso-0.4B-agentic").scores
    # the card ran the EN and IT tasks as separate lm-eval commands: two files, one model
    en = lm_eval_file(tmp_path / "results_en.json", {k: agentic[k] for k, _ in table.COLUMNS["en"]}, "mine")
    it = lm_eval_file(tmp_path / "results_it.json", {k: agentic[k] for k, _ in table.COLUMNS["it"]}, "mine")
    rows = table.rows_from_results([str(en), str(it)])
    assert len(rows) == 1 and rows[0].name == "mine" and str(rows[0].overall()) == "0.3039"
    assert main(["eval", "table", str(tmp_path), "--no-card"]) == 0  # a directory finds results*.json
    out = capsys.readouterr().out
    assert "| mine (this run) | 0.3112 | 0.2965 | 0.3039 |" in out  # a lone row is not bolded
    assert "Qwen" not in out


def test_missing_tasks_show_dashes_and_no_average(tmp_path):
    path = lm_eval_file(tmp_path / "results.json", {"arc_it": 0.25, "hellaswag": 0.3125})
    row = table.rows_from_results([str(path)], name="partial")[0]
    assert row.average("en") is None and row.overall() is None
    md = table.markdown([row])
    assert "| partial (this run) | — | — | 0.3125 | — | — |" in md
    assert "| partial (this run) | — | 0.2500 | — | — | — |" in md


def test_bad_result_files_are_clear_errors(tmp_path, capsys):
    bad = tmp_path / "results_bad.json"
    bad.write_text("{not json")
    with pytest.raises(NessoError, match="cannot read .* as JSON"):
        table.rows_from_results([str(bad)])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"results": {"piqa": {"acc,none": 0.6}}}))
    with pytest.raises(NessoError, match="none of the card's tasks"):
        table.rows_from_results([str(other)])
    with pytest.raises(NessoError, match="not an lm-eval results file"):
        other.write_text("[1, 2]")
        table.rows_from_results([str(other)])
    assert main(["eval", "table", str(tmp_path / "nope.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
