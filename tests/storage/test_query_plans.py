"""The queries that must stay fast over millions of runs use an index in order: no
full scan and no sort of every matching row (issue 23). Read with ``EXPLAIN QUERY
PLAN`` on a real file, so a dropped index or a reworded query fails here."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from benchmarks.finished_runs import build, command_reads
from rivers.storage import open_backend
from rivers.storage._retention_sql import old_runs
from rivers.storage._rows import events_query, run_id_queries, runs_query


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


@pytest.mark.parametrize(
    ("status", "tags", "ranges"),
    [
        (None, {"env": "prod"}, 1),
        ("FAILURE", {"env": ["dev", "prod"], "team": "core"}, 2),
    ],
)
def test_the_newest_runs_with_a_tag_are_read_from_the_tag_index_in_order(
    database: Path, status: str | None, tags: dict[str, str | list[str]], ranges: int
) -> None:
    # Collecting every run with the tag and sorting them took 600 ms over a million.
    plan = _plan(database, *runs_query(status, tags, 20))
    assert plan.count("run_tags_by_tag_created (key=? AND value=?)") == ranges, plan
    assert "LIST SUBQUERY" not in plan, plan
    assert "SCAN runs" not in plan, plan
    assert "SCAN run_tags" not in plan, plan
    other_keys = plan.count("SEARCH o USING PRIMARY KEY (run_id=? AND key=?)")
    assert other_keys == ranges * (len(tags) - 1), plan


def test_a_runs_events_of_some_kinds_are_read_from_the_runs_index(
    database: Path,
) -> None:
    # `runs logs`: events_by_kind also gives id order, and walked every log line
    # of every run (1.1 s over 10,000,000 events).
    for after in (None, 10):
        plan = _plan(database, *events_query("r1", after, None, ["STEP_LOG"]))
        assert "USING INDEX events_by_run (run_id=?" in plan, plan
        assert "TEMP B-TREE" not in plan, plan


def test_a_short_run_id_is_found_from_an_index_by_prefix_and_by_suffix(
    database: Path,
) -> None:
    prefix, suffix = (_plan(database, *q) for q in run_id_queries("3522d4007", 6))
    assert "sqlite_autoindex_runs_1 (run_id>? AND run_id<?)" in prefix, prefix
    assert "USING INDEX runs_by_id_tail (<expr>=?)" in suffix, suffix


# What each command reads on a storage of finished runs (benchmarks/finished_runs.py
# times the same calls over a million runs). Only the newest runs may be read by
# walking the creation index, which stops after the limit.
ALLOWED_SCANS = ("SCAN runs USING INDEX runs_by_created",)


@pytest.mark.parametrize("command", sorted(command_reads("")))
def test_no_command_on_finished_runs_scans_runs_events_or_steps(
    database: Path, command: str
) -> None:
    run_id = build(database, 40)
    statements: list[str] = []

    async def read() -> None:
        async with open_backend(database) as storage:
            trace = statements.append
            await storage.runs._db.call(lambda conn: conn.set_trace_callback(trace))  # type: ignore[attr-defined]
            await command_reads(run_id)[command](storage)

    anyio.run(read)
    assert statements
    with sqlite3.connect(database) as conn:
        for statement in dict.fromkeys(statements):
            plan = "\n".join(
                row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}")
            )
            for line in plan.splitlines():
                if line.startswith(ALLOWED_SCANS):
                    continue
                assert not line.startswith(
                    ("SCAN runs", "SCAN events", "SCAN steps", "SCAN run_tags")
                ), f"{statement}\n{plan}"
            assert "LIST SUBQUERY" not in plan, f"{statement}\n{plan}"
