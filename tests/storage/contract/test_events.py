"""EventStore and the step rows and materializations projected from events."""

from __future__ import annotations

import rivers as rs
from rivers.messages import (
    RunStarted,
    RunSucceeded,
    StepFailed,
    StepRetrying,
    StepStarted,
    StepSucceeded,
)
from rivers.storage.base import StorageBackend
from rivers.storage.records import RunChange
from tests.storage.contract._helpers import T0, at, batch, logged, new_run


async def test_append_events_returns_increasing_ids_across_batches(
    storage: StorageBackend,
) -> None:
    first = await storage.events.append_events(
        batch(logged("r1", "one"), logged("r1", "two"))
    )
    second = await storage.events.append_events(batch(logged("r1", "three")))
    ids = [e.event_id for e in first + second]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3
    assert await storage.events.append_events([]) == []
    stored = await storage.events.get_events()
    assert [e.event_id for e in stored] == ids
    assert [e.data["message"] for e in stored] == ["one", "two", "three"]


async def test_stored_events_keep_kind_run_step_time_and_data(
    storage: StorageBackend,
) -> None:
    body = StepStarted(
        run_id="r1", step_key="a", attempt=1, worker="w-1", startup_s=0.25
    )
    [returned] = await storage.events.append_events([(body, T0)])
    [stored] = await storage.events.get_events()
    assert returned == stored
    assert stored.kind == "STEP_STARTED"
    assert (stored.run_id, stored.step_key) == ("r1", "a")
    assert stored.timestamp == at(T0)
    assert stored.data == {"attempt": 1, "worker": "w-1", "startup_s": 0.25}


async def test_get_events_filters_by_run_after_and_limit(
    storage: StorageBackend,
) -> None:
    events = await storage.events.append_events(
        batch(
            logged("r1", "1"),
            logged("r2", "2"),
            logged("r1", "3"),
            logged("r1", "4"),
            logged("r2", "5"),
        )
    )
    ids = [e.event_id for e in events]

    def messages(found: list[rs.Event]) -> list[str]:
        return [e.data["message"] for e in found]

    assert messages(await storage.events.get_events(run_id="r1")) == ["1", "3", "4"]
    assert messages(await storage.events.get_events(after=ids[2])) == ["4", "5"]
    assert messages(await storage.events.get_events(limit=2)) == ["1", "2"]
    assert messages(
        await storage.events.get_events(run_id="r2", after=ids[0], limit=1)
    ) == ["2"]
    assert await storage.events.get_events(after=ids[-1]) == []
    assert await storage.events.get_events(run_id="unknown") == []


async def test_get_events_filters_by_kind(storage: StorageBackend) -> None:
    await storage.events.append_events(
        batch(
            RunStarted(run_id="r1", steps=1, executor="in_process", owner="me"),
            logged("r1", "hello"),
        )
    )
    found = await storage.events.get_events(kinds=["RUN_STARTED"])
    assert [e.kind for e in found] == ["RUN_STARTED"]


async def test_a_runs_events_of_some_kinds_after_an_id_oldest_first(
    storage: StorageBackend,
) -> None:
    # `runs logs` (--follow): one run's log lines after the last one printed.
    events = await storage.events.append_events(
        batch(
            RunStarted(run_id="r1", steps=1, executor="in_process", owner="me"),
            logged("r1", "1"),
            logged("r2", "other run"),
            logged("r1", "2"),
            logged("r1", "3"),
        )
    )
    ids = [e.event_id for e in events]
    logs = await storage.events.get_events("r1", kinds=["STEP_LOG"])
    later = await storage.events.get_events("r1", after=ids[3], kinds=["STEP_LOG"])
    both = await storage.events.get_events("r1", kinds=["STEP_LOG", "RUN_STARTED"])
    assert [e.data["message"] for e in logs] == ["1", "2", "3"]
    assert [e.data["message"] for e in later] == ["3"]
    assert [e.event_id for e in both] == [ids[0], ids[1], ids[3], ids[4]]


# ------------------------------------------------------------------ step records


async def test_step_rows_are_projected_from_started_and_success_events(
    storage: StorageBackend,
) -> None:
    await storage.runs.create_run(new_run("r1", rs.RunStatus.STARTING))
    await storage.events.append_events(
        [(StepStarted(run_id="r1", step_key="a", attempt=1, worker="w-1"), T0)]
    )
    [running] = await storage.runs.get_step_records("r1")
    assert running.status is rs.StepStatus.RUNNING
    assert running.started_at == at(T0)
    assert running.ended_at is None
    await storage.events.append_events(
        [
            (
                StepSucceeded(run_id="r1", step_key="a", attempt=1, duration_s=2.0),
                T0 + 2,
            )
        ]
    )
    [done] = await storage.runs.get_step_records("r1")
    assert done == rs.StepRecord(
        step_key="a",
        status=rs.StepStatus.SUCCESS,
        attempts=1,
        started_at=at(T0),
        ended_at=at(T0 + 2),
        error=None,
        worker="w-1",
    )
    assert done.duration_s == 2.0


async def test_a_retried_step_counts_attempts_and_clears_the_old_error(
    storage: StorageBackend,
) -> None:
    await storage.events.append_events(
        batch(
            StepStarted(run_id="r1", step_key="a", attempt=1, worker="w"),
            StepRetrying(run_id="r1", step_key="a", attempt=1, error="oops", delay_s=0),
        )
    )
    [retrying] = await storage.runs.get_step_records("r1")
    assert retrying.status is rs.StepStatus.WAITING
    assert retrying.error == "oops"
    await storage.events.append_events(
        batch(
            StepStarted(run_id="r1", step_key="a", attempt=2, worker="w"),
            StepFailed(
                run_id="r1", step_key="a", attempt=2, error="bad", error_type="E"
            ),
            start=T0 + 10,
        )
    )
    [failed] = await storage.runs.get_step_records("r1")
    assert failed.status is rs.StepStatus.FAILURE
    assert failed.attempts == 2
    assert failed.error == "bad"
    assert failed.started_at == at(T0)  # the first attempt's start
    assert failed.ended_at == at(T0 + 11)


async def test_step_records_are_per_run_in_start_order(storage: StorageBackend) -> None:
    await storage.events.append_events(
        batch(
            StepStarted(run_id="r1", step_key="second", attempt=1, worker="w"),
            StepStarted(run_id="r2", step_key="other", attempt=1, worker="w"),
            start=T0 + 5,
        )
    )
    await storage.events.append_events(
        batch(StepStarted(run_id="r1", step_key="first", attempt=1, worker="w"))
    )
    assert [s.step_key for s in await storage.runs.get_step_records("r1")] == [
        "first",
        "second",
    ]
    assert await storage.runs.get_step_records("nope") == []


async def test_latest_materialization_of_each_asset(storage: StorageBackend) -> None:
    def success(run_id: str, step: str) -> StepSucceeded:
        return StepSucceeded(run_id=run_id, step_key=step, attempt=1, duration_s=0)

    await storage.events.append_events(
        batch(success("r1", "a"), success("r1", "b"), success("r2", "a"))
    )
    # A failure is not a materialization.
    await storage.events.append_events(
        [
            (
                StepFailed(
                    run_id="r3", step_key="a", attempt=1, error="x", error_type="E"
                ),
                T0 + 50,
            )
        ]
    )
    latest = await storage.runs.get_latest_materializations()
    assert latest == {"a": ("r2", T0 + 2), "b": ("r1", T0 + 1)}
    assert await storage.runs.get_latest_materializations(["b", "missing"]) == {
        "b": ("r1", T0 + 1)
    }
    assert await storage.runs.get_latest_materializations([]) == {}


async def test_write_batch_writes_events_and_the_run_changes_that_apply(
    storage: StorageBackend,
) -> None:
    await storage.runs.create_run(new_run("r", rs.RunStatus.STARTED))
    await storage.runs.create_run(new_run("q"))
    changes = [
        RunChange(
            run_id="r",
            to=rs.RunStatus.SUCCESS,
            expected=(rs.RunStatus.STARTED,),
            at=T0 + 5,
            event=RunSucceeded(run_id="r", duration_s=1.0),
        ),
        RunChange(  # q is QUEUED, not STARTED: it does not apply
            run_id="q",
            to=rs.RunStatus.SUCCESS,
            expected=(rs.RunStatus.STARTED,),
            at=T0 + 5,
            event=RunSucceeded(run_id="q", duration_s=1.0),
        ),
    ]
    events, applied = await storage.events.write_batch(
        batch(logged("r", "one")), changes
    )
    assert applied == [True, False]
    assert [(e.kind, e.run_id) for e in events] == [
        ("STEP_LOG", "r"),
        ("RUN_SUCCESS", "r"),
    ]
    assert events[0].event_id < events[1].event_id
    assert events == await storage.events.get_events()
    record = await storage.runs.get_run("r")
    assert record is not None
    assert (record.status, record.ended_at) == (rs.RunStatus.SUCCESS, at(T0 + 5))
    queued = await storage.runs.get_run("q")
    assert queued is not None
    assert queued.status is rs.RunStatus.QUEUED
