"""QueueCoordinator's inbox, for a repository without a run queue: runs submitted
in this process (``RunsSubmitted``, as the TriggerRunner sends it) start here at
once, even when another runtime leads the definition's queue; under a run queue
only the leader admits.

A real SQLite storage; the other leader is a lease another owner holds in it, and
the RunSupervisor's inbox is a stream the test reads.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anyio
import pytest

import rivers as rs
from rivers._clock import ManualClock
from rivers.actors.events import EventWriter
from rivers.actors.queue import QueueCoordinator
from rivers.commands import (
    CoordinatorMessage,
    RunsSubmitted,
    StartRun,
    SupervisorCommand,
)
from rivers.core.ownership import queue_leader_key
from rivers.errors import StorageUnavailable
from rivers.storage import open_backend
from rivers.storage.records import RunStatus
from rivers.submission import queued_run, write_queued


@rs.Asset
def work() -> None:
    return None


@pytest.mark.parametrize(
    ("run_queue", "first_write_fails"),
    [(False, False), (True, False), (False, True)],
    ids=["no run queue", "run queue", "no run queue, its first admission refused"],
)
async def test_runs_submitted_here_start_here_without_a_queue_even_when_not_leading(
    tmp_path: Path,
    run_queue: bool,
    first_write_fails: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = rs.RunQueueConfig(dequeue_interval="20ms") if run_queue else None
    repo = rs.CodeRepository([work], run_queue=config)
    clock = ManualClock()
    to_coordinator, inbox = anyio.create_memory_object_stream[CoordinatorMessage](
        math.inf
    )
    to_supervisor, supervised = anyio.create_memory_object_stream[SupervisorCommand](
        math.inf
    )
    with to_coordinator, inbox, to_supervisor, supervised:
        async with open_backend(tmp_path / "rivers.db", clock=clock) as storage:
            leader_key = queue_leader_key(repo.name, repo.fingerprint)
            assert await storage.state.acquire_leadership(leader_key, "other", 600)
            events = EventWriter(storage.events, clock)
            coordinator = QueueCoordinator(
                storage=storage.queue,
                kv=storage.state,
                runs=storage.runs,
                events=events,
                owner="me",
                clock=clock,
                pools=storage.pools,
                repository=repo,
                inbox=inbox,
                supervisor=to_supervisor,
            )
            admissions: list[int] = []
            admit_queued = storage.queue.admit_queued

            async def flaky_admit(*args: Any, **kwargs: Any) -> Any:
                admissions.append(len(admissions))
                if first_write_fails and len(admissions) == 1:
                    raise StorageUnavailable("the storage is away (injected)")
                return await admit_queued(*args, **kwargs)

            monkeypatch.setattr(storage.queue, "admit_queued", flaky_admit)
            run = queued_run(repo, rs.RunRequest())
            assert await write_queued(storage.runs, [run]) == [None]
            async with anyio.create_task_group() as tg:
                await tg.start(events.run)
                await tg.start(coordinator.run)
                to_coordinator.send_nowait(RunsSubmitted(run_ids=(run.run_id,)))
                got: list[SupervisorCommand] = []
                # Without a queue it comes at once; with one, nothing may come.
                with anyio.move_on_after(0.3 if run_queue else 5):
                    got.append(await supervised.receive())
                record = await storage.runs.get_run(run.run_id)
                tg.cancel_scope.cancel()
    assert not coordinator.is_leader
    started = [c.record.run_id for c in got if isinstance(c, StartRun)]
    assert len(started) == len(got)
    if run_queue:
        assert started == []
        assert record is not None
        assert record.status is RunStatus.QUEUED
    else:
        assert started == [run.run_id]
        assert record is not None
        assert record.status is RunStatus.STARTING
        assert record.owner == "me"
        # Refused once, the run was kept and admitted on the coordinator's next turn.
        assert len(admissions) == (2 if first_write_fails else 1)
