"""Opening a file written by an older rivers migrates it and keeps its data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from rivers._clock import ManualClock
from rivers._ids import this_owner
from rivers.storage import open_backend
from rivers.storage.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from tests.storage.contract._helpers import old_schema_file

T0 = 1_700_000_000.0


def _write_schema_3_file(path: Path) -> None:
    """A file as rivers with schema 3 left it: pool 'db' after 41 grants, one
    live claim and one whose lease ran out, one step waiting."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        for script in MIGRATIONS[:3]:
            conn.executescript(script)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("PRAGMA user_version = 3")
        conn.execute(
            "INSERT INTO pools (name, declared_limit, updated_at, last_token) "
            "VALUES ('db', 3, ?, 41)",
            (T0,),
        )
        conn.executemany(
            "INSERT INTO pool_claims (pool, run_id, step_key, slots, owner, "
            "claimed_at, lease_expires_at, token) VALUES ('db', 'old', ?, 1, ?, ?, ?, ?)",
            [
                ("live", this_owner(), T0, T0 + 600, 41),
                ("expired", "gone-host:1:0", T0 - 600, T0 - 1, 40),
            ],
        )
        conn.execute(
            "INSERT INTO pending_steps (pool, run_id, step_key, slots, priority, "
            "owner, enqueued_at) VALUES ('db', 'old', 'waiting', 1, 5, ?, ?)",
            (this_owner(), T0),
        )
    finally:
        conn.close()


async def test_a_schema_3_file_is_migrated_and_keeps_its_tokens_and_claims(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    _write_schema_3_file(path)
    async with open_backend(path, clock=ManualClock(T0)) as storage:
        result = await storage.pools.claim_pool_slots(
            run_id="new",
            step_key="s",
            pools=("db",),
            slots=1,
            owner="other-host:2:0",
            lease_s=60,
            priority=10,  # ahead of the waiting step, which has priority 5
        )
        info = await storage.pools.get_pool_info("db")
        waiting = await storage.pools.get_pending_steps("db")
    # The counter survived: the grant takes a larger token than every earlier one.
    assert result.granted
    assert result.tokens == (42,)
    # The expired claim was swept by the claim; the live one still counts.
    assert [row[2] for row in result.reclaimed] == ["expired"]
    assert info.claimed_slots == 2
    assert [step.step_key for step in waiting] == ["waiting"]
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {
            row[0]: row[1]
            for row in conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                "AND sql IS NOT NULL"
            )
        }
    finally:
        conn.close()
    assert "pool_claims_by_expiry" not in indexes
    assert "priority DESC" in indexes["pending_steps_line"]


async def test_a_schema_9_file_gets_the_index_of_run_id_tails(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    runs = [("0001aaaa3522d4007", "SUCCESS", T0), ("0002bbbb3522d4008", "SUCCESS", T0)]
    old_schema_file(path, 9, runs)
    async with open_backend(path) as storage:
        found = await storage.runs.find_run_ids("3522d4007", 6)
    conn = sqlite3.connect(path)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        index = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'runs_by_id_tail'"
        ).fetchone()
    finally:
        conn.close()
    assert found == ["0001aaaa3522d4007"]
    assert version == SCHEMA_VERSION
    assert index is not None
