"""LeaseGC: reclaims pool claims whose holders stopped renewing them.

Every ``lease_gc_interval`` it deletes the claims whose ``lease_expires_at`` has
passed (the expiry is re-checked inside the deleting transaction, so a claim renewed
a moment earlier is kept), emits ``LEASE_EXPIRED`` for each, and sends
``LeasesReclaimed`` to the PoolManager's inbox: it stops the local holders and gives
the slots to waiters.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, final

import anyio

from rivers.commands import LeasesReclaimed
from rivers.errors import StorageUnavailable

if TYPE_CHECKING:
    from anyio.abc import TaskStatus
    from anyio.streams.memory import MemoryObjectSendStream

    from rivers.actors.ports import EventLog
    from rivers.commands import PoolMessage
    from rivers.storage.base import PoolStore

__all__ = ("LeaseGC",)

logger = logging.getLogger(__name__)


@final
class LeaseGC:
    """Deletes expired claims on an interval."""

    def __init__(
        self,
        *,
        storage: PoolStore,
        events: EventLog,
        pools: MemoryObjectSendStream[PoolMessage],
        interval_s: float,
    ) -> None:
        self._storage = storage
        self._events = events
        self._pools = pools
        self._interval_s = interval_s

    async def run(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Collect expired claims until cancelled."""
        task_status.started()
        while True:
            await anyio.sleep(self._interval_s)
            try:
                await self.collect()
            except StorageUnavailable as exc:
                logger.warning("lease GC: %s", exc)

    async def collect(self) -> int:
        """Reclaim expired claims now; return how many were reclaimed."""
        rows = await self._storage.reclaim_expired_leases()
        if rows:
            with contextlib.suppress(anyio.ClosedResourceError):  # the manager ended
                self._pools.send_nowait(LeasesReclaimed(claims=tuple(rows)))
        return len(rows)
