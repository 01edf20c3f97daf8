"""Recording that a run could not go on, riding out a storage that is unavailable."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from rivers.errors import StorageUnavailable
from rivers.messages import RunFailed
from rivers.storage.records import RunStatus

if TYPE_CHECKING:
    from rivers.storage.base import PoolStore, RunStore
    from rivers.storage.records import Event

__all__ = ("FAILURE_RETRY_DELAYS_S", "record_run_failure")

logger = logging.getLogger(__name__)

FAILURE_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Waits between tries to record a run's failure while the storage is unavailable."""


async def record_run_failure(
    runs: RunStore, pools: PoolStore, run_id: str, reason: str
) -> list[Event]:
    """Mark a run FAILURE, retrying while the storage is unavailable.

    Its steps have all stopped by now, so the pool claims and waiting rows they
    could not remove themselves (the storage refused) are dropped first.

    Raises:
        StorageUnavailable: still unavailable after every retry.
    """
    for delay in (*FAILURE_RETRY_DELAYS_S, None):
        try:
            await pools.free_pool_slots(run_id)
            return await runs.finish_run(
                run_id,
                RunStatus.FAILURE,
                expected=(RunStatus.STARTING, RunStatus.STARTED, RunStatus.CANCELING),
                reason=reason,
                event=RunFailed(run_id=run_id, reason=reason),
            )
        except StorageUnavailable as exc:
            if delay is None:
                raise
            logger.warning(
                "run %s: cannot record its failure yet, retrying in %ss: %s",
                run_id,
                delay,
                exc,
            )
            await anyio.sleep(delay)
    raise AssertionError("unreachable")
