"""ProcessMonitor: recovery of dead owners' runs, and not of live ones after an outage.

A real SQLite storage on a manual clock; the only fake is the fault: the storage's
heartbeat write fails while the "outage" lasts (a real server outage takes the same
path: ``StorageUnavailable`` from the heartbeat).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

import rivers as rs
from rivers._clock import ManualClock
from rivers._liveness import RUNS_HERE, STALE_AFTER_S
from rivers.actors.events import EventWriter
from rivers.actors.liveness import ProcessMonitor
from rivers.commands import SupervisorCommand
from rivers.storage import open_backend
from rivers.storage.base import ProcessStore, StorageBackend
from tests.storage.contract._helpers import new_run

OTHER = "other-host.example:4242:1"
"""A runtime on another host: only its heartbeat tells whether it is alive."""
HERE = "this-host.example:1:1"


class FlakyProcesses:
    """The storage's ProcessStore, whose heartbeat fails while ``down``."""

    def __init__(self, real: ProcessStore) -> None:
        self._real = real
        self.down = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    async def heartbeat(self, owner: str) -> None:
        if self.down:
            raise rs.StorageUnavailable("storage unreachable (injected)")
        await self._real.heartbeat(owner)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[StorageBackend, ManualClock]]:
    clock = ManualClock()
    async with open_backend(tmp_path / "rivers.db", clock=clock) as storage:
        await storage.processes.register_process(OTHER, 4242, "other-host.example")
        await storage.runs.create_run(new_run("r1"))
        assert await storage.queue.admit_run(
            "r1", owner=OTHER, max_concurrent_runs=10, tag_guards=[]
        )
        assert await storage.runs.transition_run(
            "r1", rs.RunStatus.STARTED, expected=[rs.RunStatus.STARTING]
        )
        yield storage, clock


@contextmanager
def _monitor(
    storage: StorageBackend, processes: ProcessStore, clock: ManualClock
) -> Iterator[ProcessMonitor]:
    send, receive = anyio.create_memory_object_stream[SupervisorCommand](100)
    with send, receive:
        yield ProcessMonitor(
            storage=processes,
            events=EventWriter(storage.events, clock),
            owner=HERE,
            clock=clock,
            supervisor=send,
        )


async def _status(storage: StorageBackend) -> rs.RunStatus:
    run = await storage.runs.get_run("r1")
    assert run is not None
    return run.status


async def test_a_run_of_a_host_whose_heartbeat_is_stale_is_failed(
    world: tuple[StorageBackend, ManualClock],
) -> None:
    storage, clock = world
    with _monitor(storage, storage.processes, clock) as monitor:
        clock.advance(STALE_AFTER_S + 1)
        await monitor.beat()
        assert await _status(storage) is rs.RunStatus.FAILURE


async def test_after_an_outage_a_live_hosts_runs_are_not_failed_for_its_stale_beat(
    world: tuple[StorageBackend, ManualClock],
) -> None:
    storage, clock = world
    flaky = FlakyProcesses(storage.processes)
    with _monitor(storage, flaky, clock) as monitor:  # type: ignore[arg-type]
        flaky.down = True
        clock.advance(STALE_AFTER_S + 10)  # an outage longer than the staleness window
        await monitor.beat()
        flaky.down = False
        await monitor.beat()  # back: OTHER's beat is stale only because of the outage
        assert await _status(storage) is rs.RunStatus.STARTED
        clock.advance(STALE_AFTER_S / 2)
        await storage.processes.heartbeat(OTHER)  # OTHER was alive: it beats again
        clock.advance(STALE_AFTER_S / 2 + 1)
        await monitor.beat()
        assert await _status(storage) is rs.RunStatus.STARTED


async def test_a_host_that_died_during_the_outage_is_recovered_after_the_window(
    world: tuple[StorageBackend, ManualClock],
) -> None:
    storage, clock = world
    flaky = FlakyProcesses(storage.processes)
    with _monitor(storage, flaky, clock) as monitor:  # type: ignore[arg-type]
        flaky.down = True
        clock.advance(STALE_AFTER_S + 10)
        await monitor.beat()
        flaky.down = False
        await monitor.beat()
        assert await _status(storage) is rs.RunStatus.STARTED
        clock.advance(STALE_AFTER_S + 1)  # OTHER never beats again: it is dead
        await monitor.beat()
        assert await _status(storage) is rs.RunStatus.FAILURE


async def test_a_run_this_process_left_started_is_failed_and_one_it_drives_is_not(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    async with open_backend(tmp_path / "rivers.db", clock=clock) as storage:
        for run_id in ("left", "driven"):
            await storage.runs.create_run(new_run(run_id))
            assert await storage.queue.admit_run(
                run_id, owner=HERE, max_concurrent_runs=10, tag_guards=[]
            )
            assert await storage.runs.transition_run(
                run_id, rs.RunStatus.STARTED, expected=[rs.RunStatus.STARTING]
            )
        RUNS_HERE.add("driven")  # a runtime of this process drives it
        try:
            with _monitor(storage, storage.processes, clock) as monitor:
                await monitor.beat()
        finally:
            RUNS_HERE.discard("driven")
        left = await storage.runs.get_run("left")
        driven = await storage.runs.get_run("driven")
    assert left is not None
    assert left.status is rs.RunStatus.FAILURE
    assert "stopped without recording its end" in (left.reason or "")
    assert driven is not None
    assert driven.status is rs.RunStatus.STARTED
