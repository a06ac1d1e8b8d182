"""The BFCL-style AST checker: one passing and one failing hand-made case for every rule."""

from __future__ import annotations

import json

import pytest

from nesso.fc_check import (
    acceptable,
    check_calls,
    expected_turns,
    ground_truth_from_calls,
    ground_truth_from_row,
    normalize,
)

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.", "parameters": {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "units": {"type": "string", "enum": ["c", "f"],
                                                                                   "default": "c"},
                   "threshold": {"type": "number"}, "alerts": {"type": "boolean", "default": False}},
    "required": ["city"]}}}
EVENT = {"type": "function", "function": {"name": "create_event", "parameters": {
    "type": "object",
    "properties": {"title": {"type": "string"}, "date": {"type": "string", "format": "date"},
                   "attendees": {"type": "array", "items": {"type": "string"}},
                   "reminder": {"type": "object", "properties": {"minutes": {"type": "integer"},
                                                                 "method": {"type": "string", "default": "popup"}},
                                "required": ["minutes"], "additionalProperties": False}},
    "required": ["title", "date"]}}}
ORDER = {"type": "function", "function": {"name": "place_order", "parameters": {
    "type": "object",
    "properties": {"items": {"type": "array", "items": {"type": "object", "properties": {
        "sku": {"type": "string"}, "qty": {"type": "integer"}}, "required": ["sku", "qty"]}}},
    "required": ["items"]}}}
TOOLS = [WEATHER, EVENT, ORDER]


def call(name, **args):
    return {"name": name, "arguments": args}


def gt(name, **args):
    return {"name": name, "arguments": args}


def check(pred, truth, tools=TOOLS):
    return check_calls(pred, truth, tools)


# ---- call count and "no call" -------------------------------------------------------------------------
def test_count_must_match():
    truth = [gt("get_weather", city=["Milano"])]
    assert check([call("get_weather", city="Milano")], truth).passed
    r = check([call("get_weather", city="Milano"), call("get_weather", city="Roma")], truth)
    assert not r.passed and "expected 1 call" in r.reason
    r = check([], truth)
    assert not r.passed and "got none" in r.reason


def test_empty_ground_truth_means_no_call():
    assert check([], []).passed
    assert check(None, []).passed
    r = check([call("get_weather", city="Milano")], [])
    assert not r.passed and "expected no call" in r.reason


# ---- parallel: any order, one to one -----------------------------------------------------------------
def test_parallel_calls_match_in_any_order():
    truth = [gt("get_weather", city=["Milano"]), gt("get_weather", city=["Roma"])]
    assert check([call("get_weather", city="Roma"), call("get_weather", city="Milano")], truth).passed
    assert check([call("get_weather", city="Milano"), call("get_weather", city="Roma")], truth).passed


def test_parallel_calls_match_one_to_one():
    truth = [gt("get_weather", city=["Milano"]), gt("get_weather", city=["Roma"])]
    r = check([call("get_weather", city="Milano"), call("get_weather", city="Milano")], truth)
    assert not r.passed
    r = check([call("get_weather", city="Milano"), call("get_weather", city="Napoli")], truth)
    assert not r.passed and "call 2" in r.reason and "Napoli" in r.reason


def test_an_unmatched_call_is_explained_against_its_closest_expected_call():
    truth = [gt("scan_file", sha256=["aaa"], sandbox=[True]), gt("scan_file", sha256=["bbb"], sandbox=[False, ""])]
    r = check([call("scan_file", sha256="aaa", sandbox=True), call("scan_file", sha256="bbb", sandbox=True)], truth,
              tools=None)
    assert not r.passed and r.reason == "call 2: scan_file.sandbox = true is not one of: false, (omitted)"


def test_parallel_multiple_functions():
    truth = [gt("get_weather", city=["Milano"]), gt("create_event", title=["Sync"], date=["2026-03-03"])]
    pred = [call("create_event", title="sync", date="2026-03-03"), call("get_weather", city="milano")]
    assert check(pred, truth).passed
    pred = [call("create_event", title="sync", date="2026-03-04"), call("get_weather", city="milano")]
    assert not check(pred, truth).passed


# ---- name -----------------------------------------------------------------------------------------------
def test_name_must_match():
    r = check([call("create_event", title="x", date="2026-03-03")], [gt("get_weather", city=["Milano"])])
    assert not r.passed and "wrong function" in r.reason


def test_function_must_be_offered():
    r = check([call("get_weather", city="Milano")], [gt("get_weather", city=["Milano"])], tools=[EVENT])
    assert not r.passed and "not among the offered tools" in r.reason


# ---- required and unknown parameters --------------------------------------------------------------------
def test_required_parameter_must_be_present():
    # even when the ground truth (wrongly) allows omitting it, the schema's "required" wins
    truth = [gt("get_weather", city=["Milano", ""])]
    r = check([call("get_weather")], truth)
    assert not r.passed and "missing required parameter 'city'" in r.reason


def test_unknown_parameter_fails():
    truth = [gt("get_weather", city=["Milano"])]
    r = check([call("get_weather", city="Milano", country="IT")], truth)
    assert not r.passed and "unknown parameter 'country'" in r.reason


def test_unknown_nested_parameter_fails():
    truth = [gt("create_event", title=["x"], date=["2026-03-03"], reminder=[{"minutes": [10], "method": ["", "popup"]}])]
    assert check([call("create_event", title="x", date="2026-03-03", reminder={"minutes": 10})], truth).passed
    r = check([call("create_event", title="x", date="2026-03-03", reminder={"minutes": 10, "sound": "bell"})], truth)
    assert not r.passed and "unknown parameter" in r.reason


def test_without_tools_unknown_means_not_in_ground_truth():
    truth = [gt("get_weather", city=["Milano"])]
    assert check_calls([call("get_weather", city="Milano")], truth, None).passed
    assert not check_calls([call("get_weather", city="Milano", x=1)], truth, None).passed


# ---- types ----------------------------------------------------------------------------------------------
def test_int_is_accepted_for_number():
    truth = [gt("get_weather", city=["Milano"], threshold=[30.0])]
    assert check([call("get_weather", city="Milano", threshold=30)], truth).passed
    assert check([call("get_weather", city="Milano", threshold=30.0)], truth).passed


def test_float_is_not_an_integer():
    truth = [gt("get_weather", city=["Milano"], days=[3])]
    r = check([call("get_weather", city="Milano", days=3.0)], truth)
    assert not r.passed and "should be integer" in r.reason


def test_bool_is_not_an_int_nor_a_number():
    truth = [gt("get_weather", city=["Milano"], days=[1])]
    r = check([call("get_weather", city="Milano", days=True)], truth)
    assert not r.passed and "wrong type" in r.reason
    truth = [gt("get_weather", city=["Milano"], threshold=[1])]
    assert not check([call("get_weather", city="Milano", threshold=True)], truth).passed


def test_int_is_not_a_bool():
    truth = [gt("get_weather", city=["Milano"], alerts=[True])]
    assert check([call("get_weather", city="Milano", alerts=True)], truth).passed
    assert not check([call("get_weather", city="Milano", alerts=1)], truth).passed


def test_string_is_not_a_number():
    truth = [gt("get_weather", city=["Milano"], threshold=[12.5])]
    assert not check([call("get_weather", city="Milano", threshold="12.5")], truth).passed


def test_array_item_types_are_checked():
    truth = [gt("create_event", title=["x"], date=["2026-03-03"], attendees=[["1", "2"]])]
    assert check([call("create_event", title="x", date="2026-03-03", attendees=["1", "2"])], truth).passed
    r = check([call("create_event", title="x", date="2026-03-03", attendees=[1, 2])], truth)
    assert not r.passed and "attendees[0]" in r.reason


def test_nested_object_types_are_checked():
    truth = [gt("create_event", title=["x"], date=["2026-03-03"], reminder=[{"minutes": [10], "method": ["", "popup"]}])]
    r = check([call("create_event", title="x", date="2026-03-03", reminder={"minutes": "10"})], truth)
    assert not r.passed and "reminder.minutes" in r.reason


# ---- values ---------------------------------------------------------------------------------------------
def test_strings_compare_case_and_punctuation_insensitively():
    truth = [gt("get_weather", city=["New York"])]
    for ok in ("new york", "NEW-YORK", "New_York", "new.york,", "NewYork", "new/york*^"):
        assert check([call("get_weather", city=ok)], truth).passed, ok
    assert normalize(" A,b./-_*^C ") == "abc"
    r = check([call("get_weather", city="Newark")], truth)
    assert not r.passed and "is not one of" in r.reason


def test_value_must_be_in_acceptable_list():
    truth = [gt("get_weather", city=["Milano", "Milan"], units=["f"])]
    assert check([call("get_weather", city="Milan", units="f")], truth).passed
    assert check([call("get_weather", city="milano", units="F")], truth).passed
    assert not check([call("get_weather", city="Milan", units="c")], truth).passed


def test_numbers_compare_by_value():
    truth = [gt("get_weather", city=["x"], threshold=[12.5])]
    assert check([call("get_weather", city="x", threshold=12.50)], truth).passed
    assert not check([call("get_weather", city="x", threshold=12.4)], truth).passed


def test_empty_string_means_may_be_omitted():
    truth = [gt("get_weather", city=["Milano"], units=["", "c"])]
    assert check([call("get_weather", city="Milano")], truth).passed
    assert check([call("get_weather", city="Milano", units="c")], truth).passed
    r = check([call("get_weather", city="Milano")], [gt("get_weather", city=["Milano"], units=["c"])])
    assert not r.passed and "missing parameter 'units'" in r.reason


def test_nested_dicts_compare_recursively():
    truth = [gt("create_event", title=["x"], date=["2026-03-03"],
                reminder=[{"minutes": [15], "method": ["email"]}])]
    assert check([call("create_event", title="x", date="2026-03-03", reminder={"minutes": 15, "method": "EMAIL"})],
                 truth).passed
    assert not check([call("create_event", title="x", date="2026-03-03", reminder={"minutes": 15, "method": "popup"})],
                     truth).passed
    assert not check([call("create_event", title="x", date="2026-03-03", reminder={"minutes": 15})], truth).passed


def test_lists_compare_element_by_element_in_order():
    truth = [gt("create_event", title=["x"], date=["2026-03-03"], attendees=[["a@x.com", "b@x.com"]])]
    assert check([call("create_event", title="x", date="2026-03-03", attendees=["A@x.com", "b@x.com"])], truth).passed
    assert not check([call("create_event", title="x", date="2026-03-03", attendees=["b@x.com", "a@x.com"])], truth).passed
    assert not check([call("create_event", title="x", date="2026-03-03", attendees=["a@x.com"])], truth).passed


def test_list_of_dicts():
    truth = [gt("place_order", items=[[{"sku": ["P1"], "qty": [2]}, {"sku": ["P2"], "qty": [1]}]])]
    assert check([call("place_order", items=[{"sku": "p1", "qty": 2}, {"sku": "P2", "qty": 1}])], truth).passed
    assert not check([call("place_order", items=[{"sku": "p1", "qty": 3}, {"sku": "P2", "qty": 1}])], truth).passed


# ---- shapes of predictions and ground truth ---------------------------------------------------------------
def test_openai_tool_calls_with_json_string_arguments():
    pred = [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Milano"}'}}]
    assert check(pred, [gt("get_weather", city=["Milano"])]).passed
    bad = [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Mil'}}]
    r = check(bad, [gt("get_weather", city=["Milano"])])
    assert not r.passed and "not valid JSON" in r.reason


def test_bfcl_ground_truth_format():
    truth = [{"get_weather": {"city": ["Milano", "Milan"], "units": ["", "c"]}}]
    assert check([call("get_weather", city="Milan")], truth).passed
    assert not check([call("get_weather", city="Turin")], truth).passed


# ---- ground truth from a reference turn -------------------------------------------------------------------
def test_ground_truth_accepts_omission_or_default_for_omitted_optionals():
    truth = ground_truth_from_calls([call("get_weather", city="Milano")], TOOLS)
    assert truth[0]["arguments"]["units"] == ["c", ""]
    assert truth[0]["arguments"]["days"] == [""]
    assert check([call("get_weather", city="Milano")], truth).passed
    assert check([call("get_weather", city="Milano", units="c")], truth).passed
    assert not check([call("get_weather", city="Milano", units="f")], truth).passed
    assert not check([call("get_weather", city="Milano", days=2)], truth).passed


def test_ground_truth_optional_equal_to_default_may_be_omitted():
    truth = ground_truth_from_calls([call("get_weather", city="Milano", alerts=False)], TOOLS)
    assert check([call("get_weather", city="Milano")], truth).passed
    truth = ground_truth_from_calls([call("get_weather", city="Milano", alerts=True)], TOOLS)
    assert not check([call("get_weather", city="Milano")], truth).passed


def test_ground_truth_place_aliases_and_iso_dates():
    truth = ground_truth_from_calls([call("get_weather", city="Milano")], TOOLS)
    assert check([call("get_weather", city="Milan")], truth).passed
    assert not check([call("get_weather", city="Turin")], truth).passed
    assert "2026-03-03" in acceptable("2026-03-03", {"type": "string", "format": "date"})
    truth = ground_truth_from_calls([call("create_event", title="x", date="2026-03-03")], TOOLS)
    assert check([call("create_event", title="x", date="2026-03-03")], truth).passed
    assert not check([call("create_event", title="x", date="3 marzo")], truth).passed


def test_ground_truth_nested_object_optional_key():
    truth = ground_truth_from_calls([call("create_event", title="x", date="2026-03-03", reminder={"minutes": 15})], TOOLS)
    assert truth[0]["arguments"]["reminder"] == [{"minutes": [15], "method": ["popup", ""]}]
    assert check([call("create_event", title="x", date="2026-03-03", reminder={"minutes": 15})], truth).passed
    assert check([call("create_event", title="x", date="2026-03-03", reminder={"minutes": 15, "method": "popup"})],
                 truth).passed
    assert not check([call("create_event", title="x", date="2026-03-03", reminder={"minutes": 15, "method": "email"})],
                     truth).passed


def _openai(name, **args):
    return {"id": f"call_{name}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def test_expected_turns_of_rows():
    multi = {"tools": TOOLS, "messages": [
        {"role": "user", "content": "weather then event"},
        {"role": "assistant", "content": None, "tool_calls": [_openai("get_weather", city="Roma")]},
        {"role": "tool", "tool_call_id": "call_get_weather", "content": "{}"},
        {"role": "assistant", "content": None, "tool_calls": [_openai("create_event", title="t", date="2026-01-02")]},
        {"role": "tool", "tool_call_id": "call_create_event", "content": "{}"},
        {"role": "assistant", "content": "done"}]}
    turns = expected_turns(multi)
    assert [len(prefix) for prefix, _ in turns] == [1, 3, 5]
    assert [t[0]["name"] if t else None for _, t in turns] == ["get_weather", "create_event", None]
    assert ground_truth_from_row(multi, 1)[0]["name"] == "create_event"
    no_call = {"tools": TOOLS, "messages": [{"role": "user", "content": "tell me a joke"},
                                            {"role": "assistant", "content": "..."}]}
    assert ground_truth_from_row(no_call) == []
    assert check([], ground_truth_from_row(no_call)).passed
    assert not check([call("get_weather", city="x")], ground_truth_from_row(no_call)).passed
    with pytest.raises(ValueError):
        ground_truth_from_row({"messages": [{"role": "user", "content": "x"}]})


def test_every_generated_turn_checks_against_itself_and_rejects_a_corruption():
    from nesso.agentic_data import generate

    rows = generate(90, seed=11)
    checked = 0
    for row in rows["train"] + rows["heldout"]:
        if row["category"] in ("irrelevance", "missing_argument", "structured_json"):
            assert ground_truth_from_row(row) == []
        for prefix, truth in expected_turns(row):
            calls = row["messages"][len(prefix)].get("tool_calls") or []
            assert check_calls(calls, truth, row["tools"]).passed, row["id"]
            if calls:  # dropping a call must fail
                assert not check_calls(calls[:-1], truth, row["tools"]).passed
            checked += 1
    assert checked > 90
