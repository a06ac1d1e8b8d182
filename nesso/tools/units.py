"""Unit conversion over explicit factor tables (SI base per quantity); English and Italian unit names."""

from __future__ import annotations

import math

from nesso.agent import tool

# quantity -> unit -> factor to the base unit; names and symbols, English and Italian.
_TABLES: dict[str, dict[str, float]] = {
    "length": {"m": 1, "meter": 1, "metre": 1, "metro": 1, "km": 1000, "kilometer": 1000, "kilometre": 1000,
               "chilometro": 1000, "cm": 0.01, "centimeter": 0.01, "centimetro": 0.01, "mm": 0.001,
               "millimeter": 0.001, "millimetro": 0.001, "mi": 1609.344, "mile": 1609.344, "miglio": 1609.344,
               "yd": 0.9144, "yard": 0.9144, "ft": 0.3048, "foot": 0.3048, "feet": 0.3048, "piede": 0.3048,
               "in": 0.0254, "inch": 0.0254, "pollice": 0.0254, "nmi": 1852, "nautical mile": 1852,
               "miglio nautico": 1852},
    "mass": {"kg": 1, "kilogram": 1, "chilogrammo": 1, "chilo": 1, "g": 0.001, "gram": 0.001, "grammo": 0.001,
             "hg": 0.1, "hectogram": 0.1, "etto": 0.1,
             "mg": 1e-6, "milligram": 1e-6, "milligrammo": 1e-6, "t": 1000, "tonne": 1000, "tonnellata": 1000,
             "lb": 0.45359237, "pound": 0.45359237, "libbra": 0.45359237, "oz": 0.028349523125,
             "ounce": 0.028349523125, "oncia": 0.028349523125},
    "volume": {"l": 1, "liter": 1, "litre": 1, "litro": 1, "ml": 0.001, "milliliter": 0.001, "millilitro": 0.001,
               "cl": 0.01, "centilitro": 0.01, "m3": 1000, "cubic meter": 1000, "metro cubo": 1000,
               "gal": 3.785411784, "gallon": 3.785411784, "gallone": 3.785411784, "cup": 0.2365882365,
               "tazza": 0.2365882365, "fl oz": 0.0295735295625},
    "speed": {"m/s": 1, "km/h": 1 / 3.6, "kmh": 1 / 3.6, "mph": 0.44704, "knot": 0.514444, "nodo": 0.514444},
    "time": {"s": 1, "second": 1, "secondo": 1, "min": 60, "minute": 60, "minuto": 60, "h": 3600, "hour": 3600,
             "ora": 3600, "day": 86400, "giorno": 86400, "week": 604800, "settimana": 604800},
    "data": {"b": 1, "byte": 1, "kb": 1e3, "kilobyte": 1e3, "mb": 1e6, "megabyte": 1e6, "gb": 1e9,
             "gigabyte": 1e9, "tb": 1e12, "terabyte": 1e12, "kib": 1024, "mib": 1024**2, "gib": 1024**3},
    "area": {"m2": 1, "square meter": 1, "metro quadro": 1, "km2": 1e6, "ha": 1e4, "hectare": 1e4, "ettaro": 1e4,
             "acre": 4046.8564224, "acro": 4046.8564224, "ft2": 0.09290304, "square foot": 0.09290304},
}
_TEMPERATURE = {"c": "C", "celsius": "C", "°c": "C", "gradi celsius": "C", "f": "F", "fahrenheit": "F",
                "°f": "F", "k": "K", "kelvin": "K"}
_PLURALS = {"metri": "metro", "chilometri": "chilometro", "centimetri": "centimetro", "millimetri": "millimetro",
            "miglia": "miglio", "piedi": "piede", "pollici": "pollice", "chili": "chilo", "grammi": "grammo", "etti": "etto",
            "chilogrammi": "chilogrammo", "libbre": "libbra", "once": "oncia", "litri": "litro",
            "millilitri": "millilitro", "galloni": "gallone", "tazze": "tazza", "nodi": "nodo", "secondi": "secondo",
            "minuti": "minuto", "ore": "ora", "giorni": "giorno", "settimane": "settimana", "tonnellate": "tonnellata",
            "ettari": "ettaro", "acri": "acro"}


def _normalize(unit: str) -> str:
    u = " ".join(unit.strip().lower().split())
    u = _PLURALS.get(u, u)
    if u not in _TEMPERATURE and not any(u in t for t in _TABLES.values()) and u.endswith("s"):
        u = u[:-1]  # English plural
    return {"feet": "foot"}.get(u, u)


def convert(value: float, from_unit: str, to_unit: str) -> float:
    a, b = _normalize(from_unit), _normalize(to_unit)
    if a in _TEMPERATURE or b in _TEMPERATURE:
        if a not in _TEMPERATURE or b not in _TEMPERATURE:
            raise ValueError(f"cannot convert {from_unit!r} to {to_unit!r}: only temperatures convert to temperatures")
        celsius = {"C": value, "F": (value - 32) * 5 / 9, "K": value - 273.15}[_TEMPERATURE[a]]
        return {"C": celsius, "F": celsius * 9 / 5 + 32, "K": celsius + 273.15}[_TEMPERATURE[b]]
    for table in _TABLES.values():
        if a in table and b in table:
            return value * table[a] / table[b]
    known = [u for u in (a, b) if not any(u in t for t in _TABLES.values())]
    if known:
        raise ValueError(f"unknown unit {known[0]!r}")
    raise ValueError(f"cannot convert {from_unit!r} to {to_unit!r}: different quantities")


@tool
def convert_units(value: float, from_unit: str, to_unit: str) -> dict:
    """Convert a quantity between units of length, mass, volume, speed, time, data, area or temperature.

    Args:
        value: The amount to convert.
        from_unit: Unit of the amount, e.g. km, mi, kg, lb, l, gal, km/h, mph, C, F, GB (English or Italian names).
        to_unit: Unit to convert to.
    """
    result = convert(value, from_unit, to_unit)
    if not (math.isfinite(value) and math.isfinite(result)):  # inf and NaN are not JSON
        raise ValueError(f"{value:g} {from_unit} is out of range for a conversion")
    return {"value": value, "from_unit": from_unit, "to_unit": to_unit, "result": round(result, 6)}
