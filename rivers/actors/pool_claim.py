"""Claim: the slots a step holds in each of its pools, and what stops it when the
slots are gone (its lease expired, or the claim was freed by hand)."""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from rivers.context import PoolLease

if TYPE_CHECKING:
    import anyio

__all__ = ("Claim",)


@final
class Claim:
    """Slots a step holds in each of its pools until it releases them."""

    __slots__ = (
        "_expires_at",
        "_on_lost",
        "_token",
        "claimed_at",
        "lost",
        "lost_reason",
        "pools",
        "revoked",
        "run_id",
        "slots",
        "step_key",
    )

    def __init__(
        self,
        run_id: str,
        step_key: str,
        pools: tuple[str, ...],
        slots: int,
        at: float,
        token: int | None = None,
        expires_at: float | None = None,
    ) -> None:
        self.run_id = run_id
        self.step_key = step_key
        self.pools = pools
        self.slots = slots
        self.claimed_at = at
        self._token = token
        self._expires_at = expires_at
        self.lost = False
        self.lost_reason: str | None = None
        self.revoked = False
        self._on_lost: anyio.CancelScope | None = None

    @property
    def key(self) -> tuple[str, str]:
        """(run id, step key)."""
        return (self.run_id, self.step_key)

    @property
    def lease(self) -> PoolLease | None:
        """The first pool's grant: its fencing token and lease end (at the grant)."""
        if self._token is None or self._expires_at is None:
            return None
        return PoolLease.from_wire(
            (self._token, self.pools[0], self.slots, self._expires_at)
        )

    def cancel_on_loss(self, scope: anyio.CancelScope) -> None:
        """Cancel ``scope`` when the claim is lost (at once if it already is).

        A callback, not a watcher task: guarding a step costs no task and no
        loop turn.
        """
        self._on_lost = scope
        if self.lost:
            scope.cancel()

    def mark_lost(self, reason: str, *, revoked: bool = False) -> None:
        """Record that the claim's slots are gone and stop whoever it guards."""
        if self.lost:
            return
        self.lost_reason = reason
        self.lost = True
        self.revoked = revoked
        if self._on_lost is not None:
            self._on_lost.cancel()
