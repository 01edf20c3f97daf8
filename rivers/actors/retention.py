"""Retention: a long-lived runtime deletes the finished runs older than its
``RunBackendConfig(retention=...)``, at start and every ``EVERY_S``.

Each pass is ``prune_runs`` (small transactions, so live runs are never held up
behind it); several daemons sharing a storage may prune at once without harm (a run
is deleted once). A pass that finds the storage unavailable is logged and tried at
the next one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, final

import anyio

from rivers._durations import format_duration
from rivers.errors import StorageUnavailable

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from rivers._clock import Clock
    from rivers.storage.base import RunStore
    from rivers.storage.records import PruneResult

__all__ = ("EVERY_S", "Retention")

logger = logging.getLogger(__name__)

EVERY_S = 3600.0
"""How often a long-lived runtime prunes (and once at start)."""


@final
class Retention:
    """Owns nothing but its timer: the runs it deletes are finished, nobody's."""

    def __init__(self, runs: RunStore, clock: Clock, keep_s: float) -> None:
        self._runs = runs
        self._clock = clock
        self._keep_s = keep_s

    async def prune_now(self) -> PruneResult:
        """Delete the finished runs older than the retention; return what went."""
        result = await self._runs.prune_runs(self._clock.time() - self._keep_s)
        if result.runs:
            logger.info(
                "retention %s: pruned %d finished run(s), %d event(s)",
                format_duration(self._keep_s),
                result.runs,
                result.events,
            )
        return result

    async def run(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Prune at start and every ``EVERY_S`` until cancelled."""
        task_status.started()
        while True:
            try:
                await self.prune_now()
            except StorageUnavailable as exc:
                logger.warning("retention: %s; trying again later", exc)
            await anyio.sleep(EVERY_S)
