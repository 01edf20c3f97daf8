"""The PostgreSQL schema and its migrations.

The tables are SQLite's (``schema.py``) at its version 11, in PostgreSQL's types:
``DOUBLE PRECISION`` epoch seconds, ``BIGINT`` integers, and ``runs.rowid`` a
real identity column (the queue reads new runs by it). ``rivers_meta`` marks the
database as rivers' and holds the schema version, so a database holding another
application's ``runs`` table is refused, not altered, and a database written by a
newer rivers is refused with ``MigrationError``. Triggers keep ``run_counts`` (as on
SQLite) and wake every runtime's queue coordinators (``QUEUE_WAKEUPS``, through
NOTIFY) when runs are queued or one finishes. Migrations run in one transaction
holding an advisory lock, so processes opening a new database at once apply them
exactly once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rivers._wakeups import QUEUE_WAKEUPS
from rivers.errors import MigrationError, StorageUnavailable
from rivers.storage._pg_wakes import channel

if TYPE_CHECKING:
    import psycopg

__all__ = ("MIGRATIONS", "SCHEMA_VERSION", "migrate")

MIGRATE_LOCK = 0x72697673_00000001
"""The advisory lock held while the schema is checked and migrated."""

MIGRATIONS: tuple[str, ...] = (
    # 1: SQLite's schema 11, in PostgreSQL's types.
    """
    CREATE TABLE runs (
        run_id      TEXT PRIMARY KEY,
        rowid       BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
        status      TEXT NOT NULL,
        repository  TEXT NOT NULL,
        location    TEXT,
        selection   TEXT,
        tags        TEXT NOT NULL,
        priority    BIGINT NOT NULL DEFAULT 0,
        run_key     TEXT,
        created_at  DOUBLE PRECISION NOT NULL,
        started_at  DOUBLE PRECISION,
        ended_at    DOUBLE PRECISION,
        reason      TEXT,
        owner       TEXT,
        fingerprint TEXT
    );
    CREATE INDEX runs_by_status ON runs (status, priority DESC, created_at);
    CREATE INDEX runs_by_owner ON runs (owner, status);
    CREATE UNIQUE INDEX runs_by_key ON runs (run_key) WHERE run_key IS NOT NULL;
    CREATE INDEX runs_by_status_created ON runs (status, created_at, run_id);
    CREATE INDEX runs_by_created ON runs (created_at, run_id);
    CREATE INDEX runs_by_id_tail ON runs (right(run_id, 4));
    CREATE INDEX runs_queued ON runs (rowid) WHERE status = 'QUEUED';

    CREATE TABLE run_tags (
        run_id      TEXT NOT NULL,
        key         TEXT NOT NULL,
        value       TEXT NOT NULL,
        created_at  DOUBLE PRECISION,
        PRIMARY KEY (run_id, key)
    );
    CREATE INDEX run_tags_by_tag_created ON run_tags (key, value, created_at);

    CREATE TABLE steps (
        run_id      TEXT NOT NULL,
        step_key    TEXT NOT NULL,
        status      TEXT NOT NULL,
        attempts    BIGINT NOT NULL DEFAULT 0,
        started_at  DOUBLE PRECISION,
        ended_at    DOUBLE PRECISION,
        error       TEXT,
        worker      TEXT,
        PRIMARY KEY (run_id, step_key)
    );

    CREATE TABLE events (
        event_id    BIGINT PRIMARY KEY,
        kind        TEXT NOT NULL,
        run_id      TEXT,
        step_key    TEXT,
        timestamp   DOUBLE PRECISION NOT NULL,
        data        TEXT NOT NULL
    );
    CREATE INDEX events_by_run ON events (run_id, event_id);
    CREATE INDEX events_by_kind ON events (kind, event_id);

    CREATE TABLE materializations (
        asset_key       TEXT NOT NULL,
        run_id          TEXT NOT NULL,
        event_id        BIGINT NOT NULL,
        materialized_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (asset_key, event_id)
    );

    CREATE TABLE pools (
        name            TEXT PRIMARY KEY,
        declared_limit  BIGINT,
        declared_by     TEXT,
        override_limit  BIGINT,
        updated_at      DOUBLE PRECISION NOT NULL,
        last_token      BIGINT NOT NULL DEFAULT 0,
        default_limit   BIGINT,
        declared_rate   TEXT,
        declared_burst  BIGINT,
        override_rate   TEXT,
        override_burst  BIGINT,
        tokens          DOUBLE PRECISION,
        tokens_at       DOUBLE PRECISION
    );

    CREATE TABLE pool_claims (
        pool              TEXT NOT NULL,
        run_id            TEXT NOT NULL,
        step_key          TEXT NOT NULL,
        slots             BIGINT NOT NULL,
        owner             TEXT NOT NULL,
        claimed_at        DOUBLE PRECISION NOT NULL,
        lease_expires_at  DOUBLE PRECISION NOT NULL,
        token             BIGINT NOT NULL DEFAULT 0,
        revoked_at        DOUBLE PRECISION,
        PRIMARY KEY (pool, run_id, step_key)
    );
    CREATE INDEX pool_claims_by_run ON pool_claims (run_id, step_key);

    CREATE TABLE pending_steps (
        pool         TEXT NOT NULL,
        run_id       TEXT NOT NULL,
        step_key     TEXT NOT NULL,
        slots        BIGINT NOT NULL,
        priority     BIGINT NOT NULL,
        owner        TEXT NOT NULL,
        enqueued_at  DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (pool, run_id, step_key)
    );
    CREATE INDEX pending_steps_by_run ON pending_steps (run_id, step_key);
    CREATE INDEX pending_steps_line ON pending_steps (pool, priority DESC, enqueued_at);
    CREATE INDEX pending_steps_by_owner ON pending_steps (pool, owner, priority DESC,
        enqueued_at);

    CREATE TABLE pool_default (
        id             BIGINT PRIMARY KEY CHECK (id = 1),
        default_limit  BIGINT NOT NULL,
        updated_at     DOUBLE PRECISION NOT NULL
    );

    CREATE TABLE processes (
        owner         TEXT PRIMARY KEY,
        pid           BIGINT NOT NULL,
        host          TEXT NOT NULL,
        started_at    DOUBLE PRECISION NOT NULL,
        heartbeat_at  DOUBLE PRECISION NOT NULL
    );

    CREATE TABLE kv (
        key         TEXT PRIMARY KEY,
        value       TEXT NOT NULL,
        updated_at  DOUBLE PRECISION NOT NULL
    );

    CREATE TABLE served (
        owner        TEXT NOT NULL,
        repository   TEXT NOT NULL,
        fingerprint  TEXT NOT NULL,
        PRIMARY KEY (owner, repository, fingerprint)
    );

    CREATE TABLE definitions (
        fingerprint  TEXT PRIMARY KEY,
        repository   TEXT NOT NULL,
        assets       TEXT NOT NULL
    );

    CREATE TABLE run_counts (
        status  TEXT PRIMARY KEY,
        runs    BIGINT NOT NULL
    );
    CREATE FUNCTION rivers_count_runs() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            UPDATE run_counts SET runs = runs - 1 WHERE status = OLD.status;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO run_counts AS c (status, runs) VALUES (NEW.status, 1)
                ON CONFLICT (status) DO UPDATE SET runs = c.runs + 1;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER run_counts_insert AFTER INSERT OR DELETE ON runs
        FOR EACH ROW EXECUTE FUNCTION rivers_count_runs();
    CREATE TRIGGER run_counts_update AFTER UPDATE OF status ON runs
        FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
        EXECUTE FUNCTION rivers_count_runs();

    CREATE FUNCTION rivers_wake_queues() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('QUEUE_CHANNEL', '');
        RETURN NULL;
    END $$;
    CREATE TRIGGER runs_wake_on_insert AFTER INSERT ON runs
        FOR EACH STATEMENT EXECUTE FUNCTION rivers_wake_queues();
    CREATE TRIGGER runs_wake_on_end AFTER UPDATE OF status ON runs
        FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
            AND NEW.status IN ('SUCCESS', 'FAILURE', 'CANCELED'))
        EXECUTE FUNCTION rivers_wake_queues();
    """.replace("QUEUE_CHANNEL", channel(QUEUE_WAKEUPS)),
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: psycopg.Connection[Any], where: str) -> None:
    """Check the database is rivers' (or empty) and bring it to ``SCHEMA_VERSION``,
    in one transaction holding ``MIGRATE_LOCK`` (``conn`` is in autocommit).

    Raises:
        StorageUnavailable: the database holds another application's ``runs``.
        MigrationError: the database was written by a newer rivers.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        version = _version(conn, where)
        if version > SCHEMA_VERSION:
            raise MigrationError(
                f"storage {where!r} was written by a newer rivers (schema {version}, "
                f"this rivers knows {SCHEMA_VERSION}); upgrade rivers"
            )
        for number in range(version, SCHEMA_VERSION):
            conn.execute(MIGRATIONS[number].encode())
        if version == 0:
            conn.execute(
                "INSERT INTO rivers_meta (key, value) VALUES ('schema_version', %s)",
                (str(SCHEMA_VERSION),),
            )
        elif version < SCHEMA_VERSION:
            conn.execute(
                "UPDATE rivers_meta SET value = %s WHERE key = 'schema_version'",
                (str(SCHEMA_VERSION),),
            )


def _version(conn: psycopg.Connection[Any], where: str) -> int:
    """The schema version of the database (0: rivers never wrote it)."""
    found = conn.execute(
        "SELECT to_regclass('rivers_meta') IS NOT NULL, to_regclass('runs') IS NOT NULL"
    ).fetchone()
    assert found is not None
    marked, has_runs = found
    if not marked:
        if has_runs:
            raise StorageUnavailable(
                f"database {where!r} has a 'runs' table that rivers did not create; "
                "give rivers its own database or schema"
            )
        conn.execute("CREATE TABLE rivers_meta (key TEXT PRIMARY KEY, value TEXT)")
        return 0
    row = conn.execute(
        "SELECT value FROM rivers_meta WHERE key = 'schema_version'"
    ).fetchone()
    return 0 if row is None else int(row[0])
