"""RunSupervisor driven through its inbox: start a run, cancel it, tell the queue
coordinators of its end, and answer ``wait_for`` from the record it ended with."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

import rivers as rs
from rivers._ids import new_run_id
from rivers.actors.run_supervisor import RunSupervisor
from rivers.commands import (
    CancelRun,
    CoordinatorMessage,
    RunEnded,
    StartRun,
    SupervisorCommand,
)
from rivers.storage.records import NewRun, RunRecord

pytestmark = pytest.mark.anyio


def _repo(
    storage: Path, started: anyio.Event, release: anyio.Event
) -> rs.CodeRepository:
    @rs.Asset
    async def gated() -> int:
        started.set()
        await release.wait()
        return 1

    return rs.CodeRepository(
        [gated],
        executor=rs.Executor.in_process(),
        backend=rs.RunBackendConfig(storage=str(storage)),
    )


async def _admitted(rt: rs.Runtime) -> RunRecord:
    """Write a run as the queue admits one to ``rt``: STARTING, owned by it."""
    run_id = new_run_id()
    await rt._roles.runs.create_run(
        NewRun(
            run_id=run_id,
            status=rs.RunStatus.STARTING,
            repository="default",
            tags={},
            selection=None,
            owner=rt.owner,
        )
    )
    record = await rt._roles.runs.get_run(run_id)
    assert record is not None
    return record


def _supervisor(
    rt: rs.Runtime,
    inbox: MemoryObjectReceiveStream[SupervisorCommand],
    coordinators: dict[str, MemoryObjectSendStream[CoordinatorMessage]],
) -> RunSupervisor:
    """A RunSupervisor over ``rt``'s storage, event writer and run builder."""
    assert rt._builder is not None
    return RunSupervisor(
        inbox=inbox,
        runs=rt._roles.runs,
        pools=rt._roles.pools,
        events=rt._writer(),
        builder=rt._builder,
        coordinators=coordinators,
    )


async def _drive(
    rt: rs.Runtime, commands: list[SupervisorCommand], started: anyio.Event
) -> list[CoordinatorMessage]:
    """Run a supervisor of ``rt``'s storage and runs; send it ``commands`` (a
    CancelRun once the run started); return what reached the coordinator inbox."""
    to_supervisor, inbox = anyio.create_memory_object_stream[SupervisorCommand](
        math.inf
    )
    to_coordinator, coordinator_inbox = anyio.create_memory_object_stream[
        CoordinatorMessage
    ](math.inf)
    supervisor = _supervisor(rt, inbox, {"default": to_coordinator})
    with to_supervisor, inbox, to_coordinator, coordinator_inbox:
        async with anyio.create_task_group() as group:
            await group.start(supervisor.run)
            for command in commands:
                if isinstance(command, CancelRun):
                    await started.wait()
                await to_supervisor.send(command)
            message = await coordinator_inbox.receive()  # the run's end, at once
            assert isinstance(message, RunEnded)
            assert not supervisor.is_running(message.run_id)
            group.cancel_scope.cancel()
        return [message]


async def test_a_started_run_ends_and_its_end_reaches_the_coordinator_inbox(
    tmp_path: Path,
) -> None:
    started, release = anyio.Event(), anyio.Event()
    release.set()
    async with rs.Runtime(_repo(tmp_path / "s.db", started, release)) as rt:
        record = await _admitted(rt)
        messages = await _drive(rt, [StartRun(record=record)], started)
        stored = await rt._roles.runs.get_run(record.run_id)
    assert messages == [RunEnded(run_id=record.run_id, status=rs.RunStatus.SUCCESS)]
    assert stored is not None
    assert stored.status is rs.RunStatus.SUCCESS


async def test_cancel_run_stops_a_running_run(tmp_path: Path) -> None:
    started, release = anyio.Event(), anyio.Event()  # never released
    async with rs.Runtime(_repo(tmp_path / "s.db", started, release)) as rt:
        record = await _admitted(rt)
        cancel = CancelRun(run_id=record.run_id, reason="canceled by the test")
        messages = await _drive(rt, [StartRun(record=record), cancel], started)
        stored = await rt._roles.runs.get_run(record.run_id)
    assert messages == [RunEnded(run_id=record.run_id, status=rs.RunStatus.CANCELED)]
    assert stored is not None
    assert stored.status is rs.RunStatus.CANCELED
    assert stored.reason == "canceled by the test"


async def test_wait_for_a_local_run_reads_its_record_once_then_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release = anyio.Event(), anyio.Event()
    async with rs.Runtime(_repo(tmp_path / "s.db", started, release)) as rt:
        handle = await rt.submit(rs.RunRequest())
        await started.wait()
        runs = rt._roles.runs
        reads: list[str] = []
        get_run = runs.get_run

        async def counted(run_id: str) -> Any:
            reads.append(run_id)
            return await get_run(run_id)

        monkeypatch.setattr(runs, "get_run", counted)
        async with anyio.create_task_group() as group:
            waited: list[rs.RunRecord] = []

            async def wait() -> None:
                waited.append(await rt.wait_for(handle.run_id))

            group.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            assert reads == []  # waiting on a local run: no polling
            release.set()
        assert waited[0].status is rs.RunStatus.SUCCESS
        assert reads == [handle.run_id]  # its end, read once
        again = await rt.wait_for(handle.run_id)
        assert reads == [handle.run_id]  # answered from the kept record
        assert again == waited[0] == await get_run(handle.run_id)


async def test_a_run_admitted_while_the_supervisor_stops_goes_back_to_the_queue(
    tmp_path: Path,
) -> None:
    """A submit racing the runtime's stop can admit a run after ``stop()`` began:
    its StartRun must neither start it nor crash the supervisor."""
    started, release = anyio.Event(), anyio.Event()
    async with rs.Runtime(_repo(tmp_path / "s.db", started, release)) as rt:
        record = await _admitted(rt)
        to_supervisor, inbox = anyio.create_memory_object_stream[SupervisorCommand](
            math.inf
        )
        supervisor = _supervisor(rt, inbox, {})
        with to_supervisor, inbox:
            async with anyio.create_task_group() as group:
                await group.start(supervisor.run)
                await supervisor.stop()  # nothing runs: returns at once
                await to_supervisor.send(StartRun(record=record))
                with anyio.fail_after(5):
                    while (
                        stored := await rt._roles.runs.get_run(record.run_id)
                    ) is not None and stored.status is rs.RunStatus.STARTING:
                        await anyio.sleep(0.01)
                group.cancel_scope.cancel()
    assert not started.is_set()
    assert stored is not None
    assert stored.status is rs.RunStatus.QUEUED
    assert "stopped before it ran" in (stored.reason or "")
