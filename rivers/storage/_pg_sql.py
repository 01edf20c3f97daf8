"""The SQL every backend shares, as PostgreSQL reads it.

The role objects (runs, events, pools, queue, processes, dashboard) are written
once, as functions of a DB-API connection with SQLite's ``?`` placeholders; the
PostgreSQL backend hands them ``PgSql``, which rewrites each statement once (and
caches it) into PostgreSQL's dialect. The rewrites are few and exact:

| SQLite | PostgreSQL |
|---|---|
| ``?`` placeholders (``%`` literal) | ``%s`` (``%%``) |
| ``MAX(a, b)`` / ``MIN(a, b)`` (two arguments) | ``GREATEST`` / ``LEAST`` |
| ``substr(col, -n)`` | ``right(col, n)`` |
| ``json_extract(col, '$.key')`` | ``(col::json ->> 'key')`` |
| ``+kind`` (SQLite: keep the planner off an index) | ``kind`` |
| ``CROSS JOIN t ON`` (SQLite: keep this join order) | ``JOIN t ON`` |
| ``INDEXED BY i`` (SQLite: use this index) | (the planner's choice) |
| ``IN ()`` (an empty list) | ``IN (SELECT NULL WHERE FALSE)`` |
| ``PRAGMA query_only = ON`` | a read-only session |
| ``PRAGMA page_count / page_size / auto_vacuum / freelist_count`` | the database size / 1 / 0 / 0 |

Everything else in the shared SQL is standard (upserts with ``ON CONFLICT``,
``RETURNING``, ``FILTER``, row values), and ``runs.rowid`` is a real column on
PostgreSQL. ``SUM`` of integers (``numeric`` there) comes back as an ``int``, and
``bytes`` (msgspec's JSON) goes in as text.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from psycopg.adapt import Dumper, Loader

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    import psycopg

__all__ = ("PgSql", "READ_ONLY_PRAGMA", "register_loaders", "translate")

READ_ONLY_PRAGMA = "PRAGMA query_only = ON"

_PRAGMAS = {
    "PRAGMA page_count": "SELECT pg_database_size(current_database())",
    "PRAGMA page_size": "SELECT 1",
    "PRAGMA auto_vacuum": "SELECT 0",  # PostgreSQL's autovacuum returns the space
    "PRAGMA freelist_count": "SELECT 0",
    READ_ONLY_PRAGMA: "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
}
_TWO_ARGUMENTS = re.compile(r"\b(MAX|MIN)\(([^(),]+),([^()]+)\)")
_TAIL = re.compile(r"substr\((\w+), -(\?|\d+)\)")
_EMPTY = "IN (SELECT NULL WHERE FALSE)"  # SQLite's ``IN ()``: PostgreSQL has none
_UNARY_PLUS = re.compile(r"(?<=[\s(])\+(?=[a-z_])")
_CROSS_JOIN = re.compile(r"CROSS JOIN (\w+(?: \w+)?) ON")
_INDEXED_BY = re.compile(r"INDEXED BY \w+ ")
_JSON_KEY = re.compile(r"json_extract\((\w+), '\$\.(\w+)'\)")


@lru_cache(maxsize=1024)
def translate(sql: str, *, params: bool = True) -> str:
    """``sql`` (SQLite's dialect, ``?`` placeholders) as PostgreSQL reads it
    (``params``: it is sent with parameters, so a literal ``%`` is doubled)."""
    pragma = _PRAGMAS.get(sql.strip())
    if pragma is not None:
        return pragma
    sql = _TWO_ARGUMENTS.sub(
        lambda m: f"{'GREATEST' if m[1] == 'MAX' else 'LEAST'}({m[2]},{m[3]})", sql
    )
    sql = _TAIL.sub(r"right(\1, \2)", sql).replace("IN ()", _EMPTY)
    sql = _JSON_KEY.sub(r"(\1::json ->> '\2')", sql)
    sql = _INDEXED_BY.sub("", _CROSS_JOIN.sub(r"JOIN \1 ON", sql))
    sql = _UNARY_PLUS.sub("", sql)
    if params:
        sql = sql.replace("%", "%%").replace("?", "%s")
    return sql


class PgSql:
    """A psycopg connection as the shared SQL expects a connection to be:
    ``execute`` and ``executemany`` with ``?`` placeholders, returning a cursor."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn
        self.read_only = False  # asked to refuse writes (kept on reconnecting)

    def execute(
        self, sql: str, params: Sequence[Any] | None = None
    ) -> psycopg.Cursor[Any]:
        """Run one statement; return its cursor (rows, ``rowcount``)."""
        if not params:
            if sql == READ_ONLY_PRAGMA:
                self.read_only = True
            return self.raw.execute(translate(sql, params=False))
        return self.raw.execute(translate(sql), params)

    def executemany(
        self, sql: str, seq: Iterable[Sequence[Any]]
    ) -> psycopg.Cursor[Any]:
        """Run one statement for each parameter row (pipelined by psycopg)."""
        rows = list(seq)
        cursor = self.raw.cursor()
        if rows:
            cursor.executemany(translate(sql), rows)
        return cursor


class _NumberLoader(Loader):
    """``numeric`` (what ``SUM`` of integers gives) as an int when whole."""

    def load(self, data: Any) -> int | float:
        text = bytes(data)
        try:
            return int(text)
        except ValueError:
            return float(text)


class _JsonBytesDumper(Dumper):
    """``bytes`` (msgspec's JSON) as text: the shared schema keeps JSON in TEXT."""

    def dump(self, obj: Any) -> bytes:
        return bytes(obj)


def register_loaders(conn: psycopg.Connection[Any]) -> None:
    """Make ``conn`` return Python numbers for ``numeric`` (never ``Decimal``) and
    send ``bytes`` (JSON) as text."""
    conn.adapters.register_loader("numeric", _NumberLoader)
    _JsonBytesDumper.oid = conn.adapters.types["text"].oid
    conn.adapters.register_dumper(bytes, _JsonBytesDumper)
