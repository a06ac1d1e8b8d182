"""Structured-JSON scenarios: the system prompt states a JSON schema, the user gives a text, the assistant answers
with one JSON object that matches the schema (no tool call)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from nesso.agentic_data import tools_money as money_tools
from nesso.agentic_data import tools_ops as ops
from nesso.agentic_data.render import L, city_val, date_val, iso_date, join, money, person, pick, time_val
from nesso.agentic_data.spec import Ctx


@dataclass
class Extraction:
    name: str
    schema: dict[str, Any]
    # ctx -> (the JSON object the assistant must produce, the text it is extracted from)
    make: Callable[[Ctx], tuple[dict[str, Any], str]]
    ask: dict[str, list[str]]  # how the user asks, with {text}


def _schema(props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# ---- a card payment -----------------------------------------------------------------------------------
METHODS = {"card": L("by card", "con la carta"), "cash": L("in cash", "in contanti"),
           "bank_transfer": L("by bank transfer", "con un bonifico")}


def _payment(c: Ctx) -> tuple[dict[str, Any], str]:
    cat = pick(c.rng, list(money_tools.SPEND))
    text_cat, merchants, (lo, hi) = money_tools.SPEND[cat]
    merchant, amount = pick(c.rng, merchants), round(c.rng.uniform(lo, hi), 2)
    day = date_val(c.rng, c.today, at=c.today - timedelta(days=c.rng.randint(1, 20)))
    method = pick(c.rng, list(METHODS))
    data = {"merchant": merchant, "amount": amount, "currency": "EUR", "date": day.value, "category": cat,
            "payment_method": method}
    text = c.t(f"{_cap(day.text_for('en'))} I paid {money(amount, 'en')} {METHODS[method].en} at {merchant} ({text_cat.en}).",
               f"{_cap(day.text_for('it'))} ho pagato {money(amount, 'it')} {METHODS[method].it} da {merchant} ({text_cat.it}).")
    return data, text


PAYMENT = Extraction(
    "payment", _schema({"merchant": {"type": "string"}, "amount": {"type": "number"},
                        "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
                        "date": {"type": "string", "format": "date"},
                        "category": {"type": "string", "enum": list(money_tools.SPEND)},
                        "payment_method": {"type": "string", "enum": list(METHODS)}}),
    _payment, {"en": ["Extract the transaction from this note: \"{text}\"", "Turn this expense into a record: {text}"],
               "it": ["Estrai la transazione da questa nota: \"{text}\"", "Trasforma questa spesa in un record: {text}"]})

# ---- a security event -----------------------------------------------------------------------------------
EVENTS = {"brute_force": L("failed SSH logins", "accessi SSH falliti"),
          "port_scan": L("connection attempts on closed ports", "tentativi di connessione su porte chiuse"),
          "phishing": L("clicks on a phishing link", "clic su un link di phishing")}
LEVELS = {"low": L("low", "bassa"), "medium": L("medium", "media"), "high": L("high", "alta"), "critical": L("critical", "critica")}


def _incident(c: Ctx) -> tuple[dict[str, Any], str]:
    ip = ops.ip_val(c.rng).value
    target = pick(c.rng, ops.HOSTS)
    kind, level = pick(c.rng, list(EVENTS)), pick(c.rng, list(LEVELS))
    n = c.rng.randint(5, 900)
    start = time_val(c.rng, 0, 22)
    data = {"source_ip": ip, "target": target, "event_type": kind, "attempts": n, "severity": level}
    text = c.t(f"Since {start.text_for('en', 'bare')} we logged {n} {EVENTS[kind].en} from {ip} against {target}. "
               f"I'd rate it {LEVELS[level].en} severity.",
               f"Dalle {start.text_for('it', 'bare')} abbiamo registrato {n} {EVENTS[kind].it} da {ip} verso {target}. "
               f"Direi gravità {LEVELS[level].it}.")
    return data, text


INCIDENT = Extraction(
    "security_incident", _schema({"source_ip": {"type": "string", "format": "ipv4"}, "target": {"type": "string"},
                                  "event_type": {"type": "string", "enum": list(EVENTS)},
                                  "attempts": {"type": "integer", "minimum": 0},
                                  "severity": {"type": "string", "enum": list(LEVELS)}}),
    _incident, {"en": ["Convert this SOC note into a structured incident: {text}", "Fill in the incident record from: \"{text}\""],
                "it": ["Converti questa nota del SOC in un incidente strutturato: {text}",
                       "Compila il record dell'incidente da: \"{text}\""]})

# ---- a meeting ---------------------------------------------------------------------------------------
ROOMS = ["Sala Verdi", "Room 4B", "Sala Garibaldi", "Sala Blu", "Aula Magna"]


def _meeting(c: Ctx) -> tuple[dict[str, Any], str]:
    names = []
    while len(names) < c.rng.randint(2, 3):
        n = person(c.rng, c.lang)[0]
        if n not in names:
            names.append(n)
    day, at = date_val(c.rng, c.today, 1, 30), time_val(c.rng)
    title = pick(c.rng, ["Budget review", "Kick-off", "Retrospective"] if c.lang == "en"
                 else ["Revisione del budget", "Kick-off", "Retrospettiva"])
    room = pick(c.rng, ROOMS)
    data = {"title": title, "date": day.value, "start_time": at.value, "participants": names, "location": room}
    text = c.t(f"{title}: we meet {day.text_for('en')} {at.text_for('en')} in {room}. {join(names, 'en')} will join.",
               f"{title}: ci vediamo {day.text_for('it')} {at.text_for('it')} in {room}. Partecipano {join(names, 'it')}.")
    return data, text


MEETING = Extraction(
    "meeting", _schema({"title": {"type": "string"}, "date": {"type": "string", "format": "date"},
                        "start_time": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"},
                        "participants": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                        "location": {"type": "string"}}),
    _meeting, {"en": ["Extract the meeting details: \"{text}\"", "Make a calendar entry out of this: {text}"],
               "it": ["Estrai i dettagli della riunione: \"{text}\"", "Ricava una voce di calendario da questo testo: {text}"]})

# ---- a contact card ------------------------------------------------------------------------------------
COMPANIES = ["Acme S.r.l.", "Brightline Ltd", "Studio Rossi & Partners", "Nordsud S.p.A.", "Bluewave Analytics"]


def _contact(c: Ctx) -> tuple[dict[str, Any], str]:
    name, email = person(c.rng, c.lang)
    phone = ops._phone(c)
    company, city = pick(c.rng, COMPANIES), city_val(c.rng, c.lang)
    data = {"name": name, "email": email, "phone": phone.value, "company": company, "city": city.value_for(c.lang)}
    text = c.t(f"Hi, I'm {name} from {company}, based in {city.text_for('en')}. Reach me at {email} or on {phone.text_for('en')}.",
               f"Ciao, sono {name} di {company}, a {city.text_for('it')}. Mi trovi a {email} o al {phone.text_for('it')}.")
    return data, text


CONTACT = Extraction(
    "contact", _schema({"name": {"type": "string"}, "email": {"type": "string", "format": "email"},
                        "phone": {"type": "string", "pattern": "^\\+[1-9][0-9]{7,14}$"}, "company": {"type": "string"},
                        "city": {"type": "string"}}),
    _contact, {"en": ["Extract a contact card from this signature (phone in E.164): \"{text}\"", "Save this contact: {text}"],
               "it": ["Estrai un contatto da questa firma (telefono in formato E.164): \"{text}\"", "Salva questo contatto: {text}"]})

# ---- a product review -----------------------------------------------------------------------------------
ISSUES = {"battery": L("The battery barely lasts a day.", "La batteria dura a malapena un giorno."),
          "shipping": L("Delivery took almost two weeks.", "La consegna ha richiesto quasi due settimane."),
          "price": L("It's a bit overpriced.", "Costa un po' troppo."),
          "quality": L("The plastic feels cheap.", "La plastica sembra di scarsa qualità."),
          "size": L("It's smaller than I expected.", "È più piccolo di quanto mi aspettassi.")}
PRAISE = [L("I use it every day.", "Lo uso tutti i giorni."), L("Setup took two minutes.", "L'ho configurato in due minuti."),
          L("Great value overall.", "Nel complesso vale quello che costa.")]


def _review(c: Ctx) -> tuple[dict[str, Any], str]:
    rating = c.rng.randint(1, 5)
    issues = sorted(c.rng.sample(list(ISSUES), c.rng.randint(0, 1) if rating >= 4 else c.rng.randint(1, 3)), key=list(ISSUES).index)
    product = pick(c.rng, ["Auralis Pro 300", "Luma L2", "ZenFlex Mat", "Caffè Uno Espresso"])
    sentiment = "positive" if rating >= 4 else "neutral" if rating == 3 else "negative"
    data = {"product": product, "rating": rating, "sentiment": sentiment, "issues": issues}
    parts = [ISSUES[i](c.lang) for i in issues] + ([pick(c.rng, PRAISE)(c.lang)] if rating >= 3 else [])
    text = c.t(f"I bought the {product} last month. {' '.join(parts)} {rating} stars out of 5.",
               f"Ho comprato {product} il mese scorso. {' '.join(parts)} {rating} stelle su 5.")
    return data, text


REVIEW = Extraction(
    "review", _schema({"product": {"type": "string"}, "rating": {"type": "integer", "minimum": 1, "maximum": 5},
                       "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
                       "issues": {"type": "array", "items": {"type": "string", "enum": list(ISSUES)}}}),
    _review, {"en": ["Classify this review: \"{text}\"", "Analyse the customer review below.\n\n{text}"],
              "it": ["Classifica questa recensione: \"{text}\"", "Analizza la recensione del cliente qui sotto.\n\n{text}"]})

# ---- a travel request (held out) ---------------------------------------------------------------------------
CABINS = {"economy": L("economy", "economy"), "business": L("business class", "business")}


def _trip(c: Ctx) -> tuple[dict[str, Any], str]:
    a = city_val(c.rng, c.lang)
    b = city_val(c.rng, c.lang)
    while b.value == a.value:
        b = city_val(c.rng, c.lang)
    out = date_val(c.rng, c.today, 5, 60)
    back = date_val(c.rng, c.today, at=iso_date(out.value) + timedelta(days=c.rng.randint(2, 14)))
    n, cabin = c.rng.randint(1, 5), pick(c.rng, list(CABINS))
    data = {"origin": a.value_for(c.lang), "destination": b.value_for(c.lang), "departure_date": out.value,
            "return_date": back.value, "passengers": n, "cabin": cabin}
    who = c.t("I" if n == 1 else f"We're {n} and we", "Io" if n == 1 else f"Siamo in {n} e")
    text = c.t(f"{who} want to fly from {a.text_for('en')} to {b.text_for('en')} {out.text_for('en')}, coming back "
               f"{back.text_for('en')}, in {CABINS[cabin].en}.",
               f"{who} vorre{'i' if n == 1 else 'mmo'} volare da {a.text_for('it')} a {b.text_for('it')} {out.text_for('it')}, "
               f"con ritorno {back.text_for('it')}, in {CABINS[cabin].it}.")
    return data, text


TRIP = Extraction(
    "travel_request", _schema({"origin": {"type": "string"}, "destination": {"type": "string"},
                               "departure_date": {"type": "string", "format": "date"},
                               "return_date": {"type": "string", "format": "date"},
                               "passengers": {"type": "integer", "minimum": 1}, "cabin": {"type": "string", "enum": list(CABINS)}}),
    _trip, {"en": ["Turn this request into a booking query: \"{text}\"", "Parse this travel request: {text}"],
            "it": ["Trasforma questa richiesta in una query di prenotazione: \"{text}\"", "Analizza questa richiesta di viaggio: {text}"]})

EXTRACTIONS: list[Extraction] = [PAYMENT, INCIDENT, MEETING, CONTACT, REVIEW, TRIP]
HELDOUT_EXTRACTIONS = frozenset({"travel_request"})
