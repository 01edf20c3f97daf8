"""PoolLeases: keeps the leases of this process's pool claims, stops holders of lost ones.

Every claim the PoolManager holds is renewed every third of the lease duration, from
the event loop, never from user code (the PoolManager's loop calls ``renew``). A claim
whose lease is gone (reclaimed by a LeaseGC) or that was revoked (freed by hand) is
marked lost; the step holding it is stopped and fails with ``LeaseLost``, and only
then are its slots released (by the step, through the PoolManager).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, final

from rivers.messages import LeaseExpired

if TYPE_CHECKING:
    from rivers.actors.pool_claim import Claim
    from rivers.actors.ports import EventLog
    from rivers.storage.base import PoolStore

__all__ = ("PoolLeases",)

logger = logging.getLogger(__name__)


@final
class PoolLeases:
    """Renews the PoolManager's claims and tells the holders of lost ones."""

    def __init__(
        self,
        *,
        storage: PoolStore,
        events: EventLog,
        owner: str,
        lease_s: float,
        claims: dict[tuple[str, str], Claim],
    ) -> None:
        self._storage = storage
        self._events = events
        self._owner = owner
        self._lease_s = lease_s
        self._claims = claims
        """The PoolManager's claims, shared: read here, never changed."""

    def mark_lost(
        self, keys: set[tuple[str, str]], reason: str, *, revoked: bool = False
    ) -> None:
        """Tell the holders of ``keys`` that their claims are gone."""
        for key in keys:
            claim = self._claims.get(key)
            if claim is not None:
                claim.mark_lost(reason, revoked=revoked)

    def report_reclaimed(self, rows: list[tuple[str, str, str, int, str]]) -> None:
        """Log expired claims that were deleted, and stop their local holders."""
        for pool, run_id, step_key, slots, owner in rows:
            logger.warning(
                "run %s: lease of step %s on pool %s expired; %d slot(s) reclaimed",
                run_id,
                step_key,
                pool,
                slots,
            )
            self._events.emit(
                LeaseExpired(
                    run_id=run_id,
                    step_key=step_key,
                    pool=pool,
                    slots=slots,
                    owner=owner,
                )
            )
        self.mark_lost(
            {(run_id, step_key) for _, run_id, step_key, _, _ in rows},
            "its lease expired and its slots were reclaimed",
        )

    async def stop_revoked(self) -> None:
        """Stop the holders of this process's claims that were freed by hand."""
        revoked = await self._storage.get_revoked_claims(self._owner)
        self.mark_lost(
            {key for key in revoked if key in self._claims},
            "its claim was revoked (freed by hand)",
            revoked=True,
        )

    async def renew(self) -> None:
        """Extend every held claim's lease; stop the holders of those already gone."""
        keys = list(self._claims)
        if not keys:
            return
        renewed = await self._storage.renew_leases(self._owner, keys, self._lease_s)
        lost = {key for key in keys if key not in renewed and key in self._claims}
        if lost:
            self.mark_lost(
                lost, "its pool claim was reclaimed or freed before it was renewed"
            )
