"""DashboardReads: the bounded reads of ``rivers top``, and read-only connections."""

from __future__ import annotations

import pytest

import rivers as rs
from rivers.messages import RunStarted, StepPoolBlocked, StepStarted
from rivers.storage.base import StorageBackend
from tests.storage.contract._helpers import T0, batch, new_run
from tests.storage.contract.conftest import OpenStore


async def test_counts_and_queue_reads(storage: StorageBackend) -> None:
    await storage.runs.create_run(new_run("low"))
    await storage.runs.create_run(new_run("high", priority=3))
    await storage.runs.create_run(new_run("busy", rs.RunStatus.STARTING))
    await storage.runs.create_run(new_run("done"))
    await storage.runs.transition_run(
        "done", rs.RunStatus.SUCCESS, expected=[rs.RunStatus.QUEUED]
    )
    dashboard = storage.dashboard
    counts = await dashboard.count_runs_by_status(
        [rs.RunStatus.QUEUED, rs.RunStatus.STARTING, rs.RunStatus.CANCELING]
    )
    assert counts == {
        rs.RunStatus.QUEUED: 2,
        rs.RunStatus.STARTING: 1,
        rs.RunStatus.CANCELING: 0,
    }
    assert [r.run_id for r in await dashboard.get_queued_runs(5)] == ["high", "low"]
    assert [r.run_id for r in await dashboard.get_queued_runs(1)] == ["high"]
    assert await dashboard.oldest_queued_at() is not None
    assert [r.run_id for r in await dashboard.get_recent_finished_runs(5)] == ["done"]
    recent = await dashboard.count_runs_created_since(0)
    assert recent[rs.RunStatus.QUEUED] == 2
    assert recent[rs.RunStatus.SUCCESS] == 1


async def test_event_and_step_reads(storage: StorageBackend) -> None:
    await storage.events.append_events(
        batch(
            RunStarted(run_id="r", steps=2, executor="in_process", owner="o"),
            StepStarted(run_id="r", step_key="a", attempt=1, worker="w"),
            StepPoolBlocked(
                run_id="r", step_key="b", pool="db", claimed=1, limit=1, position=1
            ),
        )
    )
    dashboard = storage.dashboard
    assert await dashboard.get_step_totals(["r", "none"]) == {"r": 2}
    progress = await dashboard.get_step_progress(["r"])
    assert progress == {"r": {"RUNNING": 1, "WAITING": 1}}
    assert await dashboard.get_waiting_steps(["r"]) == {"r": ["b"]}
    assert await dashboard.get_steps_in_status(["r"], rs.StepStatus.RUNNING) == {
        "r": ["a"]
    }
    gates = await dashboard.get_waiting_step_events("r", ["b"])
    assert gates["b"].kind == "STEP_POOL_BLOCKED"
    recent = await dashboard.get_recent_events(["STEP_STARTED", "RUN_STARTED"], 1)
    assert [e.kind for e in recent] == ["STEP_STARTED"]  # newest first
    since = await dashboard.get_events_since(["RUN_STARTED", "STEP_STARTED"], T0 + 1)
    assert [e.kind for e in since] == ["STEP_STARTED"]
    assert await dashboard.dequeue_times(0) == []


async def test_a_connection_that_refuses_writes_still_reads(
    open_store: OpenStore,
) -> None:
    async with open_store() as writer:
        await writer.runs.create_run(new_run("r"))
    async with open_store() as reader:
        await reader.dashboard.refuse_writes()
        assert [r.run_id for r in await reader.runs.get_runs()] == ["r"]
        with pytest.raises(rs.StorageError):
            await reader.runs.create_run(new_run("refused"))
