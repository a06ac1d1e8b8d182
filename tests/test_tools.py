"""The tools nesso ships: real computations and real data, with clear errors."""

import datetime as dt
import sqlite3

import pytest

from nesso.tools.calculator import CalcError, calculator, evaluate
from nesso.tools.clock import get_current_time, resolve_zone
from nesso.tools.database import create_demo_database, database_tools, query
from nesso.tools.units import convert, convert_units


@pytest.mark.parametrize("expr,value", [
    ("2+2", 4), ("(12.5 + 7) * 3", 58.5), ("2^10", 1024), ("17.5 / 100 * 2340", 409.5), ("-3 ** 2", -9),
    ("sqrt(16) + abs(-2)", 6.0), ("round(pi, 3)", 3.142), ("10 // 3 + 10 % 3", 4), ("max(1, 5, 3)", 5),
])
def test_calculator_values(expr, value):
    assert evaluate(expr) == pytest.approx(value)


@pytest.mark.parametrize("expr,message", [
    ("__import__('os').system('echo hi')", "unsupported element"),
    ("open('/etc/passwd')", "unsupported element"),
    ("2 ** 100000", "exponent 100000 is too large"),
    ("1/0", "division by zero"),
    ("2 +", "cannot parse"),
    ("", "empty expression"),
    ("x + 1", "unsupported element 'x'"),
    ("sqrt(-1)", "sqrt: math domain error"),
    ("1e309", "result out of range"),  # inf, which is not JSON
    ("1e308 * 10 - 1e308 * 10", "result out of range"),  # inf - inf: NaN
    ("10.0 ** 400", "result out of range"),  # OverflowError, in the calculator's words
    ("exp(1000)", "exp: result out of range"),
])
def test_calculator_rejects_everything_but_arithmetic(expr, message):
    with pytest.raises(CalcError, match=message):
        evaluate(expr)


def test_calculator_tool_returns_integers_when_exact():
    assert calculator(expression="6 * 7") == {"expression": "6 * 7", "result": 42}


@pytest.mark.parametrize("value,a,b,expected", [
    (26.2, "miglia", "km", 42.16481), (100, "C", "F", 212), (0, "K", "C", -273.15), (1, "gal", "l", 3.785411784),
    (5, "libbre", "chilogrammi", 2.26796185), (3, "etti", "grammi", 300), (1, "GB", "MB", 1000), (90, "km/h", "m/s", 25), (3, "feet", "inch", 36),
])
def test_unit_conversions(value, a, b, expected):
    assert convert(value, a, b) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("a,b,message", [("km", "kg", "different quantities"), ("C", "m", "only temperatures"),
                                         ("furlongs per fortnight", "m", "unknown unit")])
def test_unit_errors(a, b, message):
    with pytest.raises(ValueError, match=message):
        convert(1, a, b)
    assert convert_units(value=2, from_unit="km", to_unit="m")["result"] == 2000
    for value in (1e308, float("nan"), float("inf")):  # results that JSON cannot carry
        with pytest.raises(ValueError, match="out of range"):
            convert_units(value=value, from_unit="km", to_unit="mm")


@pytest.mark.parametrize("name,zone", [("Tokyo", "Asia/Tokyo"), ("Europe/Rome", "Europe/Rome"), ("Milano", "Europe/Rome"),
                                       ("new york", "America/New_York"), ("Parigi", "Europe/Paris"), ("utc", "UTC"),
                                       ("europe/rome", "Europe/Rome"), ("america/new_york", "America/New_York")])
def test_time_zones_resolve(name, zone):
    assert resolve_zone(name).key == zone


def test_current_time_is_real():
    out = get_current_time(timezone="Asia/Tokyo")
    now = dt.datetime.fromisoformat(out["datetime"])
    assert abs((now - dt.datetime.now(dt.UTC)).total_seconds()) < 120
    assert out["utc_offset"] == "+0900" and out["weekday_it"] in {"lunedì", "martedì", "mercoledì", "giovedì",
                                                                   "venerdì", "sabato", "domenica"}
    local = now.astimezone(dt.timezone(dt.timedelta(hours=9)))
    assert out["month"] == local.strftime("%B") and out["month_it"] == ["gennaio", "febbraio", "marzo", "aprile",
        "maggio", "giugno", "luglio", "agosto", "settembre", "ottobre", "novembre", "dicembre"][local.month - 1]
    with pytest.raises(ValueError, match="unknown time zone or city 'Atlantide'"):
        get_current_time(timezone="Atlantide")
    with pytest.raises(ValueError, match="unknown time zone or city 'aaaa.*…'"):  # too long for a file name
        get_current_time(timezone="a" * 5000)


@pytest.fixture
def shop(tmp_path):
    return create_demo_database(tmp_path / "shop.sqlite")


def test_demo_database_is_deterministic_and_answers_questions(shop, tmp_path):
    again = create_demo_database(tmp_path / "again.sqlite")
    sql = "SELECT COUNT(*) FROM orders o JOIN customers c ON c.id = o.customer_id " \
          "WHERE c.name LIKE 'Giulia%' AND o.order_date LIKE '2026-03-%'"
    assert query(shop, sql) == query(again, sql)
    assert query(shop, sql)["rows"][0][0] >= 1
    list_tables, query_database = database_tools(shop)
    tables = list_tables()["tables"]
    assert set(tables) == {"customers", "products", "orders", "order_items"}
    assert tables["customers"]["rows"] == 10


@pytest.mark.parametrize("sql", [
    "INSERT INTO customers VALUES (99, 'Eve', 'X', 'IT')",
    "DELETE FROM orders",
    "DROP TABLE customers",
    "UPDATE products SET price_eur = 0",
    "CREATE TABLE evil (x)",
    "PRAGMA user_version = 5",
])
def test_database_is_read_only_by_connection_mode(shop, sql):
    before = shop.read_bytes()
    _, query_database = database_tools(shop)
    with pytest.raises(sqlite3.OperationalError, match="readonly|read-only|attempt to write"):
        query_database(sql=sql)
    assert shop.read_bytes() == before


def test_database_limits_rows_and_reports_sql_errors(shop):
    out = query(shop, "SELECT * FROM order_items")
    assert len(out["rows"]) == 50 and out["truncated"] is True
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        query(shop, "SELECT * FROM nope")


def test_runaway_query_is_stopped(shop):
    slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c"
    with pytest.raises(TimeoutError, match="longer than"):
        query(shop, slow)
