"""Tools of the finance, e-commerce and math/units domains."""

from __future__ import annotations

import random
import statistics
from datetime import timedelta
from typing import Any

from nesso.agentic_data.render import (
    CURRENCIES,
    L,
    Val,
    date_text,
    date_val,
    dp,
    iso_date,
    join,
    money,
    num,
    pick,
)
from nesso.agentic_data.spec import (
    Ctx,
    Missing,
    T,
    ToolSpec,
    array,
    boolean,
    date_param,
    enum,
    integer,
    number,
    obj,
    s,
)

# ==== finance =====================================================================================
# symbol, company, exchange, currency, reference price
STOCKS = [
    ("AAPL", "Apple", "NASDAQ", "USD", 228.0), ("MSFT", "Microsoft", "NASDAQ", "USD", 415.0),
    ("NVDA", "NVIDIA", "NASDAQ", "USD", 131.0), ("TSLA", "Tesla", "NASDAQ", "USD", 248.0),
    ("AMZN", "Amazon", "NASDAQ", "USD", 186.0), ("JPM", "JPMorgan Chase", "NYSE", "USD", 212.0),
    ("ENI.MI", "Eni", "MIL", "EUR", 14.2), ("ISP.MI", "Intesa Sanpaolo", "MIL", "EUR", 3.6),
    ("UCG.MI", "UniCredit", "MIL", "EUR", 37.5), ("ENEL.MI", "Enel", "MIL", "EUR", 6.8),
    ("RACE.MI", "Ferrari", "MIL", "EUR", 420.0), ("STLAM.MI", "Stellantis", "MIL", "EUR", 12.4),
    ("SAP.DE", "SAP", "XETRA", "EUR", 220.0),
]
STOCK_BY_SYMBOL = {st[0]: st for st in STOCKS}
EXCHANGES = {"NASDAQ": "Nasdaq", "NYSE": "NYSE", "MIL": "Borsa Italiana (MIL)", "XETRA": "Xetra"}


def _stock_sample(c: Ctx) -> dict[str, Val]:
    sym, name, ex, _, _ = pick(c.rng, STOCKS)
    return {"symbol": Val(sym, f"{name} ({sym})" if c.rng.random() < 0.6 else sym),
            "exchange": Val(ex, EXCHANGES[ex])}


def _stock_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    sym, _, ex, cur, ref = STOCK_BY_SYMBOL[a["symbol"]]
    return {"symbol": sym, "exchange": ex, "price": round(ref * (1 + rng.uniform(-0.06, 0.06)), 2), "currency": cur,
            "change_pct": round(rng.uniform(-3.5, 3.5), 2)}


def _stock_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    name, sym, ch = STOCK_BY_SYMBOL[r["symbol"]][1], r["symbol"], r["change_pct"]
    price = money(r["price"], c.lang, r["currency"])
    it_pct = f"{num(abs(ch), 'it', 2)}%"
    return c.pick([f"{name} ({sym}) is trading at {price}, {'up' if ch >= 0 else 'down'} {abs(ch):.2f}% today.",
                   f"{sym} last traded at {price} ({ch:+.2f}% on the day)."],
                  [f"{name} ({sym}) quota {price}, in {'rialzo' if ch >= 0 else 'calo'} del {it_pct} nella seduta di oggi.",
                   f"L'ultimo prezzo di {sym} è {price} ({'+' if ch >= 0 else '−'}{it_pct} in giornata)."])


get_stock_quote = ToolSpec(
    name="get_stock_quote", domain="finance",
    description="Get the latest price and daily change of a listed stock.",
    parameters=obj({"symbol": s("Ticker symbol, e.g. AAPL or ENI.MI", pattern="^[A-Z]{1,6}(\\.[A-Z]{1,3})?$"),
                    "exchange": enum("Exchange to quote from; defaults to the primary listing",
                                     ["NASDAQ", "NYSE", "MIL", "XETRA"])}, ["symbol"]),
    sample=_stock_sample, result=_stock_result, answer=_stock_answer,
    templates=T(["What's the current price of {symbol}?", "Give me a quote for {symbol} on {exchange}.",
                 "How is {symbol} doing today?", "Can you check the latest share price of {symbol}?"],
                ["Qual è il prezzo attuale di {symbol}?", "Dammi la quotazione di {symbol} sul mercato {exchange}.",
                 "Come sta andando oggi il titolo {symbol}?", "Puoi controllare l'ultimo prezzo delle azioni {symbol}?"]),
    missing=[Missing("symbol", T(["What's the share price right now?", "Can you get me a stock quote?"],
                                 ["Quanto vale l'azione in questo momento?", "Mi recuperi una quotazione di borsa?"]),
                     {"en": "Sure, which stock would you like a quote for? Tell me the company or its ticker symbol.",
                      "it": "Certo: di quale titolo vuoi la quotazione? Indicami la società o il ticker."})],
)

# reference value of one unit in US dollars
FX_USD = {"EUR": 1.08, "USD": 1.0, "GBP": 1.27, "CHF": 1.13, "JPY": 0.0067}


def _currency_val(code: str) -> Val:
    return Val(code, L(CURRENCIES[code]["en"], CURRENCIES[code]["it"]), {"code": code})


def _fx_sample(c: Ctx) -> dict[str, Val]:
    src, dst = c.rng.sample(list(FX_USD), 2)
    x = float(c.rng.choice([20, 50, 100, 250, 500, 1000, 1200, 2500, 5000])) if c.rng.random() < 0.6 \
        else round(c.rng.uniform(10, 3000), 2)
    if src == "JPY":
        x = float(c.rng.choice([1000, 5000, 20000, 150000]))
    value = int(x) if x.is_integer() else x
    return {"amount": Val(value, L(num(x, "en"), num(x, "it"))), "from_currency": _currency_val(src),
            "to_currency": _currency_val(dst)}


def _fx_rate(src: str, dst: str, rng: random.Random) -> float:
    return round(FX_USD[src] / FX_USD[dst] * (1 + rng.uniform(-0.01, 0.01)), 6)


def _fx_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    rate = _fx_rate(a["from_currency"], a["to_currency"], rng)
    return {"amount": a["amount"], "from_currency": a["from_currency"], "to_currency": a["to_currency"],
            "rate": rate, "converted_amount": round(a["amount"] * rate, 2)}


def _fx_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    src = money(r["amount"], c.lang, r["from_currency"])
    dst = money(r["converted_amount"], c.lang, r["to_currency"])
    return c.pick([f"{src} is about {dst} (rate {r['rate']:.4f}).", f"At today's rate of {r['rate']:.4f}, {src} comes to {dst}."],
                  [f"{src} corrispondono a circa {dst} (cambio {num(r['rate'], 'it', 4)}).",
                   f"Al cambio di oggi ({num(r['rate'], 'it', 4)}), {src} equivalgono a {dst}."])


convert_currency = ToolSpec(
    name="convert_currency", domain="finance",
    description="Convert an amount of money from one currency to another at the current exchange rate.",
    parameters=obj({"amount": number("Amount to convert", exclusiveMinimum=0),
                    "from_currency": enum("ISO 4217 code of the source currency", list(FX_USD)),
                    "to_currency": enum("ISO 4217 code of the target currency", list(FX_USD))},
                   ["amount", "from_currency", "to_currency"]),
    sample=_fx_sample, result=_fx_result, answer=_fx_answer,
    templates=T(["How much is {amount} {from_currency} in {to_currency}?", "Convert {amount} {from_currency} to {to_currency}, please.",
                 "{amount} {from_currency:code} to {to_currency:code}?", "I need to know what {amount} {from_currency} are worth in {to_currency}."],
                ["Quanto fanno {amount} {from_currency} in {to_currency}?", "Converti {amount} {from_currency} in {to_currency}, per favore.",
                 "{amount} {from_currency:code} in {to_currency:code}?", "Mi serve sapere quanto valgono {amount} {from_currency} in {to_currency}."]),
    missing=[Missing("to_currency", T(["Convert {amount} {from_currency} for me.", "I have {amount} {from_currency} to change."],
                                      ["Mi converti {amount} {from_currency}?", "Devo cambiare {amount} {from_currency}."]),
                     {"en": "Which currency should I convert the {amount} {from_currency} into?",
                      "it": "In quale valuta vuoi convertire {amount} {from_currency}?"})],
)

FREQ = {"monthly": (12, L("monthly", "mensile"), L("monthly", "mensili")),
        "quarterly": (4, L("quarterly", "trimestrale"), L("quarterly", "trimestrali"))}


def _loan_sample(c: Ctx) -> dict[str, Val]:
    principal = c.rng.randrange(5, 400) * 1000
    rate = c.rng.choice([2.5, 2.9, 3.2, 3.5, 3.75, 4.1, 4.5, 5.0, 6.25, 7.9])
    years = c.rng.choice([3, 5, 7, 10, 15, 20, 25, 30])
    freq = c.rng.choice(["quarterly", "quarterly", "monthly"])
    return {"principal": Val(principal, L(money(principal, "en"), money(principal, "it"))),
            "annual_rate_percent": Val(rate, L(f"{num(rate, 'en')}%", f"{num(rate, 'it')}%")),
            "years": Val(years, L(f"{years} years", f"{years} anni")),
            "payment_frequency": Val(freq, FREQ[freq][2])}


def _loan_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    per = FREQ[a.get("payment_frequency", "monthly")][0]
    n = a["years"] * per
    r = a["annual_rate_percent"] / 100 / per
    pay = a["principal"] / n if r == 0 else a["principal"] * r / (1 - (1 + r) ** -n)
    return {"payment": round(pay, 2), "number_of_payments": n, "total_interest": round(pay * n - a["principal"], 2),
            "currency": "EUR"}


def _loan_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    freq = FREQ[a.get("payment_frequency", "monthly")][1](c.lang)
    pay, ti = money(r["payment"], c.lang), money(r["total_interest"], c.lang)
    return c.t(f"The {freq} payment would be {pay} over {r['number_of_payments']} installments, "
               f"for a total interest of {ti}.",
               f"La rata {freq} sarebbe di {pay} per {r['number_of_payments']} rate, con interessi totali pari a {ti}.")


calculate_loan_payment = ToolSpec(
    name="calculate_loan_payment", domain="finance",
    description="Compute the installment of a fixed-rate amortizing loan or mortgage.",
    parameters=obj({"principal": number("Amount borrowed in euros", exclusiveMinimum=0),
                    "annual_rate_percent": number("Nominal annual interest rate in percent", minimum=0, maximum=30),
                    "years": integer("Duration in years", minimum=1, maximum=40),
                    "payment_frequency": enum("How often an installment is paid", ["monthly", "quarterly"],
                                              default="monthly")},
                   ["principal", "annual_rate_percent", "years"]),
    sample=_loan_sample, result=_loan_result, answer=_loan_answer,
    templates=T(["What would the monthly payment be on a {principal} loan at {annual_rate_percent} over {years}?",
                 "Calculate the installments for a {principal} mortgage at {annual_rate_percent} interest for {years}, with {payment_frequency} payments.",
                 "If I borrow {principal} for {years} at {annual_rate_percent}, how much will I pay each month?"],
                ["Quanto sarebbe la rata mensile di un prestito da {principal} al {annual_rate_percent} in {years}?",
                 "Calcola la rata di un mutuo di {principal} al {annual_rate_percent} per {years}, con rate {payment_frequency}.",
                 "Se chiedo un finanziamento di {principal} per {years} al {annual_rate_percent}, quanto pago al mese?"]),
    missing=[Missing("years", T(["What would my monthly payment be on a {principal} loan at {annual_rate_percent}?"],
                                ["Quanto pagherei al mese per un prestito di {principal} al {annual_rate_percent}?"]),
                     {"en": "How many years would you like to repay the loan over?",
                      "it": "In quanti anni vorresti restituire il prestito?"})],
)

SPEND = {  # category: English text, Italian text, merchants, (min, max) amount
    "groceries": (L("groceries", "spesa alimentare"), ["Esselunga", "Conad", "Carrefour Express"], (12, 140)),
    "transport": (L("transport", "trasporti"), ["Trenitalia", "ATM Milano", "Italo", "Uber"], (2, 90)),
    "restaurants": (L("restaurants", "ristoranti"), ["Trattoria da Mario", "Sushi Zen", "Pizzeria Vesuvio"], (15, 120)),
    "utilities": (L("utilities", "bollette"), ["Enel Energia", "A2A", "Fastweb"], (30, 220)),
    "shopping": (L("shopping", "shopping"), ["Zalando", "IKEA", "MediaWorld"], (20, 400)),
    "travel": (L("travel", "viaggi"), ["ITA Airways", "Booking.com", "Ryanair"], (40, 600)),
}


def _tx_sample(c: Ctx) -> dict[str, Val]:
    start = c.today - timedelta(days=c.rng.randint(20, 75))
    end = start + timedelta(days=c.rng.randint(6, 19))
    cat = pick(c.rng, list(SPEND))
    minimum = c.rng.choice([20, 50, 100, 200])
    return {"account_id": Val(f"ACC-{c.rng.randint(10000, 99999)}"),
            "start_date": date_val(c.rng, c.today, at=start), "end_date": date_val(c.rng, c.today, at=end),
            "category": Val(cat, SPEND[cat][0]),
            "min_amount": Val(minimum, L(money(minimum, "en"), money(minimum, "it")))}


def _tx_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    start, end = iso_date(a["start_date"]), iso_date(a["end_date"])
    out = []
    for _ in range(rng.randint(2, 5)):
        cat = a.get("category") or pick(rng, list(SPEND))
        _, merchants, (lo, hi) = SPEND[cat]
        lo = max(lo, a.get("min_amount", 0))
        amount = round(rng.uniform(lo, max(hi, lo * 1.5)), 2)
        day = start + timedelta(days=rng.randint(0, max(0, (end - start).days)))
        out.append({"date": day.isoformat(), "merchant": pick(rng, merchants), "amount": amount, "category": cat})
    out.sort(key=lambda t: t["date"])
    return {"account_id": a["account_id"], "currency": "EUR", "transactions": out,
            "total": round(sum(t["amount"] for t in out), 2)}


def _tx_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    txs = r["transactions"]
    top = max(txs, key=lambda t: t["amount"])
    d = iso_date(top["date"])
    return c.t(f"I found {len(txs)} transactions on {a['account_id']}, totalling {money(r['total'], 'en')}. "
               f"The largest was {money(top['amount'], 'en')} at {top['merchant']} on {date_text(d, 'en')}.",
               f"Ho trovato {len(txs)} movimenti sul conto {a['account_id']}, per un totale di {money(r['total'], 'it')}. "
               f"Il più alto è di {money(top['amount'], 'it')} presso {top['merchant']}, {dp(d, 'it')}.")


list_transactions = ToolSpec(
    name="list_transactions", domain="finance",
    description="List the card and bank transactions of an account in a date range, optionally filtered.",
    parameters=obj({"account_id": s("Account identifier", pattern="^ACC-[0-9]{5}$"),
                    "start_date": date_param("First day of the range"),
                    "end_date": date_param("Last day of the range"),
                    "category": enum("Only transactions of this spending category", list(SPEND)),
                    "min_amount": number("Only transactions of at least this many euros", minimum=0)},
                   ["account_id", "start_date", "end_date"]),
    sample=_tx_sample, result=_tx_result, answer=_tx_answer,
    templates=T(["Show me the transactions on account {account_id} {start_date:from} {end_date:to}.",
                 "List what I spent on {category} with account {account_id} between {start_date:bare} and {end_date:bare}.",
                 "Which payments over {min_amount} went through account {account_id} {start_date:from} {end_date:to}?"],
                ["Mostrami i movimenti del conto {account_id} {start_date:from} {end_date:to}.",
                 "Elenca le spese per {category} sul conto {account_id} tra {start_date} e {end_date}.",
                 "Quali pagamenti superiori a {min_amount} sono passati sul conto {account_id} {start_date:from} {end_date:to}?"]),
    missing=[Missing("account_id", T(["Show me my transactions {start_date:from} {end_date:to}."],
                                     ["Fammi vedere i movimenti {start_date:from} {end_date:to}."]),
                     {"en": "Which account should I look at? Please give me the account ID (for example ACC-12345).",
                      "it": "Di quale conto? Indicami l'ID del conto (ad esempio ACC-12345)."})],
)

PERIODS = {"1m": L("over the last month", "nell'ultimo mese"), "3m": L("over the last three months", "negli ultimi tre mesi"),
           "6m": L("over the last six months", "negli ultimi sei mesi"), "1y": L("over the last year", "nell'ultimo anno"),
           "ytd": L("since the start of the year", "da inizio anno")}
BENCHMARKS = ["FTSE MIB", "S&P 500", "MSCI World"]


def _pf_sample(c: Ctx) -> dict[str, Val]:
    period = pick(c.rng, list(PERIODS))
    return {"portfolio_id": Val(f"PF-{c.rng.randint(1000, 9999)}"), "period": Val(period, PERIODS[period]),
            "benchmark": Val(pick(c.rng, BENCHMARKS))}


def _pf_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    out = {"portfolio_id": a["portfolio_id"], "period": a["period"], "return_pct": round(rng.uniform(-8, 14), 2),
           "value": round(rng.uniform(8000, 250000), 2), "currency": "EUR"}
    if "benchmark" in a:
        out.update(benchmark=a["benchmark"], benchmark_return_pct=round(rng.uniform(-6, 12), 2))
    return out


def _pct(x: float, lang: str) -> str:
    return f"{x:+.2f}%" if lang == "en" else f"{'+' if x >= 0 else '−'}{num(abs(x), 'it', 2)}%"


def _pf_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    period = PERIODS[r["period"]](c.lang)
    text = c.t(f"Portfolio {r['portfolio_id']} returned {_pct(r['return_pct'], 'en')} {period} and is now worth {money(r['value'], 'en')}.",
               f"Il portafoglio {r['portfolio_id']} ha reso {_pct(r['return_pct'], 'it')} {period} e ora vale {money(r['value'], 'it')}.")
    if "benchmark" in r:
        text += c.t(f" The {r['benchmark']} did {_pct(r['benchmark_return_pct'], 'en')} over the same period.",
                    f" Nello stesso periodo l'indice {r['benchmark']} ha fatto {_pct(r['benchmark_return_pct'], 'it')}.")
    return text


get_portfolio_performance = ToolSpec(
    name="get_portfolio_performance", domain="finance",
    description="Return of an investment portfolio over a period, optionally against a benchmark index.",
    parameters=obj({"portfolio_id": s("Portfolio identifier", pattern="^PF-[0-9]{4}$"),
                    "period": enum("Period: 1m, 3m, 6m, 1y or ytd (year to date)", list(PERIODS)),
                    "benchmark": enum("Index to compare with", BENCHMARKS)}, ["portfolio_id", "period"]),
    sample=_pf_sample, result=_pf_result, answer=_pf_answer,
    templates=T(["How has portfolio {portfolio_id} performed {period}?", "Compare portfolio {portfolio_id} with the {benchmark} {period}.",
                 "What return did {portfolio_id} make {period}?"],
                ["Com'è andato il portafoglio {portfolio_id} {period}?", "Confronta il portafoglio {portfolio_id} con l'indice {benchmark} {period}.",
                 "Che rendimento ha avuto {portfolio_id} {period}?"]),
    missing=[Missing("period", T(["How is portfolio {portfolio_id} doing?"], ["Come sta andando il portafoglio {portfolio_id}?"]),
                     {"en": "Over which period? I can show the last month, 3 or 6 months, the last year or year to date.",
                      "it": "Su quale periodo? Posso mostrarti l'ultimo mese, gli ultimi 3 o 6 mesi, l'ultimo anno o da inizio anno."})],
)

# ==== e-commerce ==================================================================================
SHOP_CATEGORIES = {"electronics": L("electronics", "elettronica"), "home": L("home", "casa"),
                   "books": L("books", "libri"), "sports": L("sports", "sport"), "fashion": L("fashion", "moda")}
# search words (en, it), how a user names it (en, it), category, brands, price range
QUERIES = [
    (L("wireless headphones", "cuffie wireless"), L("wireless headphones", "cuffie wireless"), "electronics",
     ["Auralis", "SonoVox", "Kuma"], (25, 220)),
    (L("USB-C charger", "caricatore USB-C"), L("a USB-C charger", "un caricatore USB-C"), "electronics",
     ["Voltix", "Ricarica"], (12, 60)),
    (L("mechanical keyboard", "tastiera meccanica"), L("a mechanical keyboard", "una tastiera meccanica"), "electronics",
     ["Tasto", "KeyForge"], (45, 180)),
    (L("espresso machine", "macchina per espresso"), L("an espresso machine", "una macchina per espresso"), "home",
     ["Caffè Uno", "Moka Pro"], (40, 450)),
    (L("desk lamp", "lampada da scrivania"), L("a desk lamp", "una lampada da scrivania"), "home", ["Luma", "Artelux"],
     (18, 120)),
    (L("Italian cookbook", "libro di cucina italiana"), L("an Italian cookbook", "un libro di cucina italiana"), "books",
     ["Cucina Viva", "Sapori"], (12, 45)),
    (L("running shoes", "scarpe da corsa"), L("running shoes", "scarpe da corsa"), "sports", ["Stride", "Veloce"], (50, 180)),
    (L("yoga mat", "tappetino da yoga"), L("a yoga mat", "un tappetino da yoga"), "sports", ["ZenFlex", "Asana"], (15, 70)),
    (L("rain jacket", "giacca impermeabile"), L("a rain jacket", "una giacca impermeabile"), "fashion",
     ["Nimbus", "Pioggia"], (35, 200)),
]
QUERY_BY_WORDS = {words: q for q in QUERIES for words in (q[0].en, q[0].it)}


def _search_sample(c: Ctx) -> dict[str, Val]:
    words, text, cat, _, (lo, hi) = pick(c.rng, QUERIES)
    cap = c.rng.choice([v for v in (20, 30, 50, 80, 100, 150, 200, 300) if lo < v <= hi] or [hi])
    return {"query": Val(words, text), "category": Val(cat, SHOP_CATEGORIES[cat]),
            "max_price": Val(cap, L(money(cap, "en"), money(cap, "it"))),
            "in_stock_only": Val(True, L("only items in stock", "solo articoli disponibili"))}


def _search_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    _, _, cat, brands, (lo, hi) = QUERY_BY_WORDS.get(a["query"], QUERIES[0])
    hi = min(hi, a.get("max_price", hi))
    items = []
    for _ in range(rng.randint(2, 3)):
        items.append({"product_id": f"P{rng.randint(10000, 99999)}",
                      "name": f"{pick(rng, brands)} {pick(rng, ['One', 'Pro', 'Lite', 'Max', 'Air', 'Plus'])} {rng.randint(2, 9)}00",
                      "price": round(rng.uniform(lo * 0.9, hi) - 0.01, 2),
                      "in_stock": True if a.get("in_stock_only") else rng.random() < 0.75})
    items.sort(key=lambda p: p["price"])
    return {"query": a["query"], "category": a.get("category", cat), "results": items}


def _stock_word(ok: bool, lang: str) -> str:
    return ("in stock" if ok else "out of stock") if lang == "en" else ("disponibile" if ok else "esaurito")


def _search_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    parts = [f"{p['name']} ({p['product_id']}) {'at' if c.lang == 'en' else 'a'} {money(p['price'], c.lang)}, "
             f"{_stock_word(p['in_stock'], c.lang)}" for p in r["results"]]
    head = c.pick(["Here's what I found:", "I found these options:"], ["Ecco cosa ho trovato:", "Ho trovato queste opzioni:"])
    return head + "\n" + "\n".join(f"- {p}" for p in parts)


search_products = ToolSpec(
    name="search_products", domain="ecommerce",
    description="Search the online shop catalogue.",
    parameters=obj({"query": s("Search words, in the customer's language"),
                    "category": enum("Catalogue section", list(SHOP_CATEGORIES)),
                    "max_price": number("Highest price in euros", exclusiveMinimum=0),
                    "in_stock_only": boolean("Hide items that are out of stock", False)}, ["query"]),
    sample=_search_sample, result=_search_result, answer=_search_answer,
    templates=T(["Search the shop for {query}.", "Find me {query} under {max_price}.",
                 "I'm looking for {query} in the {category} section, {in_stock_only}.",
                 "Do you sell {query}? I don't want to spend more than {max_price}."],
                ["Cerca {query} nel negozio.", "Trovami {query} a meno di {max_price}.",
                 "Sto cercando {query} nella categoria {category}, {in_stock_only}.",
                 "Vendete {query}? Non voglio spendere più di {max_price}."]),
    missing=[Missing("query", T(["Can you search the shop for something under {max_price}?"],
                                ["Puoi cercarmi qualcosa nel negozio a meno di {max_price}?"]),
                     {"en": "Sure, what are you looking for?", "it": "Certo, che cosa stai cercando?"})],
)


def _qty(q: int) -> L:
    return L(f"{q} unit{'s' if q != 1 else ''}", f"{q} pezz{'i' if q != 1 else 'o'}")


def _cart_sample(c: Ctx) -> dict[str, Val]:
    q = c.rng.choice([1, 2, 2, 3, 4, 5])
    return {"product_id": Val(f"P{c.rng.randint(10000, 99999)}"), "quantity": Val(q, _qty(q))}


def _cart_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    q = a.get("quantity", 1)
    unit = round(rng.uniform(9, 180), 2)
    extra = rng.randint(0, 4)
    return {"cart_id": f"CART-{rng.randint(100000, 999999)}", "product_id": a["product_id"], "quantity": q,
            "unit_price": unit, "items_in_cart": q + extra, "cart_total": round(unit * q + extra * rng.uniform(8, 40), 2)}


def _cart_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    return c.t(f"Done: {r['quantity']} × {r['product_id']} added to your cart, which now holds {r['items_in_cart']} items "
               f"for a total of {money(r['cart_total'], 'en')}.",
               f"Fatto: ho aggiunto {r['quantity']} × {r['product_id']} al carrello, che ora contiene {r['items_in_cart']} "
               f"articoli per un totale di {money(r['cart_total'], 'it')}.")


add_to_cart = ToolSpec(
    name="add_to_cart", domain="ecommerce",
    description="Add a product to the customer's shopping cart.",
    parameters=obj({"product_id": s("Product identifier", pattern="^P[0-9]{5}$"),
                    "quantity": integer("How many units", minimum=1, maximum=20, default=1)}, ["product_id"]),
    sample=_cart_sample, result=_cart_result, answer=_cart_answer,
    templates=T(["Add {quantity} of product {product_id} to my cart.", "Put {product_id} in my cart, please.",
                 "Add product {product_id} to the cart, {quantity}."],
                ["Aggiungi {quantity} del prodotto {product_id} al carrello.", "Metti {product_id} nel carrello, per favore.",
                 "Aggiungi al carrello il prodotto {product_id}, {quantity}."]),
    missing=[Missing("product_id", T(["Add {quantity} to my cart."], ["Aggiungi {quantity} al carrello."]),
                     {"en": "Which product should I add? Please give me its product ID.",
                      "it": "Quale prodotto devo aggiungere? Dammi il codice del prodotto."})],
)

ORDER_STATES = ["processing", "shipped", "out_for_delivery", "delivered"]
CARRIERS = ["BRT", "GLS", "Poste Italiane", "DHL", "UPS"]


def _order_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    status = pick(rng, ORDER_STATES)
    out: dict[str, Any] = {"order_id": a["order_id"], "status": status}
    if status != "processing":
        out.update(carrier=pick(rng, CARRIERS), tracking_number=f"{rng.randint(10**11, 10**12 - 1)}")
    day = f"2026-{rng.randint(1, 6):02d}-{rng.randint(1, 28):02d}"
    out["delivered_on" if status == "delivered" else "estimated_delivery"] = day
    return out


def _order_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    day = iso_date(r.get("delivered_on") or r["estimated_delivery"])
    d = dp(day, c.lang)
    oid, st = r["order_id"], r["status"]
    if c.lang == "en":
        return {"processing": f"Order {oid} is still being prepared; expected delivery is {d}.",
                "shipped": f"Order {oid} has shipped with {r.get('carrier')} (tracking {r.get('tracking_number')}) and should arrive on {d}.",
                "out_for_delivery": f"Good news: order {oid} is out for delivery with {r.get('carrier')} today.",
                "delivered": f"Order {oid} was delivered on {d} by {r.get('carrier')}."}[st]
    return {"processing": f"L'ordine {oid} è ancora in preparazione; la consegna prevista è {d}.",
            "shipped": f"L'ordine {oid} è stato spedito con {r.get('carrier')} (tracking {r.get('tracking_number')}) e dovrebbe arrivare {d}.",
            "out_for_delivery": f"Buone notizie: l'ordine {oid} è in consegna oggi con {r.get('carrier')}.",
            "delivered": f"L'ordine {oid} è stato consegnato {d} da {r.get('carrier')}."}[st]


def _order_id(c: Ctx) -> Val:
    return Val(f"ORD-{c.rng.randint(100000, 999999)}")


get_order_status = ToolSpec(
    name="get_order_status", domain="ecommerce",
    description="Look up the shipping status of an order.",
    parameters=obj({"order_id": s("Order number", pattern="^ORD-[0-9]{6}$")}, ["order_id"]),
    sample=lambda c: {"order_id": _order_id(c)}, result=_order_result, answer=_order_answer,
    templates=T(["Where is my order {order_id}?", "What's the status of order {order_id}?", "Has order {order_id} shipped yet?"],
                ["Dov'è il mio ordine {order_id}?", "Qual è lo stato dell'ordine {order_id}?", "L'ordine {order_id} è già stato spedito?"]),
    missing=[Missing("order_id", T(["Where's my order? It still hasn't arrived."], ["Dov'è il mio ordine? Non è ancora arrivato."]),
                     {"en": "I can check that for you: what's the order number? It looks like ORD-123456.",
                      "it": "Posso controllare: qual è il numero d'ordine? Ha la forma ORD-123456."})],
)

ADDRESSES = [("Via Roma 12", "Milano", "20121", "IT"), ("Corso Vittorio Emanuele II 45", "Torino", "10123", "IT"),
             ("Via Toledo 156", "Napoli", "80134", "IT"), ("Via del Corso 210", "Roma", "00186", "IT"),
             ("Piazza della Signoria 3", "Firenze", "50122", "IT"), ("Via Indipendenza 8", "Bologna", "40121", "IT"),
             ("10 King Street", "London", "WC2E 8HN", "GB")]
COUNTRY_NAMES = {"IT": L("Italy", "Italia"), "GB": L("United Kingdom", "Regno Unito")}


def _order_sample(c: Ctx) -> dict[str, Val]:
    items = [{"product_id": f"P{c.rng.randint(10000, 99999)}", "quantity": c.rng.choice([1, 1, 2, 3])}
             for _ in range(c.rng.choice([1, 2, 2]))]
    street, city, cap, country = pick(c.rng, ADDRESSES)
    addr = {"street": street, "city": city, "postal_code": cap, "country": country}
    en_items = join([f"{_qty(i['quantity']).en} of {i['product_id']}" for i in items], "en")
    it_items = join([f"{_qty(i['quantity']).it} di {i['product_id']}" for i in items], "it")
    return {"items": Val(items, L(en_items, it_items)),
            "shipping_address": Val(addr, L(f"{street}, {cap} {city}, {COUNTRY_NAMES[country].en}",
                                            f"{street}, {cap} {city}" + ("" if country == "IT" else ", Regno Unito"))),
            "express": Val(True, L("with express shipping", "con spedizione express"))}


def _place_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    total = sum(round(rng.uniform(9, 150), 2) * i["quantity"] for i in a["items"]) + (9.9 if a.get("express") else 0)
    return {"order_id": f"ORD-{rng.randint(100000, 999999)}", "status": "confirmed", "total": round(total, 2),
            "currency": "EUR", "estimated_delivery_days": 1 if a.get("express") else rng.randint(2, 5)}


def _place_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    days = r["estimated_delivery_days"]
    return c.t(f"Your order {r['order_id']} is confirmed: total {money(r['total'], 'en')}, delivery to "
               f"{a['shipping_address']['city']} in about {days} day{'s' if days != 1 else ''}.",
               f"Il tuo ordine {r['order_id']} è confermato: totale {money(r['total'], 'it')}, consegna a "
               f"{a['shipping_address']['city']} in circa {days} giorn{'i' if days != 1 else 'o'}.")


place_order = ToolSpec(
    name="place_order", domain="ecommerce",
    description="Place an order for one or more products and ship it to an address.",
    parameters=obj({"items": array("Products to buy", obj({"product_id": s("Product identifier", pattern="^P[0-9]{5}$"),
                                                          "quantity": integer("Units", minimum=1)},
                                                         ["product_id", "quantity"]), minItems=1),
                    "shipping_address": obj({"street": s("Street and number"), "city": s("City"),
                                             "postal_code": s("Postal code"),
                                             "country": s("ISO 3166-1 alpha-2 country code", pattern="^[A-Z]{2}$")},
                                            ["street", "city", "postal_code", "country"], "Where to deliver"),
                    "express": boolean("Next-day express shipping", False)}, ["items", "shipping_address"]),
    sample=_order_sample, result=_place_result, answer=_place_answer,
    templates=T(["Order {items} and ship them to {shipping_address}.",
                 "Place an order for {items}, delivered to {shipping_address}, {express}.",
                 "Please buy {items}; the address is {shipping_address}."],
                ["Ordina {items} e spediscili a {shipping_address}.",
                 "Fai un ordine di {items}, da consegnare in {shipping_address}, {express}.",
                 "Per favore compra {items}; l'indirizzo è {shipping_address}."]),
    missing=[Missing("shipping_address", T(["Order {items} for me."], ["Ordinami {items}."]),
                     {"en": "Where should I ship the order? Please give me the full address (street, postcode, city).",
                      "it": "A quale indirizzo devo spedire l'ordine? Indicami via, CAP e città."})],
)

REFUND_REASONS = {"damaged": L("the item arrived damaged", "l'articolo è arrivato danneggiato"),
                  "wrong_item": L("I received the wrong item", "ho ricevuto l'articolo sbagliato"),
                  "not_received": L("it never arrived", "non è mai arrivato"),
                  "changed_mind": L("I changed my mind", "ho cambiato idea")}


def _refund_reason(c: Ctx) -> Val:
    reason = pick(c.rng, list(REFUND_REASONS))
    return Val(reason, REFUND_REASONS[reason])


def _refund_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    auto = a["reason"] in ("damaged", "wrong_item", "not_received")
    return {"refund_id": f"RF-{rng.randint(10000, 99999)}", "order_id": a["order_id"],
            "status": "approved" if auto else "pending_review", "amount": round(rng.uniform(15, 300), 2),
            "currency": "EUR", "days_to_process": rng.randint(3, 10)}


def _refund_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    amt, days = money(r["amount"], c.lang), r["days_to_process"]
    if r["status"] == "approved":
        return c.t(f"Your refund {r['refund_id']} for order {r['order_id']} has been approved: {amt} will be back on "
                   f"your payment method within {days} days.",
                   f"Il rimborso {r['refund_id']} per l'ordine {r['order_id']} è stato approvato: riceverai {amt} sul "
                   f"metodo di pagamento entro {days} giorni.")
    return c.t(f"I opened refund request {r['refund_id']} for order {r['order_id']} ({amt}); it will be reviewed and "
               f"processed within {days} days.",
               f"Ho aperto la richiesta di rimborso {r['refund_id']} per l'ordine {r['order_id']} ({amt}); verrà "
               f"esaminata ed elaborata entro {days} giorni.")


request_refund = ToolSpec(
    name="request_refund", domain="ecommerce",
    description="Open a refund request for an order.",
    parameters=obj({"order_id": s("Order number", pattern="^ORD-[0-9]{6}$"),
                    "reason": enum("Why the customer wants a refund", list(REFUND_REASONS)),
                    "comment": s("Free-text note for the support team")}, ["order_id", "reason"]),
    sample=lambda c: {"order_id": _order_id(c), "reason": _refund_reason(c)}, result=_refund_result, answer=_refund_answer,
    templates=T(["I want a refund for order {order_id}: {reason}.", "Please open a refund request for {order_id} because {reason}.",
                 "Order {order_id}: {reason}. Can I get my money back?"],
                ["Voglio il rimborso dell'ordine {order_id}: {reason}.", "Apri una richiesta di rimborso per l'ordine {order_id}, perché {reason}.",
                 "Ordine {order_id}: {reason}. Posso avere un rimborso?"]),
    missing=[Missing("reason", T(["I'd like a refund for order {order_id}."], ["Vorrei il rimborso dell'ordine {order_id}."]),
                     {"en": "I'm sorry about that. What's the reason for the refund: was the item damaged, wrong, never "
                            "delivered, or did you change your mind?",
                      "it": "Mi dispiace. Per quale motivo chiedi il rimborso: articolo danneggiato, sbagliato, mai "
                            "arrivato, oppure hai cambiato idea?"})],
)

# ==== math and units ==============================================================================
UNITS = {"kilometers": L("kilometers", "chilometri"), "miles": L("miles", "miglia"), "meters": L("meters", "metri"),
         "feet": L("feet", "piedi"), "kilograms": L("kilograms", "chilogrammi"), "pounds": L("pounds", "libbre"),
         "celsius": L("degrees Celsius", "gradi Celsius"), "fahrenheit": L("degrees Fahrenheit", "gradi Fahrenheit"),
         "liters": L("liters", "litri"), "gallons": L("US gallons", "galloni americani")}
UNIT_PAIRS = [("kilometers", "miles", 1 / 1.609344), ("meters", "feet", 1 / 0.3048), ("kilograms", "pounds", 1 / 0.45359237),
              ("liters", "gallons", 1 / 3.785411784), ("celsius", "fahrenheit", None)]


def _convert(value: float, src: str, dst: str) -> float:
    if src == dst:
        return value
    if src == "celsius":
        return value * 9 / 5 + 32
    if src == "fahrenheit":
        return (value - 32) * 5 / 9
    for a, b, k in UNIT_PAIRS:
        if (src, dst) == (a, b):
            return value * k
        if (src, dst) == (b, a):
            return value / k
    raise ValueError(f"cannot convert {src} to {dst}")


def _units_sample(c: Ctx) -> dict[str, Val]:
    a, b, _ = pick(c.rng, UNIT_PAIRS)
    if c.rng.random() < 0.5:
        a, b = b, a
    x: float = c.rng.choice([-5, 0, 12, 21, 25, 37, 40]) if a == "celsius" else (
        c.rng.choice([32, 50, 68, 77, 100]) if a == "fahrenheit" else c.rng.choice([5, 10, 42.195, 100, 250, 1.5, 3.2]))
    return {"value": Val(x, L(num(x, "en"), num(x, "it"))), "from_unit": Val(a, UNITS[a]), "to_unit": Val(b, UNITS[b])}


def _units_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    return {"value": a["value"], "from_unit": a["from_unit"], "to_unit": a["to_unit"],
            "result": round(_convert(a["value"], a["from_unit"], a["to_unit"]), 3)}


def _units_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    v, res = num(r["value"], c.lang), num(round(r["result"], 2), c.lang)
    src, dst = UNITS[r["from_unit"]](c.lang), UNITS[r["to_unit"]](c.lang)
    return c.t(f"{v} {src} is {res} {dst}.", f"{v} {src} corrispondono a {res} {dst}.")


convert_units = ToolSpec(
    name="convert_units", domain="math_units",
    description="Convert a quantity between units of length, mass, volume or temperature.",
    parameters=obj({"value": number("Quantity to convert"), "from_unit": enum("Unit of the value", list(UNITS)),
                    "to_unit": enum("Unit to convert to", list(UNITS))}, ["value", "from_unit", "to_unit"]),
    sample=_units_sample, result=_units_result, answer=_units_answer,
    templates=T(["Convert {value} {from_unit} to {to_unit}.", "How many {to_unit} are {value} {from_unit}?",
                 "What's {value} {from_unit} in {to_unit}?"],
                ["Converti {value} {from_unit} in {to_unit}.", "{value} {from_unit} quanto fanno in {to_unit}?",
                 "Quanto sono {value} {from_unit} in {to_unit}?"]),
    missing=[Missing("to_unit", T(["Convert {value} {from_unit}, please."], ["Mi converti {value} {from_unit}?"]),
                     {"en": "Sure, which unit should I convert them to?", "it": "Certo, in quale unità di misura?"})],
)

MEASURES = {"mean": L("the mean", "la media"), "median": L("the median", "la mediana"),
            "std": L("the standard deviation", "la deviazione standard"), "min": L("the minimum", "il minimo"),
            "max": L("the maximum", "il massimo")}


def _stats_sample(c: Ctx) -> dict[str, Val]:
    xs = [c.rng.randint(1, 120) for _ in range(c.rng.randint(4, 8))]
    ms = sorted(c.rng.sample(list(MEASURES), c.rng.randint(1, 3)), key=list(MEASURES).index)
    return {"numbers": Val(xs, L(join([str(x) for x in xs], "en"), join([str(x) for x in xs], "it"))),
            "measures": Val(ms, L(join([MEASURES[m].en for m in ms], "en"), join([MEASURES[m].it for m in ms], "it")))}


def _stats_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    xs = a["numbers"]
    funcs = {"mean": statistics.fmean, "median": statistics.median, "std": statistics.stdev, "min": min, "max": max}
    return {"count": len(xs), **{m: round(float(funcs[m](xs)), 3) for m in a.get("measures", list(MEASURES))}}


def _stats_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    parts = [f"{MEASURES[m](c.lang).split(' ', 1)[1]} {num(round(r[m], 2), c.lang)}" for m in MEASURES if m in r]
    return c.t(f"For these {r['count']} numbers: {join(parts, 'en')}.", f"Per questi {r['count']} numeri: {join(parts, 'it')}.")


compute_statistics = ToolSpec(
    name="compute_statistics", domain="math_units",
    description="Descriptive statistics of a list of numbers.",
    parameters=obj({"numbers": array("The data", {"type": "number"}, minItems=2),
                    "measures": array("Which statistics to compute; all of them when omitted",
                                      {"type": "string", "enum": list(MEASURES)}, minItems=1)}, ["numbers"]),
    sample=_stats_sample, result=_stats_result, answer=_stats_answer,
    templates=T(["I need {measures} of these numbers: {numbers}.", "Give me some statistics for {numbers}.",
                 "Calculate {measures} of {numbers}."],
                ["Vorrei sapere {measures} di questi numeri: {numbers}.", "Dammi qualche statistica su {numbers}.",
                 "Calcola {measures} di {numbers}."]),
    missing=[Missing("numbers", T(["Calculate {measures} for me."], ["Calcolami {measures}."]),
                     {"en": "Happy to: which numbers should I use?", "it": "Volentieri: su quali numeri?"})],
)


def _vat_sample(c: Ctx) -> dict[str, Val]:
    m = money_val_simple(c.rng, 20, 2500)
    rate = c.rng.choice([22, 22, 10, 5, 4])
    return {"amount": m, "rate_percent": Val(rate, f"{rate}%"),
            "amount_includes_vat": Val(True, L("The price already includes VAT.", "Il prezzo è già IVA inclusa."))}


def money_val_simple(rng: random.Random, lo: int, hi: int) -> Val:
    x = float(rng.randint(lo, hi)) if rng.random() < 0.5 else round(rng.uniform(lo, hi), 2)
    return Val(int(x) if x.is_integer() else x, L(money(x, "en"), money(x, "it")))


def _vat_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    rate = a["rate_percent"] / 100
    if a.get("amount_includes_vat"):
        gross = a["amount"]
        net = round(gross / (1 + rate), 2)
    else:
        net = a["amount"]
        gross = round(net * (1 + rate), 2)
    return {"net": net, "vat": round(gross - net, 2), "gross": gross, "rate_percent": a["rate_percent"]}


def _vat_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    n, v, g = (money(r[k], c.lang) for k in ("net", "vat", "gross"))
    return c.t(f"At {r['rate_percent']}% VAT: net {n}, VAT {v}, total {g}.",
               f"Con IVA al {r['rate_percent']}%: imponibile {n}, IVA {v}, totale {g}.")


calculate_vat = ToolSpec(
    name="calculate_vat", domain="math_units",
    description="Split an amount into net price, VAT and gross total.",
    parameters=obj({"amount": number("Amount in euros", exclusiveMinimum=0),
                    "rate_percent": number("VAT rate in percent (Italy: 22, 10, 5 or 4)", minimum=0, maximum=30),
                    "amount_includes_vat": boolean("True when the amount is gross (VAT included)", False)},
                   ["amount", "rate_percent"]),
    sample=_vat_sample, result=_vat_result, answer=_vat_answer,
    templates=T(["What's the VAT at {rate_percent} on {amount}?", "Add {rate_percent} VAT to {amount}.",
                 "How much of {amount} is VAT at {rate_percent}? {amount_includes_vat}"],
                ["Quanto è l'IVA al {rate_percent} su {amount}?", "Aggiungi l'IVA al {rate_percent} a {amount}.",
                 "Quanta IVA c'è in {amount} con aliquota al {rate_percent}? {amount_includes_vat}"]),
    missing=[Missing("rate_percent", T(["How much VAT do I pay on {amount}?"], ["Quanta IVA pago su {amount}?"]),
                     {"en": "Which VAT rate applies (for example 22%, 10% or 4%)?",
                      "it": "Quale aliquota IVA si applica (ad esempio 22%, 10% o 4%)?"})],
)


def _tip_sample(c: Ctx) -> dict[str, Val]:
    pct = c.rng.choice([5, 10, 12, 15, 18, 20])
    people = c.rng.randint(2, 6)
    return {"bill_amount": money_val_simple(c.rng, 25, 400), "tip_percent": Val(pct, f"{pct}%"),
            "people": Val(people, L(f"{people} people", f"{people} persone"))}


def _tip_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    tip = round(a["bill_amount"] * a["tip_percent"] / 100, 2)
    total = round(a["bill_amount"] + tip, 2)
    people = a.get("people", 1)
    return {"tip": tip, "total": total, "people": people, "per_person": round(total / people, 2)}


def _tip_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    tip, tot, pp = (money(r[k], c.lang) for k in ("tip", "total", "per_person"))
    if r["people"] > 1:
        return c.t(f"The tip is {tip}, so the total is {tot}: {pp} each for {r['people']} people.",
                   f"La mancia è di {tip}, quindi il totale è {tot}: {pp} a testa per {r['people']} persone.")
    return c.t(f"The tip is {tip}, for a total of {tot}.", f"La mancia è di {tip}, per un totale di {tot}.")


calculate_tip = ToolSpec(
    name="calculate_tip", domain="math_units",
    description="Work out a restaurant tip and how to split the bill.",
    parameters=obj({"bill_amount": number("Bill before the tip, in euros", exclusiveMinimum=0),
                    "tip_percent": number("Tip in percent", minimum=0, maximum=50),
                    "people": integer("How many people split the bill", minimum=1, default=1)},
                   ["bill_amount", "tip_percent"]),
    sample=_tip_sample, result=_tip_result, answer=_tip_answer,
    templates=T(["The bill is {bill_amount}; what's a {tip_percent} tip?", "Split {bill_amount} among {people} with a {tip_percent} tip.",
                 "How much does each of us pay for a {bill_amount} bill with a {tip_percent} tip? We are {people}."],
                ["Il conto è {bill_amount}: quanto è una mancia del {tip_percent}?", "Dividi {bill_amount} tra {people} con una mancia del {tip_percent}.",
                 "Quanto paga ciascuno per un conto di {bill_amount} con una mancia del {tip_percent}? Siamo {people}."]),
    missing=[Missing("tip_percent", T(["We're {people} and the bill is {bill_amount}. Can you work out the tip?"],
                                      ["Siamo {people} e il conto è {bill_amount}. Mi calcoli la mancia?"]),
                     {"en": "Sure! What tip percentage would you like to leave?",
                      "it": "Certo! Che percentuale di mancia vuoi lasciare?"})],
)

TOOLS = [get_stock_quote, convert_currency, calculate_loan_payment, list_transactions, get_portfolio_performance,
         search_products, add_to_cart, get_order_status, place_order, request_refund,
         convert_units, compute_statistics, calculate_vat, calculate_tip]
