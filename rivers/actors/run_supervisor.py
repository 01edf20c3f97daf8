"""RunSupervisor: owns the runs of a runtime, their tasks and the cancel protocol.

It reads one inbox of ``SupervisorCommand``s: ``StartRun`` (the queue admitted a run
here: it runs in the supervisor's own task group) and ``CancelRun`` (the runtime or
the ProcessMonitor asks a local run to stop). It alone keeps the runs in flight, the
tasks waiting for a run's end, and whether the runtime is idle or closing. A run
ending sends ``RunEnded`` to every queue coordinator's inbox at once (what the run
held in the queue's limits is free).

A run the queue admitted that has not begun when the runtime stops goes back to the
queue; one that cannot go on (unknown repository, a storage that stayed locked or
unwritable) is recorded FAILURE alone. ``materialize()`` runs through ``execute()``
in the caller's task instead, so that cancelling the caller cancels its run.

The record a local run finished with is kept (the last ``FINISHED_KEPT``) when a
task waits for that run: it is read once when the run ends, and every ``wait_for``
of it is answered from it, without reading storage again.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, assert_never, final

import anyio

from rivers._error_groups import rivers_errors_line
from rivers._liveness import RUNS_HERE
from rivers.actors.cleanup import CLEANUP_TIMEOUT_S
from rivers.actors.run_failure import record_run_failure
from rivers.commands import CancelRun, RunEnded, StartRun, SupervisorCommand
from rivers.errors import RiversError
from rivers.storage.records import RunStatus

if TYPE_CHECKING:
    from collections.abc import Mapping

    from anyio.abc import TaskGroup, TaskStatus
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from rivers.actors.ports import EventLog, RunDriver, RunFactory
    from rivers.commands import CoordinatorMessage
    from rivers.results import MaterializeResult
    from rivers.storage.base import PoolStore, RunStore
    from rivers.storage.records import RunRecord

__all__ = ("FINISHED_KEPT", "RunSupervisor")

logger = logging.getLogger(__name__)

FINISHED_KEPT = 4096
"""How many finished records of local runs the supervisor keeps for ``wait_for``."""


@final
class RunSupervisor:
    """The runs of one runtime: started from its inbox, tracked to their ends."""

    def __init__(
        self,
        *,
        inbox: MemoryObjectReceiveStream[SupervisorCommand],
        runs: RunStore,
        pools: PoolStore,
        events: EventLog,
        builder: RunFactory,
        coordinators: Mapping[str, MemoryObjectSendStream[CoordinatorMessage]],
    ) -> None:
        self._inbox = inbox
        self._runs = runs
        self._pools = pools
        self._events = events
        self._builder = builder
        self._coordinators = coordinators  # the runtime's: served later counts too
        self._active: dict[str, RunDriver] = {}
        self._waiters: dict[str, anyio.Event] = {}
        self._finished: OrderedDict[str, RunRecord] = OrderedDict()
        self._idle = anyio.Event()
        self._idle.set()
        self._closing = False
        self._group: TaskGroup | None = None

    @property
    def closing(self) -> bool:
        """Whether the runtime is stopping (it starts no run any more)."""
        return self._closing

    async def run(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Read the inbox until cancelled; cancelling it stops the runs not begun."""
        async with anyio.create_task_group() as group:
            self._group = group
            task_status.started()
            async for command in self._inbox:
                self._handle(command)
                self._handle_waiting()

    def _handle_waiting(self) -> None:
        """Handle every command already in the inbox, without a checkpoint each."""
        while True:
            try:
                self._handle(self._inbox.receive_nowait())
            except anyio.WouldBlock:
                return

    def _handle(self, command: SupervisorCommand) -> None:
        match command:
            case StartRun(record=record):
                assert self._group is not None
                # Admitted while the runtime stops (a submit racing the stop):
                # nothing may begin now, so the run goes back to the queue.
                run = self._requeue if self._closing else self._run_admitted
                self._group.start_soon(run, record, name=f"rivers.run[{record.run_id}]")
            case CancelRun(run_id=run_id, reason=reason):
                executor = self._active.get(run_id)
                if executor is not None:
                    executor.cancel(reason)
            case _:
                assert_never(command)

    async def stop(self) -> None:
        """Start the runs still in the inbox, cancel every run, wait for their ends.

        The runs not begun go back to the queue when the supervisor is cancelled.
        """
        self._handle_waiting()
        self._closing = True
        for executor in list(self._active.values()):
            executor.cancel("the runtime stopped")
        await self._idle.wait()

    async def wait_idle(self) -> None:
        """Wait until no run of this process runs."""
        await self._idle.wait()

    # ------------------------------------------------------------------ running

    async def execute(self, executor: RunDriver) -> MaterializeResult:
        """Run a STARTING run in the caller's task (``materialize()``) to its end."""
        try:
            result = await self._drive(executor)
        except BaseException:
            self._release(executor.run_id)
            raise
        await self._settle(executor.run_id)
        return result

    async def _run_admitted(self, record: RunRecord) -> None:
        """Run a run the queue admitted (STARTING, owned here) in the background.

        If the runtime stops before the run began, the run goes back to the queue.
        """
        run_id = record.run_id
        try:
            await anyio.lowlevel.checkpoint()  # where a stop finds a run not begun
        except anyio.get_cancelled_exc_class():
            await self._requeue(record)
            raise
        try:
            try:
                await self._drive(self._builder.for_record(record))
            except (RiversError, BaseExceptionGroup) as exc:
                # A run that cannot go on (bad repository, or a storage that stayed
                # locked or unwritable past its busy timeout) fails alone; the
                # runtime and its other runs carry on.
                reason = rivers_errors_line(exc)
                if reason is None:
                    raise
                logger.warning("run %s could not run: %s", run_id, reason)
                stored = await record_run_failure(
                    self._runs, self._pools, run_id, reason
                )
                self._events.publish(stored)
        except BaseException:
            self._release(run_id)
            raise
        await self._settle(run_id)

    async def _requeue(self, record: RunRecord) -> None:
        """Put an admitted run that never began back in the queue (shielded)."""
        with anyio.move_on_after(CLEANUP_TIMEOUT_S, shield=True):
            await self._runs.transition_run(
                record.run_id,
                RunStatus.QUEUED,
                expected=(RunStatus.STARTING,),
                reason="returned to the queue: the runtime stopped before it ran",
            )

    async def _drive(self, executor: RunDriver) -> MaterializeResult:
        """Run an executor as a run in flight; tell the coordinators when it ends."""
        run_id = executor.run_id
        self._active[run_id] = executor
        RUNS_HERE.add(run_id)
        self._idle = anyio.Event()
        status: RunStatus | None = None
        try:
            result = await executor.run()
            status = result.status
            return result
        except anyio.get_cancelled_exc_class():
            status = RunStatus.CANCELED  # recorded before the cancellation got here
            raise
        finally:
            del self._active[run_id]
            RUNS_HERE.discard(run_id)
            if not self._active:
                self._idle.set()
            ended = RunEnded(run_id=run_id, status=status)
            for inbox in list(self._coordinators.values()):
                inbox.send_nowait(ended)

    # ------------------------------------------------------------------ waiting

    def is_running(self, run_id: str) -> bool:
        """Whether the run is in flight here (its end will wake its waiters)."""
        return run_id in self._active

    def finished_record(self, run_id: str) -> RunRecord | None:
        """The record a local run finished with, if kept."""
        return self._finished.get(run_id)

    def end_of(self, run_id: str) -> anyio.Event:
        """An event set when the run ends here (never, for another process's run)."""
        return self._waiters.setdefault(run_id, anyio.Event())

    async def _settle(self, run_id: str) -> None:
        """After a run's end is recorded: keep its record for its waiters, wake them."""
        waiter = self._waiters.pop(run_id, None)
        if waiter is None:
            return
        try:
            record = await self._runs.get_run(run_id)
        finally:
            waiter.set()
        if record is not None and record.status.is_finished:
            self._finished[run_id] = record
            while len(self._finished) > FINISHED_KEPT:
                self._finished.popitem(last=False)

    def _release(self, run_id: str) -> None:
        """Wake a run's waiters without a record (they read storage)."""
        waiter = self._waiters.pop(run_id, None)
        if waiter is not None:
            waiter.set()
