"""Made-up tools whose argument values are not the user's words: the opt-in ``mapped`` split (``agentic:N:SEED:mapped``).

In the synthetic split every value is copied from the request ("for 3 people" -> 3). Real schemas often want the
same value in another shape, and that is where a model trained on copies fails: a duration said in hours for a
``duration_minutes`` key ("an hour and a half" -> 90), a phrase for an enum code ("in the last twelve months" ->
``365d``), a yes/no flag from a clause ("gift-wrapped" -> true, "without insurance" -> false), a range given as two
ends ("from 5 July to 10 July"), an amount in cents, a weight in grams, the right count among several numbers, long
opaque identifiers (IBANs, serial numbers) copied character for character, a list of addresses. Each row offers six
made-up tools, four of these actions and two of ``synthetic.ACTIONS``. None is one of the held-out tools (no car
rentals, refunds, tips, alerts, portfolios, file hashes, document search, chat posts, free slots or logged hours).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta
from typing import NamedTuple

from nesso.agentic_data.render import L, Val, date_val, join, money, num, person, pick, time_val
from nesso.agentic_data.spec import Ctx, ToolSpec, array, boolean, enum, integer, number, s
from nesso.agentic_data.synthetic import (
    ACTIONS,
    ARGS,
    Action,
    Arg,
    _action,
    _booked,
    _clause,
    _lookup,
    _sent,
    make_tool,
)

MAPPED_PER_ROW = 4  # of the six tools a row offers; the other two are synthetic.ACTIONS


# ---- durations: said in hours or minutes, asked for in either ------------------------------------------------
# (minutes, English ways of saying it, Italian ways)
DURATIONS: list[tuple[int, tuple[str, ...], tuple[str, ...]]] = [
    (15, ("a quarter of an hour", "15 minutes"), ("un quarto d'ora", "15 minuti")),
    (30, ("half an hour", "30 minutes"), ("mezz'ora", "30 minuti")),
    (45, ("45 minutes", "three quarters of an hour"), ("45 minuti", "tre quarti d'ora")),
    (60, ("an hour", "one hour", "1 hour", "60 minutes"), ("un'ora", "1 ora", "60 minuti")),
    (90, ("an hour and a half", "1.5 hours", "90 minutes"), ("un'ora e mezza", "1,5 ore", "90 minuti")),
    (120, ("two hours", "2 hours", "120 minutes"), ("due ore", "2 ore", "120 minuti")),
    (150, ("two and a half hours", "2.5 hours"), ("due ore e mezza", "2,5 ore")),
    (180, ("three hours", "3 hours"), ("tre ore", "3 ore")),
    (210, ("three and a half hours", "3.5 hours"), ("tre ore e mezza", "3,5 ore")),
    (240, ("four hours", "4 hours"), ("quattro ore", "4 ore")),
]


def _duration(c: Ctx, in_hours: bool) -> Val:
    minutes, en, it = pick(c.rng, DURATIONS[1:] if in_hours else DURATIONS)
    said = L(pick(c.rng, en), pick(c.rng, it))
    value: float | int = minutes / 60 if in_hours else minutes
    value = int(value) if float(value).is_integer() else value
    return _clause(value, said, "for {}", "per {}")


# ---- phrases that stand for enum codes -------------------------------------------------------------------
# The same five periods under three code styles (one per archetype, so one per tool). Neither the phrases nor the
# codes are the held-out portfolio tool's ("nell'ultimo anno" -> "1y", "since the start of the year" -> "ytd").
PERIOD_PHRASES: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("over the past week", "in the last 7 days"), ("nell'ultima settimana", "negli ultimi 7 giorni")),
    (("over the past 30 days", "in the past four weeks"), ("negli ultimi 30 giorni", "nelle ultime quattro settimane")),
    (("in the past 90 days", "over the past quarter"), ("negli ultimi 90 giorni", "nell'ultimo trimestre")),
    (("in the last twelve months", "over the past 12 months"), ("negli ultimi dodici mesi", "negli ultimi 12 mesi")),
    (("so far this year", "since January 1"), ("finora quest'anno", "dal primo gennaio")),
]
PERIOD_CODES = {
    "period_days": ["7d", "30d", "90d", "365d", "cur_year"],
    "period_words": ["week", "month", "quarter", "year", "year_to_date"],
    "period_span": ["last_week", "last_month", "last_3_months", "last_12_months", "this_year"],
}


def _phrase_enum(table: list[tuple[str, tuple[str, ...], tuple[str, ...]]], en_clause: str = "{}",
                 it_clause: str = "{}") -> Callable[[Ctx], Val]:
    """An enum whose codes the user never says: each code comes with its own ways of saying it."""
    def sample(c: Ctx) -> Val:
        code, en, it = pick(c.rng, table)
        return _clause(code, L(pick(c.rng, en), pick(c.rng, it)), en_clause, it_clause)
    return sample


PROBLEMS = [
    ("water_leak", ('water is dripping from the ceiling', 'there is a leak under the sink'),
     ("gocciola acqua dal soffitto", "c'è una perdita sotto il lavandino")),
    ("no_heating", ("the radiators are cold", "the heating doesn't work"),
     ("i termosifoni sono freddi", "il riscaldamento non funziona")),
    ("power_outage", ("there is no electricity in the flat", "the power keeps going off"),
     ("in casa manca la corrente", "salta sempre la corrente")),
    ("broken_lock", ("the front door lock is stuck", "my key no longer turns in the lock"),
     ("la serratura del portone è bloccata", "la chiave non gira più nella serratura")),
    ("noise", ("the neighbours are very loud at night", "there is constant noise from the flat upstairs"),
     ("i vicini fanno molto rumore di notte", "c'è un rumore continuo dall'appartamento di sopra")),
]
SIZES = [("S", ("small", "size small"), ("piccola", "taglia S")),
         ("M", ("medium", "size medium"), ("media", "taglia M")),
         ("L", ("large", "size large"), ("grande", "taglia L")),
         ("XL", ("extra large", "size XL"), ("extra large", "taglia XL"))]
SORTS = [("price_asc", ("cheapest first", "sorted by lowest price"),
          ("dal più economico", "ordinate per prezzo crescente")),
         ("price_desc", ("most expensive first",), ("dal più caro",)),
         ("rating", ("best rated first", "sorted by reviews"), ("prima le meglio recensite", "ordinate per recensioni")),
         ("distance", ("closest first", "nearest to the centre first"),
          ("prima le più vicine", "prima le più vicine al centro"))]


# ---- yes/no flags: a clause turns them on (or, now and then, explicitly off) ------------------------------------
class Flag(NamedTuple):
    keys: tuple[str, ...]
    description: str
    question: L
    on: tuple[str, str]  # (en, it) clause that sets it
    off: tuple[str, str]  # (en, it) clause that clears it


FLAGS: dict[str, Flag] = {
    "gift_wrap": Flag(("gift_wrap", "as_gift", "wrap_as_gift"), "Wrap it as a gift",
                      L("Should I gift-wrap it?", "Lo incarto da regalo?"),
                      ("gift-wrapped", "incartata da regalo"), ("without gift wrapping", "senza confezione regalo")),
    "express": Flag(("express", "express_delivery", "priority_shipping"), "Express delivery",
                    L("Do you want express delivery?", "Vuoi la consegna espressa?"),
                    ("with express delivery", "con consegna espressa"),
                    ("with standard delivery", "con consegna standard")),
    "insurance": Flag(("insured", "add_insurance", "insurance"), "Insure the shipment",
                      L("Should I insure it?", "Lo assicuro?"),
                      ("insured", "assicurato"), ("without insurance", "senza assicurazione")),
    "emergency": Flag(("emergency", "is_emergency", "after_hours"), "Needs an emergency call-out",
                      L("Is it an emergency?", "È un'emergenza?"),
                      ("(it's an emergency)", "(è un'emergenza)"), ("(not urgent)", "(non urgente)")),
    "eco": Flag(("eco_products", "green_products", "eco_friendly"), "Use eco-friendly products",
                L("Eco-friendly products?", "Prodotti ecologici?"),
                ("with eco-friendly products", "con prodotti ecologici"),
                ("(any products are fine)", "(vanno bene prodotti qualsiasi)")),
    "full_scan": Flag(("full_scan", "deep_check", "extended"), "Run the long, full check",
                      L("Quick or full check?", "Controllo rapido o completo?"),
                      ("and run the full check too", "e fai anche il controllo completo"),
                      ("(just the quick check)", "(solo il controllo rapido)")),
    "pets": Flag(("pets_allowed", "with_pets", "pet_friendly"), "Pets allowed",
                 L("Are you bringing pets?", "Portate animali?"),
                 ("(we're bringing our dog)", "(portiamo il cane)"), ("(no pets)", "(niente animali)")),
}


def _flag(on: tuple[str, str], off: tuple[str, str]) -> Callable[[Ctx], Val]:
    def sample(c: Ctx) -> Val:
        value = c.rng.random() < 0.75
        en, it = on if value else off
        return Val(value, L(en, it), {"bare": L(en, it)})
    return sample


# ---- values in another unit ------------------------------------------------------------------------------
def _cents(c: Ctx) -> Val:
    x = round(c.rng.uniform(5, 900), 2) if c.rng.random() < 0.6 else float(c.rng.randrange(10, 1000, 5))
    return _clause(round(x * 100), L(money(x, "en"), money(x, "it")), "of {}", "di {}")


def _grams(c: Ctx) -> Val:
    if c.rng.random() < 0.5:
        g = c.rng.randrange(100, 1000, 50)
        said = L(f"{g} g", pick(c.rng, [f"{g} g", f"{g} grammi"]))
    else:
        kg = c.rng.choice([1, 1.2, 1.5, 2, 2.5, 3, 4.8, 5, 7.5, 10])
        g = round(kg * 1000)
        decimals = 0 if float(kg).is_integer() else 1
        said = L(f"{num(kg, 'en', decimals)} kg", f"{num(kg, 'it', decimals)} kg")
    return _clause(g, said, "weighing {}", "da {}")


# ---- counts that share a request with other numbers --------------------------------------------------------
def _adults(c: Ctx) -> Val:
    n = c.rng.randint(1, 6)
    return _clause(n, L(f"{n} adult{'s' if n != 1 else ''}", f"{n} adult{'i' if n != 1 else 'o'}"), "for {}", "per {}")


def _children(c: Ctx) -> Val:
    n = c.rng.randint(1, 4)
    return _clause(n, L(f"{n} child{'ren' if n != 1 else ''}", f"{n} bambin{'i' if n != 1 else 'o'}"), "with {}", "con {}")


# ---- identifiers copied character by character -----------------------------------------------------------
def _iban(c: Ctx) -> Val:
    code = (f"IT{c.rng.randint(10, 99)}{pick(c.rng, 'ABCDEFGHLMNPRSTUVZ')}"
            + "".join(str(c.rng.randrange(10)) for _ in range(22)))
    return _clause(code, L(code, code), "to IBAN {}", "sull'IBAN {}")


def _serial(c: Ctx) -> Val:
    if c.rng.random() < 0.5:
        code = "".join(pick(c.rng, "0123456789abcdef") for _ in range(24))
    else:
        code = "-".join("".join(pick(c.rng, "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(5)) for _ in range(4))
    return _clause(code, L(code, code), "with serial number {}", "con numero di serie {}")


def _attendees(c: Ctx) -> Val:
    mails = list(dict.fromkeys(person(c.rng, c.lang)[1] for _ in range(c.rng.randint(1, 4))))
    return _clause(mails, L(join(mails, "en"), join(mails, "it")), "with {}", "con {}")


# ---- ranges: two ends said apart; the end comes after the start ---------------------------------------------
def _start(c: Ctx) -> Val:
    v = date_val(c.rng, c.today, 1, 40)
    return Val(v.value, v.forms["from"], v.forms)


def end_after(c: Ctx, start: Val) -> Val:
    """An end date 1-14 days after ``start`` (said "to ..." / "al ...")."""
    v = date_val(c.rng, c.today, at=date.fromisoformat(start.value) + timedelta(days=c.rng.randint(1, 14)))
    said = L(f"until {v.forms['bare'].en}", v.forms["to"].it) if c.rng.random() < 0.5 else v.forms["to"]
    return Val(v.value, said, v.forms)


def _earliest(c: Ctx) -> Val:
    v = time_val(c.rng, 7, 12)
    return Val(v.value, L(pick(c.rng, [f"after {v.forms['bare'].en}", f"not before {v.forms['bare'].en}"]),
                          pick(c.rng, [f"dopo le {v.forms['bare'].it}", f"non prima delle {v.forms['bare'].it}"])), v.forms)


def _latest(c: Ctx) -> Val:
    v = time_val(c.rng, 13, 21)
    return Val(v.value, L(pick(c.rng, [f"before {v.forms['bare'].en}", f"by {v.forms['bare'].en}"]),
                          pick(c.rng, [f"entro le {v.forms['bare'].it}", f"prima delle {v.forms['bare'].it}"])), v.forms)


HHMM = "^([01][0-9]|2[0-3]):[0-5][0-9]$"
MAPPED_ARGS: dict[str, Arg] = {
    "hours": Arg(("duration_hours", "hours_booked", "num_hours"),
                 lambda: number("Duration in hours (0.5 = 30 minutes)", minimum=0),
                 lambda c: _duration(c, in_hours=True), L("For how many hours?", "Per quante ore?")),
    "duration": Arg(("duration_minutes", "length_minutes", "minutes"), lambda: integer("Duration in minutes", minimum=1),
                    lambda c: _duration(c, in_hours=False), L("For how long?", "Per quanto tempo?")),
    **{name: Arg(("time_range", "window", "lookback"), (lambda codes=codes: enum("Time period", codes)),
                 _phrase_enum([(code, *said) for code, said in zip(codes, PERIOD_PHRASES)]),
                 L("Over which period?", "Per quale periodo?")) for name, codes in PERIOD_CODES.items()},
    "problem": Arg(("issue_type", "category", "problem_type"),
                   lambda: enum("Kind of problem", [p[0] for p in PROBLEMS]),
                   _phrase_enum(PROBLEMS, "because {}", "perché {}"),
                   L("What kind of problem is it?", "Che tipo di problema è?")),
    "size": Arg(("size", "shirt_size"), lambda: enum("Size", [x[0] for x in SIZES]),
                _phrase_enum(SIZES, "in {}", "{}"), L("Which size?", "Che taglia?")),
    "sort": Arg(("sort_by", "order_by", "sort"), lambda: enum("Result order", [x[0] for x in SORTS]),
                _phrase_enum(SORTS), L("How should I sort them?", "Come le ordino?")),
    **{name: Arg(f.keys, (lambda d=f.description: boolean(d, False)), _flag(f.on, f.off), f.question)
       for name, f in FLAGS.items()},
    "amount_cents": Arg(("amount_cents", "cents", "value_cents"),
                        lambda: integer("Amount in euro cents (EUR 1.00 = 100)", minimum=1),
                        _cents, L("How much?", "Di quanto?")),
    "grams": Arg(("weight_grams", "grams", "weight_g"), lambda: integer("Weight in grams", minimum=1), _grams,
                 L("How much does it weigh?", "Quanto pesa?")),
    "adults": Arg(("adults", "num_adults", "adult_guests"), lambda: integer("Number of adults", minimum=1), _adults,
                  L("How many adults?", "Quanti adulti?")),
    "children": Arg(("children", "num_children", "kids"), lambda: integer("Number of children", minimum=0), _children,
                    L("How many children?", "Quanti bambini?")),
    "iban": Arg(("iban", "beneficiary_iban", "to_iban"), lambda: s("Beneficiary IBAN"), _iban,
                L("To which IBAN?", "Su quale IBAN?")),
    "serial": Arg(("serial_number", "device_serial", "serial"), lambda: s("Serial number of the device"), _serial,
                  L("What's the serial number?", "Qual è il numero di serie?")),
    "attendees": Arg(("attendees", "invitees", "participants_emails"),
                     lambda: array("E-mail addresses of the people to invite", s("E-mail", format="email"), minItems=1),
                     _attendees, L("Who should I invite?", "Chi devo invitare?")),
    "start_date": Arg(("start_date", "from_date", "date_from"), lambda: {"type": "string", "format": "date",
                                                                        "description": "First day (YYYY-MM-DD)"},
                      _start, L("From which day?", "Da che giorno?")),
    "end_date": Arg(("end_date", "to_date", "date_to"), lambda: {"type": "string", "format": "date",
                                                                "description": "Last day (YYYY-MM-DD)"},
                    lambda c: end_after(c, _start(c)), L("Until which day?", "Fino a che giorno?"),
                    after=("start_date", end_after)),
    "earliest": Arg(("not_before", "window_start", "from_time"),
                    lambda: {"type": "string", "pattern": HHMM, "description": "Not before this time (24-hour HH:MM)"},
                    _earliest, L("From what time?", "Da che ora?")),
    "latest": Arg(("not_after", "window_end", "until_time"),
                  lambda: {"type": "string", "pattern": HHMM, "description": "Not after this time (24-hour HH:MM)"},
                  _latest, L("By what time?", "Entro che ora?")),
}
ALL_ARGS: dict[str, Arg] = {**ARGS, **MAPPED_ARGS}


MAPPED_ACTIONS: list[Action] = [
    _action(("book_babysitter", "hire_babysitter", "babysitting_request"), L("childcare", "baby-sitting"),
            ("Book a babysitter", "Prenota una babysitter", "prenotare una babysitter"),
            "Book a babysitter at home.", ("date", "hours"), ("time", "children"),
            _booked(L("the babysitter", "la babysitter"))),
    _action(("book_home_cleaning", "schedule_cleaner", "home_cleaning_service"), L("home services", "servizi per la casa"),
            ("Book a cleaner", "Prenota le pulizie di casa", "prenotare le pulizie di casa"),
            "Book a home cleaning visit.", ("date", "duration"), ("time", "eco"),
            _booked(L("the cleaning visit", "le pulizie"))),
    _action(("report_maintenance_issue", "building_repair_request", "maintenance_ticket"),
            L("home maintenance", "manutenzione"),
            ("Report a problem to the building manager", "Segnala un guasto all'amministratore",
             "segnalare un guasto all'amministratore"),
            "Report a problem in the flat to the building's maintenance service.", ("problem",), ("emergency", "phone"),
            _sent(L("the report is filed", "segnalazione inviata"))),
    _action(("spending_summary", "card_spending_report", "get_spending_breakdown"), L("banking", "banca"),
            ("Summarise my card spending", "Riassumi le spese della mia carta", "vedere le spese della mia carta"),
            "Total card spending over a period.", ("period_days",), ("email",),
            _lookup(lambda rng: {"total_eur": round(rng.uniform(80, 2400), 2), "transactions": rng.randint(4, 140)},
                    "You spent {total_eur} in {transactions} transactions.",
                    "Hai speso {total_eur} in {transactions} transazioni.")),
    _action(("step_count_summary", "activity_stats", "get_walking_stats"), L("activity tracking", "monitoraggio attività"),
            ("Show my step count", "Mostrami i passi fatti", "vedere i passi fatti"),
            "Steps walked over a period, from the phone's pedometer.", ("period_words",), ("activity",),
            _lookup(lambda rng: {"steps": rng.randint(20000, 3000000), "daily_average": rng.randint(2500, 14000)},
                    "{steps} steps, {daily_average} a day on average.",
                    "{steps} passi, in media {daily_average} al giorno.")),
    _action(("utility_bill_history", "get_energy_bills", "bills_overview"), L("utilities", "utenze"),
            ("Show my utility bills", "Mostrami le bollette", "vedere le bollette"),
            "The household's utility bills over a period.", ("period_span",), ("format",),
            _lookup(lambda rng: {"bills": rng.randint(1, 12), "total_eur": round(rng.uniform(60, 1800), 2)},
                    "{bills} bills, {total_eur} in total.", "{bills} bollette, {total_eur} in totale.")),
    _action(("search_holiday_homes", "find_vacation_rentals", "holiday_home_search"), L("holiday homes", "case vacanza"),
            ("Find a holiday home", "Cerca una casa vacanza", "cercare una casa vacanza"),
            "Search holiday homes free between two dates.", ("city", "start_date", "end_date"),
            ("adults", "children", "sort", "pets"),
            _lookup(lambda rng: {"found": rng.randint(2, 40), "from_eur": rng.randrange(60, 320, 5)},
                    "I found {found} homes, from {from_eur} a night.", "Ho trovato {found} case, da {from_eur} a notte.")),
    _action(("hold_mail_delivery", "pause_post_delivery", "mail_hold_request"), L("postal services", "servizi postali"),
            ("Hold my mail", "Sospendi la consegna della posta", "sospendere la consegna della posta"),
            "Hold the household's post at the office between two dates.", ("start_date", "end_date"), ("note",),
            _sent(L("your mail will be held", "la posta verrà trattenuta"))),
    _action(("register_warranty", "product_warranty_signup", "activate_warranty"), L("warranty", "garanzia"),
            ("Register the warranty of my device", "Registra la garanzia del mio dispositivo",
             "registrare la garanzia del mio dispositivo"),
            "Register a device for its manufacturer warranty.", ("serial",), ("email", "date"),
            _lookup(lambda rng: {"warranty_until": f"{rng.randint(2027, 2029)}-{rng.randint(1, 12):02d}-28"},
                    "Registered: covered until {warranty_until}.", "Registrato: coperto fino al {warranty_until}.")),
    _action(("run_device_diagnostics", "check_device_health", "device_checkup"),
            L("device support", "assistenza dispositivi"),
            ("Check my device", "Controlla il mio dispositivo", "controllare il mio dispositivo"),
            "Run a remote health check on a device.", ("serial",), ("full_scan",),
            _lookup(lambda rng: {"battery_health": rng.randint(62, 100), "issues_found": rng.randint(0, 3)},
                    "Battery health {battery_health}%, {issues_found} issues found.",
                    "Salute della batteria {battery_health}%, {issues_found} problemi trovati.")),
    _action(("schedule_bank_transfer", "send_wire_transfer", "bank_transfer"), L("bank transfers", "bonifici"),
            ("Send a bank transfer", "Fai un bonifico", "fare un bonifico"),
            "Send a bank transfer to an IBAN.", ("iban", "amount_cents"), ("date", "note"),
            _sent(L("the transfer is scheduled", "il bonifico è programmato"))),
    _action(("buy_postage_label", "print_shipping_label", "postage_purchase"), L("postage", "affrancatura"),
            ("Buy a postage label", "Compra un'affrancatura", "comprare un'affrancatura"),
            "Buy a printable postage label for a package.", ("grams", "destination"), ("express", "insurance"),
            _lookup(lambda rng: {"label": f"LB-{rng.randint(100000, 999999)}", "price_eur": round(rng.uniform(2, 28), 2)},
                    "Label {label} bought for {price_eur}.", "Etichetta {label} acquistata per {price_eur}."),
            {"grams": ("for a package of {}", "per un pacco da {}")}),
    _action(("send_video_call_invite", "invite_to_video_call", "video_meeting_invite"), L("meetings", "riunioni"),
            ("Invite people to a video call", "Invita delle persone a una videochiamata",
             "invitare delle persone a una videochiamata"),
            "Send a video-call invitation.", ("attendees", "date", "duration"), ("time",),
            _sent(L("the invitations are out", "inviti mandati"))),
    _action(("book_grocery_delivery", "grocery_delivery_window", "schedule_grocery_drop"), L("groceries", "spesa"),
            ("Book a grocery delivery", "Prenota la consegna della spesa", "prenotare la consegna della spesa"),
            "Book a home delivery window for groceries.", ("date", "earliest", "latest"), ("note",),
            _booked(L("the delivery", "la consegna"))),
    _action(("order_custom_tshirt", "print_tshirt_order", "tshirt_print"), L("clothing", "abbigliamento"),
            ("Order the printed t-shirt", "Ordina la maglietta stampata", "ordinare la maglietta stampata"),
            "Order a t-shirt with a custom print.", ("size",), ("gift_wrap", "express"),
            _lookup(lambda rng: {"order": f"TS-{rng.randint(10000, 99999)}", "total_eur": rng.randrange(18, 40)},
                    "Order {order} placed, {total_eur} in total.", "Ordine {order} fatto, {total_eur} in totale.")),
]


def tool_pool(rng: random.Random, k: int) -> list[ToolSpec]:
    """``k`` made-up tools: MAPPED_PER_ROW of these actions and the rest of synthetic.ACTIONS, all distinct."""
    actions = rng.sample(MAPPED_ACTIONS, MAPPED_PER_ROW) + rng.sample(ACTIONS, k - MAPPED_PER_ROW)
    rng.shuffle(actions)
    return [make_tool(rng, a, ALL_ARGS) for a in actions]


DOMAIN_NOUNS: dict[str, L] = {a.noun.en: a.noun for a in MAPPED_ACTIONS}
