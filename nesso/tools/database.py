"""A local SQLite database tool. Queries run on a connection opened read-only (``mode=ro``), so no statement can
change the file, whatever its text. nesso ships a small bilingual shop database to try it on."""

from __future__ import annotations

import datetime as dt
import os
import random
import sqlite3
import time
from pathlib import Path

from nesso.agent import Tool, tool

MAX_ROWS, MAX_SECONDS = 50, 2.0


def nesso_home() -> Path:
    return Path(os.environ.get("NESSO_HOME", Path.home() / ".cache" / "nesso"))


def demo_database_path() -> Path:
    return nesso_home() / "demo_shop.sqlite"


_CUSTOMERS = [("Giulia Bianchi", "Milano", "IT"), ("Marco Rossi", "Roma", "IT"), ("Sofia Esposito", "Napoli", "IT"),
              ("Luca Romano", "Torino", "IT"), ("Chiara Ricci", "Bologna", "IT"), ("Alice Smith", "London", "GB"),
              ("John Miller", "New York", "US"), ("Emma Brown", "Dublin", "IE"), ("Paolo Conti", "Firenze", "IT"),
              ("Olivia Wilson", "Sydney", "AU")]
_PRODUCTS = [("Espresso coffee beans 1kg", "Caffè in grani 1kg", "food", 18.9),
             ("Extra virgin olive oil 1l", "Olio extravergine d'oliva 1l", "food", 12.5),
             ("Moka pot 6 cups", "Moka 6 tazze", "kitchen", 34.0),
             ("Parmigiano Reggiano 500g", "Parmigiano Reggiano 500g", "food", 14.75),
             ("Linen tablecloth", "Tovaglia di lino", "home", 49.0),
             ("Ceramic espresso cups (set of 6)", "Tazzine da caffè in ceramica (6)", "kitchen", 22.0),
             ("Balsamic vinegar of Modena", "Aceto balsamico di Modena", "food", 9.9),
             ("Wireless headphones", "Cuffie senza fili", "electronics", 89.0),
             ("USB-C charger 65W", "Caricatore USB-C 65W", "electronics", 29.9),
             ("Hiking backpack 30l", "Zaino da escursionismo 30l", "outdoor", 64.5)]
_SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL, country TEXT NOT NULL);
CREATE TABLE products (id INTEGER PRIMARY KEY, name_en TEXT NOT NULL, name_it TEXT NOT NULL,
                       category TEXT NOT NULL, price_eur REAL NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
                     order_date TEXT NOT NULL, status TEXT NOT NULL);
CREATE TABLE order_items (order_id INTEGER NOT NULL REFERENCES orders(id),
                          product_id INTEGER NOT NULL REFERENCES products(id), quantity INTEGER NOT NULL);
"""


def create_demo_database(path: Path | None = None, seed: int = 7) -> Path:
    """Build the demo shop (10 customers, 10 products, ~120 orders in 2026) deterministically; atomic."""
    path = Path(path or demo_database_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    rng = random.Random(seed)
    con = sqlite3.connect(tmp)
    with con:
        con.executescript(_SCHEMA)
        con.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", [(i + 1, *c) for i, c in enumerate(_CUSTOMERS)])
        con.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?)", [(i + 1, *p) for i, p in enumerate(_PRODUCTS)])
        order_id = 0
        for day in range(0, 330, 3):
            date = dt.date(2026, 1, 1) + dt.timedelta(days=day)
            for _ in range(rng.choice((0, 1, 1, 2))):
                order_id += 1
                status = rng.choice(["delivered", "delivered", "delivered", "shipped", "cancelled"])
                con.execute("INSERT INTO orders VALUES (?, ?, ?, ?)",
                            (order_id, rng.randint(1, len(_CUSTOMERS)), date.isoformat(), status))
                for product in rng.sample(range(1, len(_PRODUCTS) + 1), rng.randint(1, 3)):
                    con.execute("INSERT INTO order_items VALUES (?, ?, ?)", (order_id, product, rng.randint(1, 4)))
    con.close()
    os.replace(tmp, path)
    return path


def _connect_read_only(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise FileNotFoundError(f"database {path} does not exist")
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0)
    deadline = time.monotonic() + MAX_SECONDS
    con.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)  # aborts runaway queries
    return con


def describe(path: Path) -> dict:
    with _connect_read_only(path) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        out = {}
        for t in tables:
            cols = con.execute(f'PRAGMA table_info("{t}")').fetchall()
            count = con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]
            out[t] = {"columns": {c[1]: c[2] for c in cols}, "rows": count}
    con.close()
    return {"database": path.name, "tables": out}


def query(path: Path, sql: str) -> dict:
    con = _connect_read_only(path)
    try:
        cur = con.execute(sql)
        columns = [d[0] for d in cur.description or []]
        rows = cur.fetchmany(MAX_ROWS + 1)
    except sqlite3.OperationalError as e:
        if "interrupted" in str(e):
            raise TimeoutError(f"query took longer than {MAX_SECONDS:g} s") from None
        raise
    finally:
        con.close()
    truncated = len(rows) > MAX_ROWS
    return {"columns": columns, "rows": [list(r) for r in rows[:MAX_ROWS]], "truncated": truncated}


def database_tools(path: str | Path | None = None) -> list[Tool]:
    """The two database tools bound to one SQLite file (the demo shop, created on first use, by default)."""
    db = Path(path) if path else demo_database_path()
    if path is None and not db.is_file():
        create_demo_database(db)

    @tool
    def list_tables() -> dict:
        """List the tables of the shop database with their columns and row counts."""
        return describe(db)

    @tool
    def query_database(sql: str) -> dict:
        """Run one read-only SQL query (SQLite dialect) on the shop database and return up to 50 rows.

        Args:
            sql: A SELECT statement, e.g. SELECT COUNT(*) FROM orders WHERE order_date LIKE '2026-03-%'.
        """
        return query(db, sql)

    return [list_tables, query_database]
