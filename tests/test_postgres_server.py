"""The PostgreSQL fixtures: a live server, and a fresh database for each test."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests._postgres import drop_database, fresh_database

pytestmark = pytest.mark.postgres

FACTS = """
    SELECT version(), current_database(),
           (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname NOT LIKE 'pg_toast%')
"""


def _facts(url: str) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(FACTS).fetchone()
    assert row is not None
    return row


def test_fresh_databases_are_distinct_empty_and_dropped_on_a_live_server(
    postgres_admin_url: str, postgres_url: str
) -> None:
    other = fresh_database(postgres_admin_url)
    try:
        version, name, relations = _facts(postgres_url)
        _, other_name, other_relations = _facts(other)
        assert version.startswith("PostgreSQL ")
        assert name != other_name
        assert relations == other_relations == 0
    finally:
        drop_database(postgres_admin_url, other)
    with psycopg.connect(postgres_admin_url) as conn:
        names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert name in names
    assert other_name not in names
