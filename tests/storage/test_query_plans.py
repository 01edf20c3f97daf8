"""The queries that must stay fast over millions of runs use an index in order: no
full scan and no sort of every matching row (issue 23). Read with ``EXPLAIN QUERY
PLAN`` on a real file, so a dropped index or a reworded query fails here."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from rivers.storage import open_backend
from rivers.storage._retention_sql import old_runs
from rivers.storage._rows import runs_query


def _plan(path: Path, sql: str, params: list[object] | tuple[object, ...]) -> str:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    return "\n".join(row[-1] for row in rows)


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """A storage file as rivers creates it (every migration applied)."""
    path = tmp_path / "rivers.db"

    async def create() -> None:
        async with open_backend(path):
            pass

    anyio.run(create)
    return path


@pytest.mark.parametrize("status", ["QUEUED", "FAILURE"])
def test_runs_of_a_status_are_read_newest_first_from_an_index(
    database: Path, status: str
) -> None:
    plan = _plan(database, *runs_query(status, None, 20))
    assert "USING INDEX runs_by_status_created" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


def test_the_newest_runs_are_read_from_the_creation_index(database: Path) -> None:
    plan = _plan(database, *runs_query(None, None, 20))
    assert "runs_by_created" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


def test_a_prune_finds_old_runs_by_keyset_over_the_creation_index(
    database: Path,
) -> None:
    captured: list[str] = []

    def trace(statement: str) -> None:
        captured.append(statement)

    with sqlite3.connect(database) as conn:
        conn.set_trace_callback(trace)
        old_runs(conn, cutoff=1e9, after=(0.0, ""), limit=200)
    (statement,) = captured
    with sqlite3.connect(database) as conn:
        plan = "\n".join(
            row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}")
        )
    assert "runs_by_created" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


def test_a_claim_reads_only_other_owners_rows_of_a_pools_line(database: Path) -> None:
    # One run of 10,000 steps waiting in its own line made every claim scan all of
    # them: quadratic in the width of a run.
    from rivers.storage._pools_sql import _AHEAD

    plan = _plan(database, _AHEAD, ("db", "me", 0, 0, 1.0, 0.0) * 2)
    assert "pending_steps_by_owner (pool=? AND owner<?)" in plan, plan
    assert "pending_steps_by_owner (pool=? AND owner>?)" in plan, plan
