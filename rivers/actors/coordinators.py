"""QueueCoordinators: the queue coordinators of the repositories a runtime serves.

A long-lived runtime serves each of its repositories: it records that in storage
(``ProcessStore.serve``) and runs one ``QueueCoordinator`` for it, which with a run
queue admits under the queue's limits and without one admits runs submitted
elsewhere at once. They run in one task group of their own, beside a listener for
the storage's queue wake-ups: a storage that can tell (PostgreSQL, by a trigger)
wakes ``QUEUE_WAKEUPS`` when a run is queued or finishes anywhere, and each wake-up
becomes ``RunsChangedElsewhere`` in every coordinator's inbox, so a run queued on
another host is admitted at once rather than at the next ``dequeue_interval``. A
repository served later gets its coordinator then. ``stop()`` cancels them all (the runtime admits
nothing more); queued runs stay queued in storage. A one-off runtime never runs
them.
"""

from __future__ import annotations

import contextlib
import math
from functools import partial
from typing import TYPE_CHECKING, final

import anyio

from rivers._wakeups import QUEUE_WAKEUPS
from rivers.actors.queue import QueueCoordinator
from rivers.commands import CoordinatorMessage, RunsChangedElsewhere, RunsSubmitted

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from anyio.abc import TaskGroup, TaskStatus
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from rivers._clock import Clock
    from rivers.actors.ports import EventLog
    from rivers.commands import SupervisorCommand
    from rivers.definitions.repository import CodeRepository
    from rivers.storage import StorageBackend

__all__ = ("QueueCoordinators",)


@final
class QueueCoordinators:
    """One ``QueueCoordinator`` per served repository, in a task group of their own.

    It makes each coordinator's inbox and keeps both of its ends; others get the
    send ends through ``inboxes``.
    """

    def __init__(
        self,
        *,
        roles: StorageBackend,
        events: EventLog,
        owner: str,
        clock: Clock,
        supervisor: MemoryObjectSendStream[SupervisorCommand],
    ) -> None:
        self._roles = roles
        self._events = events
        self._owner = owner
        self._clock = clock
        self._supervisor = supervisor
        self._inboxes: dict[str, MemoryObjectSendStream[CoordinatorMessage]] = {}
        self._inbox_ends: list[MemoryObjectReceiveStream[CoordinatorMessage]] = []
        self._coordinators: dict[str, QueueCoordinator] = {}
        self._scope = anyio.CancelScope()
        self._group: TaskGroup | None = None
        self._done = anyio.Event()
        self._done.set()

    def get(self, repository: str) -> QueueCoordinator:
        """The coordinator of ``repository`` (benchmarks drive its ticks)."""
        return self._coordinators[repository]

    @property
    def inboxes(self) -> Mapping[str, MemoryObjectSendStream[CoordinatorMessage]]:
        """Each served repository's coordinator inbox (live: served later counts)."""
        return self._inboxes

    @property
    def running(self) -> bool:
        """Whether the coordinators run (a repository served now starts its own)."""
        return self._group is not None

    def submitted(self, repository: str, run_ids: Sequence[str]) -> None:
        """Tell ``repository``'s coordinator, if it has one, of new queued runs."""
        if inbox := self._inboxes.get(repository):
            inbox.send_nowait(RunsSubmitted(run_ids=tuple(run_ids)))

    def _changed_elsewhere(self) -> None:
        """A storage wake-up: tell every coordinator (those served later too)."""
        for inbox in self._inboxes.values():
            with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
                inbox.send_nowait(RunsChangedElsewhere())

    async def serve(self, repositories: Iterable[CodeRepository]) -> None:
        """Record that this runtime serves ``repositories``; admit their queued runs.

        One coordinator per repository: with a run queue it admits under the
        queue's limits, without one it admits runs submitted elsewhere at once.
        """
        roles = self._roles
        added = list(repositories)
        await roles.processes.serve(
            self._owner, [(r.name, r.fingerprint, list(r.assets)) for r in added]
        )
        for repository in added:
            to_coordinator, inbox = anyio.create_memory_object_stream[
                CoordinatorMessage
            ](math.inf)
            self._inboxes[repository.name] = to_coordinator
            self._inbox_ends.append(inbox)
            coordinator = QueueCoordinator(
                storage=roles.queue,
                kv=roles.state,
                runs=roles.runs,
                events=self._events,
                owner=self._owner,
                clock=self._clock,
                pools=roles.pools,
                repository=repository,
                inbox=inbox,
                supervisor=self._supervisor,
            )
            self._coordinators[repository.name] = coordinator
            if self._group is not None:
                await self._group.start(
                    coordinator.run, name=f"rivers.queue[{repository.name}]"
                )

    async def run(
        self,
        repositories: Iterable[CodeRepository],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve ``repositories`` (and later ones), their coordinators told of the
        storage's queue wake-ups, until ``stop()`` or cancelled."""
        self._done = anyio.Event()
        try:
            with self._scope:
                async with anyio.create_task_group() as group:
                    self._group = group
                    listen = self._roles.pools.listen
                    await group.start(
                        partial(listen, QUEUE_WAKEUPS, self._changed_elsewhere)
                    )
                    await self.serve(repositories)
                    task_status.started()
                    await anyio.sleep_forever()
        finally:
            self._group = None
            self._done.set()

    def stop(self) -> None:
        """Stop every coordinator: nothing more is admitted here."""
        self._scope.cancel()

    async def wait_stopped(self) -> None:
        """Wait until the coordinators have stopped (at once if they never ran)."""
        await self._done.wait()

    def close_inboxes(self) -> None:
        """Close both ends of every coordinator inbox (once every actor has stopped)."""
        for inbox in self._inboxes.values():
            inbox.close()
        for end in self._inbox_ends:
            end.close()
