"""The SQLite schema and its migrations.

``PRAGMA user_version`` holds the schema version; ``PRAGMA application_id`` marks the
file as a rivers database so a foreign SQLite file is refused, not altered. Each
migration runs in one ``BEGIN IMMEDIATE`` transaction that re-reads the version, so
two processes opening a new file at once apply it exactly once.
"""

from __future__ import annotations

import sqlite3

from rivers.errors import MigrationError
from rivers.storage import _errors

__all__ = ("APPLICATION_ID", "MIGRATIONS", "SCHEMA_VERSION", "check_marks", "migrate")

APPLICATION_ID = 0x72697673  # "rivs"

MIGRATIONS: tuple[str, ...] = (
    # 1: runs, steps, events, materializations, pools, claims, processes.
    """
    CREATE TABLE runs (
        run_id      TEXT PRIMARY KEY,
        status      TEXT NOT NULL,
        repository  TEXT NOT NULL,
        location    TEXT,
        selection   TEXT,
        tags        TEXT NOT NULL,
        priority    INTEGER NOT NULL DEFAULT 0,
        run_key     TEXT,
        created_at  REAL NOT NULL,
        started_at  REAL,
        ended_at    REAL,
        reason      TEXT,
        owner       TEXT
    );
    CREATE INDEX runs_by_status ON runs (status, priority DESC, created_at);
    CREATE INDEX runs_by_created ON runs (created_at);
    CREATE INDEX runs_by_owner ON runs (owner, status);
    CREATE UNIQUE INDEX runs_by_key ON runs (run_key) WHERE run_key IS NOT NULL;

    CREATE TABLE run_tags (
        run_id  TEXT NOT NULL,
        key     TEXT NOT NULL,
        value   TEXT NOT NULL,
        PRIMARY KEY (run_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX run_tags_by_tag ON run_tags (key, value, run_id);

    CREATE TABLE steps (
        run_id      TEXT NOT NULL,
        step_key    TEXT NOT NULL,
        status      TEXT NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        started_at  REAL,
        ended_at    REAL,
        error       TEXT,
        worker      TEXT,
        PRIMARY KEY (run_id, step_key)
    ) WITHOUT ROWID;

    CREATE TABLE events (
        event_id    INTEGER PRIMARY KEY,
        kind        TEXT NOT NULL,
        run_id      TEXT,
        step_key    TEXT,
        timestamp   REAL NOT NULL,
        data        TEXT NOT NULL
    );
    CREATE INDEX events_by_run ON events (run_id, event_id);
    CREATE INDEX events_by_kind ON events (kind, event_id);

    CREATE TABLE materializations (
        asset_key       TEXT NOT NULL,
        run_id          TEXT NOT NULL,
        event_id        INTEGER NOT NULL,
        materialized_at REAL NOT NULL,
        PRIMARY KEY (asset_key, event_id)
    ) WITHOUT ROWID;

    CREATE TABLE pools (
        name            TEXT PRIMARY KEY,
        declared_limit  INTEGER,
        declared_by     TEXT,
        override_limit  INTEGER,
        updated_at      REAL NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE pool_claims (
        pool              TEXT NOT NULL,
        run_id            TEXT NOT NULL,
        step_key          TEXT NOT NULL,
        slots             INTEGER NOT NULL,
        owner             TEXT NOT NULL,
        claimed_at        REAL NOT NULL,
        lease_expires_at  REAL NOT NULL,
        PRIMARY KEY (pool, run_id, step_key)
    ) WITHOUT ROWID;
    CREATE INDEX pool_claims_by_expiry ON pool_claims (lease_expires_at);
    CREATE INDEX pool_claims_by_run ON pool_claims (run_id, step_key);

    CREATE TABLE pending_steps (
        pool         TEXT NOT NULL,
        run_id       TEXT NOT NULL,
        step_key     TEXT NOT NULL,
        slots        INTEGER NOT NULL,
        priority     INTEGER NOT NULL,
        owner        TEXT NOT NULL,
        enqueued_at  REAL NOT NULL,
        PRIMARY KEY (pool, run_id, step_key)
    ) WITHOUT ROWID;
    CREATE INDEX pending_steps_by_run ON pending_steps (run_id, step_key);

    CREATE TABLE processes (
        owner         TEXT PRIMARY KEY,
        pid           INTEGER NOT NULL,
        host          TEXT NOT NULL,
        started_at    REAL NOT NULL,
        heartbeat_at  REAL NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE kv (
        key         TEXT PRIMARY KEY,
        value       TEXT NOT NULL,
        updated_at  REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 2: fencing tokens and revocation of claims; the pools' lines in storage order.
    """
    ALTER TABLE pools ADD COLUMN last_token INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE pool_claims ADD COLUMN token INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE pool_claims ADD COLUMN revoked_at REAL;
    CREATE INDEX pending_steps_line ON pending_steps (pool, priority, enqueued_at);
    """,
    # 3: repository identity. A run records its repository's fingerprint; each
    # long-lived runtime records the repositories it serves (its liveness is its
    # ``processes`` heartbeat); ``definitions`` keeps each fingerprint's assets.
    """
    ALTER TABLE runs ADD COLUMN fingerprint TEXT;

    CREATE TABLE served (
        owner        TEXT NOT NULL,
        repository   TEXT NOT NULL,
        fingerprint  TEXT NOT NULL,
        PRIMARY KEY (owner, repository, fingerprint)
    ) WITHOUT ROWID;

    CREATE TABLE definitions (
        fingerprint  TEXT PRIMARY KEY,
        repository   TEXT NOT NULL,
        assets       TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    # 4: cheaper claims. ``pool_claims`` holds only live claims (a few per pool),
    # so the expiry sweep scans it instead of keeping an index that every claim
    # and release wrote one more page of. A pool's line is read in line order
    # (priority descending, then arrival), so its head is the index's first row.
    """
    DROP INDEX pool_claims_by_expiry;
    DROP INDEX pending_steps_line;
    CREATE INDEX pending_steps_line ON pending_steps (pool, priority DESC, enqueued_at);
    """,
    # 5: default pool limits: a repository's ``default_pool_limit`` on each pool it
    # names, and the storage-wide default (``rivers pools set-default``), one row.
    """
    ALTER TABLE pools ADD COLUMN default_limit INTEGER;

    CREATE TABLE pool_default (
        id             INTEGER PRIMARY KEY CHECK (id = 1),
        default_limit  INTEGER NOT NULL,
        updated_at     REAL NOT NULL
    );
    """,
    # 6: rate limits. A pool's declared rate (a repository's ``PoolLimit(rate=,
    # burst=)``) and its override (``rivers pools set --rate``) as canonical text
    # (``"100/min"``) with a burst; its token bucket: the tokens left when last
    # counted, and when.
    """
    ALTER TABLE pools ADD COLUMN declared_rate TEXT;
    ALTER TABLE pools ADD COLUMN declared_burst INTEGER;
    ALTER TABLE pools ADD COLUMN override_rate TEXT;
    ALTER TABLE pools ADD COLUMN override_burst INTEGER;
    ALTER TABLE pools ADD COLUMN tokens REAL;
    ALTER TABLE pools ADD COLUMN tokens_at REAL;
    """,
    # 7: runs read in creation order from an index, never sorted whole: the newest
    # of a status (``runs list --status``; a million queued runs: 495 ms -> under
    # 1 ms), the newest of all, and a prune's keyset (created_at, run_id).
    """
    CREATE INDEX runs_by_status_created ON runs (status, created_at, run_id);
    DROP INDEX runs_by_created;
    CREATE INDEX runs_by_created ON runs (created_at, run_id);
    """,
    # 8: a claim asks whether another process's waiter is ahead in the pool's line
    # by reading only the other owners' rows: one run of 10,000 steps waiting in its
    # own line made every claim scan all of them (6 ms a claim at 10,000 waiters,
    # quadratic in the width of a run).
    """
    CREATE INDEX pending_steps_by_owner ON pending_steps (pool, owner, priority DESC,
        enqueued_at);
    """,
    # 9: how many runs are in each status, kept by triggers in the transaction that
    # writes the run, so ``top``, ``queue status`` and ``runs why`` never count a
    # million queued runs (97 ms) to show the number.
    """
    CREATE TABLE run_counts (
        status  TEXT PRIMARY KEY,
        runs    INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO run_counts (status, runs) SELECT status, COUNT(*) FROM runs
        GROUP BY status;
    CREATE TRIGGER run_counts_insert AFTER INSERT ON runs BEGIN
        INSERT INTO run_counts (status, runs) VALUES (NEW.status, 1)
            ON CONFLICT (status) DO UPDATE SET runs = runs + 1;
    END;
    CREATE TRIGGER run_counts_update AFTER UPDATE OF status ON runs
        WHEN OLD.status IS NOT NEW.status BEGIN
        UPDATE run_counts SET runs = runs - 1 WHERE status = OLD.status;
        INSERT INTO run_counts (status, runs) VALUES (NEW.status, 1)
            ON CONFLICT (status) DO UPDATE SET runs = runs + 1;
    END;
    CREATE TRIGGER run_counts_delete AFTER DELETE ON runs BEGIN
        UPDATE run_counts SET runs = runs - 1 WHERE status = OLD.status;
    END;
    """,
    # 10: a run named by the end of its id (``…3522d4007`` as ``rivers top`` shows
    # it) is found from an index of the ids' last 4 characters, not by reading every
    # run (a million runs: 160 ms); a prefix reads a range of the primary key.
    """
    CREATE INDEX runs_by_id_tail ON runs (substr(run_id, -4));
    """,
    # 11: the newest runs with a tag are read from an index of each tag's runs in
    # creation order, not collected whole and sorted (``runs list --tag env=prod``
    # over a million runs: 600 ms); a tag row keeps its run's ``created_at``.
    """
    ALTER TABLE run_tags ADD COLUMN created_at REAL;
    DROP INDEX run_tags_by_tag;
    UPDATE run_tags SET created_at =
        (SELECT r.created_at FROM runs r WHERE r.run_id = run_tags.run_id);
    CREATE INDEX run_tags_by_tag_created ON run_tags (key, value, created_at);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def check_marks(conn: sqlite3.Connection) -> int:
    """Return the schema version of a rivers (or empty) file.

    Raises:
        Foreign: the file is another application's SQLite database.
        MigrationError: the file was written by a newer rivers.
    """
    application_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if application_id not in (0, APPLICATION_ID) or (
        application_id == 0
        and conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] > 0
    ):
        raise _errors.Foreign()
    if version > SCHEMA_VERSION:
        raise MigrationError(
            f"the storage was written by a newer rivers (schema {version}, this rivers "
            f"knows {SCHEMA_VERSION}); upgrade rivers"
        )
    return version


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the file to ``SCHEMA_VERSION`` in one ``BEGIN IMMEDIATE`` transaction
    (re-reading the version: another process may have migrated meanwhile)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = check_marks(conn)
        for number in range(version, SCHEMA_VERSION):
            for statement in _statements(MIGRATIONS[number]):
                conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _statements(script: str) -> list[str]:
    """The statements of a migration, a trigger's body kept whole."""
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending.strip())
            pending = ""
    return statements
