"""nesso's own shipped tools (nesso.tools) as generator tools, with the exact schemas the agent offers them with.

Training on them is what lets the embedded model use `nesso chat`'s calculator and clock. Their results are
computed the way the real tools compute them (the calculator's own evaluator; a sampled instant in the named
zone), so the answers the model learns to give are the true ones.
"""

from __future__ import annotations

import random
import zoneinfo
from datetime import datetime, timedelta
from typing import Any

from nesso.agentic_data.render import L, Val, num, pick
from nesso.agentic_data.spec import Ctx, T, ToolSpec
from nesso.tools.calculator import calculator as calculator_tool
from nesso.tools.clock import describe_time
from nesso.tools.clock import get_current_time as clock_tool


def shipped_schema(t: Any) -> tuple[str, dict[str, Any]]:
    """A real nesso tool's description and parameters, as the agent offers them."""
    fn = t.spec["function"]
    return fn["description"], fn["parameters"]


def _pct(c: Ctx) -> Val:
    p = c.rng.choice([5, 7.5, 10, 12.5, 15, 17.5, 20, 22, 25, 30, 35, 40])
    x = c.rng.choice([80, 120, 240, 350, 480, 999, 1250, 2340, 4800, 15000, 37.5, 64.9])
    cur = c.rng.random() < 0.5
    en = f"{num(p, 'en')}% of {num(x, 'en')}" + (" euros" if cur else "")
    it = f"il {num(p, 'it')}% di {num(x, 'it')}" + (" euro" if cur else "")
    return Val(f"{x} * {p} / 100", L(en, it))


def _arith(c: Ctx) -> Val:
    a, b = c.rng.randint(12, 999), c.rng.randint(3, 99)
    kind = c.rng.randrange(6)
    if kind == 0:
        return Val(f"{a} * {b}", L(f"{a} times {b}", f"{a} per {b}"))
    if kind == 1:
        return Val(f"{a} / {b}", L(f"{a} divided by {b}", f"{a} diviso {b}"))
    if kind == 2:
        f = round(c.rng.uniform(1, 50), 2)
        return Val(f"{a} + {f} - {b}", L(f"{a} plus {num(f, 'en')} minus {b}", f"{a} più {num(f, 'it')} meno {b}"))
    if kind == 3:
        n = c.rng.choice([2, 3, 10, 50, 144, 200, 1024, 2025])
        return Val(f"sqrt({n})", L(f"the square root of {n}", f"la radice quadrata di {n}"))
    if kind == 4:
        e = c.rng.randint(2, 12)
        base = c.rng.randint(2, 15)
        return Val(f"{base} ** {e}", L(f"{base} to the power of {e}", f"{base} elevato alla {e}"))
    xs = [c.rng.randint(10, 500) for _ in range(c.rng.randint(3, 5))]
    return Val(f"({' + '.join(map(str, xs))}) / {len(xs)}",
               L(f"the average of {', '.join(map(str, xs))}", f"la media di {', '.join(map(str, xs))}"))


def _calc_sample(c: Ctx) -> dict[str, Val]:
    return {"expression": _pct(c) if c.rng.random() < 0.4 else _arith(c)}


def _calc_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    return calculator_tool(expression=a["expression"])


def _calc_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    res = r["result"]
    shown = num(round(res, 4) if isinstance(res, float) else res, c.lang)
    return c.t(f"`{r['expression']}` = {shown}.", f"`{r['expression']}` fa {shown}.")


CALC_DESCRIPTION, CALC_PARAMETERS = shipped_schema(calculator_tool)
calculator = ToolSpec(
    name="calculator", domain="math_units", description=CALC_DESCRIPTION, parameters=CALC_PARAMETERS,
    sample=_calc_sample, result=_calc_result, answer=_calc_answer,
    templates=T(["How much is {expression}?", "Calculate {expression}.", "What's {expression}?",
                 "Can you work out {expression} for me?"],
                ["Quanto fa {expression}?", "Calcola {expression}.", "Quant'è {expression}?",
                 "Mi calcoli {expression}?"]),
)

CITIES = [  # (English, Italian, IANA zone)
    ("Tokyo", "Tokyo", "Asia/Tokyo"), ("New York", "New York", "America/New_York"),
    ("London", "Londra", "Europe/London"), ("Rome", "Roma", "Europe/Rome"), ("Milan", "Milano", "Europe/Rome"),
    ("Sydney", "Sydney", "Australia/Sydney"), ("Paris", "Parigi", "Europe/Paris"),
    ("Berlin", "Berlino", "Europe/Berlin"), ("Los Angeles", "Los Angeles", "America/Los_Angeles"),
    ("São Paulo", "San Paolo", "America/Sao_Paulo"), ("Dubai", "Dubai", "Asia/Dubai"),
    ("Singapore", "Singapore", "Asia/Singapore"), ("Mumbai", "Mumbai", "Asia/Kolkata"),
    ("Moscow", "Mosca", "Europe/Moscow"), ("Cairo", "Il Cairo", "Africa/Cairo"),
    ("Mexico City", "Città del Messico", "America/Mexico_City"), ("Toronto", "Toronto", "America/Toronto"),
    ("Beijing", "Pechino", "Asia/Shanghai"), ("Seoul", "Seul", "Asia/Seoul"), ("Lisbon", "Lisbona", "Europe/Lisbon"),
]


def _time_sample(c: Ctx) -> dict[str, Val]:
    en, it, zone = pick(c.rng, CITIES)
    return {"timezone": Val(zone, L(en, it))}


def _time_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    zone = zoneinfo.ZoneInfo(a.get("timezone", "UTC"))
    return describe_time((datetime(2026, 1, 1, tzinfo=zoneinfo.ZoneInfo("UTC"))
                          + timedelta(days=rng.randint(0, 364), minutes=rng.randint(0, 24 * 60 - 1))).astimezone(zone))


def _time_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    # The answer copies the names the result gives, so that a model learns to copy them rather than to map month
    # numbers to names (the shipped adapter, trained before results had them, misnames Italian months).
    d = datetime.fromisoformat(r["datetime"])
    if c.lang == "en":
        return f"It's {r['time']} on {r['weekday']} {d.day} {r['month']} {d.year} ({r['timezone']})."
    return f"Sono le {r['time']} di {r['weekday_it']} {d.day} {r['month_it']} {d.year} ({r['timezone']})."


TIME_DESCRIPTION, TIME_PARAMETERS = shipped_schema(clock_tool)
get_current_time = ToolSpec(
    name="get_current_time", domain="calendar", description=TIME_DESCRIPTION, parameters=TIME_PARAMETERS,
    sample=_time_sample, result=_time_result, answer=_time_answer,
    templates=T(["What time is it in {timezone}?", "What time is it in {timezone} right now?",
                 "Tell me the current time in {timezone}.", "What's the date and time in {timezone}?"],
                ["Che ore sono a {timezone}?", "Che ora è adesso a {timezone}?", "Dimmi l'ora attuale a {timezone}.",
                 "Che giorno e che ora sono a {timezone}?"]),
)

TOOLS = [calculator, get_current_time]
