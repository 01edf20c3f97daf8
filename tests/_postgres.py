"""Fresh databases on the test PostgreSQL server (see ``postgres_server`` in
tests/_servers.py): one per test, so tests share the server but no state."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

TEST_DATABASE_PREFIX = "rivers_test_"


def _database_url(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def fresh_database(admin_url: str) -> str:
    """Create an empty database with a unique name; return its URL (the admin's
    host, port and user)."""
    name = f"{TEST_DATABASE_PREFIX}{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _database_url(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    """Drop a database made by ``fresh_database``, ending any session still in it."""
    name = urlsplit(url).path.removeprefix("/")
    if not name.startswith(TEST_DATABASE_PREFIX):
        raise ValueError(f"{url!r} is not a test database; it stays")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        # FORCE (PostgreSQL 13+) terminates the database's backends before the drop.
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            )
        )
