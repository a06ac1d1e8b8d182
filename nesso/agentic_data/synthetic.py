"""Tools made up per conversation, for the opt-in ``synthetic`` split (``agentic:N:SEED:synthetic``).

The catalogue has 34 training tools; a small model trained on them learns those tools' names and argument keys by
heart and then fumbles tools it has never seen (the held-out split). Here every row draws fresh tools: an action
(book a padel court, track a parcel, set the thermostat, ...) under one of several names, with its required
arguments and a random subset of optional ones, each argument under one of several keys and with its own
description. So the only way to get a call right is to read the offered schema and copy the request's values
into it — the skill the held-out split measures. None of these actions is one of the held-out tools (no rentals,
refunds, tips, alerts, portfolio, file hashes, document search, chat posts, free slots or logged hours), and no
name is a catalogue tool's name.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nesso.agentic_data.render import L, Val, city_val, date_val, money, num, person, pick, time_val
from nesso.agentic_data.spec import (
    Ctx,
    Missing,
    ToolSpec,
    date_param,
    enum,
    integer,
    number,
    obj,
    s,
    time_param,
)


# ---- arguments ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Arg:
    """An argument archetype: the keys a tool may call it, its schema, how a user says it, how to ask for it."""

    keys: tuple[str, ...]
    schema: Callable[[], dict[str, Any]]
    sample: Callable[[Ctx], Val]  # the Val's text is the whole clause ("in Milan", "per 3 persone")
    question: L
    # (archetype, sampler): when the tool also has that archetype, this value is drawn from its value instead
    # (an end date after the start date)
    after: tuple[str, Callable[[Ctx, Val], Val]] | None = None


def _clause(value: Any, bare: L, en: str, it: str) -> Val:
    return Val(value, L(en.format(bare.en), _it_a(it.format(bare.it))), {"bare": bare})


def _it_a(text: str) -> str:
    """Italian "a" before a vowel is "ad" ("ad Amsterdam", "ad Alessandro")."""
    return "ad " + text[2:] if text.startswith("a ") and text[2:3] in "AEIOUaeiou" else text


def _count(c: Ctx, lo: int, hi: int, en: tuple[str, str], it: tuple[str, str], prep: L = L("for", "per")) -> Val:
    n = c.rng.randint(lo, hi)
    return Val(n, L(f"{prep.en} {n} {en[n != 1]}", f"{prep.it} {n} {it[n != 1]}"), {"bare": L(str(n), str(n))})


def _city(c: Ctx, en: str = "in {}", it: str = "a {}") -> Val:
    v = city_val(c.rng, c.lang)
    return _clause(v.value, v.text, en, it)


def _from(c: Ctx, table: list[tuple[Any, str, str]], en: str, it: str) -> Val:
    value, t_en, t_it = pick(c.rng, table)
    return _clause(value, L(t_en, t_it), en, it)


def _own_words(c: Ctx, table: list[tuple[str, str]], en: str, it: str) -> Val:
    """Free text the tool receives as the user wrote it (so in the row's language)."""
    t_en, t_it = pick(c.rng, table)
    return _clause(L(t_en, t_it), L(t_en, t_it), en, it)


def _money(c: Ctx, lo: float, hi: float, en: str, it: str, cents: bool) -> Val:
    x = round(c.rng.uniform(lo, hi), 2) if cents else float(c.rng.randrange(int(lo), int(hi), 5))
    value = int(x) if float(x).is_integer() else x
    return _clause(value, L(money(x, "en"), money(x, "it")), en, it)


LEVELS = [("beginner", "beginner", "principiante"), ("intermediate", "intermediate", "intermedio"),
          ("advanced", "advanced", "avanzato")]
PRIORITIES = [("low", "low", "bassa"), ("normal", "normal", "normale"), ("high", "high", "alta")]
LANGUAGES = [("en", "English", "inglese"), ("it", "Italian", "italiano"), ("de", "German", "tedesco"),
             ("fr", "French", "francese"), ("es", "Spanish", "spagnolo")]
FORMATS = [("pdf", "PDF", "PDF"), ("csv", "CSV", "CSV"), ("xlsx", "Excel", "Excel")]
ROOMS = [("living_room", "the living room", "soggiorno"), ("bedroom", "the bedroom", "camera da letto"),
         ("kitchen", "the kitchen", "cucina"), ("office", "the office", "studio")]
ACTIVITIES = [("running", "a run", "una corsa"), ("swimming", "a swim", "una nuotata"),
              ("cycling", "a bike ride", "un giro in bici"), ("walking", "a walk", "una camminata")]
CHARITIES = [("Red Cross", "the Red Cross", "alla Croce Rossa"), ("UNICEF", "UNICEF", "all'UNICEF"),
             ("WWF", "the WWF", "al WWF"), ("Emergency", "Emergency", "a Emergency")]
TITLES = [("The Leopard", "Il Gattopardo"), ("The Name of the Rose", "Il nome della rosa"),
          ("Life Is Beautiful", "La vita è bella"), ("The Great Beauty", "La grande bellezza"),
          ("The Betrothed", "I promessi sposi"), ("Cinema Paradiso", "Nuovo Cinema Paradiso")]
TOPICS = [("electric cars", "auto elettriche"), ("the Champions League", "la Champions League"),
          ("renewable energy", "energie rinnovabili"), ("space exploration", "esplorazione spaziale"),
          ("the housing market", "il mercato immobiliare"), ("artificial intelligence", "intelligenza artificiale")]
INGREDIENTS = [("courgettes", "zucchine"), ("chickpeas", "ceci"), ("salmon", "salmone"), ("mushrooms", "funghi"),
               ("aubergines", "melanzane"), ("pumpkin", "zucca"), ("lentils", "lenticchie")]
NOTES = [("please confirm by e-mail", "per favore confermate via e-mail"),
         ("call me if there is a problem", "chiamatemi se c'è un problema"),
         ("it's a birthday surprise", "è una sorpresa di compleanno"),
         ("I may be a few minutes late", "potrei arrivare con qualche minuto di ritardo")]
ISSUES = [("the printer on the second floor is offline", "la stampante del secondo piano non risponde"),
          ("I can't connect to the VPN", "non riesco a collegarmi alla VPN"),
          ("my laptop is very slow", "il mio portatile è molto lento"),
          ("I forgot my e-mail password", "ho dimenticato la password della posta")]
STOPS = ["Piazza Duomo", "Stazione Centrale", "Porta Nuova", "Via Roma", "Largo Augusto", "Piazza Garibaldi"]


def _decimal(x: float, lang: str) -> str:
    """12 -> '12', 2.5 -> '2.5' / '2,5' (one decimal at most)."""
    return num(x, lang, 0 if float(x).is_integer() else 1)


def _minutes(c: Ctx) -> Val:
    m = pick(c.rng, [15, 30, 45, 60, 90, 120])
    return _clause(m, L(str(m), str(m)), "for {} minutes", "per {} minuti")


def _stop(c: Ctx) -> Val:
    stop = pick(c.rng, STOPS)
    return _clause(stop, L(stop, stop), 'from the stop "{}"', 'dalla fermata "{}"')


def _charity(c: Ctx) -> Val:
    value, en, it = pick(c.rng, CHARITIES)
    return Val(value, L(f"to {en}", it), {"bare": L(en, it)})


def _code(c: Ctx) -> Val:
    code = f"{pick(c.rng, ['BK', 'RX', 'TK', 'NS', 'PL'])}-{c.rng.randint(10000, 99999)}"
    return _clause(code, L(code, code), "(reference {})", "(riferimento {})")


def _flight(c: Ctx) -> Val:
    code = f"{pick(c.rng, ['AZ', 'FR', 'U2', 'LH', 'VY'])}{c.rng.randint(100, 8999)}"
    return _clause(code, L(code, code), "for {}", "{}")


def _phone(c: Ctx) -> Val:
    p = f"+39 3{c.rng.randint(10, 99)} {c.rng.randint(100, 999)} {c.rng.randint(1000, 9999)}"
    return _clause(p, L(p, p), "(phone {})", "(telefono {})")


def _temperature(c: Ctx) -> Val:
    t = c.rng.randint(32, 48) / 2
    value = int(t) if t.is_integer() else t
    return _clause(value, L(_decimal(t, "en"), _decimal(t, "it")), "to {} degrees", "a {} gradi")


def _weight(c: Ctx) -> Val:
    w = round(c.rng.uniform(0.5, 20), 1)
    value = int(w) if w.is_integer() else w
    return _clause(value, L(_decimal(w, "en"), _decimal(w, "it")), "weighing {} kg", "da {} kg")


def _percent(c: Ctx) -> Val:
    p = c.rng.randrange(10, 101, 10)
    return _clause(p, L(f"{p}%", f"{p}%"), "at {} brightness", "al {} di luminosità")


def _name(c: Ctx) -> Val:
    full, _ = person(c.rng, c.lang)
    return _clause(full, L(full, full), "for {}", "a nome di {}")


def _email(c: Ctx) -> Val:
    _, mail = person(c.rng, c.lang)
    return _clause(mail, L(mail, mail), "(e-mail {})", "(e-mail {})")


ARGS: dict[str, Arg] = {
    "city": Arg(("city", "location", "town", "city_name"), lambda: s("City"), _city,
                L("Which city is it for?", "Per quale città?")),
    "destination": Arg(("destination", "to_city", "destination_city"), lambda: s("Destination city"),
                       lambda c: _city(c, "to {}", "a {}"), L("Where should it go?", "Dove deve arrivare?")),
    "date": Arg(("date", "day", "on_date", "for_date"), lambda: date_param("Day"),
                lambda c: date_val(c.rng, c.today, 1, 45, relative=True), L("For which day?", "Per quale giorno?")),
    "time": Arg(("time", "start_time", "at_time"), lambda: time_param("Time"), lambda c: time_val(c.rng, 8, 20),
                L("At what time?", "A che ora?")),
    "people": Arg(("people", "guests", "party_size", "participants"), lambda: integer("Number of people", minimum=1),
                  lambda c: _count(c, 1, 8, ("person", "people"), ("persona", "persone")),
                  L("For how many people?", "Per quante persone?")),
    "minutes": Arg(("duration_minutes", "minutes", "duration"), lambda: integer("Duration in minutes", minimum=1),
                   _minutes,
                   L("For how long, in minutes?", "Per quanto tempo, in minuti?")),
    "name": Arg(("name", "full_name", "customer_name", "holder_name"), lambda: s("Full name of the person"), _name,
                L("Under which name?", "A nome di chi?")),
    "email": Arg(("email", "email_address", "contact_email"), lambda: s("E-mail address", format="email"), _email,
                 L("Which e-mail address should I use?", "Quale indirizzo e-mail devo usare?")),
    "phone": Arg(("phone", "phone_number", "mobile"), lambda: s("Phone number with country code"), _phone,
                 L("Which phone number?", "Quale numero di telefono?")),
    "budget": Arg(("max_price", "budget", "price_limit"), lambda: number("Highest price in EUR", minimum=0),
                  lambda c: _money(c, 20, 300, "for at most {}", "spendendo al massimo {}", cents=False),
                  L("What's your budget?", "Qual è il tuo budget?")),
    "amount": Arg(("amount", "amount_eur", "value"), lambda: number("Amount in EUR", minimum=0),
                  lambda c: _money(c, 5, 250, "of {}", "da {}", cents=c.rng.random() < 0.4),
                  L("What amount?", "Di che importo?")),
    "reference": Arg(("reference", "code", "reference_id"), lambda: s("Reference code"), _code,
                     L("What's the reference code?", "Qual è il codice di riferimento?")),
    "flight": Arg(("flight", "flight_code", "flight_id"), lambda: s("Flight code, e.g. AZ610"), _flight,
                  L("Which flight?", "Quale volo?")),
    "level": Arg(("level", "difficulty", "skill_level"), lambda: enum("Level", [v for v, _, _ in LEVELS]),
                 lambda c: _from(c, LEVELS, "at {} level", "di livello {}"),
                 L("Which level: beginner, intermediate or advanced?", "Di che livello: principiante, intermedio o avanzato?")),
    "priority": Arg(("priority", "urgency"), lambda: enum("Priority", [v for v, _, _ in PRIORITIES]),
                    lambda c: _from(c, PRIORITIES, "with {} priority", "con priorità {}"),
                    L("With which priority?", "Con che priorità?")),
    "language": Arg(("language", "lang", "language_code"), lambda: enum("ISO 639-1 language code",
                                                                          [v for v, _, _ in LANGUAGES]),
                    lambda c: _from(c, LANGUAGES, "in {}", "in {}"), L("In which language?", "In che lingua?")),
    "format": Arg(("format", "file_format", "output_format"), lambda: enum("File format", [v for v, _, _ in FORMATS]),
                  lambda c: _from(c, FORMATS, "as {}", "in formato {}"), L("In which format?", "In che formato?")),
    "room": Arg(("room", "zone", "area"), lambda: enum("Room", [v for v, _, _ in ROOMS]),
                lambda c: _from(c, ROOMS, "in {}", "in {}"), L("Which room?", "In quale stanza?")),
    "activity": Arg(("activity", "sport", "workout_type"), lambda: enum("Kind of workout", [v for v, _, _ in ACTIVITIES]),
                    lambda c: _from(c, ACTIVITIES, "{}", "{}"), L("What kind of workout was it?", "Che allenamento era?")),
    "charity": Arg(("charity", "organisation", "recipient"), lambda: enum("Charity", [v for v, _, _ in CHARITIES]),
                   _charity,
                   L("Which charity should receive it?", "A quale associazione va la donazione?")),
    "title": Arg(("title", "work_title", "name_of_work"), lambda: s("Title"),
                 lambda c: _own_words(c, TITLES, '"{}"', '"{}"'), L("Which title?", "Quale titolo?")),
    "topic": Arg(("topic", "query", "keywords"), lambda: s("What to look for"),
                 lambda c: _own_words(c, TOPICS, 'about {}', 'su {}'), L("About what?", "Su quale argomento?")),
    "ingredient": Arg(("ingredient", "main_ingredient", "with_ingredient"), lambda: s("Main ingredient"),
                      lambda c: _own_words(c, INGREDIENTS, "with {}", "con {}"),
                      L("With which ingredient?", "Con quale ingrediente?")),
    "note": Arg(("note", "notes", "comment"), lambda: s("A note for the staff"),
                lambda c: _own_words(c, NOTES, 'with the note "{}"', 'con la nota "{}"'),
                L("Any note to add?", "Vuoi aggiungere una nota?")),
    "issue": Arg(("description", "issue", "problem"), lambda: s("What is wrong, in the user's words"),
                 lambda c: _own_words(c, ISSUES, 'saying "{}"', 'con scritto "{}"'),
                 L("What is the problem?", "Qual è il problema?")),
    "stop": Arg(("stop", "stop_name", "station"), lambda: s("Stop name"),
                _stop,
                L("From which stop?", "Da quale fermata?")),
    "radius": Arg(("radius_km", "within_km", "max_distance_km"), lambda: number("Search radius in km", minimum=0),
                  lambda c: _count(c, 1, 15, ("km", "km"), ("km", "km"), L("within", "entro")),
                  L("Within how many km?", "Entro quanti km?")),
    "distance": Arg(("distance_km", "km", "distance"), lambda: number("Distance in km", minimum=0),
                    lambda c: _count(c, 2, 42, ("km", "km"), ("km", "km"), L("of", "di")),
                    L("How many km?", "Quanti km?")),
    "temperature": Arg(("temperature", "target_celsius", "degrees"), lambda: number("Target temperature in °C"),
                       _temperature, L("To how many degrees?", "A quanti gradi?")),
    "brightness": Arg(("brightness", "brightness_percent", "dim_level"),
                      lambda: integer("Brightness in percent", minimum=1, maximum=100), _percent,
                      L("How bright, in percent?", "Con che luminosità, in percentuale?")),
    "weight": Arg(("weight_kg", "weight", "kg"), lambda: number("Weight in kg", minimum=0), _weight,
                  L("How much does it weigh?", "Quanto pesa?")),
}


# ---- actions -----------------------------------------------------------------------------------------------
Result = Callable[[dict[str, Any], random.Random], dict[str, Any]]
Answer = Callable[[Ctx, dict[str, Any], dict[str, Any]], str]


@dataclass(frozen=True)
class Action:
    names: tuple[str, ...]
    noun: L  # what kind of request it is, for "I can't do that here" answers
    head: tuple[str, str, str]  # English imperative, Italian imperative, Italian infinitive
    description: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    result: Result
    answer: Answer
    clauses: dict[str, tuple[str, str]] = field(default_factory=dict)  # per-argument clause (en, it) overrides


def _id(rng: random.Random, prefix: str) -> str:
    return f"{prefix}-{rng.randint(100000, 999999)}"


def _booked(what: L, extra: Callable[[random.Random], dict[str, Any]] | None = None) -> tuple[Result, Answer]:
    def result(a: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        return {"status": "confirmed", "confirmation": _id(rng, "CF"), **(extra(rng) if extra else {})}

    def answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
        return c.pick([f"Done: {what.en} is booked (confirmation {r['confirmation']}).",
                       f"All set. {what.en[0].upper()}{what.en[1:]} is confirmed, code {r['confirmation']}."],
                      [f"Fatto: prenotazione confermata per {what.it} (codice {r['confirmation']}).",
                       f"Tutto a posto, conferma {r['confirmation']} per {what.it}."])
    return result, answer


def _action(names: tuple[str, ...], noun: L, head: tuple[str, str, str], description: str,
            required: tuple[str, ...], optional: tuple[str, ...], outcome: tuple[Result, Answer],
            clauses: dict[str, tuple[str, str]] | None = None) -> Action:
    return Action(names, noun, head, description, required, optional, *outcome, clauses or {})


def _parcel_status() -> tuple[Result, Answer]:
    states = {"in_transit": L("in transit", "in viaggio"), "out_for_delivery": L("out for delivery", "in consegna"),
              "delivered": L("delivered", "consegnato")}

    def result(a: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        return {"status": pick(rng, list(states)), "last_scan": pick(rng, ["Milano Linate", "Bologna hub", "Roma Fiumicino"])}

    def answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
        st = states[r["status"]]
        return c.t(f"Your parcel is {st.en} (last scan: {r['last_scan']}).",
                   f"Il tuo pacco è {st.it} (ultima scansione: {r['last_scan']}).")
    return result, answer


def _lookup(fields: Callable[[random.Random], dict[str, Any]], en: str, it: str) -> tuple[Result, Answer]:
    """A read-only tool: ``fields`` makes the result, ``en``/``it`` say it (numbers and money formatted per language)."""
    def result(a: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        return fields(rng)

    def answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
        said = {k: (money(v, c.lang) if k.endswith("eur") else _decimal(v, c.lang)) if isinstance(v, (int, float))
                and not isinstance(v, bool) else v for k, v in r.items()}
        return (en if c.lang == "en" else it).format(**said)
    return result, answer


def _sent(what: L) -> tuple[Result, Answer]:
    def result(a: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        return {"status": "accepted", "id": _id(rng, "RQ")}

    def answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
        return c.t(f"Done: {what.en} (request {r['id']}).", f"Fatto: {what.it} (richiesta {r['id']}).")
    return result, answer


ACTIONS: list[Action] = [
    _action(("book_yoga_class", "reserve_yoga_session", "yoga_class_booking"), L("fitness", "fitness"),
            ("Book a yoga class", "Prenota una lezione di yoga", "prenotare una lezione di yoga"),
            "Book a place in a yoga class.", ("date", "time"), ("level", "people"),
            _booked(L("your yoga class", "la tua lezione di yoga"))),
    _action(("reserve_padel_court", "book_padel_court", "padel_court_booking"), L("sports", "sport"),
            ("Reserve a padel court", "Prenota un campo da padel", "prenotare un campo da padel"),
            "Reserve a padel court at a sports centre.", ("city", "date", "time"), ("minutes",),
            _booked(L("the padel court", "il campo da padel"))),
    _action(("find_parking", "search_parking_spots", "parking_availability"), L("parking", "parcheggi"),
            ("Find a parking spot", "Trova un parcheggio", "trovare un parcheggio"),
            "Find garages with free parking spaces.", ("city",), ("date", "time", "radius"),
            _lookup(lambda rng: {"garage": pick(rng, ["Garage Centrale", "Park Stazione", "Autosilo Duomo"]),
                                 "free_spaces": rng.randint(3, 120), "hourly_eur": round(rng.uniform(1.2, 4.5), 2)},
                    "{garage} has {free_spaces} free spaces, {hourly_eur} an hour.",
                    "{garage} ha {free_spaces} posti liberi, {hourly_eur} all'ora.")),
    _action(("book_museum_tickets", "reserve_museum_entry", "museum_tickets"), L("culture", "cultura"),
            ("Book museum tickets", "Prenota i biglietti per il museo", "prenotare i biglietti per il museo"),
            "Book entry tickets for a museum, optionally with a guided tour in a given language.",
            ("city", "date", "people"), ("language", "time"),
            _lookup(lambda rng: {"museum": pick(rng, ["Museo Civico", "Galleria d'Arte Moderna", "Museo Archeologico"]),
                                 "total_eur": rng.randrange(12, 90, 2), "booking": _id(rng, "MU")},
                    "Booked at the {museum}: {total_eur} in total, booking {booking}.",
                    "Prenotato al {museum}: {total_eur} in totale, prenotazione {booking}.")),
    _action(("book_haircut", "schedule_salon_appointment", "hair_salon_booking"), L("beauty", "bellezza"),
            ("Book a haircut", "Prenota un taglio di capelli", "prenotare un taglio di capelli"),
            "Book an appointment at a hair salon.", ("date", "time"), ("name", "phone"),
            _booked(L("your haircut", "il taglio di capelli"))),
    _action(("track_parcel", "get_parcel_status", "parcel_tracking"), L("delivery", "spedizioni"),
            ("Track my parcel", "Traccia il mio pacco", "tracciare il mio pacco"),
            "Get the delivery status of a parcel.", ("reference",), ("language",), _parcel_status()),
    _action(("ship_parcel", "create_shipment", "send_package"), L("delivery", "spedizioni"),
            ("Ship a parcel", "Spedisci un pacco", "spedire un pacco"),
            "Create a courier shipment for a parcel.", ("destination", "weight"), ("date", "priority"),
            _lookup(lambda rng: {"tracking": _id(rng, "SP"), "price_eur": round(rng.uniform(6, 35), 2)},
                    "Shipment created: tracking {tracking}, {price_eur} to pay.",
                    "Spedizione creata: tracciamento {tracking}, {price_eur} da pagare.")),
    _action(("reserve_library_book", "library_hold", "request_book_loan"), L("library", "biblioteca"),
            ("Reserve the book", "Prenota il libro", "prenotare il libro"),
            "Place a hold on a book at the public library.", ("title",), ("city",),
            _lookup(lambda rng: {"branch": pick(rng, ["Biblioteca Sormani", "Biblioteca Centrale"]),
                                 "ready_in_days": rng.randint(1, 7)},
                    "Reserved: it will be ready at {branch} in {ready_in_days} days.",
                    "Prenotato: sarà pronto alla {branch} tra {ready_in_days} giorni.")),
    _action(("get_energy_usage", "electricity_consumption", "read_power_meter"), L("energy", "energia"),
            ("Show the electricity usage", "Mostrami i consumi di elettricità", "vedere i consumi di elettricità"),
            "Household electricity consumption for one day.", ("date",), ("room",),
            _lookup(lambda rng: {"kwh": round(rng.uniform(3, 18), 1), "cost_eur": round(rng.uniform(1, 6), 2)},
                    "You used {kwh} kWh, about {cost_eur}.", "Hai consumato {kwh} kWh, circa {cost_eur}.")),
    _action(("find_pharmacy", "open_pharmacies", "pharmacy_finder"), L("health", "salute"),
            ("Find an open pharmacy", "Trova una farmacia aperta", "trovare una farmacia aperta"),
            "Find pharmacies open at a given time.", ("city",), ("time", "radius"),
            _lookup(lambda rng: {"pharmacy": pick(rng, ["Farmacia Centrale", "Farmacia San Marco", "Farmacia Moderna"]),
                                 "closes": pick(rng, ["20:00", "22:00", "24:00"])},
                    "{pharmacy} is open, until {closes}.", "La {pharmacy} è aperta, fino alle {closes}.")),
    _action(("book_doctor_visit", "schedule_medical_appointment", "doctor_appointment"), L("health", "salute"),
            ("Book a doctor's appointment", "Prenota una visita medica", "prenotare una visita medica"),
            "Book an appointment with the family doctor.", ("date",), ("time", "name", "note"),
            _booked(L("the doctor's appointment", "la visita medica"))),
    _action(("buy_cinema_tickets", "book_movie_seats", "cinema_booking"), L("entertainment", "intrattenimento"),
            ("Buy cinema tickets", "Compra i biglietti del cinema", "comprare i biglietti del cinema"),
            "Buy seats for a film screening.", ("title", "date", "people"), ("time", "city"),
            _lookup(lambda rng: {"seats": f"{pick(rng, 'DEFGH')}{rng.randint(3, 9)}-{rng.randint(10, 14)}",
                                 "total_eur": rng.randrange(8, 60, 2)},
                    "Tickets bought: seats {seats}, {total_eur} in total.",
                    "Biglietti comprati: posti {seats}, {total_eur} in totale."),
            {"title": ('for "{}"', 'per "{}"')}),
    _action(("enroll_language_course", "sign_up_language_class", "language_course_signup"), L("education", "formazione"),
            ("Enrol me in a language course", "Iscrivimi a un corso di lingua", "iscrivermi a un corso di lingua"),
            "Enrol the user in an evening language course.", ("language", "level"), ("city", "email"),
            _sent(L("you're enrolled", "sei iscritto"))),
    _action(("set_thermostat", "set_heating_temperature", "thermostat_control"), L("smart home", "domotica"),
            ("Set the thermostat", "Imposta il termostato", "impostare il termostato"),
            "Set the target temperature of the heating.", ("temperature",), ("room", "time"),
            _lookup(lambda rng: {"current": round(rng.uniform(15, 22), 1)},
                    "Thermostat set. It's {current} °C right now.", "Termostato impostato. Ora ci sono {current} °C.")),
    _action(("turn_on_lights", "switch_lights_on", "lights_on"), L("smart home", "domotica"),
            ("Turn on the lights", "Accendi le luci", "accendere le luci"),
            "Switch on the lights of a room.", ("room",), ("brightness",),
            _sent(L("the lights are on", "le luci sono accese"))),
    _action(("find_recipes", "search_recipes", "recipe_finder"), L("cooking", "cucina"),
            ("Find a recipe", "Trova una ricetta", "trovare una ricetta"),
            "Search recipes by main ingredient.", ("ingredient",), ("minutes", "people"),
            _lookup(lambda rng: {"recipe": pick(rng, ["Risotto", "Frittata", "Vellutata", "Insalata tiepida"]),
                                 "prep_minutes": rng.randrange(10, 60, 5)},
                    "Try this: {recipe}, ready in {prep_minutes} minutes.",
                    "Prova questa: {recipe}, pronta in {prep_minutes} minuti."),
            {"minutes": ("ready in {} minutes", "pronta in {} minuti")}),
    _action(("make_donation", "donate_to_charity", "charity_donation"), L("donations", "donazioni"),
            ("Make a donation", "Fai una donazione", "fare una donazione"),
            "Donate money to a charity.", ("amount", "charity"), ("email",),
            _lookup(lambda rng: {"receipt": _id(rng, "DN")},
                    "Thank you! Donation made, receipt {receipt}.", "Grazie! Donazione fatta, ricevuta {receipt}."),
            {"amount": ("of {}", "di {}")}),
    _action(("top_up_phone", "mobile_recharge", "phone_credit_topup"), L("phone", "telefonia"),
            ("Top up my phone", "Ricarica il mio telefono", "ricaricare il mio telefono"),
            "Add prepaid credit to a mobile number.", ("phone", "amount"), (),
            _lookup(lambda rng: {"balance_eur": round(rng.uniform(10, 60), 2)},
                    "Top-up done. Your balance is now {balance_eur}.", "Ricarica fatta. Il credito ora è {balance_eur}."),
            {"amount": ("with {}", "di {}")}),
    _action(("pay_bill", "pay_utility_bill", "bill_payment"), L("payments", "pagamenti"),
            ("Pay the bill", "Paga la bolletta", "pagare la bolletta"),
            "Pay a utility bill by its reference code.", ("reference", "amount"), ("date",),
            _sent(L("the bill is paid", "la bolletta è pagata"))),
    _action(("schedule_bulky_waste_pickup", "book_waste_collection", "bulky_item_pickup"),
            L("city services", "servizi comunali"),
            ("Book a bulky waste pickup", "Prenota il ritiro dei rifiuti ingombranti",
             "prenotare il ritiro dei rifiuti ingombranti"),
            "Book the council's collection of bulky waste.", ("city", "date"), ("note", "phone"),
            _booked(L("the pickup", "il ritiro"))),
    _action(("book_vet_visit", "vet_appointment", "schedule_pet_checkup"), L("pets", "animali"),
            ("Book a vet visit", "Prenota una visita dal veterinario", "prenotare una visita dal veterinario"),
            "Book a check-up at the vet.", ("date", "time"), ("note",),
            _booked(L("the vet visit", "la visita dal veterinario"))),
    _action(("get_news_headlines", "latest_news", "news_search"), L("news", "notizie"),
            ("Show me the news", "Mostrami le notizie", "vedere le notizie"),
            "Latest headlines on a topic.", ("topic",), ("language", "date"),
            _lookup(lambda rng: {"count": rng.randint(3, 12), "source": pick(rng, ["ANSA", "Reuters", "Il Post"])},
                    "I found {count} articles; the latest is from {source}.",
                    "Ho trovato {count} articoli; il più recente è di {source}.")),
    _action(("next_buses", "bus_departures", "get_bus_times"), L("public transport", "trasporto pubblico"),
            ("Show the next buses", "Mostrami i prossimi autobus", "vedere i prossimi autobus"),
            "Next bus departures from a stop.", ("stop",), ("time",),
            _lookup(lambda rng: {"line": rng.randint(1, 99), "minutes": rng.randint(1, 15)},
                    "Line {line} leaves in {minutes} minutes.", "La linea {line} parte tra {minutes} minuti.")),
    _action(("book_restaurant_table", "reserve_table", "restaurant_booking"), L("restaurants", "ristoranti"),
            ("Book a table", "Prenota un tavolo", "prenotare un tavolo"),
            "Reserve a table at a restaurant.", ("city", "date", "time", "people"), ("name", "note"),
            _booked(L("your table", "il tavolo"))),
    _action(("record_workout", "track_exercise", "add_workout"), L("fitness", "fitness"),
            ("Record", "Registra", "registrare"),
            "Save a workout in the fitness diary.", ("activity", "minutes"), ("distance", "date"),
            _sent(L("workout saved", "allenamento salvato"))),
    _action(("export_expense_report", "generate_expense_report", "expense_report_export"),
            L("accounting", "contabilità"),
            ("Export the expense report", "Esporta la nota spese", "esportare la nota spese"),
            "Export the expense report in a file format.", ("format",), ("email", "date"),
            _lookup(lambda rng: {"file": f"spese-{rng.randint(1, 99):02d}", "entries": rng.randint(4, 40)},
                    "Report {file} exported with {entries} entries.", "Nota {file} esportata con {entries} voci.")),
    _action(("open_it_ticket", "report_it_issue", "helpdesk_request"), L("IT support", "assistenza informatica"),
            ("Open an IT support ticket", "Apri un ticket di assistenza", "aprire un ticket di assistenza"),
            "Open a ticket with the IT helpdesk.", ("issue",), ("priority", "email"),
            _sent(L("ticket opened", "ticket aperto"))),
    _action(("send_flowers", "order_flower_delivery", "flower_delivery"), L("gifts", "regali"),
            ("Send flowers", "Manda dei fiori", "mandare dei fiori"),
            "Order a flower delivery.", ("name", "city"), ("date", "note", "budget"),
            _booked(L("the flower delivery", "la consegna dei fiori")), {"name": ("to {}", "a {}")}),
    _action(("get_flight_status", "flight_tracker", "check_flight_status"), L("flights", "voli"),
            ("Check the flight status", "Controlla lo stato del volo", "controllare lo stato del volo"),
            "Live status of a flight.", ("flight",), ("date",),
            _lookup(lambda rng: {"gate": f"{pick(rng, 'ABC')}{rng.randint(1, 30)}", "delay_minutes": rng.choice([0, 0, 15, 40])},
                    "It leaves from gate {gate}, {delay_minutes} minutes late.",
                    "Parte dal gate {gate}, con {delay_minutes} minuti di ritardo."),
            {"flight": ("for {}", "{}")}),
]


# ---- a made-up tool ----------------------------------------------------------------------------------------
def _phrases(head: tuple[str, str, str], clauses: list[str], lang: str, rng: random.Random) -> str:
    """One request template: the action's head, then its clauses in a random order."""
    rest = " ".join("{" + k + "}" for k in clauses)
    rest = f" {rest}" if rest else ""
    imp_en, imp_it, inf_it = head
    if lang == "en":
        inf = imp_en[0].lower() + imp_en[1:]
        forms = [f"{imp_en}{rest}.", f"Can you {inf}{rest}?", f"Please {inf}{rest}."]
        if " me" not in f" {inf} ":  # not "I'd like to show me ..."
            forms.append(f"I'd like to {inf}{rest}.")
    else:
        forms = [f"{imp_it}{rest}.", f"Puoi {inf_it}{rest}?", f"Vorrei {inf_it}{rest}.", f"{imp_it}{rest}, per favore."]
    return pick(rng, forms)


def make_tool(rng: random.Random, action: Action, args: dict[str, Arg] = ARGS) -> ToolSpec:
    """``action`` as a tool with a name, argument keys, optional arguments and request wording drawn from ``rng``
    (``args``: the argument archetypes its names refer to)."""
    kept = [a for a in action.optional if rng.random() < 0.6]
    archetypes = [*action.required, *kept]
    key = {a: pick(rng, args[a].keys) for a in archetypes}
    properties = {key[a]: args[a].schema() for a in archetypes}
    order = list(properties)
    rng.shuffle(order)
    parameters = obj({k: properties[k] for k in order}, [key[a] for a in action.required])

    def sample(c: Ctx) -> dict[str, Val]:
        vals: dict[str, Val] = {}
        for a in archetypes:
            after = args[a].after
            v = after[1](c, vals[key[after[0]]]) if after and after[0] in key else args[a].sample(c)
            if a in action.clauses and "bare" in v.forms:
                en, it = action.clauses[a]
                v = Val(v.value, L(en.format(v.forms["bare"].en), _it_a(it.format(v.forms["bare"].it))), v.forms)
            vals[key[a]] = v
        return vals

    def templates(leave_out: str | None = None, k: int = 3) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {"en": [], "it": []}
        for lang in out:
            for _ in range(k):
                said = [key[a] for a in action.required if key[a] != leave_out]
                said += [key[a] for a in kept if rng.random() < 0.5]
                rng.shuffle(said)
                out[lang].append(_phrases(action.head, said, lang, rng))
        return out

    missing = [Missing(key[a], templates(key[a], 2), {lang: args[a].question(lang) for lang in ("en", "it")})
               for a in action.required]
    return ToolSpec(name=pick(rng, action.names), domain=action.noun.en, description=action.description,
                    parameters=parameters, sample=sample, result=lambda a, r, lang: action.result(a, r),
                    answer=action.answer, templates=templates(), missing=missing)


def tool_pool(rng: random.Random, k: int) -> list[ToolSpec]:
    """``k`` made-up tools of distinct actions."""
    return [make_tool(rng, a) for a in rng.sample(ACTIONS, k)]


DOMAIN_NOUNS: dict[str, L] = {a.noun.en: a.noun for a in ACTIONS}
