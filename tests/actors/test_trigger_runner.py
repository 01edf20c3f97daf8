"""TriggerRunner's hand-over to the queue: the runs a sensor asks for are written
QUEUED and announced with ``RunsSubmitted`` in the repository's coordinator inbox
(no call into the runtime), once per key.

A real SQLite storage and the runner alone: the inbox is a memory object stream the
test reads, as the QueueCoordinator would.
"""

from __future__ import annotations

import math
from pathlib import Path

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

import rivers as rs
from rivers._clock import ManualClock
from rivers.actors.events import EventWriter
from rivers.actors.triggers import TriggerRunner
from rivers.commands import CoordinatorMessage, RunsSubmitted
from rivers.storage import open_backend
from rivers.storage.records import RunStatus


@rs.Asset
def work() -> None:
    return None


def _drain(inbox: MemoryObjectReceiveStream[CoordinatorMessage]) -> list[object]:
    got: list[object] = []
    while True:
        try:
            got.append(inbox.receive_nowait())
        except anyio.WouldBlock:
            return got


async def test_sensor_runs_are_queued_and_sent_to_the_coordinator_inbox_once_per_key(
    tmp_path: Path,
) -> None:
    @rs.sensor(interval="1m")
    def files(context: rs.SensorContext) -> list[rs.RunRequest]:
        return [
            rs.RunRequest(run_key="a"),
            rs.RunRequest(run_key="b"),
            rs.RunRequest(run_key="a"),  # the same key twice: one run
        ]

    repo = rs.CodeRepository([work], sensors=[files])
    clock = ManualClock(1_700_000_000)
    send, inbox = anyio.create_memory_object_stream[CoordinatorMessage](math.inf)
    with send, inbox:
        await _tick_twice(repo, clock, send, inbox, tmp_path)


async def _tick_twice(
    repo: rs.CodeRepository,
    clock: ManualClock,
    send: MemoryObjectSendStream[CoordinatorMessage],
    inbox: MemoryObjectReceiveStream[CoordinatorMessage],
    tmp_path: Path,
) -> None:
    async with open_backend(tmp_path / "rivers.db", clock=clock) as storage:
        events = EventWriter(storage.events, clock)
        runner = TriggerRunner(
            [repo],
            storage=storage.runs,
            kv=storage.state,
            events=events,
            owner="me",
            clock=clock,
            queues={repo.name: send},
        )
        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            report = await runner.tick_now()
            assert report.leader
            runs = {r.run_id: r for r in await storage.runs.get_runs(limit=None)}
            assert [runs[run_id].run_key for run_id in report.submitted] == [
                "sensor:files:a",
                "sensor:files:b",
            ]
            assert len(runs) == 2
            assert {r.status for r in runs.values()} == {RunStatus.QUEUED}
            assert _drain(inbox) == [RunsSubmitted(run_ids=tuple(report.submitted))]

            clock.advance(60)  # due again: both keys used, nothing new to announce
            again = await runner.tick_now()
            assert again.submitted == []
            assert _drain(inbox) == []
            assert len(await storage.runs.get_runs(limit=None)) == 2
            tg.cancel_scope.cancel()
