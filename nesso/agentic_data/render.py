"""How values are said in English and Italian, and how they are sent to a tool.

A :class:`Val` is one sampled argument: the JSON value the tool receives and the words a user would use for it
(per language, with named forms such as ``bare`` or ``from`` for dates). User templates are ``str.format``
strings whose fields are argument names, optionally with a form: ``"dal {check_in:bare}"``.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

LANGS = ("en", "it")


@dataclass(frozen=True)
class L:
    """One piece of text (or value) per language."""

    en: Any
    it: Any

    def __call__(self, lang: str) -> Any:
        return self.en if lang == "en" else self.it


def per_lang(x: Any, lang: str) -> Any:
    return x(lang) if isinstance(x, L) else x


@dataclass
class Val:
    """A sampled argument: ``value`` goes into the call, ``text`` (and ``forms``) into the user's words."""

    value: Any
    text: Any = None
    forms: dict[str, Any] = field(default_factory=dict)

    def value_for(self, lang: str) -> Any:
        return per_lang(self.value, lang)

    def text_for(self, lang: str, form: str | None = None) -> str:
        if form:
            if form not in self.forms:
                raise KeyError(f"no form {form!r} for value {self.value!r}")
            return str(per_lang(self.forms[form], lang))
        if self.text is None:
            return str(self.value_for(lang))
        return str(per_lang(self.text, lang))


class _Formatter(string.Formatter):
    def __init__(self, lang: str) -> None:
        self.lang = lang

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, Val):
            return value.text_for(self.lang, format_spec or None)
        return format(value, format_spec)


def fill(template: str, vals: dict[str, Any], lang: str) -> str:
    return _Formatter(lang).format(template, **vals)


def fields_of(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def pick(rng: random.Random, items: list[Any] | tuple[Any, ...]) -> Any:
    return items[rng.randrange(len(items))]


# ---- numbers and money ----------------------------------------------------------------------------
def num(x: float | int, lang: str, decimals: int | None = None) -> str:
    """1234.5 -> '1,234.50' (en) / '1.234,50' (it); integers keep no decimals unless asked."""
    if decimals is None:
        decimals = 0 if float(x).is_integer() else 2
    s = f"{x:,.{decimals}f}"
    if lang == "it":
        s = s.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    return s


CURRENCIES: dict[str, dict[str, str]] = {
    # code: symbol, English plural name, Italian plural name
    "EUR": {"sym": "€", "en": "euros", "it": "euro"},
    "USD": {"sym": "$", "en": "US dollars", "it": "dollari USA"},
    "GBP": {"sym": "£", "en": "British pounds", "it": "sterline britanniche"},
    "CHF": {"sym": "CHF", "en": "Swiss francs", "it": "franchi svizzeri"},
    "JPY": {"sym": "¥", "en": "Japanese yen", "it": "yen giapponesi"},
}


def money(x: float, lang: str, cur: str = "EUR") -> str:
    """'€12.50' / '12,50 €' ('€50' for whole amounts); other currencies '$12.50' / '12,50 $', CHF as a code."""
    decimals = 0 if float(x).is_integer() else 2
    if cur == "JPY":
        decimals = 0
    n = num(x, lang, decimals)
    sym = CURRENCIES.get(cur, {}).get("sym", cur)
    if lang == "en":
        return f"{sym} {n}" if sym == "CHF" else f"{sym}{n}"
    return f"{n} {sym}"


def money_val(rng: random.Random, lo: float, hi: float, cur: str = "EUR", cents: bool = True) -> Val:
    x = round(rng.uniform(lo, hi), 2) if cents else float(rng.randint(int(lo), int(hi)))
    value = int(x) if x.is_integer() else x
    return Val(value, L(money(x, "en", cur), money(x, "it", cur)),
               {"num": L(num(x, "en"), num(x, "it"))})


def join(items: list[str], lang: str) -> str:
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + (" and " if lang == "en" else " e ") + items[-1]


# ---- dates and times ------------------------------------------------------------------------------
MONTHS = {
    "en": ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"],
    "it": ["gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto", "settembre",
           "ottobre", "novembre", "dicembre"],
}
WEEKDAYS = {
    "en": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "it": ["lunedì", "martedì", "mercoledì", "giovedì", "venerdì", "sabato", "domenica"],
}


def date_text(d: date, lang: str, day_first: bool = False) -> str:
    if lang == "en":
        return f"{d.day} {MONTHS['en'][d.month - 1]}" if day_first else f"{MONTHS['en'][d.month - 1]} {d.day}"
    return f"{'1°' if d.day == 1 else d.day} {MONTHS['it'][d.month - 1]}"


def _it_with(d: date, plain: str, elided: str, text: str) -> str:
    # "il 3 marzo", but "l'8 marzo" / "l'11 marzo" (otto and undici start with a vowel)
    return f"{elided}{text}" if d.day in (8, 11) else f"{plain} {text}"


def date_val(rng: random.Random, today: date, lo: int = 1, hi: int = 60, relative: bool = False,
             at: date | None = None) -> Val:
    """A date ``lo..hi`` days after ``today`` (or ``at``). Forms: default ("on March 3" / "il 3 marzo"),
    ``bare`` ("March 3" / "3 marzo"), ``from`` ("from March 3" / "dal 3 marzo"), ``to`` ("to ..." / "al ...")."""
    d = at or today + timedelta(days=rng.randint(lo, hi))
    iso = d.isoformat()
    if relative and at is None and rng.random() < 0.35:
        d = today + timedelta(days=rng.choice([0, 1]))
        iso = d.isoformat()
        word = L("today", "oggi") if d == today else L("tomorrow", "domani")
        return Val(iso, word, {"bare": word, "from": L(f"from {word.en}", f"da {word.it}"),
                               "to": L(f"until {word.en}", f"fino a {word.it}"), "iso": iso})
    day_first = today.toordinal() % 10 < 3  # one date style per row (the row's day picks it)
    en, it = date_text(d, "en", day_first), date_text(d, "it")
    return Val(iso, L(f"on {en}", _it_with(d, "il", "l'", it)), {
        "bare": L(en, it),
        "from": L(f"from {en}", _it_with(d, "dal", "dall'", it)),
        "to": L(f"to {en}", _it_with(d, "al", "all'", it)),
        "after": L(f"after {en}", _it_with(d, "dopo il", "dopo l'", it)),
        "iso": iso,
    })


IT_ELIDED = {"il": "l'", "Il": "L'", "del": "dell'", "dal": "dall'", "al": "all'", "dopo il": "dopo l'"}


def dp(d: date | str, lang: str, prep: str = "il") -> str:
    """A date for an answer: English 'March 3'; Italian with its preposition, elided where needed ('dell'8 marzo')."""
    d = iso_date(d) if isinstance(d, str) else d
    text = date_text(d, lang)
    return text if lang == "en" else _it_with(d, prep, IT_ELIDED[prep], text)


def long_date(d: date, lang: str) -> str:
    if lang == "en":
        return f"{WEEKDAYS['en'][d.weekday()]}, {d.day} {MONTHS['en'][d.month - 1]} {d.year}"
    return f"{WEEKDAYS['it'][d.weekday()]} {d.day} {MONTHS['it'][d.month - 1]} {d.year}"


def time_val(rng: random.Random, lo_hour: int = 8, hi_hour: int = 18) -> Val:
    h, m = rng.randint(lo_hour, hi_hour), rng.choice([0, 0, 15, 30, 30, 45])
    hhmm = f"{h:02d}:{m:02d}"
    en = f"{(h - 1) % 12 + 1}{'' if m == 0 else f':{m:02d}'} {'am' if h < 12 else 'pm'}"
    return Val(hhmm, L(f"at {en}", f"alle {h}:{m:02d}"), {"bare": L(en, f"{h}:{m:02d}"),
                                                         "after": L(f"after {en}", f"dopo le {h}:{m:02d}")})


def iso_date(s: str) -> date:
    return date.fromisoformat(s)


# ---- places and people -----------------------------------------------------------------------------
# (English name, Italian name, Italian city?)
CITIES: list[tuple[str, str, bool]] = [
    ("Milan", "Milano", True), ("Turin", "Torino", True), ("Naples", "Napoli", True), ("Rome", "Roma", True),
    ("Florence", "Firenze", True), ("Venice", "Venezia", True), ("Genoa", "Genova", True),
    ("Bologna", "Bologna", True), ("Palermo", "Palermo", True), ("Bari", "Bari", True),
    ("Verona", "Verona", True), ("Trieste", "Trieste", True), ("Padua", "Padova", True),
    ("Cagliari", "Cagliari", True), ("London", "Londra", False), ("Paris", "Parigi", False),
    ("Berlin", "Berlino", False), ("Madrid", "Madrid", False), ("Barcelona", "Barcellona", False),
    ("Munich", "Monaco di Baviera", False), ("Zurich", "Zurigo", False), ("Vienna", "Vienna", False),
    ("Lisbon", "Lisbona", False), ("Amsterdam", "Amsterdam", False), ("New York", "New York", False),
]
REGIONS: list[tuple[str, str]] = [
    ("Lombardy", "Lombardia"), ("Piedmont", "Piemonte"), ("Tuscany", "Toscana"), ("Sicily", "Sicilia"),
    ("Veneto", "Veneto"), ("Campania", "Campania"), ("Liguria", "Liguria"), ("Sardinia", "Sardegna"),
    ("Apulia", "Puglia"), ("Emilia-Romagna", "Emilia-Romagna"),
]
# Names that mean the same place in either language: the AST checker accepts any of them.
PLACE_ALIASES: list[tuple[str, ...]] = [(en, it) for en, it, _ in CITIES if en != it] + [
    (en, it) for en, it in REGIONS if en != it] + [("Munich", "Monaco di Baviera", "München")]


def choice_val(rng: random.Random, table: dict[str, Any]) -> Val:
    """Pick a key of ``{value: L(en_text, it_text)}``."""
    key = pick(rng, list(table))
    return Val(key, table[key])


def region_val(rng: random.Random) -> Val:
    en, it = pick(rng, REGIONS)
    return Val(L(en, it), L(en, it))


def city_val(rng: random.Random, lang: str, italian_share: float | None = None) -> Val:
    share = italian_share if italian_share is not None else (0.55 if lang == "en" else 0.75)
    pool = [c for c in CITIES if c[2] == (rng.random() < share)]
    en, it, _ = pick(rng, pool)
    return Val(L(en, it), L(en, it))


FIRST_NAMES = {"it": ["Giulia", "Marco", "Luca", "Sara", "Alessandro", "Chiara", "Matteo", "Francesca", "Davide",
                      "Elena", "Paolo", "Martina"],
               "en": ["Emma", "James", "Olivia", "Daniel", "Sophie", "Thomas", "Hannah", "Oliver"]}
LAST_NAMES = {"it": ["Rossi", "Bianchi", "Ferrari", "Colombo", "Romano", "Esposito", "Ricci", "Marino", "Greco",
                     "Conti", "Gallo", "Fontana"],
              "en": ["Clarke", "Walker", "Bennett", "Hughes", "Turner", "Carter", "Morgan", "Reed"]}


def person(rng: random.Random, lang: str) -> tuple[str, str]:
    """(full name, e-mail): mostly Italian names in Italian rows, mixed in English rows."""
    origin = "it" if rng.random() < (0.8 if lang == "it" else 0.45) else "en"
    first, last = pick(rng, FIRST_NAMES[origin]), pick(rng, LAST_NAMES[origin])
    domain = pick(rng, ["example.com", "example.it", "example.org"])
    return f"{first} {last}", f"{first.lower()}.{last.lower()}@{domain}"


def stable_rng(*parts: Any) -> random.Random:
    """A generator seeded by text (Random seeds strings with SHA-512, so this is stable across runs)."""
    return random.Random("\x1f".join(str(p) for p in parts))


def days_between(a: str, b: str) -> int:
    return (iso_date(b) - iso_date(a)).days


def add_days(iso: str, days: int) -> str:
    return (iso_date(iso) + timedelta(days=days)).isoformat()
