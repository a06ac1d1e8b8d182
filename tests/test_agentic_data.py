"""The bilingual function-calling dataset: catalogue, determinism, split by tool, balance, schema validity,
chat-template rendering, the CLI and the importers."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from nesso.agentic_data import (
    CATEGORIES,
    DOMAINS,
    HELDOUT_TOOLS,
    TOOL_BY_NAME,
    TOOLS,
    generate,
    generate_opt_in,
    generate_shipped,
    import_file,
    mapped,
    synthetic,
    tools_local,
    tools_shipped,
    validate_row,
)
from nesso.agentic_data.catalog import HELD_TOOLS, TRAIN_TOOLS
from nesso.agentic_data.chains import CHAINS
from nesso.agentic_data.generator import SHIPPED_CATEGORIES
from nesso.agentic_data.importers import detect_lang
from nesso.agentic_data.render import date_val, fields_of, money, num, stable_rng
from nesso.agentic_data.spec import Ctx
from nesso.cli import main
from nesso.errors import NessoError
from nesso.sft import load_rows
from nesso.tools.database import create_demo_database, database_tools
from nesso.tools.units import convert_units

N = 450  # rows of the shared set: 360 train + 90 held out, 20 (10 + 10) per category and split


@pytest.fixture(scope="module")
def rows():
    return generate(N, seed=1234)


def all_rows(rows):
    return rows["train"] + rows["heldout"]


def names_in(row):
    offered = {t["function"]["name"] for t in row["tools"]}
    called = {c["function"]["name"] for m in row["messages"] for c in m.get("tool_calls") or []}
    return offered | called


# ---- catalogue ----------------------------------------------------------------------------------------
def _types(schema, out):
    out.add(schema.get("type"))
    if "enum" in schema:
        out.add("enum")
    if "default" in schema:
        out.add("default")
    for sub in (schema.get("properties") or {}).values():
        _types(sub, out)
    if isinstance(schema.get("items"), dict):
        _types(schema["items"], out)
    return out


def test_catalogue_size_domains_and_parameter_kinds():
    assert len(TOOLS) >= 40 and len(DOMAINS) >= 8
    assert len({t.name for t in TOOLS}) == len(TOOLS)
    kinds = set()
    optional = 0
    for t in TOOLS:
        Draft202012Validator.check_schema(t.parameters)
        assert t.description.isascii() and t.description[0].isupper(), t.name
        _types(t.parameters, kinds)
        optional += len(t.parameters["properties"]) > len(t.required)
        nested = [p for p in t.parameters["properties"].values() if p.get("type") == "object"]
        for p in nested:
            assert p["properties"], t.name
    assert {"string", "number", "integer", "boolean", "array", "object", "enum", "default"} <= kinds
    assert optional >= 30  # most tools have optional parameters


def test_every_template_fits_its_tool():
    for t in TOOLS:
        props, required = set(t.parameters["properties"]), set(t.required)
        for lang in ("en", "it"):
            assert len(t.templates[lang]) >= 3, (t.name, lang)
            for tpl in t.templates[lang]:
                assert required <= fields_of(tpl) <= props, (t.name, tpl)
            for m in t.missing:
                assert m.arg in required
                for tpl in m.templates[lang]:
                    f = fields_of(tpl)
                    assert m.arg not in f and f <= props, (t.name, tpl)
        # nesso's own shipped tools (tools_shipped) mirror real tools and are not in the missing-argument pool
        assert t.missing or t in tools_shipped.TOOLS, t.name


def test_chain_templates_name_every_required_argument_of_the_first_call():
    for ch in CHAINS:
        first = TOOL_BY_NAME[ch.first]
        for lang in ("en", "it"):
            for tpl in ch.templates[lang]:
                assert set(first.required) <= fields_of(tpl), (ch.name, tpl)


def test_heldout_tools_cover_every_domain():
    assert HELDOUT_TOOLS <= set(TOOL_BY_NAME)
    assert {TOOL_BY_NAME[n].domain for n in HELDOUT_TOOLS} == set(DOMAINS)
    held_chains = [c for c in CHAINS if set(c.tools) & HELDOUT_TOOLS]
    assert held_chains and len(held_chains) < len(CHAINS)


# ---- values in the right form for each language ------------------------------------------------------
def test_italian_dates_amounts_and_numbers():
    rng = stable_rng("t")
    d = date_val(rng, date(2026, 2, 1), at=date(2026, 3, 3))
    assert d.value == "2026-03-03"
    assert d.text_for("it") == "il 3 marzo" and d.text_for("it", "from") == "dal 3 marzo"
    assert date_val(rng, date(2026, 2, 1), at=date(2026, 3, 8)).text_for("it") == "l'8 marzo"
    assert date_val(rng, date(2026, 2, 1), at=date(2026, 3, 11)).text_for("it", "to") == "all'11 marzo"
    assert money(12.5, "it") == "12,50 €" and money(12.5, "en") == "€12.50"
    assert num(1234.5, "it") == "1.234,50" and num(1234.5, "en") == "1,234.50"


def test_arguments_are_never_the_users_words(rows):
    """Dates go to tools as ISO, amounts as numbers, phone numbers in E.164, whatever the user wrote."""
    months = re.compile(r"marzo|aprile|maggio|giugno|gennaio|febbraio|March|April|May|June|January|February")
    seen_it_date = False
    for row in all_rows(rows):
        for m in row["messages"]:
            for c in m.get("tool_calls") or []:
                args = c["function"]["arguments"]
                assert not months.search(args), args
                assert "domani" not in args and "tomorrow" not in args and "€" not in args
        if row["lang"] == "it" and row["category"] == "simple" and re.search(r"\d+ (marzo|aprile|maggio)", row["messages"][1]["content"]):
            seen_it_date = True
    assert seen_it_date


# ---- determinism --------------------------------------------------------------------------------------
def test_generation_is_deterministic():
    a, b = generate(60, seed=5), generate(60, seed=5)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert json.dumps(generate(60, seed=6)) != json.dumps(a)


# ---- split by tool ------------------------------------------------------------------------------------
def test_heldout_tools_never_in_train_rows(rows):
    for row in rows["train"]:
        assert not names_in(row) & HELDOUT_TOOLS, row["id"]
        text = json.dumps(row, ensure_ascii=False)
        for name in HELDOUT_TOOLS:
            assert name not in text, (row["id"], name)


def test_heldout_phrasing_templates_never_in_train_rows(rows):
    train_text = "\n".join(m["content"] or "" for r in rows["train"] for m in r["messages"] if m["role"] == "user")
    checked = 0
    for name in HELDOUT_TOOLS:
        for lang in ("en", "it"):
            for tpl in TOOL_BY_NAME[name].templates[lang]:
                literal = max(re.split(r"\{[^}]*\}", tpl), key=len).strip()
                if len(literal) >= 12:
                    assert literal not in train_text, (name, literal)
                    checked += 1
    assert checked >= 20


def test_heldout_small_talk_never_in_train_rows_and_varied():
    from nesso.agentic_data import chat

    held = chat.SMALL_TALK[-chat.HELDOUT_SMALL_TALK:]
    assert len(held) >= 10  # the benchmark's small-talk irrelevance cases draw from these: not a few repeated ones
    user_text = {m["content"] for r in generate(1000, seed=0)["train"] for m in r["messages"] if m["role"] == "user"}
    for question, _ in held:
        assert question.en not in user_text and question.it not in user_text, question.en
    assert {q.it for q, _ in chat.SMALL_TALK[:-chat.HELDOUT_SMALL_TALK]} & user_text  # train rows use the others


def test_heldout_rows_are_about_heldout_tools(rows):
    assert len(rows["heldout"]) == round(N * 0.2)
    with_calls = [r for r in rows["heldout"] if r["category"] not in ("structured_json", "irrelevance")]
    for row in with_calls:
        assert names_in(row) & HELDOUT_TOOLS, row["id"]
    used = set().union(*(names_in(r) for r in with_calls)) & HELDOUT_TOOLS
    assert used == HELDOUT_TOOLS


# ---- balance ------------------------------------------------------------------------------------------
def test_categories_and_languages_are_balanced(rows):
    for split, items in rows.items():
        cats = Counter(r["category"] for r in items)
        assert set(cats) == set(CATEGORIES)
        assert max(cats.values()) - min(cats.values()) <= 1
        langs = Counter(r["lang"] for r in items)
        assert abs(langs["en"] - langs["it"]) <= 1
        pairs = Counter((r["category"], r["lang"]) for r in items)
        assert len(pairs) == 2 * len(CATEGORIES)
        assert {r["split"] for r in items} == {split}


def test_rows_are_written_in_their_language(rows):
    hits = sum(detect_lang(r["messages"]) == r["lang"] for r in all_rows(rows))
    assert hits / N > 0.9


# ---- structure and schema validity -------------------------------------------------------------------
def test_every_call_validates_against_its_tool_schema(rows):
    calls = 0
    for row in all_rows(rows):
        schemas = {t["function"]["name"]: t["function"]["parameters"] for t in row["tools"]}
        for m in row["messages"]:
            for c in m.get("tool_calls") or []:
                assert c["type"] == "function" and c["id"].startswith("call_")
                args = json.loads(c["function"]["arguments"])
                Draft202012Validator(schemas[c["function"]["name"]], format_checker=FormatChecker()).validate(args)
                calls += 1
        assert validate_row(row) == [], row["id"]
    assert calls > N


def test_category_shapes(rows):
    for row in all_rows(rows):
        msgs, cat = row["messages"], row["category"]
        assert msgs[0]["role"] == "system" and msgs[1]["role"] == "user"
        assert msgs[-1]["role"] == "assistant" and msgs[-1]["content"] and not msgs[-1].get("tool_calls")
        turns = [m["tool_calls"] for m in msgs if m.get("tool_calls")]
        results = [m for m in msgs if m["role"] == "tool"]
        assert all(m["tool_call_id"] and isinstance(m["content"], str) for m in results)
        if cat in ("simple", "multiple"):
            assert len(turns) == 1 and len(turns[0]) == 1
            assert len(row["tools"]) == 1 if cat == "simple" else len(row["tools"]) >= 3
        elif cat == "parallel":
            assert len(turns) == 1 and len(turns[0]) >= 2 and len({c["function"]["name"] for c in turns[0]}) == 1
        elif cat == "parallel_multiple":
            assert len(turns) == 1 and len({c["function"]["name"] for c in turns[0]}) >= 2
        elif cat == "multi_step":
            assert len(turns) == 2 and turns[0][0]["function"]["name"] != turns[1][0]["function"]["name"]
        elif cat in ("irrelevance", "missing_argument"):
            assert not turns and row["tools"] and len(msgs) == 3
        elif cat == "structured_json":
            assert not turns and row["tools"] == []
            schema = row["response_format"]["json_schema"]["schema"]
            assert json.dumps(schema, ensure_ascii=False) in msgs[0]["content"]
            Draft202012Validator(schema, format_checker=FormatChecker()).validate(json.loads(msgs[-1]["content"]))
        elif cat == "tool_error":
            assert "error" in json.loads(results[0]["content"])
            assert 1 <= len(turns) <= 2


def test_tool_results_come_from_the_arguments():
    """The same call gets the same result anywhere in a dataset; results never invent the call's key values."""
    rows = generate(120, seed=9)
    seen: dict[str, str] = {}
    for row in rows["train"]:
        msgs = row["messages"]
        by_id = {c["id"]: c for m in msgs for c in m.get("tool_calls") or []}
        for m in msgs:
            if m["role"] == "tool" and row["category"] in ("simple", "multiple", "parallel"):
                c = by_id[m["tool_call_id"]]
                key = c["function"]["name"] + c["function"]["arguments"] + row["lang"]
                assert seen.setdefault(key, m["content"]) == m["content"]


def test_rows_render_with_the_chat_template(rows, llama_tokenizer):
    sample = {}
    for row in all_rows(rows):
        sample.setdefault((row["category"], row["lang"]), row)
    assert len(sample) == 2 * len(CATEGORIES)
    for row in sample.values():
        enc = llama_tokenizer.encode_chat(row["messages"], row["tools"])
        assert len(enc.ids) == len(enc.assistant_mask) and sum(enc.assistant_mask) > 0
        text = llama_tokenizer.apply_chat_template(row["messages"], row["tools"])
        n_calls = sum(len(m.get("tool_calls") or []) for m in row["messages"])
        assert text.count('<tool_call>\n{"name": "') == n_calls
        assert text.count("<tool_response>") == sum(m["role"] == "tool" for m in row["messages"])


# ---- CLI ------------------------------------------------------------------------------------------------
def test_cli_writes_the_dataset_deterministically(tmp_path, capsys):
    out = tmp_path / "agentic"
    assert main(["data", "agentic", "--out", str(out), "--n", "40", "--seed", "3"]) == 0
    first = (out / "train.jsonl").read_bytes()
    stats = json.loads((out / "stats.json").read_text())
    assert stats["splits"]["train"]["rows"] == 32 and stats["splits"]["heldout"]["rows"] == 8
    assert len((out / "heldout.jsonl").read_text().splitlines()) == 8
    assert main(["data", "agentic", "--out", str(out), "--n", "40", "--seed", "3"]) == 2  # refuses to overwrite
    assert "--force" in capsys.readouterr().err
    assert main(["data", "agentic", "--out", str(out), "--n", "40", "--seed", "3", "--force"]) == 0
    assert (out / "train.jsonl").read_bytes() == first
    assert main(["data", "agentic", "--out", str(tmp_path / "x"), "--n", "0"]) == 2
    # --shipped adds shipped.jsonl and leaves the two splits as they were
    assert main(["data", "agentic", "--out", str(out), "--n", "40", "--seed", "3", "--shipped", "14", "--force"]) == 0
    assert (out / "train.jsonl").read_bytes() == first
    assert len((out / "shipped.jsonl").read_text().splitlines()) == 14
    assert json.loads((out / "stats.json").read_text())["splits"]["shipped"]["rows"] == 14
    assert main(["data", "agentic", "--out", str(tmp_path / "y"), "--n", "40", "--shipped", "-1"]) == 2
    # --synthetic likewise adds synthetic.jsonl
    assert main(["data", "agentic", "--out", str(out), "--n", "40", "--seed", "3", "--synthetic", "7", "--force"]) == 0
    assert (out / "train.jsonl").read_bytes() == first
    assert len((out / "synthetic.jsonl").read_text().splitlines()) == 7
    assert "synthetic.jsonl" in capsys.readouterr().out
    assert main(["data", "agentic", "--out", str(tmp_path / "z"), "--n", "40", "--synthetic", "-2"]) == 2
    # and --mapped mapped.jsonl
    assert main(["data", "agentic", "--out", str(out), "--n", "40", "--seed", "3", "--mapped", "5", "--force"]) == 0
    assert (out / "train.jsonl").read_bytes() == first
    assert len((out / "mapped.jsonl").read_text().splitlines()) == 5
    assert main(["data", "agentic", "--out", str(tmp_path / "w"), "--n", "40", "--mapped", "-1"]) == 2
    assert "--synthetic must be" in capsys.readouterr().err


# ---- importers -------------------------------------------------------------------------------------------
WEATHER = {"name": "get_weather", "description": "Weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def write_lines(path, items):
    path.write_text("\n".join(i if isinstance(i, str) else json.dumps(i) for i in items) + "\n", encoding="utf-8")
    return path


def test_import_openai(tmp_path):
    good = {"tools": [{"type": "function", "function": WEATHER}], "messages": [
        {"role": "user", "content": "Che tempo fa a Milano?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Milano"}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "{\"t\": 20}"},
        {"role": "assistant", "content": "A Milano ci sono 20 gradi."}]}
    unknown_tool = json.loads(json.dumps(good))
    unknown_tool["messages"][1]["tool_calls"][0]["function"]["name"] = "get_time"
    bad_args = json.loads(json.dumps(good))
    bad_args["messages"][1]["tool_calls"][0]["function"]["arguments"] = "{\"city\": 3}"
    surrogate = json.loads(json.dumps(good))
    surrogate["messages"][0]["content"] = "Che tempo fa a Milano? \ud800"  # json.dumps writes it as a "\\ud800" escape
    path = write_lines(tmp_path / "oa.jsonl", [good, "{not json", {"messages": [{"role": "wizard", "content": "x"}]},
                                               unknown_tool, bad_args, {"foo": 1}, surrogate])
    rep = import_file("openai", path)
    assert rep.total == 7 and len(rep.rows) == 1
    assert [n for n, _ in rep.skipped] == [2, 3, 4, 5, 6, 7]
    reasons = dict(rep.skipped)
    assert "not valid JSON" in reasons[2] and "wizard" in reasons[3] and "get_time" in reasons[4]
    assert "city" in reasons[5] and "messages" in reasons[6] and "not Unicode" in reasons[7]
    row = rep.rows[0]
    assert row["lang"] == "it" and row["category"] == "simple" and row["split"] == "train"
    assert row["messages"][1]["tool_calls"][0]["function"]["arguments"] == "{\"city\": \"Milano\"}"
    assert validate_row(row) == []


HERMES_SYSTEM = ("You are a function calling AI model. You are provided with function signatures within <tools></tools> "
                 "XML tags. <tools> [{'type': 'function', 'function': {'name': 'get_weather', 'description': 'Weather', "
                 "'parameters': {'type': 'object', 'properties': {'city': {'type': 'string'}}, 'required': ['city']}}}] "
                 "</tools> For each function call return a json object within <tool_call></tool_call> tags.")


def test_import_sharegpt_hermes(tmp_path):
    hermes = {"conversations": [
        {"from": "system", "value": HERMES_SYSTEM},
        {"from": "human", "value": "What's the weather in Rome and Paris?"},
        {"from": "gpt", "value": "<tool_call>\n{'arguments': {'city': 'Rome'}, 'name': 'get_weather'}\n</tool_call>\n"
                                 "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"},
        {"from": "tool", "value": "<tool_response>\n{\"t\": 18}\n</tool_response>\n<tool_response>\n{\"t\": 12}\n</tool_response>"},
        {"from": "gpt", "value": "Rome 18°C, Paris 12°C."}]}
    glaive = {"tools": json.dumps([WEATHER]), "conversations": [
        {"from": "human", "value": "weather in Turin please"},
        {"from": "function_call", "value": "{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Turin\\\"}\"}"},
        {"from": "observation", "value": "{\"t\": 9}"},
        {"from": "gpt", "value": "It is 9°C in Turin."}]}
    broken = {"conversations": [{"from": "system", "value": HERMES_SYSTEM}, {"from": "human", "value": "hi"},
                                {"from": "gpt", "value": "<tool_call>\n{'name': 'get_weather', 'arguments': {'city': \n</tool_call>"}]}
    orphan = {"conversations": [{"from": "human", "value": "hi"}, {"from": "tool", "value": "{}"}]}
    path = write_lines(tmp_path / "sg.jsonl", [hermes, glaive, broken, orphan, {"conversations": "nope"}])
    rep = import_file("hermes", path)
    assert len(rep.rows) == 2 and [n for n, _ in rep.skipped] == [3, 4, 5]
    h, g = rep.rows
    assert h["category"] == "parallel" and h["lang"] == "en" and h["messages"][0]["role"] == "user"
    assert [t["function"]["name"] for t in h["tools"]] == ["get_weather"]
    calls = h["messages"][1]["tool_calls"]
    assert [json.loads(c["function"]["arguments"])["city"] for c in calls] == ["Rome", "Paris"]
    assert [m["tool_call_id"] for m in h["messages"][2:4]] == [c["id"] for c in calls]
    assert g["messages"][1]["tool_calls"][0]["function"]["arguments"] == "{\"city\": \"Turin\"}"
    assert all(validate_row(r) == [] for r in rep.rows)


def test_import_xlam_as_json_array(tmp_path, capsys):
    tools = [{"name": "get_prices", "description": "Prices", "parameters": {
        "symbols": {"type": "List[str]", "description": "Tickers"},
        "limit": {"type": "int, optional", "description": "Max", "default": 10}}}]
    good = {"query": "Prices of AAPL and MSFT, at most 5", "tools": json.dumps(tools),
            "answers": json.dumps([{"name": "get_prices", "arguments": {"symbols": ["AAPL", "MSFT"], "limit": 5}}])}
    wrong_type = dict(good, answers=json.dumps([{"name": "get_prices", "arguments": {"symbols": "AAPL"}}]))
    missing = dict(good, answers=json.dumps([{"name": "get_prices", "arguments": {"limit": 5}}]))
    path = tmp_path / "xlam.json"
    path.write_text(json.dumps([good, wrong_type, missing, {"query": 1}]), encoding="utf-8")
    rep = import_file("xlam", path)
    assert len(rep.rows) == 1 and [n for n, _ in rep.skipped] == [2, 3, 4]
    params = rep.rows[0]["tools"][0]["function"]["parameters"]
    assert params["required"] == ["symbols"] and params["properties"]["symbols"]["items"] == {"type": "string"}
    assert rep.rows[0]["messages"][-1]["tool_calls"][0]["function"]["name"] == "get_prices"

    out = tmp_path / "out.jsonl"
    assert main(["data", "import", "xlam", str(path), "--out", str(out), "--split", "heldout"]) == 0
    err = capsys.readouterr().err
    assert "xlam.json:2: skipped" in err and "xlam.json:4: skipped" in err
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(written) == 1 and written[0]["split"] == "heldout"
    assert main(["data", "import", "xlam", str(path), "--out", str(path), "--force"]) == 2  # never overwrite the input
    assert main(["data", "import", "openai", str(path), "--out", str(tmp_path / "o2.jsonl")]) == 2  # wrong format
    assert not (tmp_path / "o2.jsonl").exists()


def test_importers_round_trip_generated_rows(tmp_path, rows):
    src = write_lines(tmp_path / "gen.jsonl", [{"messages": r["messages"], "tools": r["tools"]} for r in rows["train"][:40]])
    rep = import_file("openai", src)
    assert not rep.skipped and len(rep.rows) == 40
    for orig, got in zip(rows["train"][:40], rep.rows):
        assert got["messages"] == orig["messages"] and got["tools"] == orig["tools"]


def test_ctx_helpers_choose_by_language():
    c = Ctx(stable_rng("x"), "it", date(2026, 1, 5))
    assert c.t("a", "b") == "b" and c.pick(["a"], ["b"]) == "b"


# ---- the opt-in shipped split: nesso's own tools ----------------------------------------------------
SHIPPED_TARGETS = {"calculator", "get_current_time", "convert_units", "query_database"}


@pytest.fixture(scope="module")
def shipped():
    return generate_shipped(140, seed=5)


def calls_with_results(row):
    """(name, arguments, result) of every call in a row."""
    results = {m["tool_call_id"]: json.loads(m["content"]) for m in row["messages"] if m["role"] == "tool"}
    return [(c["function"]["name"], json.loads(c["function"]["arguments"]), results[c["id"]])
            for m in row["messages"] for c in m.get("tool_calls") or []]


def test_shipped_tools_stay_out_of_the_catalogue_and_its_rows(rows):
    # agentic:N:SEED must keep producing the rows the shipped adapter was trained on. (The catalogue has tools of
    # the same names with other schemas — a query_database over three company databases —, never nesso's own.)
    assert all(TOOL_BY_NAME.get(t.name) is not t for t in tools_local.TOOLS)
    local = {json.dumps(t.schema(), sort_keys=True) for t in tools_local.TOOLS}
    assert all(json.dumps(t, sort_keys=True) not in local for r in all_rows(rows) for t in r["tools"])


def test_shipped_rows_validate_and_call_nessos_tools(shipped):
    cats = Counter(r["category"] for r in shipped)
    assert set(cats) == set(SHIPPED_CATEGORIES) and max(cats.values()) - min(cats.values()) <= 2
    assert Counter(r["lang"] for r in shipped) == {"en": 70, "it": 70}
    called = Counter()
    for row in shipped:
        assert row["split"] == "shipped" and validate_row(row) == [], row["id"]
        names = [t["function"]["name"] for t in row["tools"]]
        assert len(set(names)) == len(names), names  # nesso's own tools replace the catalogue's namesakes
        schemas = {t["function"]["name"]: t["function"]["parameters"] for t in row["tools"]}
        for name, args, _ in calls_with_results(row):
            Draft202012Validator(schemas[name], format_checker=FormatChecker()).validate(args)
            assert name in SHIPPED_TARGETS, (row["id"], name)
            called[name] += 1
    assert set(called) == SHIPPED_TARGETS and min(called.values()) >= 10
    assert generate_shipped(140, seed=5) == shipped  # deterministic


def test_shipped_results_are_what_the_real_tools_return(shipped, tmp_path):
    _, query_database = database_tools(create_demo_database(tmp_path / "shop.sqlite"))  # the agent's demo shop
    checked = Counter()
    for row in shipped:
        answer = row["messages"][-1]["content"]
        for name, args, result in calls_with_results(row):
            if "error" in result:
                continue
            if name == "query_database":
                assert result == query_database(**args), args
                assert result["rows"] and not result["truncated"]
            elif name == "convert_units":
                assert result == convert_units(**args)
                shown = num(round(result["result"], 2), row["lang"])
                assert shown.rstrip("0").rstrip(".,") in answer, (answer, shown)
            else:
                continue
            checked[name] += 1
    assert checked["query_database"] >= 10 and checked["convert_units"] >= 10


def test_shipped_rows_render_with_the_chat_template(shipped, llama_tokenizer):
    for row in shipped[:20]:
        enc = llama_tokenizer.encode_chat(row["messages"], row["tools"])
        assert sum(enc.assistant_mask) > 0
        text = llama_tokenizer.apply_chat_template(row["messages"], row["tools"])
        n_calls = sum(len(m.get("tool_calls") or []) for m in row["messages"])
        assert text.count('<tool_call>\n{"name": "') == n_calls
        assert text.count("<tool_response>") == sum(m["role"] == "tool" for m in row["messages"])


def test_openings_rows_greet_describe_the_offered_tools_and_list_tables(llama_tokenizer, tmp_path):
    """The opt-in openings split: what people type first in `nesso chat`, over nesso's own tools only."""
    from nesso.agentic_data import chat
    from nesso.agentic_data.generator import OPENINGS_CATEGORIES, OWN_TOOLS

    rows = generate_opt_in("openings", 60, seed=5)
    assert Counter(r["category"] for r in rows) == {c: 20 for c in OPENINGS_CATEGORIES}
    assert Counter(r["lang"] for r in rows) == {"en": 30, "it": 30}
    own = {json.dumps(t.schema(), sort_keys=True) for t in OWN_TOOLS}
    list_tables, _ = database_tools(create_demo_database(tmp_path / "demo_shop.sqlite"))  # as `nesso chat` has it
    users = []
    for row in rows:
        assert row["split"] == "openings" and validate_row(row) == [], row["id"]
        assert len(row["tools"]) >= 2 and all(json.dumps(t, sort_keys=True) in own for t in row["tools"])
        assert sum(llama_tokenizer.encode_chat(row["messages"], row["tools"]).assistant_mask) > 0
        users.append(row["messages"][1]["content"])
        calls, answer = calls_with_results(row), row["messages"][-1]["content"]
        if row["category"] == "list_tables":
            assert [(name, args) for name, args, _ in calls] == [("list_tables", {})]
            assert calls[0][2] == list_tables() and "customers (10)" in answer  # what the real tool returns
        else:
            assert calls == []
        if row["category"] == "about_me":
            for t in row["tools"]:
                assert chat.ABILITIES[t["function"]["name"]](row["lang"]) in answer, (answer, t["function"]["name"])
    assert all(u[-1] in "?!." for u in users)  # punctuated like every other split (see OPENINGS_SPLIT)
    assert generate_opt_in("openings", 60, seed=5) == rows  # deterministic
    assert [r["split"] for r in load_rows("agentic:4:0:openings")] == ["openings"] * 4


def test_shipped_rows_as_a_training_source():
    rows = load_rows(["agentic:20:0", "agentic:6:0:shipped"])
    assert [r["split"] for r in rows] == ["train"] * 16 + ["shipped"] * 6
    assert load_rows(["agentic:20:0", "agentic:6:0:shipped"], max_rows=18) == rows[:18]
    with pytest.raises(NessoError, match="agentic:N:SEED:shipped"):
        load_rows("agentic:6:0:nope")
    with pytest.raises(NessoError, match="empty"):
        load_rows([])


# ---- the opt-in synthetic split: tools made up per row ---------------------------------------------------
@pytest.fixture(scope="module")
def synthetic_rows():
    return generate_opt_in("synthetic", 140, seed=2)


def test_synthetic_rows_validate_and_never_use_catalogue_tools(synthetic_rows, rows):
    cats = Counter(r["category"] for r in synthetic_rows)
    assert set(cats) == set(SHIPPED_CATEGORIES) and max(cats.values()) - min(cats.values()) <= 2
    assert Counter(r["lang"] for r in synthetic_rows) == {"en": 70, "it": 70}
    catalogue = set(TOOL_BY_NAME) | {t.name for t in tools_local.TOOLS}
    for row in synthetic_rows:
        assert row["split"] == "synthetic" and validate_row(row) == [], row["id"]
        assert not {t["function"]["name"] for t in row["tools"]} & catalogue, row["id"]
        schemas = {t["function"]["name"]: t["function"]["parameters"] for t in row["tools"]}
        for name, args, _ in calls_with_results(row):
            Draft202012Validator(schemas[name], format_checker=FormatChecker()).validate(args)
    assert generate_opt_in("synthetic", 140, seed=2) == synthetic_rows  # deterministic
    assert generate(N, seed=1234) == rows  # the regular splits do not change with the opt-in one


def test_synthetic_tools_vary_names_keys_and_arguments(synthetic_rows):
    # the same action comes under several names and argument keys, with and without its optional arguments:
    # what a call needs is in the offered schema, not in memory
    by_action = {}
    for row in synthetic_rows:
        for t in row["tools"]:
            fn = t["function"]
            action = next(a for a in synthetic.ACTIONS if fn["name"] in a.names)
            by_action.setdefault(action.names[0], set()).add((fn["name"], tuple(sorted(fn["parameters"]["properties"]))))
    assert len(by_action) == len(synthetic.ACTIONS)
    varied = [name for name, forms in by_action.items() if len({n for n, _ in forms}) > 1 and len(forms) > 2]
    assert len(varied) >= 0.8 * len(by_action), by_action
    for a in synthetic.ACTIONS:  # keys of one action's arguments never collide, whichever are drawn
        keys = [k for arg in (*a.required, *a.optional) for k in synthetic.ARGS[arg].keys]
        assert len(keys) == len(set(keys)), a.names
        assert not set(a.names) & set(TOOL_BY_NAME) and not any(h in n for n in a.names for h in HELDOUT_TOOLS)


def test_synthetic_call_values_come_from_the_request(synthetic_rows):
    # free-text and code arguments are copied from the user's words (the skill the split teaches); the schema's
    # enums take codes, dates ISO days
    checked = 0
    for row in synthetic_rows:
        user = " ".join(m["content"] for m in row["messages"] if m["role"] == "user")
        schemas = {t["function"]["name"]: t["function"]["parameters"]["properties"] for t in row["tools"]}
        for name, args, _ in calls_with_results(row):
            for key, value in args.items():
                prop = schemas[name][key]
                if prop.get("type") == "string" and "enum" not in prop and "format" not in prop and "pattern" not in prop:
                    assert value in user, (row["id"], key, value, user)
                    checked += 1
    assert checked > 50


def test_synthetic_rows_as_a_training_source():
    rows = load_rows(["agentic:10:0", "agentic:4:1:synthetic"])
    assert [r["split"] for r in rows] == ["train"] * 8 + ["synthetic"] * 4
    with pytest.raises(NessoError, match="agentic:N:SEED:synthetic"):
        load_rows("agentic:6:0:nope")


# ---- the opt-in mapped split: made-up tools whose values are said in another shape ------------------------------
@pytest.fixture(scope="module")
def mapped_rows():
    return generate_opt_in("mapped", 140, seed=2)


def _archetypes(tool_name):
    """The mapped action behind a made-up tool name and its argument key -> archetype map (None: a synthetic one)."""
    action = next((a for a in mapped.MAPPED_ACTIONS if tool_name in a.names), None)
    if action is None:
        return None
    return {k: a for a in (*action.required, *action.optional) for k in mapped.ALL_ARGS[a].keys}


def _said(value, archetype, lang, text):
    """Whether the request ``text`` says ``value`` of ``archetype`` the way mapped.py says it."""
    i = 0 if lang == "en" else 1
    if archetype in ("hours", "duration"):
        minutes = round(value * 60) if archetype == "hours" else value
        return any(p in text for m, *ways in mapped.DURATIONS if m == minutes for p in ways[i])
    if archetype in mapped.PERIOD_CODES:
        return any(p in text for p in mapped.PERIOD_PHRASES[mapped.PERIOD_CODES[archetype].index(value)][i])
    tables = {"problem": mapped.PROBLEMS, "size": mapped.SIZES, "sort": mapped.SORTS}
    if archetype in tables:
        return any(p in text for code, *ways in tables[archetype] if code == value for p in ways[i])
    if archetype == "amount_cents":
        return money(value / 100, lang) in text
    if archetype == "grams":
        return f"{value} g" in text or f"{num(value / 1000, lang, 0 if value % 1000 == 0 else 1)} kg" in text
    if archetype == "attendees":
        return all(a in text for a in value)
    if archetype in ("iban", "serial"):
        return value in text
    return None  # not a converted value (dates, times and flags are checked by the test)


def test_mapped_rows_validate_and_convert_every_value(mapped_rows):
    cats = Counter(r["category"] for r in mapped_rows)
    assert set(cats) == set(SHIPPED_CATEGORIES) and Counter(r["lang"] for r in mapped_rows) == {"en": 70, "it": 70}
    catalogue = set(TOOL_BY_NAME) | {t.name for t in tools_local.TOOLS}
    checked = Counter()
    for row in mapped_rows:
        assert row["split"] == "mapped" and validate_row(row) == [], row["id"]
        names = {t["function"]["name"] for t in row["tools"]}
        assert not names & catalogue and not any(h in n for n in names for h in HELDOUT_TOOLS), row["id"]
        user = " ".join(m["content"] for m in row["messages"] if m["role"] == "user")
        for name, args, _ in calls_with_results(row):
            kinds = _archetypes(name)
            if kinds is None:
                continue
            for key, value in args.items():
                archetype = kinds[key]
                ok = _said(value, archetype, row["lang"], user)
                if ok is not None:
                    assert ok, (row["id"], key, value, user)
                    checked[archetype] += 1
                elif isinstance(value, bool):  # a flag: its own on (or off) clause is in the request
                    on, off = mapped.FLAGS[archetype].on, mapped.FLAGS[archetype].off
                    assert (on if value else off)[0 if row["lang"] == "en" else 1] in user, (row["id"], key, user)
                    checked["flag"] += 1
            by_kind = {kinds[k]: v for k, v in args.items()}
            if "end_date" in by_kind:  # a range ends after it starts, within two weeks
                assert 1 <= (date.fromisoformat(by_kind["end_date"]) - date.fromisoformat(by_kind["start_date"])).days <= 14
                checked["range"] += 1
            if "earliest" in by_kind and "latest" in by_kind:
                assert by_kind["earliest"] < by_kind["latest"]
    assert min(checked.values()) >= 2 and len(checked) >= 12, checked
    assert generate_opt_in("mapped", 140, seed=2) == mapped_rows  # deterministic


def test_mapped_durations_and_periods_say_what_they_mean():
    # every way of saying a duration or a period belongs to exactly one value, so a request is never ambiguous
    for i in (0, 1):
        ways = [p for _, *w in mapped.DURATIONS for p in w[i]]
        assert len(ways) == len(set(ways))
        periods = [p for w in mapped.PERIOD_PHRASES for p in w[i]]
        assert len(periods) == len(set(periods))
    assert all(len(codes) == len(mapped.PERIOD_PHRASES) for codes in mapped.PERIOD_CODES.values())
    # the held-out portfolio tool's own period phrases and codes stay unseen
    from nesso.agentic_data.tools_money import PERIODS as HELD_PERIODS

    phrases = {p.lower() for w in mapped.PERIOD_PHRASES for lang in w for p in lang}
    assert not phrases & {p.lower() for said in HELD_PERIODS.values() for p in (said.en, said.it)}
    assert not set(HELD_PERIODS) & {code for codes in mapped.PERIOD_CODES.values() for code in codes}
    # a key of a held-out tool is never one the mapped split brings in (the training tools may have it already):
    # the held-out benchmark then measures transfer to tools whose keys were not trained on
    mapped_keys = {k for arg in mapped.MAPPED_ARGS.values() for k in arg.keys}
    held_keys = {k for t in HELD_TOOLS for k in t.parameters["properties"]}
    assert not (mapped_keys & held_keys) - {k for t in TRAIN_TOOLS for k in t.parameters["properties"]}
    for a in mapped.MAPPED_ACTIONS:  # argument keys of one action never collide, and no name is a catalogue tool
        keys = [k for arg in (*a.required, *a.optional) for k in mapped.ALL_ARGS[arg].keys]
        assert len(keys) == len(set(keys)), a.names
        assert not set(a.names) & set(TOOL_BY_NAME) and not any(h in n for n in a.names for h in HELDOUT_TOOLS)


def test_mapped_rows_as_a_training_source():
    rows = load_rows(["agentic:3:0:mapped", "agentic:10:0"])
    assert [r["split"] for r in rows] == ["mapped"] * 3 + ["train"] * 8
    with pytest.raises(NessoError, match="agentic:N:SEED:mapped"):
        load_rows("agentic:6:0:nope")
