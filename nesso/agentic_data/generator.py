"""Build dataset rows: one function per category, all driven by one seeded generator per row."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

from nesso.agentic_data import chat, mapped, synthetic
from nesso.agentic_data.catalog import (
    DOMAIN_NOUNS,
    HELD_TOOLS,
    HELDOUT_TOOLS,
    TOOL_BY_NAME,
    TOOLS,
    TRAIN_TOOLS,
)
from nesso.agentic_data.chains import CHAINS, Chain
from nesso.agentic_data.extraction import EXTRACTIONS, HELDOUT_EXTRACTIONS
from nesso.agentic_data.render import LANGS, L, Val, fields_of, fill, pick, stable_rng
from nesso.agentic_data.spec import Ctx, ToolSpec
from nesso.agentic_data.tools_local import TOOLS as LOCAL_TOOLS

CATEGORIES = ("simple", "multiple", "parallel", "parallel_multiple", "multi_step", "irrelevance", "missing_argument",
              "structured_json", "tool_error")
SPLITS = ("train", "heldout")
# Opt-in rows whose requests all target one of nesso's shipped tools (what `nesso chat` offers), offered among the
# train tools: calculator, clock, unit conversion, the demo shop database (tools_local). Not part of `generate`.
SHIPPED_SPLIT = "shipped"
SHIPPED_CATEGORIES = ("simple", "multiple", "parallel", "parallel_multiple", "irrelevance", "missing_argument",
                      "tool_error")
SHIPPED_TARGETS = [TOOL_BY_NAME["calculator"], TOOL_BY_NAME["get_current_time"],
                   *(t for t in LOCAL_TOOLS if t.name != "list_tables")]  # list_tables takes no arguments: offered only
# The catalogue has tools of the same names with other schemas (a convert_units with unit enums, a query_database
# over three company databases): in shipped rows nesso's own replace them.
SHIPPED_POOL = [t for t in TRAIN_TOOLS if t.name not in {u.name for u in LOCAL_TOOLS}] + LOCAL_TOOLS
# Opt-in rows over tools made up per row (synthetic.py): fresh names, argument keys and optional arguments, so that a
# call can only be right by reading the offered schema. Not part of `generate`; the catalogue is never offered.
SYNTHETIC_SPLIT = "synthetic"
SYNTHETIC_POOL_SIZE = 6
# Opt-in rows like the synthetic ones where four of the six made-up tools want values in another shape than the
# user's words (mapped.py): durations in other units, phrases for enum codes, yes/no flags, ranges, cents, IBANs.
MAPPED_SPLIT = "mapped"
MADE_UP_SPLITS = (SYNTHETIC_SPLIT, MAPPED_SPLIT)
# Opt-in rows of what people type first in `nesso chat`, over nesso's own tools: greetings and thanks answered
# without a call, "what can you do?" answered from the offered tools, and requests for the shop database's tables
# (list_tables, never a target elsewhere). Requests are punctuated as in the other splits: unpunctuated ones here
# alone taught a CPU continuation that a bare request means list_tables (RESULTS). For the next full training run;
# not part of `generate`.
OPENINGS_SPLIT = "openings"
OPENINGS_CATEGORIES = ("greeting", "about_me", "list_tables")
OWN_TOOLS = [TOOL_BY_NAME["calculator"], TOOL_BY_NAME["get_current_time"], *LOCAL_TOOLS]
OPT_IN_SPLITS = (SHIPPED_SPLIT, SYNTHETIC_SPLIT, MAPPED_SPLIT, OPENINGS_SPLIT)
HELDOUT_FRACTION = 0.2
FIRST_DAY = date(2026, 1, 5)
SELF_SERVICE = ("translate_text", "calculate_loan_payment")  # requests a model can answer without the tool
# Tools that could each serve the other's requests ("is it raining in Rome today?"): never offered side by side.
CONFUSABLE = [{"get_current_weather", "get_forecast"}]  # rows are set on a day between this and ~6 months later


def categories_of(split: str) -> tuple[str, ...]:
    """The categories a split's rows cycle through, one language pair (en, it) per category."""
    if split == OPENINGS_SPLIT:
        return OPENINGS_CATEGORIES
    return SHIPPED_CATEGORIES if split in OPT_IN_SPLITS else CATEGORIES


class _Row:
    """One conversation being built."""

    def __init__(self, seed: int, split: str, index: int) -> None:
        self.seed, self.split, self.index = seed, split, index
        rng = stable_rng("row", seed, split, index)
        self.lang = LANGS[index % 2]
        cycle = categories_of(split)
        self.category = cycle[(index // 2) % len(cycle)]
        self.c = Ctx(rng, self.lang, FIRST_DAY + timedelta(days=rng.randint(0, 170)))
        self.made_up = (synthetic.tool_pool(rng, SYNTHETIC_POOL_SIZE) if split == SYNTHETIC_SPLIT
                        else mapped.tool_pool(rng, SYNTHETIC_POOL_SIZE) if split == MAPPED_SPLIT else [])
        self.messages: list[dict[str, Any]] = []
        self.tools: list[ToolSpec] = []
        self.extra: dict[str, Any] = {}

    # ---- pools: held-out tools are targets only in held-out rows, and never appear in train rows ----
    @property
    def targets(self) -> list[ToolSpec]:
        if self.split == SHIPPED_SPLIT:
            return SHIPPED_TARGETS
        if self.split in MADE_UP_SPLITS:
            return self.made_up
        return HELD_TOOLS if self.split == "heldout" else TRAIN_TOOLS

    @property
    def others(self) -> list[ToolSpec]:
        if self.split == SHIPPED_SPLIT:
            return SHIPPED_POOL
        if self.split in MADE_UP_SPLITS:
            return self.made_up
        return TOOLS if self.split == "heldout" else TRAIN_TOOLS

    def distractors(self, exclude: list[ToolSpec], k: int, other_domains: bool = False) -> list[ToolSpec]:
        names = {t.name for t in exclude}
        domains = {t.domain for t in exclude}
        blocked = names | {n for pair in CONFUSABLE if pair & names for n in pair}
        pool = [t for t in self.others if t.name not in blocked and not (other_domains and t.domain in domains)]
        same = [t for t in pool if t.domain in domains]
        out = [pick(self.c.rng, same)] if same and k and self.c.rng.random() < 0.6 else []
        rest = [t for t in pool if t not in out]
        return out + self.c.rng.sample(rest, min(k - len(out), len(rest)))

    def offer(self, tools: list[ToolSpec]) -> None:
        tools = list(tools)
        self.c.rng.shuffle(tools)
        self.tools = tools

    # ---- messages ----
    def system(self) -> None:
        self.messages.append({"role": "system", "content": chat.system_prompt(self.c)})

    def user(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})

    def assistant(self, text: str) -> None:
        self.messages.append({"role": "assistant", "content": text})

    def call(self, calls: list[tuple[ToolSpec, dict[str, Any]]]) -> list[str]:
        ids = [f"call_{self.c.rng.getrandbits(64):016x}" for _ in calls]
        self.messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": i, "type": "function", "function": {"name": t.name, "arguments": json.dumps(a, ensure_ascii=False)}}
            for i, (t, a) in zip(ids, calls)]})
        return ids

    def respond(self, ids: list[str], calls: list[tuple[ToolSpec, dict[str, Any]]], results: list[dict[str, Any]]) -> None:
        for i, (t, _), r in zip(ids, calls, results):
            self.messages.append({"role": "tool", "tool_call_id": i, "name": t.name,
                                  "content": json.dumps(r, ensure_ascii=False)})

    def result(self, tool: ToolSpec, args: dict[str, Any]) -> dict[str, Any]:
        """The tool's answer, a function of the seed, the tool and its arguments only."""
        rng = stable_rng("result", self.seed, tool.name, json.dumps(args, sort_keys=True, ensure_ascii=False), self.lang)
        return tool.result(args, rng, self.lang)

    def request(self, tool: ToolSpec, template: str | None = None) -> tuple[str, dict[str, Any]]:
        """A user request for ``tool`` and the arguments it implies."""
        vals = tool.sample(self.c)
        template = template or pick(self.c.rng, tool.templates[self.lang])
        return fill(template, vals, self.lang), args_from(tool, vals, template, self.lang)

    def row(self) -> dict[str, Any]:
        out = {"id": f"{self.split}-{self.index:06d}", "split": self.split, "category": self.category, "lang": self.lang,
               "messages": self.messages, "tools": [t.schema() for t in self.tools]}
        out.update(self.extra)
        return out


def args_from(tool: ToolSpec, vals: dict[str, Val], template: str, lang: str) -> dict[str, Any]:
    used = fields_of(template)
    return {k: vals[k].value_for(lang) for k in tool.parameters["properties"] if k in used}


# ---- categories --------------------------------------------------------------------------------------
def _single(r: _Row, tool: ToolSpec, offered: list[ToolSpec]) -> None:
    text, args = r.request(tool)
    r.offer(offered)
    r.system()
    r.user(text)
    ids = r.call([(tool, args)])
    res = r.result(tool, args)
    r.respond(ids, [(tool, args)], [res])
    r.assistant(tool.answer(r.c, args, res))


def simple(r: _Row) -> None:
    tool = pick(r.c.rng, r.targets)
    _single(r, tool, [tool])


def multiple(r: _Row) -> None:
    tool = pick(r.c.rng, r.targets)
    _single(r, tool, [tool, *r.distractors([tool], r.c.rng.randint(2, 3))])


def _many(r: _Row, requests: list[tuple[ToolSpec, str, dict[str, Any]]], offered: list[ToolSpec]) -> None:
    r.offer(offered)
    r.system()
    r.user(chat.combine_requests(r.c, [text for _, text, _ in requests]))
    calls = [(t, a) for t, _, a in requests]
    ids = r.call(calls)
    results = [r.result(t, a) for t, a in calls]
    r.respond(ids, calls, results)
    r.assistant(chat.combine_answers(r.c, [t.answer(r.c, a, res) for (t, a), res in zip(calls, results)]))


def parallel(r: _Row) -> None:
    tool = pick(r.c.rng, r.targets)
    k = 2 if r.c.rng.random() < 0.75 else 3
    requests: list[tuple[ToolSpec, str, dict[str, Any]]] = []
    for _ in range(40):
        text, args = r.request(tool)
        if all(args != a for _, _, a in requests):
            requests.append((tool, text, args))
        if len(requests) == k:
            break
    _many(r, requests, [tool])


def parallel_multiple(r: _Row) -> None:
    k = 2 if r.c.rng.random() < 0.7 else 3
    tools = r.c.rng.sample(r.targets, k)
    while any(pair <= {t.name for t in tools} for pair in CONFUSABLE):
        tools = r.c.rng.sample(r.targets, k)
    requests = [(t, *r.request(t)) for t in tools]
    _many(r, requests, tools + r.distractors(tools, 1))


def multi_step(r: _Row) -> None:
    held = r.split == "heldout"
    chain: Chain = pick(r.c.rng, [ch for ch in CHAINS if any(t in HELDOUT_TOOLS for t in ch.tools) == held])
    first, second = TOOL_BY_NAME[chain.first], TOOL_BY_NAME[chain.second]
    vals = chain.sample(r.c)
    template = pick(r.c.rng, chain.templates[r.lang])
    used = {k: v for k, v in vals.items() if k in fields_of(template)}
    a1 = args_from(first, vals, template, r.lang)
    r.offer([first, second, *r.distractors([first, second], r.c.rng.randint(0, 2))])
    r.system()
    r.user(fill(template, vals, r.lang))
    ids = r.call([(first, a1)])
    r1, a2 = chain.step(r.c, used, a1, r.result(first, a1))
    r.respond(ids, [(first, a1)], [r1])
    ids = r.call([(second, a2)])
    r2 = r.result(second, a2)
    r.respond(ids, [(second, a2)], [r2])
    r.assistant(chain.answer(r.c, a1, r1, a2, r2))


def irrelevance(r: _Row) -> None:
    held = r.split == "heldout"
    if r.c.rng.random() < 0.5:  # small talk or general knowledge: answer directly
        cut = len(chat.SMALL_TALK) - chat.HELDOUT_SMALL_TALK
        question, answer = pick(r.c.rng, chat.SMALL_TALK[cut:] if held else chat.SMALL_TALK[:cut])
        base = [pick(r.c.rng, HELD_TOOLS)] if held else []
        r.offer(base + r.distractors(base, r.c.rng.randint(1, 3) - len(base)))
        r.system()
        r.user(question(r.lang))
        r.assistant(answer(r.lang))
        return
    # a request that needs a kind of tool this conversation does not offer (calculations and translations are
    # left out: the assistant could answer those itself)
    wanted = pick(r.c.rng, [t for t in r.targets if t.domain != "math_units" and t.name not in SELF_SERVICE])
    text, _ = r.request(wanted)
    offered = r.distractors([wanted], r.c.rng.randint(1, 3), other_domains=True)
    r.offer(offered)
    r.system()
    r.user(text)
    nouns = {SYNTHETIC_SPLIT: synthetic.DOMAIN_NOUNS,
             MAPPED_SPLIT: {**synthetic.DOMAIN_NOUNS, **mapped.DOMAIN_NOUNS}}.get(r.split, DOMAIN_NOUNS)
    r.assistant(chat.cannot_help(r.c, nouns[wanted.domain], [nouns[t.domain] for t in offered]))


def missing_argument(r: _Row) -> None:
    tool = pick(r.c.rng, [t for t in r.targets if t.missing])
    spec = pick(r.c.rng, tool.missing)
    vals = tool.sample(r.c)
    r.offer([tool, *r.distractors([tool], r.c.rng.randint(0, 2))])
    r.system()
    r.user(fill(pick(r.c.rng, spec.templates[r.lang]), vals, r.lang))
    r.assistant(fill(spec.question[r.lang], vals, r.lang))


def structured_json(r: _Row) -> None:
    held = r.split == "heldout"
    task = pick(r.c.rng, [e for e in EXTRACTIONS if (e.name in HELDOUT_EXTRACTIONS) == held])
    data, text = task.make(r.c)
    r.messages.append({"role": "system", "content": chat.structured_system_prompt(r.c, task.schema)})
    r.user(pick(r.c.rng, task.ask[r.lang]).format(text=text))
    r.assistant(json.dumps(data, ensure_ascii=False))
    r.extra["response_format"] = {"type": "json_schema",
                                  "json_schema": {"name": task.name, "schema": task.schema, "strict": True}}


def tool_error(r: _Row) -> None:
    tool = pick(r.c.rng, r.targets)
    text, args = r.request(tool)
    r.offer([tool, *r.distractors([tool], r.c.rng.randint(0, 2))])
    r.system()
    r.user(text)
    calls = [(tool, args)]
    ids = r.call(calls)
    outcome = r.c.rng.random()
    if outcome < 0.3:  # a permanent error: explain it, do not retry
        err = chat.permanent_error(r.c, list(args))
        r.respond(ids, calls, [{"error": err}])
        r.assistant(chat.explain_error(r.c, tool.name, err))
        return
    r.respond(ids, calls, [{"error": pick(r.c.rng, chat.TRANSIENT)}])
    ids = r.call(calls)  # a transient error: retry once with the same arguments
    if outcome < 0.45:  # still failing: give up and say so
        err = pick(r.c.rng, chat.TRANSIENT)
        r.respond(ids, calls, [{"error": err}])
        r.assistant(chat.explain_error(r.c, tool.name, err))
        return
    res = r.result(tool, args)
    r.respond(ids, calls, [res])
    r.assistant(tool.answer(r.c, args, res))


def _own_tools(r: _Row, must: list[ToolSpec]) -> list[ToolSpec]:
    """``must`` and some more of nesso's own tools (at least two in all), as `nesso chat` offers them."""
    rest = [t for t in OWN_TOOLS if t not in must]
    return must + r.c.rng.sample(rest, r.c.rng.randint(max(0, 2 - len(must)), len(rest)))


def greeting(r: _Row) -> None:
    question, answer = pick(r.c.rng, chat.GREETINGS)
    r.offer(_own_tools(r, []))
    r.system()
    r.user(question(r.lang))
    r.assistant(answer(r.lang))


def about_me(r: _Row) -> None:
    r.offer(_own_tools(r, []))
    r.system()
    r.user(pick(r.c.rng, chat.ABOUT_ME)(r.lang))
    r.assistant(chat.about_me(r.c, [t.name for t in r.tools]))


LIST_TABLES_REQUESTS = [L("List the tables in the database.", "Elenca le tabelle del database."),
                        L("What data do you have?", "Che dati hai?"),
                        L("Show me the tables of the shop database.", "Mostrami le tabelle del database del negozio."),
                        L("What's in the database?", "Cosa c'è nel database?")]


def list_tables(r: _Row) -> None:
    tool = next(t for t in OWN_TOOLS if t.name == "list_tables")
    r.offer(_own_tools(r, [tool]))
    r.system()
    r.user(pick(r.c.rng, [*tool.templates[r.lang], *(x(r.lang) for x in LIST_TABLES_REQUESTS)]))
    ids = r.call([(tool, {})])
    res = r.result(tool, {})
    r.respond(ids, [(tool, {})], [res])
    r.assistant(tool.answer(r.c, {}, res))


BUILDERS = {"simple": simple, "multiple": multiple, "parallel": parallel, "parallel_multiple": parallel_multiple,
            "multi_step": multi_step, "irrelevance": irrelevance, "missing_argument": missing_argument,
            "structured_json": structured_json, "tool_error": tool_error,
            "greeting": greeting, "about_me": about_me, "list_tables": list_tables}  # the last three: openings


def make_row(seed: int, split: str, index: int) -> dict[str, Any]:
    """Row ``index`` of ``split``: its language alternates en/it and its category cycles, so every split is balanced."""
    r = _Row(seed, split, index)
    BUILDERS[r.category](r)
    return r.row()


def generate_shipped(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` rows of the opt-in shipped split (see SHIPPED_SPLIT), shuffled deterministically."""
    return generate_opt_in(SHIPPED_SPLIT, n, seed)


def generate_opt_in(split: str, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` rows of an opt-in split (one of OPT_IN_SPLITS), shuffled deterministically."""
    rows = [make_row(seed, split, i) for i in range(n)]
    stable_rng("order", seed, split).shuffle(rows)
    return rows


def split_sizes(n: int, heldout_fraction: float = HELDOUT_FRACTION) -> dict[str, int]:
    held = round(n * heldout_fraction)
    return {"train": n - held, "heldout": held}


def generate(n: int, seed: int = 0, heldout_fraction: float = HELDOUT_FRACTION) -> dict[str, list[dict[str, Any]]]:
    """``n`` rows in all, split train/heldout, each split shuffled deterministically."""
    out = {}
    for split, size in split_sizes(n, heldout_fraction).items():
        rows = [make_row(seed, split, i) for i in range(size)]
        stable_rng("order", seed, split).shuffle(rows)
        out[split] = rows
    return out
