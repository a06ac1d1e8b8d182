"""Tools of the weather, calendar and travel domains."""

from __future__ import annotations

import random
import string
from datetime import timedelta
from typing import Any

from nesso.agentic_data.render import (
    L,
    Val,
    choice_val,
    city_val,
    date_text,
    date_val,
    days_between,
    dp,
    iso_date,
    join,
    money,
    person,
    pick,
    region_val,
    time_val,
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
    time_param,
)

# ==== weather =====================================================================================
CONDITIONS = {"sunny": L("sunny", "sole"), "partly_cloudy": L("partly cloudy", "parzialmente nuvoloso"),
              "cloudy": L("cloudy", "nuvoloso"), "rain": L("rain", "pioggia"),
              "thunderstorm": L("thunderstorms", "temporali"), "fog": L("fog", "nebbia"), "snow": L("snow", "neve")}
UNITS_T = {"celsius": L("Celsius", "gradi Celsius"), "fahrenheit": L("Fahrenheit", "gradi Fahrenheit")}


def _deg(x: float, units: str) -> str:
    return f"{round(x)}°{'F' if units == 'fahrenheit' else 'C'}"


def _temp(rng: random.Random, units: str, lo: float = -2, hi: float = 31) -> float:
    c = rng.uniform(lo, hi)
    return round(c * 9 / 5 + 32 if units == "fahrenheit" else c, 1)


def _units_val(c: Ctx) -> Val:
    u = "fahrenheit" if c.rng.random() < 0.7 else "celsius"
    return Val(u, UNITS_T[u])


def _current_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    units = a.get("units", "celsius")
    return {"city": a["city"], "temperature": _temp(rng, units), "units": units, "condition": pick(rng, list(CONDITIONS)),
            "humidity_pct": rng.randint(30, 95), "wind_kmh": rng.randint(0, 45)}


def _current_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    t, cond = _deg(r["temperature"], r["units"]), CONDITIONS[r["condition"]](c.lang)
    return c.pick([f"It's {t} in {r['city']} right now ({cond}), with {r['humidity_pct']}% humidity and wind at {r['wind_kmh']} km/h.",
                   f"Current conditions in {r['city']}: {cond}, {t}, humidity {r['humidity_pct']}%, wind {r['wind_kmh']} km/h."],
                  [f"A {r['city']} ora ci sono {t} ({cond}), con umidità al {r['humidity_pct']}% e vento a {r['wind_kmh']} km/h.",
                   f"Condizioni attuali a {r['city']}: {cond}, {t}, umidità {r['humidity_pct']}%, vento {r['wind_kmh']} km/h."])


get_current_weather = ToolSpec(
    name="get_current_weather", domain="weather",
    description="Current weather conditions in a city.",
    parameters=obj({"city": s("City name, e.g. Milano or London"),
                    "units": enum("Temperature units", list(UNITS_T), default="celsius")}, ["city"]),
    sample=lambda c: {"city": city_val(c.rng, c.lang), "units": _units_val(c)},
    result=_current_result, answer=_current_answer,
    templates=T(["What's the weather like in {city} right now?", "Current conditions in {city}, in {units}, please.",
                 "Is it raining in {city}?", "How warm is it in {city} at the moment?"],
                ["Che tempo fa adesso a {city}?", "Condizioni attuali a {city}, in {units}, per favore.",
                 "Sta piovendo a {city}?", "Quanti gradi ci sono a {city} in questo momento?"]),
    missing=[Missing("city", T(["What's the weather like right now?", "Is it cold outside at the moment?"],
                               ["Che tempo fa adesso?", "Fa freddo fuori in questo momento?"]),
                     {"en": "Which city would you like the weather for?", "it": "Per quale città vuoi il meteo?"})],
)


def _forecast_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    units = a.get("units", "celsius")
    lo = _temp(rng, units, -4, 20)
    spread = rng.uniform(4, 11) * (1.8 if units == "fahrenheit" else 1)
    cond = pick(rng, list(CONDITIONS))
    rain = rng.randint(40, 95) if cond in ("rain", "thunderstorm", "snow") else rng.randint(0, 35)
    return {"city": a["city"], "date": a["date"], "condition": cond, "max_temp": round(lo + spread, 1), "min_temp": lo,
            "units": units, "precipitation_chance_pct": rain}


def _forecast_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    d = dp(r["date"], c.lang, "del")
    hi, lo, cond, p = _deg(r["max_temp"], r["units"]), _deg(r["min_temp"], r["units"]), CONDITIONS[r["condition"]](c.lang), \
        r["precipitation_chance_pct"]
    return c.pick([f"Forecast for {r['city']} on {d}: {cond}, high {hi}, low {lo}, {p}% chance of rain.",
                   f"On {d} {r['city']} should see {cond}, between {lo} and {hi}, with a {p}% chance of rain."],
                  [f"Previsioni per {r['city']} {d}: {cond}, massima {hi}, minima {lo}, probabilità di pioggia del {p}%.",
                   f"{r['city']}, previsioni {d}: {cond}, tra {lo} e {hi}, con il {p}% di probabilità di pioggia."])


get_forecast = ToolSpec(
    name="get_forecast", domain="weather",
    description="Daily weather forecast for a city, up to 10 days ahead.",
    parameters=obj({"city": s("City name"), "date": date_param("Day of the forecast"),
                    "units": enum("Temperature units", list(UNITS_T), default="celsius")}, ["city", "date"]),
    sample=lambda c: {"city": city_val(c.rng, c.lang), "date": date_val(c.rng, c.today, 1, 9, relative=True),
                      "units": _units_val(c)},
    result=_forecast_result, answer=_forecast_answer,
    templates=T(["What's the forecast for {city} {date}?", "Will it rain in {city} {date}?",
                 "Weather forecast for {city} {date}, in {units}.", "I'm going to {city}: what will the weather be like {date}?"],
                ["Che tempo farà a {city} {date}?", "Pioverà a {city} {date}?",
                 "Previsioni meteo per {city} {date}, in {units}.", "Vado a {city}: che tempo farà {date}?"]),
    missing=[Missing("date", T(["What will the weather be like in {city}?"], ["Che tempo farà a {city}?"]),
                     {"en": "For which day do you want the forecast for {city}?",
                      "it": "Per quale giorno vuoi le previsioni per {city}?"})],
)

POLLUTANTS = {"pm2_5": L("PM2.5", "PM2.5"), "pm10": L("PM10", "PM10"), "o3": L("ozone", "ozono"),
              "no2": L("nitrogen dioxide", "biossido di azoto")}
AQI_CAT = [(50, "good", L("good", "buona")), (100, "moderate", L("moderate", "discreta")),
           (150, "unhealthy_for_sensitive_groups", L("unhealthy for sensitive groups", "poco salubre per i soggetti sensibili")),
           (500, "unhealthy", L("unhealthy", "scadente"))]


def _aqi_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    aqi = rng.randint(12, 170)
    cat = next(code for hi, code, _ in AQI_CAT if aqi <= hi)
    pol = a.get("pollutant") or pick(rng, list(POLLUTANTS))
    return {"city": a["city"], "aqi": aqi, "category": cat, "pollutant": pol,
            "concentration_ugm3": round(aqi * rng.uniform(0.3, 0.9), 1)}


def _aqi_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    cat = next(t for _, code, t in AQI_CAT if code == r["category"])(c.lang)
    pol = POLLUTANTS[r["pollutant"]](c.lang)
    conc = f"{r['concentration_ugm3']}" if c.lang == "en" else f"{r['concentration_ugm3']}".replace(".", ",")
    return c.t(f"Air quality in {r['city']} is {cat} (AQI {r['aqi']}); {pol} is at {conc} µg/m³.",
               f"La qualità dell'aria a {r['city']} è {cat} (AQI {r['aqi']}); {pol}: {conc} µg/m³.")


get_air_quality = ToolSpec(
    name="get_air_quality", domain="weather",
    description="Air quality index and pollutant concentration in a city.",
    parameters=obj({"city": s("City name"), "pollutant": enum("Pollutant to report; the dominant one when omitted",
                                                              list(POLLUTANTS))}, ["city"]),
    sample=lambda c: {"city": city_val(c.rng, c.lang), "pollutant": choice_val(c.rng, POLLUTANTS)},
    result=_aqi_result, answer=_aqi_answer,
    templates=T(["How's the air quality in {city}?", "What's the {pollutant} level in {city} today?",
                 "Is the air in {city} healthy right now?"],
                ["Com'è la qualità dell'aria a {city}?", "Qual è il livello di {pollutant} a {city} oggi?",
                 "L'aria a {city} è salubre in questo momento?"]),
    missing=[Missing("city", T(["What's the {pollutant} level today?"], ["Qual è il livello di {pollutant} oggi?"]),
                     {"en": "Which city should I check?", "it": "Di quale città?"})],
)

ALERT_LEVELS = {"minor": L("minor", "lieve"), "moderate": L("moderate", "moderato"), "severe": L("severe", "grave")}
ALERT_TYPES = {"thunderstorm": L("thunderstorm", "temporali"), "heavy_rain": L("heavy rain", "piogge intense"),
               "wind": L("strong wind", "vento forte"), "heat": L("heat wave", "ondata di calore"),
               "snow": L("snow", "neve")}


def _alerts_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    levels = list(ALERT_LEVELS)
    floor = levels.index(a.get("min_severity", "minor"))
    alerts = [{"type": pick(rng, list(ALERT_TYPES)), "severity": levels[rng.randint(floor, 2)],
               "until": f"2026-{rng.randint(1, 6):02d}-{rng.randint(1, 28):02d}T{rng.choice([12, 18, 23])}:00"}
              for _ in range(rng.choice([0, 1, 1, 2]))]
    return {"region": a["region"], "alerts": alerts}


def _alerts_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    if not r["alerts"]:
        return c.t(f"There are no active weather alerts for {r['region']} right now.",
                   f"Al momento non ci sono allerte meteo attive per {r['region']}.")
    parts = []
    for al in r["alerts"]:
        d = iso_date(al["until"][:10])
        parts.append(c.t(f"{ALERT_TYPES[al['type']].en} ({al['severity']}) until {date_text(d, 'en')} at {al['until'][11:]}",
                         f"{ALERT_TYPES[al['type']].it} (livello {ALERT_LEVELS[al['severity']].it}) fino "
                         f"{dp(d, 'it', 'al')} alle {al['until'][11:]}"))
    return c.t(f"Active alerts for {r['region']}: {join(parts, 'en')}.", f"Allerte attive per {r['region']}: {join(parts, 'it')}.")


get_weather_alerts = ToolSpec(
    name="get_weather_alerts", domain="weather",
    description="Active severe-weather warnings for an Italian region.",
    parameters=obj({"region": s("Region name, e.g. Lombardia or Tuscany"),
                    "min_severity": enum("Lowest severity to include", list(ALERT_LEVELS), default="minor")}, ["region"]),
    sample=lambda c: {"region": region_val(c.rng),
                      "min_severity": choice_val(c.rng, {k: ALERT_LEVELS[k] for k in ("minor", "moderate")})},
    result=_alerts_result, answer=_alerts_answer,
    templates=T(["Are there any weather alerts for {region}?", "Show me {min_severity} or worse weather warnings in {region}.",
                 "Any storm warnings in {region} right now?"],
                ["Ci sono allerte meteo in {region}?", "Mostrami le allerte meteo di livello {min_severity} o superiore in {region}.",
                 "Ci sono avvisi di maltempo in {region} adesso?"]),
    missing=[Missing("region", T(["Are there any weather alerts right now?"], ["Ci sono allerte meteo in questo momento?"]),
                     {"en": "For which region should I check the alerts?", "it": "Per quale regione devo controllare le allerte?"})],
)

# ==== calendar ====================================================================================
EVENT_TITLES = {"en": ["Budget review", "Team sync", "Client call with Acme", "Dentist", "Quarterly planning", "Interview"],
                "it": ["Revisione del budget", "Allineamento del team", "Call con il cliente Acme", "Dentista",
                       "Pianificazione trimestrale", "Colloquio"]}


def _duration(minutes: int) -> Val:
    if minutes % 60 == 0:
        h = minutes // 60
        en, it = f"{h} hour{'s' if h > 1 else ''}", f"{h} or{'e' if h > 1 else 'a'}"
    else:
        en, it = f"{minutes} minutes", f"{minutes} minuti"
    adj = f"{minutes // 60}-hour" if minutes % 60 == 0 else f"{minutes}-minute"
    return Val(minutes, L(en, it), {"adj": L(adj, it)})


def _people(c: Ctx, k: int) -> Val:
    ppl = []
    while len(ppl) < k:
        p = person(c.rng, c.lang)
        if p not in ppl:
            ppl.append(p)
    emails = [e for _, e in ppl]
    return Val(emails, L(join(emails, "en"), join(emails, "it")))


def _event_sample(c: Ctx) -> dict[str, Val]:
    minutes = c.rng.choice([30, 45, 60, 90, 120])
    before = c.rng.choice([10, 15, 30, 60])
    if c.rng.random() < 0.5:
        reminder = Val({"minutes_before": before, "method": "email"},
                       L(f"with an email reminder {before} minutes before", f"con un promemoria via email {before} minuti prima"))
    else:
        reminder = Val({"minutes_before": before},
                       L(f"with a reminder {before} minutes before", f"con un promemoria {before} minuti prima"))
    title = pick(c.rng, EVENT_TITLES[c.lang])
    return {"title": Val(title), "date": date_val(c.rng, c.today, 1, 30, relative=True), "start_time": time_val(c.rng),
            "duration_minutes": _duration(minutes), "attendees": _people(c, c.rng.randint(1, 3)), "reminder": reminder}


def _event_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    h, m = map(int, a["start_time"].split(":"))
    end = h * 60 + m + a["duration_minutes"]
    return {"event_id": f"EVT-{rng.randint(10000, 99999)}", "title": a["title"], "start": f"{a['date']}T{a['start_time']}",
            "end": f"{a['date']}T{end // 60 % 24:02d}:{end % 60:02d}", "invitations_sent": len(a.get("attendees", []))}


def _event_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    d = dp(a["date"], c.lang)
    text = c.t(f"\"{r['title']}\" is in your calendar on {d} from {r['start'][11:]} to {r['end'][11:]} (ID {r['event_id']}).",
               f"Ho messo \"{r['title']}\" in calendario {d} dalle {r['start'][11:]} alle {r['end'][11:]} (ID {r['event_id']}).")
    if r["invitations_sent"]:
        n = r["invitations_sent"]
        text += c.t(f" {n} invitation{'s' if n > 1 else ''} sent.", f" Invit{'i' if n > 1 else 'o'} inviat{'i' if n > 1 else 'o'}: {n}.")
    return text


create_event = ToolSpec(
    name="create_event", domain="calendar",
    description="Create a calendar event, optionally inviting people and setting a reminder.",
    parameters=obj({"title": s("Event title"), "date": date_param("Day of the event"),
                    "start_time": time_param("Start time"),
                    "duration_minutes": integer("Length in minutes", minimum=5, maximum=720),
                    "attendees": array("E-mail addresses to invite", {"type": "string", "format": "email"}),
                    "reminder": obj({"minutes_before": integer("Minutes before the start", minimum=0),
                                     "method": enum("How to remind", ["popup", "email"], default="popup")},
                                    ["minutes_before"], "Reminder settings")},
                   ["title", "date", "start_time", "duration_minutes"]),
    sample=_event_sample, result=_event_result, answer=_event_answer,
    templates=T(["Schedule \"{title}\" {date} {start_time} for {duration_minutes}.",
                 "Create a {duration_minutes:adj} meeting called \"{title}\" {date} {start_time} with {attendees}.",
                 "Put \"{title}\" in my calendar {date} {start_time}, {duration_minutes} long, {reminder}."],
                ["Programma \"{title}\" {date} {start_time} per {duration_minutes}.",
                 "Crea una riunione di {duration_minutes} chiamata \"{title}\" {date} {start_time} con {attendees}.",
                 "Metti \"{title}\" in calendario {date} {start_time}, durata {duration_minutes}, {reminder}."]),
    missing=[Missing("start_time", T(["Schedule \"{title}\" {date} for {duration_minutes}."],
                                     ["Programma \"{title}\" {date} per {duration_minutes}."]),
                     {"en": "What time should \"{title}\" start?", "it": "A che ora deve iniziare \"{title}\"?"})],
)

CALENDARS = {"work": L("work", "di lavoro"), "personal": L("personal", "personali")}


def _list_events_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    titles = EVENT_TITLES[lang]
    events, hour = [], rng.randint(8, 10)
    for _ in range(rng.choice([0, 1, 2, 2, 3])):
        hour += rng.randint(0, 2)
        events.append({"event_id": f"EVT-{rng.randint(10000, 99999)}", "title": pick(rng, titles),
                       "start": f"{a['date']}T{hour:02d}:{rng.choice(['00', '30'])}",
                       "calendar": a.get("calendar") if a.get("calendar") in CALENDARS else pick(rng, list(CALENDARS))})
        hour += 1
    return {"date": a["date"], "events": events}


def _list_events_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    d = dp(r["date"], c.lang, "Il")
    if not r["events"]:
        return c.t(f"Your calendar is free on {d}.", f"{d} hai il calendario libero.")
    items = "\n".join(f"- {e['start'][11:]} {e['title']} ({e['event_id']})" for e in r["events"])
    return c.t(f"On {d} you have:\n{items}", f"{d} hai in programma:\n{items}")


list_events = ToolSpec(
    name="list_events", domain="calendar",
    description="List the events of one day.",
    parameters=obj({"date": date_param("Day to list"),
                    "calendar": enum("Which calendar", ["work", "personal", "all"], default="all")}, ["date"]),
    sample=lambda c: {"date": date_val(c.rng, c.today, 1, 20, relative=True),
                      "calendar": choice_val(c.rng, CALENDARS)},
    result=_list_events_result, answer=_list_events_answer,
    templates=T(["What's on my calendar {date}?", "List my {calendar} events {date}.", "Do I have anything scheduled {date}?"],
                ["Cosa ho in agenda {date}?", "Elenca i miei impegni {calendar} {date}.", "Ho qualcosa in programma {date}?"]),
    missing=[Missing("date", T(["What are my {calendar} appointments?"], ["Quali sono i miei impegni {calendar}?"]),
                     {"en": "For which day?", "it": "Per quale giorno?"})],
)


def _cancel_sample(c: Ctx) -> dict[str, Val]:
    notify = c.rng.random() < 0.4
    return {"event_id": Val(f"EVT-{c.rng.randint(10000, 99999)}"),
            "notify_attendees": Val(notify, L("and let the attendees know", "e avvisa i partecipanti") if notify
                                    else L("without notifying the attendees", "senza avvisare i partecipanti"))}


def _cancel_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    n = r["attendees_notified"]
    if n:
        return c.t(f"Event {r['event_id']} is cancelled and {n} attendee{'s were' if n > 1 else ' was'} notified.",
                   f"L'evento {r['event_id']} è stato annullato e ho avvisato {n} partecipant{'i' if n > 1 else 'e'}.")
    return c.t(f"Event {r['event_id']} is cancelled; nobody was notified.",
               f"L'evento {r['event_id']} è stato annullato; non è stato avvisato nessuno.")


cancel_event = ToolSpec(
    name="cancel_event", domain="calendar",
    description="Cancel a calendar event.",
    parameters=obj({"event_id": s("Event identifier", pattern="^EVT-[0-9]{5}$"),
                    "notify_attendees": boolean("Send a cancellation notice to the attendees", True)}, ["event_id"]),
    sample=_cancel_sample,
    result=lambda a, rng, lang: {"event_id": a["event_id"], "status": "cancelled",
                                 "attendees_notified": rng.randint(1, 5) if a.get("notify_attendees", True) else 0},
    answer=_cancel_answer,
    templates=T(["Cancel event {event_id}.", "Delete {event_id} from my calendar {notify_attendees}.",
                 "Please call off meeting {event_id}, {notify_attendees}."],
                ["Annulla l'evento {event_id}.", "Cancella {event_id} dal calendario {notify_attendees}.",
                 "Per favore annulla la riunione {event_id}, {notify_attendees}."]),
    missing=[Missing("event_id", T(["Cancel my meeting {notify_attendees}."], ["Annulla la mia riunione {notify_attendees}."]),
                     {"en": "Which event should I cancel? Please give me its ID (for example EVT-12345).",
                      "it": "Quale evento devo annullare? Dammi il suo ID (ad esempio EVT-12345)."})],
)


def _free_sample(c: Ctx) -> dict[str, Val]:
    early = Val(f"{c.rng.randint(8, 11):02d}:00")
    h = int(early.value[:2])
    late = Val(f"{c.rng.randint(13, 18):02d}:00")
    for v, hour in ((early, h), (late, int(late.value[:2]))):
        en = f"{(hour - 1) % 12 + 1} {'am' if hour < 12 else 'pm'}"
        v.text, v.forms = L(en, f"{hour}:00"), {"bare": L(en, f"{hour}:00"),
                                                 "after": L(f"after {en}", f"dopo le {hour}:00")}
    return {"date": date_val(c.rng, c.today, 1, 14), "duration_minutes": _duration(c.rng.choice([30, 45, 60, 90])),
            "attendees": _people(c, c.rng.randint(1, 3)), "earliest": early, "latest": late}


def _free_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    lo, hi = int(a.get("earliest", "09:00")[:2]), int(a.get("latest", "18:00")[:2])
    last_start = max(lo * 2, hi * 2 - -(-a["duration_minutes"] // 30))  # in half hours
    starts = sorted(rng.sample(range(lo * 2, last_start + 1), k=min(2, last_start + 1 - lo * 2)))
    slots = []
    for st in starts:
        end = st * 30 + a["duration_minutes"]
        slots.append({"start": f"{a['date']}T{st // 2:02d}:{st % 2 * 30:02d}", "end": f"{a['date']}T{end // 60:02d}:{end % 60:02d}"})
    return {"date": a["date"], "slots": slots}


def _free_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    d = dp(r["date"], c.lang, "Il")
    spans = [f"{sl['start'][11:]}–{sl['end'][11:]}" for sl in r["slots"]]
    return c.t(f"Everyone is free on {d} at {join(spans, 'en')}.", f"{d} siete tutti liberi nelle fasce {join(spans, 'it')}.")


find_free_slot = ToolSpec(
    name="find_free_slot", domain="calendar",
    description="Find times when all the given people are free for a meeting.",
    parameters=obj({"date": date_param("Day to search"), "duration_minutes": integer("Meeting length", minimum=15, maximum=480),
                    "attendees": array("E-mail addresses of the participants", {"type": "string", "format": "email"},
                                       minItems=1),
                    "earliest": time_param("Do not start before"), "latest": time_param("Do not end after")},
                   ["date", "duration_minutes", "attendees"]),
    sample=_free_sample, result=_free_result, answer=_free_answer,
    templates=T(["Find a free {duration_minutes:adj} slot {date} for me and {attendees}.",
                 "When are {attendees} free {date} for {duration_minutes}, {earliest:after}?",
                 "Find {duration_minutes} {date} with {attendees}, between {earliest:bare} and {latest:bare}."],
                ["Trova uno slot libero di {duration_minutes} {date} per me e {attendees}.",
                 "Quando sono liberi {attendees} {date} per {duration_minutes}, {earliest:after}?",
                 "Trova {duration_minutes} {date} con {attendees}, tra le {earliest:bare} e le {latest:bare}."]),
    missing=[Missing("attendees", T(["Find a free {duration_minutes:adj} slot {date} for a meeting."],
                                    ["Trova uno slot libero di {duration_minutes} {date} per una riunione."]),
                     {"en": "Who should attend? Give me their e-mail addresses so I can check their calendars.",
                      "it": "Chi deve partecipare? Dammi i loro indirizzi email così controllo i calendari."})],
)

# ==== travel ======================================================================================
AIRLINES = [("AZ", "ITA Airways"), ("FR", "Ryanair"), ("U2", "easyJet"), ("LH", "Lufthansa"), ("BA", "British Airways"),
            ("AF", "Air France"), ("VY", "Vueling")]
CABINS = {"economy": L("economy", "economy"), "premium_economy": L("premium economy", "premium economy"),
          "business": L("business class", "business")}


def _passengers(n: int) -> Val:
    return Val(n, L(f"{n} ticket{'s' if n > 1 else ''}", f"{n} bigliett{'i' if n > 1 else 'o'}"),
               {"people": L(f"{n} {'people' if n > 1 else 'person'}", f"{n} person{'e' if n > 1 else 'a'}")})


def _two_cities(c: Ctx) -> tuple[Val, Val]:
    a = city_val(c.rng, c.lang)
    b = city_val(c.rng, c.lang)
    while b.value == a.value:
        b = city_val(c.rng, c.lang)
    return a, b


def _flights_sample(c: Ctx) -> dict[str, Val]:
    a, b = _two_cities(c)
    cabin = pick(c.rng, ["premium_economy", "business", "economy"])
    return {"origin": a, "destination": b, "date": date_val(c.rng, c.today, 3, 60), "passengers": _passengers(c.rng.randint(2, 4)),
            "cabin": Val(cabin, CABINS[cabin])}


def _flights_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    base = {"economy": 1, "premium_economy": 1.8, "business": 3.5}[a.get("cabin", "economy")]
    flights = []
    for _ in range(rng.randint(2, 3)):
        code, airline = pick(rng, AIRLINES)
        dep = rng.randint(6 * 4, 21 * 4) * 15
        dur = rng.randint(5, 16) * 10
        flights.append({"flight_number": f"{code}{rng.randint(100, 9999)}", "airline": airline,
                        "departure": f"{dep // 60:02d}:{dep % 60:02d}", "arrival": f"{(dep + dur) // 60 % 24:02d}:{(dep + dur) % 60:02d}",
                        "stops": rng.choice([0, 0, 0, 1]), "price_per_person": round(rng.uniform(39, 260) * base, 2)})
    flights.sort(key=lambda f: f["price_per_person"])
    return {"origin": a["origin"], "destination": a["destination"], "date": a["date"], "currency": "EUR",
            "passengers": a.get("passengers", 1), "flights": flights}


def _flight_line(f: dict[str, Any], lang: str) -> str:
    stops = ("direct" if not f["stops"] else "1 stop") if lang == "en" else ("diretto" if not f["stops"] else "1 scalo")
    return f"{f['flight_number']} ({f['airline']}) {f['departure']}–{f['arrival']}, {stops}, {money(f['price_per_person'], lang)}" + (
        " per person" if lang == "en" else " a persona")


def _flights_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    d = dp(r["date"], c.lang)
    lines = "\n".join(f"- {_flight_line(f, c.lang)}" for f in r["flights"])
    return c.t(f"Flights from {r['origin']} to {r['destination']} on {d}:\n{lines}\nThe cheapest is {r['flights'][0]['flight_number']}.",
               f"Voli da {r['origin']} a {r['destination']} {d}:\n{lines}\nIl più economico è {r['flights'][0]['flight_number']}.")


search_flights = ToolSpec(
    name="search_flights", domain="travel",
    description="Search one-way flights between two cities on a given day.",
    parameters=obj({"origin": s("Departure city"), "destination": s("Arrival city"), "date": date_param("Departure day"),
                    "passengers": integer("Number of passengers", minimum=1, maximum=9, default=1),
                    "cabin": enum("Cabin class", list(CABINS), default="economy")}, ["origin", "destination", "date"]),
    sample=_flights_sample, result=_flights_result, answer=_flights_answer,
    templates=T(["Find flights from {origin} to {destination} {date}.",
                 "I need {passengers} in {cabin} from {origin} to {destination} {date}.",
                 "Any flights {origin} → {destination} {date} for {passengers:people}?"],
                ["Cerca voli da {origin} a {destination} {date}.",
                 "Mi servono {passengers} in {cabin} da {origin} a {destination} {date}.",
                 "Ci sono voli {origin} → {destination} {date} per {passengers:people}?"]),
    missing=[Missing("date", T(["Find me a flight from {origin} to {destination}."], ["Trovami un volo da {origin} a {destination}."]),
                     {"en": "Which day do you want to fly?", "it": "In che giorno vuoi partire?"})],
)
SEATS = {"window": L("window", "finestrino"), "aisle": L("aisle", "corridoio")}


def _book_sample(c: Ctx) -> dict[str, Val]:
    code, _ = pick(c.rng, AIRLINES)
    seat = pick(c.rng, list(SEATS))
    return {"flight_number": Val(f"{code}{c.rng.randint(100, 9999)}"), "date": date_val(c.rng, c.today, 3, 60),
            "passenger_name": Val(person(c.rng, c.lang)[0]), "seat_preference": Val(seat, SEATS[seat])}


def _book_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    row, letter = rng.randint(3, 32), {"window": "A", "aisle": "C"}.get(a.get("seat_preference", ""), rng.choice("ABCDEF"))
    return {"booking_reference": "".join(rng.choice(string.ascii_uppercase) for _ in range(6)), "status": "confirmed",
            "flight_number": a["flight_number"], "date": a["date"], "passenger_name": a["passenger_name"],
            "seat": f"{row}{letter}", "price": round(rng.uniform(45, 320), 2), "currency": "EUR"}


def _book_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    d = dp(r["date"], c.lang, "del")
    return c.t(f"Booked: {r['passenger_name']} on {r['flight_number']} on {d}, seat {r['seat']}, {money(r['price'], 'en')}. "
               f"Booking reference {r['booking_reference']}.",
               f"Prenotazione confermata: {r['passenger_name']} sul volo {r['flight_number']} {d}, posto {r['seat']}, "
               f"{money(r['price'], 'it')}. Codice di prenotazione {r['booking_reference']}.")


book_flight = ToolSpec(
    name="book_flight", domain="travel",
    description="Book a seat on a specific flight.",
    parameters=obj({"flight_number": s("Flight number, e.g. AZ2041", pattern="^[A-Z0-9]{2}[0-9]{1,4}$"),
                    "date": date_param("Day of the flight"), "passenger_name": s("Full name as on the ID document"),
                    "seat_preference": enum("Preferred seat", list(SEATS))}, ["flight_number", "date", "passenger_name"]),
    sample=_book_sample, result=_book_result, answer=_book_answer,
    templates=T(["Book flight {flight_number} {date} for {passenger_name}.",
                 "Reserve a {seat_preference} seat on {flight_number} {date}, passenger {passenger_name}.",
                 "Please get {passenger_name} on flight {flight_number} {date}."],
                ["Prenota il volo {flight_number} {date} per {passenger_name}.",
                 "Prenota un posto lato {seat_preference} sul volo {flight_number} {date}, passeggero {passenger_name}.",
                 "Per favore metti {passenger_name} sul volo {flight_number} {date}."]),
    missing=[Missing("passenger_name", T(["Book flight {flight_number} {date}."], ["Prenota il volo {flight_number} {date}."]),
                     {"en": "Who is travelling? I need the passenger's full name as on their ID.",
                      "it": "Chi viaggia? Mi serve il nome completo del passeggero come sul documento."})],
)


def _hotel_sample(c: Ctx) -> dict[str, Val]:
    check_in = date_val(c.rng, c.today, 5, 60)
    check_out = date_val(c.rng, c.today, at=iso_date(check_in.value) + timedelta(days=c.rng.randint(1, 5)))
    adults, children = c.rng.randint(1, 3), c.rng.choice([0, 0, 1, 2])
    guests: dict[str, int] = {"adults": adults}
    en, it = f"{adults} adult{'s' if adults > 1 else ''}", f"{adults} adult{'i' if adults > 1 else 'o'}"
    if children:
        guests["children"] = children
        en += f" and {children} child{'ren' if children > 1 else ''}"
        it += f" e {children} bambin{'i' if children > 1 else 'o'}"
    cap = c.rng.choice([80, 100, 120, 150, 200])
    return {"city": city_val(c.rng, c.lang), "check_in": check_in, "check_out": check_out, "guests": Val(guests, L(en, it)),
            "max_price_per_night": Val(cap, L(money(cap, "en"), money(cap, "it")))}


HOTEL_NAMES = ["Hotel Centrale", "Albergo Duomo", "Grand Hotel Excelsior", "B&B La Corte", "Hotel Stazione", "Palazzo Verdi"]


def _hotel_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    nights = days_between(a["check_in"], a["check_out"])
    cap = a.get("max_price_per_night", 260)
    out = []
    for name in rng.sample(HOTEL_NAMES, 3):
        price = round(rng.uniform(55, cap), 2)
        out.append({"hotel_id": f"H{rng.randint(1000, 9999)}", "name": name, "stars": rng.randint(2, 5),
                    "price_per_night": price, "total_price": round(price * nights, 2), "rating": round(rng.uniform(7.0, 9.6), 1)})
    out.sort(key=lambda h: h["price_per_night"])
    return {"city": a["city"], "nights": nights, "currency": "EUR", "hotels": out}


def _hotel_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    lines = "\n".join(f"- {h['name']} ({h['stars']}★, {str(h['rating']) if c.lang == 'en' else str(h['rating']).replace('.', ',')}/10): "
                      f"{money(h['price_per_night'], c.lang)}{' a night' if c.lang == 'en' else ' a notte'}, "
                      f"{money(h['total_price'], c.lang)} {'in total' if c.lang == 'en' else 'in totale'}" for h in r["hotels"])
    n = r["nights"]
    return c.t(f"Hotels in {r['city']} for {n} night{'s' if n > 1 else ''}:\n{lines}",
               f"Hotel a {r['city']} per {n} nott{'i' if n > 1 else 'e'}:\n{lines}")


search_hotels = ToolSpec(
    name="search_hotels", domain="travel",
    description="Search hotel rooms in a city for given dates and guests.",
    parameters=obj({"city": s("City name"), "check_in": date_param("Arrival day"), "check_out": date_param("Departure day"),
                    "guests": obj({"adults": integer("Adults", minimum=1, maximum=8),
                                   "children": integer("Children under 12", minimum=0, maximum=6, default=0)},
                                  ["adults"], "Who is staying"),
                    "max_price_per_night": number("Highest price per night in euros", exclusiveMinimum=0)},
                   ["city", "check_in", "check_out", "guests"]),
    sample=_hotel_sample, result=_hotel_result, answer=_hotel_answer,
    templates=T(["Find a hotel in {city} {check_in:from} {check_out:to} for {guests}.",
                 "I need a room in {city} for {guests}, checking in {check_in:bare} and out {check_out:bare}, under {max_price_per_night} a night.",
                 "Hotels in {city} {check_in:from} {check_out:to}, {guests}, max {max_price_per_night} per night?"],
                ["Trova un hotel a {city} {check_in:from} {check_out:to} per {guests}.",
                 "Mi serve una camera a {city} per {guests}, arrivo {check_in} e partenza {check_out}, a meno di {max_price_per_night} a notte.",
                 "Hotel a {city} {check_in:from} {check_out:to}, {guests}, massimo {max_price_per_night} a notte?"]),
    missing=[Missing("check_out", T(["Find a hotel in {city} for {guests}, arriving {check_in:bare}."],
                                    ["Trova un hotel a {city} per {guests}, arrivo {check_in}."]),
                     {"en": "Until when will you stay? I need the check-out date.",
                      "it": "Fino a quando ti fermi? Mi serve la data di partenza."})],
)

STATIONS = ["Milano Centrale", "Roma Termini", "Napoli Centrale", "Torino Porta Nuova", "Firenze Santa Maria Novella",
            "Venezia Santa Lucia", "Bologna Centrale"]


def _train_sample(c: Ctx) -> dict[str, Val]:
    a, b = c.rng.sample(STATIONS, 2)
    return {"from_station": Val(a), "to_station": Val(b), "date": date_val(c.rng, c.today, 1, 30, relative=True),
            "departure_after": time_val(c.rng, 6, 19)}


def _train_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    start = int(a.get("departure_after", "06:00")[:2]) * 60 + int(a.get("departure_after", "06:00")[3:])
    dur = rng.randint(6, 36) * 10
    trains = []
    for k in range(3):
        dep = start + rng.randint(5, 40) + k * 60
        kind = rng.choice(["FR", "ITA", "IC"])
        trains.append({"train": f"{kind} {rng.randint(500, 9999)}", "departs": f"{dep // 60 % 24:02d}:{dep % 60:02d}",
                       "arrives": f"{(dep + dur) // 60 % 24:02d}:{(dep + dur) % 60:02d}", "duration_min": dur,
                       "price": round(rng.uniform(19.9, 99.9), 2)})
    return {"from_station": a["from_station"], "to_station": a["to_station"], "date": a["date"], "currency": "EUR",
            "trains": trains}


def _train_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    lines = "\n".join(f"- {t['train']}: {t['departs']} → {t['arrives']}, {money(t['price'], c.lang)}" for t in r["trains"])
    d = dp(r["date"], c.lang)
    return c.t(f"Trains from {r['from_station']} to {r['to_station']} on {d}:\n{lines}",
               f"Treni da {r['from_station']} a {r['to_station']} {d}:\n{lines}")


get_train_schedule = ToolSpec(
    name="get_train_schedule", domain="travel",
    description="Train departures between two Italian stations on a given day.",
    parameters=obj({"from_station": s("Departure station, e.g. Milano Centrale"), "to_station": s("Arrival station"),
                    "date": date_param("Day of travel"), "departure_after": time_param("Earliest departure time")},
                   ["from_station", "to_station", "date"]),
    sample=_train_sample, result=_train_result, answer=_train_answer,
    templates=T(["Trains from {from_station} to {to_station} {date}?",
                 "Show me trains from {from_station} to {to_station} {date}, {departure_after:after}.",
                 "When are the trains {from_station} → {to_station} {date}?"],
                ["Treni da {from_station} a {to_station} {date}?",
                 "Mostrami i treni da {from_station} a {to_station} {date}, {departure_after:after}.",
                 "A che ora ci sono treni {from_station} → {to_station} {date}?"]),
    missing=[Missing("to_station", T(["What trains leave {from_station} {date}?"], ["Che treni partono da {from_station} {date}?"]),
                     {"en": "Where are you headed? Tell me the arrival station.",
                      "it": "Dove sei diretto? Dimmi la stazione di arrivo."})],
)
CAR_CLASSES = {"economy": L("an economy car", "un'utilitaria"), "compact": L("a compact car", "un'auto compatta"),
               "suv": L("an SUV", "un SUV"), "van": L("a van", "un furgone")}


def _car_sample(c: Ctx) -> dict[str, Val]:
    pickup = date_val(c.rng, c.today, 3, 45)
    ret = date_val(c.rng, c.today, at=iso_date(pickup.value) + timedelta(days=c.rng.randint(1, 10)))
    cls = pick(c.rng, list(CAR_CLASSES))
    return {"city": city_val(c.rng, c.lang), "pickup_date": pickup, "return_date": ret, "car_class": Val(cls, CAR_CLASSES[cls]),
            "automatic": Val(True, L("with automatic transmission", "con cambio automatico"))}


def _car_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    days = max(1, days_between(a["pickup_date"], a["return_date"]))
    rate = {"economy": 29, "compact": 38, "suv": 65, "van": 80}[a["car_class"]] * rng.uniform(0.85, 1.3) + (
        8 if a.get("automatic") else 0)
    return {"reservation_id": f"CAR-{rng.randint(100000, 999999)}", "company": pick(rng, ["Europcar", "Hertz", "Sixt", "Avis"]),
            "days": days, "daily_rate": round(rate, 2), "total": round(rate * days, 2), "currency": "EUR"}


def _car_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    return c.t(f"Reserved with {r['company']} (reservation {r['reservation_id']}): {r['days']} days at "
               f"{money(r['daily_rate'], 'en')} a day, {money(r['total'], 'en')} in total.",
               f"Prenotato con {r['company']} (prenotazione {r['reservation_id']}): {r['days']} giorni a "
               f"{money(r['daily_rate'], 'it')} al giorno, {money(r['total'], 'it')} in totale.")


rent_car = ToolSpec(
    name="rent_car", domain="travel",
    description="Reserve a rental car.",
    parameters=obj({"city": s("Pick-up city"), "pickup_date": date_param("Pick-up day"), "return_date": date_param("Return day"),
                    "car_class": enum("Vehicle class", list(CAR_CLASSES)),
                    "automatic": boolean("Automatic transmission required", False)},
                   ["city", "pickup_date", "return_date", "car_class"]),
    sample=_car_sample, result=_car_result, answer=_car_answer,
    templates=T(["Rent {car_class} in {city} {pickup_date:from} {return_date:to}.",
                 "I need {car_class} {automatic} in {city} {pickup_date:from} {return_date:to}.",
                 "Car hire in {city}: {car_class}, pick-up {pickup_date:bare}, return {return_date:bare}."],
                ["Noleggia {car_class} a {city} {pickup_date:from} {return_date:to}.",
                 "Mi serve {car_class} {automatic} a {city} {pickup_date:from} {return_date:to}.",
                 "Noleggio auto a {city}: {car_class}, ritiro {pickup_date}, riconsegna {return_date}."]),
    missing=[Missing("car_class", T(["Rent a car in {city} {pickup_date:from} {return_date:to}."],
                                    ["Noleggia un'auto a {city} {pickup_date:from} {return_date:to}."]),
                     {"en": "What kind of car would you like: economy, compact, SUV or van?",
                      "it": "Che tipo di auto preferisci: utilitaria, compatta, SUV o furgone?"})],
)

TOOLS = [get_current_weather, get_forecast, get_air_quality, get_weather_alerts,
         create_event, list_events, cancel_event, find_free_slot,
         search_flights, book_flight, search_hotels, get_train_schedule, rent_car]
