"""The rest of nesso's shipped tools — unit conversion and the demo shop database — as generator tools, with the
exact schemas `nesso chat` offers them with and results computed by the real tools (the database answers come
from the demo shop itself, built with the same seed the agent uses).

They are not in the catalogue (``catalog.TOOLS``): adding tools there would change every row of
``agentic:N:SEED``, and with it the data the shipped adapter was trained on. Their rows come from the opt-in
``shipped`` split instead (``agentic:N:SEED:shipped``; ``generator.SHIPPED_SPLIT``), whose requests all target a
shipped tool — these three, the calculator and the clock.
"""

from __future__ import annotations

import functools
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nesso.agentic_data.render import MONTHS, L, Val, join, money, num, pick
from nesso.agentic_data.spec import Ctx, Missing, T, ToolSpec
from nesso.agentic_data.tools_shipped import shipped_schema
from nesso.tools.database import create_demo_database, database_tools, describe
from nesso.tools.database import query as run_query
from nesso.tools.units import convert_units as units_tool

# ---- unit conversion ---------------------------------------------------------------------------------
# (symbol sent to the tool, English plural, Italian plural, Italian "how many" (gender), plausible amounts)
UNITS = {
    "km": ("km", "kilometres", "chilometri", "Quanti"), "mi": ("mi", "miles", "miglia", "Quante"),
    "kg": ("kg", "kilograms", "chili", "Quanti"), "lb": ("lb", "pounds", "libbre", "Quante"),
    "l": ("l", "litres", "litri", "Quanti"), "gal": ("gal", "gallons", "galloni", "Quanti"),
    "km/h": ("km/h", "km/h", "km/h", "Quanti"), "mph": ("mph", "mph", "miglia orarie", "Quante"),
    "C": ("C", "degrees Celsius", "gradi Celsius", "Quanti"), "F": ("F", "degrees Fahrenheit", "gradi Fahrenheit", "Quanti"),
    "m": ("m", "metres", "metri", "Quanti"), "ft": ("ft", "feet", "piedi", "Quanti"),
    "cm": ("cm", "centimetres", "centimetri", "Quanti"), "in": ("in", "inches", "pollici", "Quanti"),
    "g": ("g", "grams", "grammi", "Quanti"), "oz": ("oz", "ounces", "once", "Quante"),
    "GB": ("GB", "gigabytes", "gigabyte", "Quanti"), "MB": ("MB", "megabytes", "megabyte", "Quanti"),
}
PAIRS = [("mi", "km", [3.1, 5, 10, 13.1, 26.2, 50, 120]), ("km", "mi", [5, 10, 21.1, 42.195, 100, 250]),
         ("kg", "lb", [2, 5, 12.5, 70, 85]), ("lb", "kg", [2, 8, 150, 180, 220]),
         ("gal", "l", [1, 5, 12, 15]), ("l", "gal", [2, 20, 50, 75]), ("mph", "km/h", [30, 55, 65, 70]),
         ("km/h", "mph", [50, 90, 110, 130]), ("F", "C", [32, 68, 75, 98.6, 104]), ("C", "F", [-5, 0, 18, 25, 37]),
         ("ft", "m", [6, 30, 1000, 29032]), ("m", "ft", [1.8, 100, 4808]), ("in", "cm", [6, 15.6, 27, 55]),
         ("cm", "in", [30, 75, 180]), ("oz", "g", [4, 8, 16]), ("g", "oz", [100, 250, 500]),
         ("GB", "MB", [1.5, 4, 16]), ("MB", "GB", [700, 2048, 4500])]


def _unit(symbol: str) -> Val:
    _, en, it, how_many = UNITS[symbol]
    return Val(symbol, L(en, it), {"q": L(f"How many {en}", f"{how_many} {it}")})


def _units_sample(c: Ctx) -> dict[str, Val]:
    src, dst, amounts = pick(c.rng, PAIRS)
    x = pick(c.rng, amounts)
    return {"value": Val(x, L(num(x, "en"), num(x, "it"))), "from_unit": _unit(src), "to_unit": _unit(dst)}


def _units_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    return units_tool(value=a["value"], from_unit=a["from_unit"], to_unit=a["to_unit"])


def _units_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    res = round(r["result"], 2)
    res = int(res) if float(res).is_integer() else res
    src, dst = UNITS[a["from_unit"]], UNITS[a["to_unit"]]
    lang = 1 if c.lang == "en" else 2
    return c.t(f"{num(a['value'], 'en')} {src[lang]} is {num(res, 'en')} {dst[lang]}.",
               f"{num(a['value'], 'it')} {src[lang]} corrispondono a {num(res, 'it')} {dst[lang]}.")


UNITS_DESCRIPTION, UNITS_PARAMETERS = shipped_schema(units_tool)
convert_units = ToolSpec(
    name="convert_units", domain="math_units", description=UNITS_DESCRIPTION, parameters=UNITS_PARAMETERS,
    sample=_units_sample, result=_units_result, answer=_units_answer,
    templates=T(["{to_unit:q} is {value} {from_unit}?", "Convert {value} {from_unit} to {to_unit}.",
                 "What is {value} {from_unit} in {to_unit}?", "{value} {from_unit} in {to_unit}, please."],
                ["{to_unit:q} sono {value} {from_unit}?", "Converti {value} {from_unit} in {to_unit}.",
                 "Quanto fa {value} {from_unit} in {to_unit}?", "{value} {from_unit} in {to_unit}, per favore."]),
    missing=[Missing("to_unit", T(["Convert {value} {from_unit}.", "Can you convert {value} {from_unit} for me?"],
                                  ["Converti {value} {from_unit}.", "Mi converti {value} {from_unit}?"]),
                     {"en": "Which unit should I convert {value} {from_unit} to?",
                      "it": "In quale unità devo convertire {value} {from_unit}?"})],
)


# ---- the demo shop database ----------------------------------------------------------------------------
@functools.cache
def demo_shop() -> Path:
    """The demo shop as the agent builds it (same seed), in a private temporary directory."""
    return create_demo_database(Path(tempfile.mkdtemp(prefix="nesso-shop-")) / "demo_shop.sqlite")


_TABLES, _QUERY = database_tools(Path("demo_shop.sqlite"))  # the schemas only: the file is opened per call
FIRST_NAMES = ["Giulia", "Marco", "Sofia", "Luca", "Chiara", "Alice", "John", "Emma", "Paolo", "Olivia"]
CITIES = [("Milan", "Milano"), ("Rome", "Roma"), ("Naples", "Napoli"), ("Turin", "Torino"), ("Bologna", "Bologna"),
          ("Florence", "Firenze"), ("London", "London"), ("Dublin", "Dublin"), ("New York", "New York")]
STATUSES = [("delivered", "delivered", "consegnati"), ("shipped", "shipped", "spediti"),
            ("cancelled", "cancelled", "annullati")]
PRODUCTS = [("Moka", "the moka pot", "la moka"), ("olive oil", "the olive oil", "l'olio d'oliva"),
            ("headphones", "the wireless headphones", "le cuffie senza fili"),
            ("backpack", "the hiking backpack", "lo zaino da escursionismo"),
            ("charger", "the USB-C charger", "il caricatore USB-C"), ("Parmigiano", "the Parmigiano", "il Parmigiano")]
CATEGORIES = [("food", "food", "alimentari"), ("kitchen", "kitchen", "cucina"), ("home", "home", "casa"),
              ("electronics", "electronics", "elettronica"), ("outdoor", "outdoor", "outdoor")]
PAID = "o.status != 'cancelled'"
REVENUE = "ROUND(SUM(oi.quantity * p.price_eur), 2)"
ITEMS = "orders o JOIN order_items oi ON oi.order_id = o.id JOIN products p ON p.id = oi.product_id"

# How each question's rows are said, keyed by the SQL that answers it (filled when a question is sampled).
_SAY: dict[str, Callable[[Ctx, list[list[Any]]], str]] = {}


def _question(sql: str, en: str, it: str, say: Callable[[Ctx, list[list[Any]]], str]) -> dict[str, Val]:
    _SAY[sql] = say
    return {"sql": Val(sql, L(en, it))}


def _orders(n: int, lang: str) -> str:
    if lang == "en":
        return f"{n} order" if n == 1 else f"{n} orders"
    return f"{n} ordine" if n == 1 else f"{n} ordini"


def _orders_of(c: Ctx) -> dict[str, Val]:
    name = pick(c.rng, FIRST_NAMES)
    m = c.rng.randrange(11)  # the shop's orders run from January to late November 2026
    month = L(MONTHS["en"][m], MONTHS["it"][m])
    sql = (f"SELECT COUNT(*) AS orders FROM orders o JOIN customers c ON c.id = o.customer_id "
           f"WHERE c.name LIKE '{name} %' AND o.order_date LIKE '2026-{m + 1:02d}-%'")
    return _question(sql, f"How many orders did {name} place in {month.en} 2026?",
                     f"Quanti ordini ha fatto {name} a {month.it} 2026?",
                     lambda c, rows: c.t(f"{name} placed {_orders(rows[0][0], 'en')} in {month.en} 2026.",
                                         f"{name} ha fatto {_orders(rows[0][0], 'it')} a {month.it} 2026."))


def _best_category(c: Ctx) -> dict[str, Val]:
    sql = (f"SELECT p.category, {REVENUE} AS revenue_eur FROM {ITEMS} WHERE {PAID} "
           "GROUP BY p.category ORDER BY revenue_eur DESC LIMIT 1")
    en, it = pick(c.rng, [("Which product category has brought in the most money?",
                           "Quale categoria di prodotti ha incassato di più?"),
                          ("What is our best-selling category by revenue?",
                           "Qual è la categoria con il fatturato più alto?")])
    return _question(sql, en, it, lambda c, rows: c.t(
        f"{rows[0][0]} leads with {money(rows[0][1], 'en')} of revenue (cancelled orders left out).",
        f"In testa c'è {rows[0][0]}, con {money(rows[0][1], 'it')} di incassi (ordini annullati esclusi)."))


def _customers_in(c: Ctx) -> dict[str, Val]:
    en_city, it_city = pick(c.rng, CITIES)
    sql = f"SELECT name FROM customers WHERE city = '{it_city}' ORDER BY name"

    def say(c: Ctx, rows: list[list[Any]]) -> str:
        names = [r[0] for r in rows]
        if not names:
            return c.t(f"No customer lives in {en_city}.", f"Nessun cliente abita a {it_city}.")
        return c.t(f"Customers in {en_city}: {join(names, 'en')}.", f"Clienti a {it_city}: {join(names, 'it')}.")

    return _question(sql, f"Which customers are based in {en_city}?", f"Quali clienti abbiamo a {it_city}?", say)


def _orders_by_status(c: Ctx) -> dict[str, Val]:
    status, en, it = pick(c.rng, STATUSES)
    sql = f"SELECT COUNT(*) AS orders FROM orders WHERE status = '{status}'"
    return _question(sql, f"How many orders have been {en}?", f"Quanti ordini risultano {it}?",
                     lambda c, rows: c.t(f"{_orders(rows[0][0], 'en')} {en}.", f"{_orders(rows[0][0], 'it')} {it}."))


def _top_customer(c: Ctx) -> dict[str, Val]:
    sql = ("SELECT c.name, COUNT(*) AS orders FROM orders o JOIN customers c ON c.id = o.customer_id "
           "GROUP BY c.id ORDER BY orders DESC, c.name LIMIT 1")
    return _question(sql, "Who is the customer with the most orders?", "Chi è il cliente con più ordini?",
                     lambda c, rows: c.t(f"{rows[0][0]}, with {rows[0][1]} orders.",
                                         f"{rows[0][0]}, con {rows[0][1]} ordini."))


def _price_of(c: Ctx) -> dict[str, Val]:
    key, en, it = pick(c.rng, PRODUCTS)
    column = "name_en" if c.lang == "en" else "name_it"
    word = key if c.lang == "en" else {"olive oil": "Olio", "headphones": "Cuffie", "backpack": "Zaino",
                                       "charger": "Caricatore"}.get(key, key)
    sql = f"SELECT {column}, price_eur FROM products WHERE {column} LIKE '%{word}%'"
    return _question(sql, f"How much does {en} cost?", f"Quanto costa {it}?",
                     lambda c, rows: c.t(f"{rows[0][0]}: {money(rows[0][1], 'en')}.",
                                         f"{rows[0][0]}: {money(rows[0][1], 'it')}."))


def _spent_by(c: Ctx) -> dict[str, Val]:
    name = pick(c.rng, FIRST_NAMES)
    sql = (f"SELECT {REVENUE} AS total_eur FROM {ITEMS} JOIN customers c ON c.id = o.customer_id "
           f"WHERE c.name LIKE '{name} %' AND {PAID}")
    return _question(sql, f"How much has {name} spent with us in total?", f"Quanto ha speso {name} in tutto?",
                     lambda c, rows: c.t(f"{name} has spent {money(rows[0][0] or 0, 'en')} (cancelled orders left out).",
                                         f"{name} ha speso {money(rows[0][0] or 0, 'it')} (ordini annullati esclusi)."))


def _category_revenue(c: Ctx) -> dict[str, Val]:
    cat, en, it = pick(c.rng, CATEGORIES)
    sql = f"SELECT {REVENUE} AS revenue_eur FROM {ITEMS} WHERE p.category = '{cat}' AND {PAID}"
    return _question(sql, f"How much have we sold in the {en} category?",
                     f"Quanto abbiamo venduto nella categoria {it}?",
                     lambda c, rows: c.t(f"{money(rows[0][0] or 0, 'en')} in {en} (cancelled orders left out).",
                                         f"{money(rows[0][0] or 0, 'it')} nella categoria {it} (ordini annullati "
                                         "esclusi)."))


QUESTIONS = [_orders_of, _best_category, _customers_in, _orders_by_status, _top_customer, _price_of, _spent_by,
             _category_revenue]


def _query_sample(c: Ctx) -> dict[str, Val]:
    return pick(c.rng, QUESTIONS)(c)


def _query_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    return run_query(demo_shop(), a["sql"])


def _query_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    return _SAY[a["sql"]](c, r["rows"])


QUERY_DESCRIPTION, QUERY_PARAMETERS = shipped_schema(_QUERY)
query_database = ToolSpec(
    name="query_database", domain="files_databases", description=QUERY_DESCRIPTION, parameters=QUERY_PARAMETERS,
    sample=_query_sample, result=_query_result, answer=_query_answer,
    templates=T(["{sql}", "In the shop database: {sql}", "Check the shop data: {sql}"],
                ["{sql}", "Nel database del negozio: {sql}", "Controlla i dati del negozio: {sql}"]),
)


def _tables_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    parts = [f"{name} ({info['rows']})" for name, info in r["tables"].items()]
    return c.t(f"The shop database has {len(parts)} tables (rows in brackets): {join(parts, 'en')}.",
               f"Il database del negozio ha {len(parts)} tabelle (righe tra parentesi): {join(parts, 'it')}.")


def _tables_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    return describe(demo_shop())


TABLES_DESCRIPTION, TABLES_PARAMETERS = shipped_schema(_TABLES)
list_tables = ToolSpec(
    name="list_tables", domain="files_databases", description=TABLES_DESCRIPTION, parameters=TABLES_PARAMETERS,
    sample=lambda c: {}, result=_tables_result, answer=_tables_answer,
    templates=T(["What tables are in the shop database?", "Show me what the shop database contains.",
                 "Which tables does the shop database have?"],
                ["Che tabelle ci sono nel database del negozio?", "Mostrami cosa contiene il database del negozio.",
                 "Quali tabelle ha il database del negozio?"]),
)

TOOLS = [convert_units, list_tables, query_database]
