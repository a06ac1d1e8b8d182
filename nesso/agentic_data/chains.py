"""Multi-step scenarios: call one tool, read its result, call a second tool with values taken from it, answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nesso.agentic_data import tools_money as money_tools
from nesso.agentic_data import tools_ops as ops
from nesso.agentic_data import tools_places as places
from nesso.agentic_data.catalog import TOOL_BY_NAME
from nesso.agentic_data.render import CURRENCIES, L, Val, dp, money, person, pick
from nesso.agentic_data.spec import Ctx, T

# step(ctx, the slot values the user's template mentions, first-call args, first result)
#   -> (first result, possibly adjusted so that the story holds, second-call args)
Step = Callable[[Ctx, dict[str, Val], dict[str, Any], dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]]
ChainAnswer = Callable[[Ctx, dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]], str]


@dataclass
class Chain:
    name: str
    first: str
    second: str
    sample: Callable[[Ctx], dict[str, Val]]
    templates: dict[str, list[str]]
    step: Step
    answer: ChainAnswer

    @property
    def tools(self) -> tuple[str, str]:
        return self.first, self.second


def _merge(*parts: dict[str, Val]) -> dict[str, Val]:
    out: dict[str, Val] = {}
    for p in parts:
        out.update(p)
    return out


# ---- search a flight, book the cheapest ------------------------------------------------------------
def _flight_step(c: Ctx, v: dict[str, Val], a1: dict[str, Any], r1: dict[str, Any]):
    a2 = {"flight_number": r1["flights"][0]["flight_number"], "date": a1["date"],
          "passenger_name": v["passenger_name"].value_for(c.lang)}
    return r1, a2


FLIGHT_THEN_BOOK = Chain(
    "flight_then_book", "search_flights", "book_flight",
    sample=lambda c: _merge(places._flights_sample(c), {"passenger_name": Val(person(c.rng, c.lang)[0])}),
    templates=T(["Find the cheapest flight from {origin} to {destination} {date} and book it for {passenger_name}.",
                 "Book me on the cheapest {origin} → {destination} flight {date}; the passenger is {passenger_name}."],
                ["Trova il volo più economico da {origin} a {destination} {date} e prenotalo per {passenger_name}.",
                 "Prenotami il volo più economico {origin} → {destination} {date}; il passeggero è {passenger_name}."]),
    step=_flight_step,
    answer=lambda c, a1, r1, a2, r2: c.t(
        f"The cheapest option was {a2['flight_number']} at {money(r1['flights'][0]['price_per_person'], 'en')}. ",
        f"L'opzione più economica era il volo {a2['flight_number']} a {money(r1['flights'][0]['price_per_person'], 'it')}. ")
    + places._book_answer(c, a2, r2),
)


# ---- quote a US stock, convert the price ----------------------------------------------------------
def _quote_sample(c: Ctx) -> dict[str, Val]:
    sym, name, _, _, _ = pick(c.rng, [s for s in money_tools.STOCKS if s[3] == "USD"])
    dst = pick(c.rng, ["EUR", "GBP", "CHF"])
    return {"symbol": Val(sym, f"{name} ({sym})" if c.rng.random() < 0.6 else sym),
            "to_currency": Val(dst, L(CURRENCIES[dst]["en"], CURRENCIES[dst]["it"]))}


def _quote_step(c: Ctx, v: dict[str, Val], a1: dict[str, Any], r1: dict[str, Any]):
    return r1, {"amount": r1["price"], "from_currency": r1["currency"], "to_currency": v["to_currency"].value}


QUOTE_THEN_CONVERT = Chain(
    "quote_then_convert", "get_stock_quote", "convert_currency", sample=_quote_sample,
    templates=T(["What's {symbol} trading at, in {to_currency}?", "Give me the price of {symbol} converted to {to_currency}."],
                ["A quanto quota {symbol}, in {to_currency}?", "Dammi il prezzo di {symbol} convertito in {to_currency}."]),
    step=_quote_step,
    answer=lambda c, a1, r1, a2, r2: c.t(
        f"{a1['symbol']} is at {money(r1['price'], 'en', r1['currency'])}, which is about "
        f"{money(r2['converted_amount'], 'en', r2['to_currency'])} at a rate of {r2['rate']:.4f}.",
        f"{a1['symbol']} quota {money(r1['price'], 'it', r1['currency'])}, cioè circa "
        f"{money(r2['converted_amount'], 'it', r2['to_currency'])} al cambio di {str(round(r2['rate'], 4)).replace('.', ',')}."),
)


# ---- check an IP, block it ------------------------------------------------------------------------
def _ip_step(c: Ctx, v: dict[str, Val], a1: dict[str, Any], r1: dict[str, Any]):
    r1 = dict(r1, risk_score=max(r1["risk_score"], 70 + r1["risk_score"] % 30), verdict="malicious")
    r1["reports_last_30_days"] = max(r1["reports_last_30_days"], 40)
    return r1, {"ip": a1["ip"], "duration_hours": v["duration_hours"].value}


IP_THEN_BLOCK = Chain(
    "ip_then_block", "check_ip_reputation", "block_ip",
    sample=lambda c: ops._block_sample(c),
    templates=T(["Check {ip} and, if it's malicious, block it for {duration_hours}.",
                 "Is {ip} dangerous? If so, block it on the firewall for {duration_hours}."],
                ["Controlla {ip} e, se è malevolo, bloccalo per {duration_hours}.",
                 "{ip} è pericoloso? Se sì, bloccalo sul firewall per {duration_hours}."]),
    step=_ip_step,
    answer=lambda c, a1, r1, a2, r2: c.t(
        f"{a1['ip']} is malicious (risk score {r1['risk_score']}/100, {r1['reports_last_30_days']} reports in 30 days), "
        f"so I blocked it for {ops._hours(a2['duration_hours']).en} (rule {r2['rule_id']}).",
        f"{a1['ip']} è malevolo (punteggio di rischio {r1['risk_score']}/100, {r1['reports_last_30_days']} segnalazioni "
        f"in 30 giorni), quindi l'ho bloccato per {ops._hours(a2['duration_hours']).it} (regola {r2['rule_id']})."),
)


# ---- search products, add the cheapest one in stock --------------------------------------------------
def _cart_chain_sample(c: Ctx) -> dict[str, Val]:
    v = money_tools._search_sample(c)
    return _merge({k: v[k] for k in ("query", "max_price")}, {"quantity": money_tools._cart_sample(c)["quantity"]})


def _cart_step(c: Ctx, v: dict[str, Val], a1: dict[str, Any], r1: dict[str, Any]):
    items = [dict(p) for p in r1["results"]]
    if not any(p["in_stock"] for p in items):
        items[-1]["in_stock"] = True
    r1 = dict(r1, results=items)
    best = next(p for p in items if p["in_stock"])
    a2: dict[str, Any] = {"product_id": best["product_id"]}
    if "quantity" in v:
        a2["quantity"] = v["quantity"].value
    return r1, a2


SEARCH_THEN_CART = Chain(
    "search_then_cart", "search_products", "add_to_cart", sample=_cart_chain_sample,
    templates=T(["Find {query} under {max_price} and add the cheapest one in stock to my cart.",
                 "Search for {query} and put {quantity} of the cheapest available one in my cart."],
                ["Trova {query} a meno di {max_price} e aggiungi al carrello l'articolo più economico disponibile.",
                 "Cerca {query} e metti nel carrello {quantity} dell'articolo più economico disponibile."]),
    step=_cart_step,
    answer=lambda c, a1, r1, a2, r2: c.t(
        f"The cheapest one in stock is {next(p['name'] for p in r1['results'] if p['product_id'] == a2['product_id'])} "
        f"({a2['product_id']}). ",
        f"L'articolo più economico disponibile è {next(p['name'] for p in r1['results'] if p['product_id'] == a2['product_id'])} "
        f"({a2['product_id']}). ") + money_tools._cart_answer(c, a2, r2),
)


# ---- list files, read the newest --------------------------------------------------------------------
def _files_sample(c: Ctx) -> dict[str, Val]:
    d = pick(c.rng, [k for k in ops.DIRS if any(p in ("*.log", "*.md", "*.txt", "*.conf", "*.csv") for p in ops.DIRS[k])])
    pat = pick(c.rng, [p for p in ops.DIRS[d] if p in ("*.log", "*.md", "*.txt", "*.conf", "*.csv")])
    return {"directory": Val(d), "pattern": Val(pat), "max_lines": ops._read_sample(c)["max_lines"]}


def _files_step(c: Ctx, v: dict[str, Val], a1: dict[str, Any], r1: dict[str, Any]):
    newest = r1["files"][0]["name"]
    return r1, {"path": f"{a1['directory'].rstrip('/')}/{newest}", "max_lines": v["max_lines"].value}


FILES_THEN_READ = Chain(
    "files_then_read", "list_files", "read_file", sample=_files_sample,
    templates=T(["Find the most recent {pattern} file in {directory} and show me its first {max_lines}.",
                 "What's the newest {pattern} file in {directory}? Show me the first {max_lines} of it."],
                ["Trova il file {pattern} più recente in {directory} e mostrami le prime {max_lines}.",
                 "Qual è il file {pattern} più nuovo in {directory}? Fammi vedere le prime {max_lines}."]),
    step=_files_step,
    answer=lambda c, a1, r1, a2, r2: c.t(f"The newest {a1['pattern']} file is {a2['path']}. ",
                                         f"Il file {a1['pattern']} più recente è {a2['path']}. ") + ops._read_answer(c, a2, r2),
)


# ---- find a meeting by title, cancel it ----------------------------------------------------------
def _cancel_chain_sample(c: Ctx) -> dict[str, Val]:
    date = places.date_val(c.rng, c.today, 1, 20, relative=True)
    return {"date": date, "title": Val(pick(c.rng, places.EVENT_TITLES[c.lang])),
            "notify_attendees": places._cancel_sample(c)["notify_attendees"]}


def _cancel_step(c: Ctx, v: dict[str, Val], a1: dict[str, Any], r1: dict[str, Any]):
    title = v["title"].value
    events = [dict(e) for e in r1["events"] if e["title"] != title]
    target = {"event_id": f"EVT-{c.rng.randint(10000, 99999)}", "title": title,
              "start": f"{a1['date']}T{c.rng.randint(9, 17):02d}:00", "calendar": "work"}
    events.insert(c.rng.randint(0, len(events)), target)
    a2: dict[str, Any] = {"event_id": target["event_id"]}
    if "notify_attendees" in v:
        a2["notify_attendees"] = v["notify_attendees"].value
    return dict(r1, events=events), a2


EVENTS_THEN_CANCEL = Chain(
    "events_then_cancel", "list_events", "cancel_event", sample=_cancel_chain_sample,
    templates=T(["Cancel my \"{title}\" meeting {date}.", "Find \"{title}\" in my calendar {date} and cancel it {notify_attendees}."],
                ["Annulla la riunione \"{title}\" {date}.", "Trova \"{title}\" nel mio calendario {date} e annullalo {notify_attendees}."]),
    step=_cancel_step,
    answer=lambda c, a1, r1, a2, r2: c.t(
        f"I found \"{next(e['title'] for e in r1['events'] if e['event_id'] == a2['event_id'])}\" at "
        f"{next(e['start'][11:] for e in r1['events'] if e['event_id'] == a2['event_id'])}. ",
        f"Ho trovato \"{next(e['title'] for e in r1['events'] if e['event_id'] == a2['event_id'])}\" alle "
        f"{next(e['start'][11:] for e in r1['events'] if e['event_id'] == a2['event_id'])}. ") + places._cancel_answer(c, a2, r2),
)


# ---- look up a CVE, open a patch task with the matching priority -------------------------------------
def _cve_sample(c: Ctx) -> dict[str, Val]:
    cve = pick(c.rng, ops.CVES)[0]
    title = L(f"Patch {cve}", f"Applicare la patch per {cve}")
    return {"cve_id": Val(cve), "title": Val(title, title), "due_date": ops.date_val(c.rng, c.today, 1, 14, relative=True)}


def _cve_step(c: Ctx, v: dict[str, Val], a1: dict[str, Any], r1: dict[str, Any]):
    priority = "high" if r1["severity"] == "critical" else "medium"
    return r1, {"title": v["title"].value_for(c.lang), "due_date": v["due_date"].value, "priority": priority}


CVE_THEN_TASK = Chain(
    "cve_then_task", "lookup_cve", "create_task", sample=_cve_sample,
    templates=T(["Look up {cve_id} and create a task \"{title}\" due {due_date:bare}: high priority if it's critical, medium otherwise.",
                 "How bad is {cve_id}? Open a task \"{title}\" for {due_date:bare}, with high priority if the CVE is critical and medium if not."],
                ["Cerca la {cve_id} e crea un task \"{title}\" con scadenza {due_date}: priorità alta se è critica, altrimenti media.",
                 "Quanto è grave la {cve_id}? Apri un task \"{title}\" per {due_date}, con priorità alta se la CVE è critica e media se non lo è."]),
    step=_cve_step,
    answer=lambda c, a1, r1, a2, r2: c.t(
        f"{r1['cve_id']} affects {r1['product']} with CVSS {r1['cvss']} ({r1['severity']}). ",
        f"La {r1['cve_id']} riguarda {r1['product']}, con CVSS {str(r1['cvss']).replace('.', ',')} "
        f"(gravità {ops.SEVERITY[r1['severity']].it}). ")
    + c.t(f"I created task {r2['task_id']} \"{a2['title']}\" with {ops.PRIORITIES[a2['priority']].en} priority, due {dp(a2['due_date'], 'en')}.",
          f"Ho creato il task {r2['task_id']} \"{a2['title']}\" con priorità {ops.PRIORITIES[a2['priority']].it}, "
          f"scadenza {dp(a2['due_date'], 'it')}."),
)


# ---- translate, then e-mail the translation -----------------------------------------------------------
SUBJECTS = {"en": ["Translation", "Message for you", "Quick note"], "it": ["Traduzione", "Messaggio per te", "Breve nota"]}


def _translate_chain_sample(c: Ctx) -> dict[str, Val]:
    v = ops._translate_sample(c)
    return {"text": v["text"], "target_language": v["target_language"], "to": ops._addresses(c, 1),
            "subject": Val(pick(c.rng, SUBJECTS[c.lang]))}


def _translate_step(c: Ctx, v: dict[str, Val], a1: dict[str, Any], r1: dict[str, Any]):
    return r1, {"to": v["to"].value, "subject": v["subject"].value, "body": r1["translated_text"]}


TRANSLATE_THEN_EMAIL = Chain(
    "translate_then_email", "translate_text", "send_email", sample=_translate_chain_sample,
    templates=T(["Translate \"{text}\" into {target_language} and email the translation to {to} with the subject \"{subject}\".",
                 "Send {to} the {target_language} version of \"{text}\" (subject \"{subject}\")."],
                ["Traduci \"{text}\" in {target_language} e manda la traduzione a {to} con oggetto \"{subject}\".",
                 "Manda a {to} la versione in {target_language} di \"{text}\" (oggetto \"{subject}\")."]),
    step=_translate_step,
    answer=lambda c, a1, r1, a2, r2: c.t(f"The translation is \"{r1['translated_text']}\". ",
                                         f"La traduzione è \"{r1['translated_text']}\". ") + ops._email_answer(c, a2, r2),
)


# ---- held-out chains -------------------------------------------------------------------------------
def _delivered_reason(c: Ctx) -> Val:
    reason = pick(c.rng, ["damaged", "wrong_item", "changed_mind"])  # "not received" contradicts "delivered"
    return Val(reason, money_tools.REFUND_REASONS[reason])


def _refund_step(c: Ctx, v: dict[str, Val], a1: dict[str, Any], r1: dict[str, Any]):
    r1 = {"order_id": a1["order_id"], "status": "delivered", "carrier": r1.get("carrier", "BRT"),
          "tracking_number": r1.get("tracking_number", "480012345678"),
          "delivered_on": r1.get("delivered_on") or r1["estimated_delivery"]}
    return r1, {"order_id": a1["order_id"], "reason": v["reason"].value}


ORDER_THEN_REFUND = Chain(
    "order_then_refund", "get_order_status", "request_refund",
    sample=lambda c: {"order_id": money_tools._order_id(c), "reason": _delivered_reason(c)},
    templates=T(["Check order {order_id}; if it has been delivered, request a refund because {reason}.",
                 "Was order {order_id} delivered? If yes, I want a refund: {reason}."],
                ["Controlla l'ordine {order_id}; se è stato consegnato, chiedi il rimborso perché {reason}.",
                 "L'ordine {order_id} è stato consegnato? Se sì, voglio il rimborso: {reason}."]),
    step=_refund_step,
    answer=lambda c, a1, r1, a2, r2: c.t(f"Order {a1['order_id']} was delivered on {dp(r1['delivered_on'], 'en')}. ",
                                         f"L'ordine {a1['order_id']} è stato consegnato {dp(r1['delivered_on'], 'it')}. ")
    + money_tools._refund_answer(c, a2, r2),
)


def _slot_sample(c: Ctx) -> dict[str, Val]:
    v = places._free_sample(c)
    return {k: v[k] for k in ("date", "duration_minutes", "attendees")} | {"title": Val(pick(c.rng, places.EVENT_TITLES[c.lang]))}


def _slot_step(c: Ctx, v: dict[str, Val], a1: dict[str, Any], r1: dict[str, Any]):
    first = r1["slots"][0]
    return r1, {"title": v["title"].value, "date": a1["date"], "start_time": first["start"][11:],
                "duration_minutes": a1["duration_minutes"], "attendees": a1["attendees"]}


SLOT_THEN_EVENT = Chain(
    "slot_then_event", "find_free_slot", "create_event", sample=_slot_sample,
    templates=T(["Find a free {duration_minutes:adj} slot {date} with {attendees} and book the first one as \"{title}\".",
                 "Schedule \"{title}\" with {attendees} {date} at the first time everyone is free, for {duration_minutes}."],
                ["Trova uno slot libero di {duration_minutes} {date} con {attendees} e prenota il primo come \"{title}\".",
                 "Programma \"{title}\" con {attendees} {date} al primo orario in cui sono tutti liberi, per {duration_minutes}."]),
    step=_slot_step,
    answer=lambda c, a1, r1, a2, r2: c.t(f"The first free slot is at {a2['start_time']}. ", f"Il primo slot libero è alle {a2['start_time']}. ")
    + places._event_answer(c, a2, r2),
)


def _docs_chain_sample(c: Ctx) -> dict[str, Val]:
    v = ops._docs_sample(c)
    return {"query": v["query"], "max_lines": ops._read_sample(c)["max_lines"]}


DOCS_THEN_READ = Chain(
    "docs_then_read", "search_documents", "read_file", sample=_docs_chain_sample,
    templates=T(["Find the \"{query}\" document and show me its first {max_lines}.",
                 "Search the archive for {query} and read me the first {max_lines} of the top result."],
                ["Trova il documento \"{query}\" e mostrami le prime {max_lines}.",
                 "Cerca {query} nell'archivio e leggimi le prime {max_lines} del primo risultato."]),
    step=lambda c, v, a1, r1: (r1, {"path": r1["documents"][0]["path"], "max_lines": v["max_lines"].value}),
    answer=lambda c, a1, r1, a2, r2: c.t(f"The top result is {a2['path']}. ", f"Il primo risultato è {a2['path']}. ")
    + ops._read_answer(c, a2, r2),
)


def _pf_chain_sample(c: Ctx) -> dict[str, Val]:
    v = money_tools._pf_sample(c)
    return {"portfolio_id": v["portfolio_id"], "period": v["period"],
            "to_currency": Val("USD", L(CURRENCIES["USD"]["en"], CURRENCIES["USD"]["it"]))}


PORTFOLIO_THEN_CONVERT = Chain(
    "portfolio_then_convert", "get_portfolio_performance", "convert_currency", sample=_pf_chain_sample,
    templates=T(["How did portfolio {portfolio_id} do {period}, and what is it worth in {to_currency}?",
                 "Give me the return of {portfolio_id} {period} and its current value converted to {to_currency}."],
                ["Com'è andato il portafoglio {portfolio_id} {period}, e quanto vale in {to_currency}?",
                 "Dammi il rendimento di {portfolio_id} {period} e il suo valore attuale convertito in {to_currency}."]),
    step=lambda c, v, a1, r1: (r1, {"amount": r1["value"], "from_currency": r1["currency"], "to_currency": v["to_currency"].value}),
    answer=lambda c, a1, r1, a2, r2: money_tools._pf_answer(c, a1, r1) + c.t(
        f" That is about {money(r2['converted_amount'], 'en', r2['to_currency'])}.",
        f" Sono circa {money(r2['converted_amount'], 'it', r2['to_currency'])}."),
)

CHAINS: list[Chain] = [FLIGHT_THEN_BOOK, QUOTE_THEN_CONVERT, IP_THEN_BLOCK, SEARCH_THEN_CART, FILES_THEN_READ,
                       EVENTS_THEN_CANCEL, CVE_THEN_TASK, TRANSLATE_THEN_EMAIL,
                       ORDER_THEN_REFUND, SLOT_THEN_EVENT, DOCS_THEN_READ, PORTFOLIO_THEN_CONVERT]

for _chain in CHAINS:  # the catalogue must know both tools of every chain
    assert _chain.first in TOOL_BY_NAME and _chain.second in TOOL_BY_NAME, _chain.name
