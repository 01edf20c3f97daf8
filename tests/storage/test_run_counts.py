"""The run counts by status (schema 9) are kept by triggers in the transaction that
writes each run, so they always equal a count over the runs themselves: after
runs are created, moved, finished, canceled, pruned, and in a file migrated with
runs already in it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio

import rivers as rs
from rivers._clock import ManualClock
from rivers.storage import open_backend
from tests.storage.contract._helpers import old_schema_file


def _counted(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(the kept counts without zeros, a GROUP BY over the runs)."""
    with sqlite3.connect(path) as conn:
        kept = dict(conn.execute("SELECT status, runs FROM run_counts WHERE runs != 0"))
        actual = dict(conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"))
    return kept, actual


@rs.Asset
def fine() -> int:
    return 1


@rs.Asset
def broken(fine: int) -> int:
    raise RuntimeError("no")


async def test_the_counts_follow_every_write_of_a_run(tmp_path: Path) -> None:
    path = tmp_path / "rivers.db"
    clock = ManualClock()
    repo = rs.CodeRepository(
        [fine, broken],
        run_queue=rs.RunQueueConfig(max_concurrent_runs=0),
        backend=rs.RunBackendConfig(storage=str(path)),
    )
    async with rs.Runtime(repo, clock=clock) as rt:
        assert (await rt.materialize(["fine"])).success
        assert not (await rt.materialize()).success
        queued = await rt.submit_many([rs.RunRequest() for _ in range(5)])
        await rt.cancel(queued[0].run_id)
        with anyio.fail_after(10):
            await queued[0].wait()
        middle = _counted(path)
        clock.advance(2 * 86_400)
        await rt.storage.prune(older_than="1d")
        after_prune = _counted(path)
        in_storage = await rt._roles.dashboard.count_runs_by_status(list(rs.RunStatus))
        queued_count = await rt._roles.runs.count_runs([rs.RunStatus.QUEUED])
    kept, actual = middle
    assert kept == actual == {"SUCCESS": 1, "FAILURE": 1, "CANCELED": 1, "QUEUED": 4}
    kept, actual = after_prune
    assert kept == actual == {"QUEUED": 4}
    assert in_storage[rs.RunStatus.QUEUED] == queued_count == 4
    assert in_storage[rs.RunStatus.SUCCESS] == 0


async def test_a_migrated_file_counts_the_runs_it_already_had(tmp_path: Path) -> None:
    path = tmp_path / "rivers.db"
    old_schema_file(
        path, 8, [("a", "QUEUED", 1.0), ("b", "QUEUED", 1.0), ("c", "SUCCESS", 1.0)]
    )
    async with open_backend(path) as storage:
        queued = await storage.runs.count_runs([rs.RunStatus.QUEUED])
        done = await storage.runs.count_runs(
            [rs.RunStatus.SUCCESS, rs.RunStatus.FAILURE]
        )
    assert (queued, done) == (2, 1)
    kept, actual = _counted(path)
    assert kept == actual
