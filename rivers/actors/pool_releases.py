"""UnwrittenReleases: the PoolManager's releases whose write failed, kept until written.

A release counts in the PoolManager's state only once its write succeeded. When
nothing of it was written (the storage stayed locked, say), the waiters it would
have granted go back in line where they were and the claim's slots count as held
again; the release is kept here and written again (every poll interval by the
PoolManager's loop, and before a new attempt of the same step claims) until it
succeeds. Its lease, no longer renewed, lapses meanwhile.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, final

from rivers.actors.pool_messages import released_event
from rivers.errors import StorageUnavailable

if TYPE_CHECKING:
    from rivers._clock import Clock
    from rivers.actors.pool_claim import Claim
    from rivers.actors.ports import EventLog
    from rivers.core.pools import PoolState, Waiter
    from rivers.errors import StorageError
    from rivers.storage.base import PoolStore

__all__ = ("UnwrittenReleases",)

logger = logging.getLogger(__name__)


@final
class UnwrittenReleases:
    """Releases given back whose write failed, by (run id, step key)."""

    def __init__(
        self,
        *,
        storage: PoolStore,
        events: EventLog,
        clock: Clock,
        state: PoolState,
    ) -> None:
        self._storage = storage
        self._events = events
        self._clock = clock
        self._state = state
        """The PoolManager's state, shared."""
        self.claims: dict[tuple[str, str], Claim] = {}

    def keep(
        self, claim: Claim, waiters: list[Waiter], failure: StorageError | None
    ) -> None:
        """Undo a release of which nothing was written, and keep it to write again.

        ``waiters`` are those the release would have granted: they go back in line.

        Raises:
            StorageError: ``failure``, unless it is None (the storage did not answer
                in time) or StorageUnavailable: those are logged.
        """
        for waiter in waiters:
            self._state.requeue(waiter)
        self._state.claim(claim.pools, claim.slots)
        self.claims[claim.key] = claim
        if failure is not None and not isinstance(failure, StorageUnavailable):
            raise failure
        logger.warning(
            "run %s: the release of step %s's pool slots is not written yet "
            "(%s); retrying",
            claim.run_id,
            claim.step_key,
            failure or "the storage did not answer in time",
        )

    async def retry(self, key: tuple[str, str]) -> None:
        """Write a release that failed before; count its slots free once written."""
        await self._storage.release_pool_slots(*key)
        claim = self.claims.pop(key, None)
        if claim is not None:
            self._state.release(claim.pools, claim.slots)
            self._events.emit(released_event(claim, self._clock.monotonic()))

    async def retry_all(self) -> None:
        """Write every kept release again, in the order they were kept."""
        for key in list(self.claims):
            await self.retry(key)
