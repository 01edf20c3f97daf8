"""Queue wake-ups from other processes: a storage wake-up becomes a message.

A storage that can tell (PostgreSQL, by a trigger) wakes ``QUEUE_WAKEUPS`` when a
run is queued or finishes anywhere; ``relay_queue_wakeups`` turns each wake-up
into ``RunsChangedElsewhere`` in every coordinator's inbox, so a run queued on
another host is admitted at once rather than at the next ``dequeue_interval``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import anyio

from rivers._wakeups import QUEUE_WAKEUPS
from rivers.commands import RunsChangedElsewhere

if TYPE_CHECKING:
    from collections.abc import Mapping

    from anyio.abc import TaskStatus
    from anyio.streams.memory import MemoryObjectSendStream

    from rivers.commands import CoordinatorMessage
    from rivers.storage.base import PoolStore

__all__ = ("relay_queue_wakeups",)


async def relay_queue_wakeups(
    pools: PoolStore,
    inboxes: Mapping[str, MemoryObjectSendStream[CoordinatorMessage]],
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Send ``RunsChangedElsewhere`` to every inbox in ``inboxes`` (read at each
    wake-up: coordinators attached later get it too) until cancelled."""

    def relay() -> None:
        for inbox in inboxes.values():
            with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
                inbox.send_nowait(RunsChangedElsewhere())

    await pools.listen(QUEUE_WAKEUPS, relay, task_status=task_status)
