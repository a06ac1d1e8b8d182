"""Current date and time in a time zone, from the IANA database (zoneinfo; the tzdata package where the system
has none). City names resolve to their zone ("Tokyo" -> Asia/Tokyo, "Milano" -> Europe/Rome)."""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo

from nesso.agent import tool

# Places whose zone is not named after them (Italian exonyms, countries, big cities without their own zone).
_ALIASES = {
    "roma": "Europe/Rome", "rome": "Europe/Rome", "milano": "Europe/Rome", "milan": "Europe/Rome",
    "napoli": "Europe/Rome", "torino": "Europe/Rome", "firenze": "Europe/Rome", "venezia": "Europe/Rome",
    "bologna": "Europe/Rome", "palermo": "Europe/Rome", "italia": "Europe/Rome", "italy": "Europe/Rome",
    "londra": "Europe/London", "parigi": "Europe/Paris", "berlino": "Europe/Berlin", "mosca": "Europe/Moscow",
    "atene": "Europe/Athens", "lisbona": "Europe/Lisbon", "varsavia": "Europe/Warsaw", "vienna": "Europe/Vienna",
    "pechino": "Asia/Shanghai", "beijing": "Asia/Shanghai", "nuova delhi": "Asia/Kolkata", "new delhi": "Asia/Kolkata",
    "delhi": "Asia/Kolkata", "mumbai": "Asia/Kolkata", "san francisco": "America/Los_Angeles",
    "los angeles": "America/Los_Angeles", "seattle": "America/Los_Angeles", "boston": "America/New_York",
    "washington": "America/New_York", "miami": "America/New_York", "san paolo": "America/Sao_Paulo",
    "città del messico": "America/Mexico_City", "mexico city": "America/Mexico_City", "il cairo": "Africa/Cairo",
    "cairo": "Africa/Cairo", "sydney": "Australia/Sydney", "tokio": "Asia/Tokyo", "seul": "Asia/Seoul",
    "utc": "UTC", "gmt": "UTC",
}
WEEKDAYS_EN = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
WEEKDAYS_IT = ["lunedì", "martedì", "mercoledì", "giovedì", "venerdì", "sabato", "domenica"]
MONTHS_EN = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December"]
MONTHS_IT = ["gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto", "settembre", "ottobre",
             "novembre", "dicembre"]


@functools.cache
def _zones_by_city() -> dict[str, str]:
    """Lower-case IANA names ("europe/rome") and city names ("rome", "new york") -> the IANA name."""
    table = {}
    for zone in sorted(zoneinfo.available_timezones()):
        table[zone.lower()] = zone
        city = zone.rsplit("/", 1)[-1].replace("_", " ").lower()
        table.setdefault(city, zone)
    return table


def resolve_zone(name: str) -> zoneinfo.ZoneInfo:
    key = " ".join(name.strip().split())
    if not key:
        raise ValueError("empty time zone")
    try:
        return zoneinfo.ZoneInfo(key)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
        pass
    low = key.lower()
    zone = _ALIASES.get(low) or _zones_by_city().get(low) or _zones_by_city().get(low.replace("-", " "))
    if zone is None:
        shown = name if len(name) <= 64 else name[:60] + "…"
        raise ValueError(f"unknown time zone or city {shown!r}; use an IANA name like Europe/Rome or Asia/Tokyo")
    return zoneinfo.ZoneInfo(zone)


@tool
def get_current_time(timezone: str = "UTC") -> dict:
    """Current date and time in a time zone or city.

    Args:
        timezone: IANA time zone (Europe/Rome, Asia/Tokyo, America/New_York) or a city name (Tokyo, Milano).
    """
    return describe_time(dt.datetime.now(resolve_zone(timezone)))


def describe_time(now: dt.datetime) -> dict:
    """What get_current_time returns for the zone-aware instant ``now`` (also the dataset generator's results)."""
    return {"timezone": now.tzinfo.key, "datetime": now.isoformat(timespec="seconds"), "date": now.date().isoformat(),
            "time": now.strftime("%H:%M"), "weekday": WEEKDAYS_EN[now.weekday()],
            "weekday_it": WEEKDAYS_IT[now.weekday()], "month": MONTHS_EN[now.month - 1],
            "month_it": MONTHS_IT[now.month - 1], "utc_offset": now.strftime("%z")}
