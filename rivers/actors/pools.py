"""PoolManager: grants pool slots to steps, renews their leases, wakes waiters.

Decisions (who may claim, in which order) come from ``core.pools.PoolState``; every
claim is confirmed by a storage transaction that re-checks the limit and the pool's
line in storage, so processes sharing the storage never exceed it together and are
served as one line (priority, then arrival). A release in this process hands the
slots to the local head at once; a release, limit change, revocation or reclaim
in another process wakes this one through the storage (``PoolStore.listen``: a UNIX
socket per runtime on SQLite, LISTEN/NOTIFY on PostgreSQL), and it re-reads the
pools then. Waiters re-check every ``POLL_INTERVAL_S`` anyway, in case a wake-up
was missed.

Leases: every claim this process holds is renewed every third of the lease
duration, and a claim whose lease is gone or that was revoked is marked lost
(``pool_leases.PoolLeases``, which the manager's loop drives). Revocations are
looked for on every wake-up and every ``REVOKE_CHECK_S`` while this process holds
claims; at the same pace, pending rows of this process that no waiter stands behind
any more are deleted (others wait behind every row of the line).

Every change to the state is kept only once its write succeeded: a release whose
write fails (the storage stayed locked, say) puts the waiters it would have
granted back in line, counts the claim's slots again, and is retried every poll
interval until it is written (``pool_releases.UnwrittenReleases``; its lease, no
longer renewed, lapses meanwhile).

The events and the PoolTooSmall errors the manager reports are built by the pure
functions of ``pool_messages``.
"""

from __future__ import annotations

import logging
import math
from functools import partial
from typing import TYPE_CHECKING, assert_never, final

import anyio

from rivers.actors.cleanup import CLEANUP_TIMEOUT_S
from rivers.actors.pool_claim import Claim
from rivers.actors.pool_leases import PoolLeases
from rivers.actors.pool_messages import (
    blocked_event,
    claimed_event,
    released_event,
    too_small,
)
from rivers.actors.pool_releases import UnwrittenReleases
from rivers.commands import LeasesReclaimed, PoolMessage
from rivers.core.pools import PoolState, Waiter
from rivers.errors import StorageError, StorageUnavailable

if TYPE_CHECKING:
    from anyio.abc import TaskStatus
    from anyio.streams.memory import MemoryObjectSendStream

    from rivers._clock import Clock
    from rivers.actors.ports import EventLog
    from rivers.messages import StepPoolClaimed
    from rivers.storage.base import PoolStore
    from rivers.storage.records import ClaimResult

__all__ = ("POLL_INTERVAL_S", "REVOKE_CHECK_S", "Claim", "PoolManager")

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.2
REVOKE_CHECK_S = 1.0


@final
class PoolManager:
    """Owns this process's pool waiters and claims."""

    def __init__(
        self,
        *,
        storage: PoolStore,
        events: EventLog,
        owner: str,
        clock: Clock,
        lease_s: float,
    ) -> None:
        self._storage = storage
        self._events = events
        self._owner = owner
        self._clock = clock
        self._lease_s = lease_s
        self._state = PoolState()
        self._claims: dict[tuple[str, str], Claim] = {}
        self._granted: dict[tuple[str, str], anyio.Event] = {}
        self._failed: dict[tuple[str, str], BaseException] = {}
        self._unwritten = UnwrittenReleases(
            storage=storage, events=events, clock=clock, state=self._state
        )
        self._unreleased = self._unwritten.claims
        """Claims given back whose release could not be written yet (shared)."""
        self._wake = anyio.Event()
        self._stale = False
        self._send, self._inbox = anyio.create_memory_object_stream[PoolMessage](
            math.inf
        )
        self._leases = PoolLeases(
            storage=storage,
            events=events,
            owner=owner,
            lease_s=lease_s,
            claims=self._claims,
        )

    @property
    def inbox(self) -> MemoryObjectSendStream[PoolMessage]:
        """The send end of this manager's inbox (``PoolMessage``)."""
        return self._send

    @property
    def held(self) -> list[Claim]:
        """The claims this process holds now."""
        return list(self._claims.values())

    def wake(self) -> None:
        """Re-evaluate the waiters now (slots may have been freed)."""
        self._wake.set()

    def wake_from_storage(self) -> None:
        """Re-read the pools now: another process changed them (a wake-up)."""
        self._stale = True
        self._wake.set()

    def _wake_if_waiting(self) -> None:
        # With nobody waiting a wake-up has nothing to grant (renewals run on
        # their own timer), so a release costs no loop turn of the manager.
        if self._state.waiters:
            self._wake.set()

    def mark_lost(
        self, keys: set[tuple[str, str]], reason: str, *, revoked: bool = False
    ) -> None:
        """Tell the holders of ``keys`` that their claims are gone."""
        self._leases.mark_lost(keys, reason, revoked=revoked)

    # ------------------------------------------------------------------ claims

    async def acquire(
        self,
        *,
        run_id: str,
        step_key: str,
        pools: tuple[str, ...],
        slots: int,
        priority: int,
        wait: bool,
    ) -> Claim | None:
        """Claim ``slots`` of every pool (all or nothing).

        With ``wait=False`` return None when the claim cannot be made at once;
        otherwise wait in line (cancellation removes the waiter and any claim).

        Raises:
            PoolTooSmall: a pool's limit is below ``slots``: it could never fit.
        """
        key = (run_id, step_key)
        if key in self._unreleased:
            # A retry of a step whose last release is not written yet: write it
            # first, or it would later delete this attempt's claim.
            await self._unwritten.retry(key)
        if self._state.rate_until:
            self._state.rates_due(self._clock.monotonic())
        if self._state.may_claim_now(pools, slots, priority):
            self._state.begin_claim(pools, slots)
            try:
                result = await self._claim(run_id, step_key, pools, slots, priority)
            finally:
                self._state.end_claim(pools, slots)
            if result.granted:
                return self._hold(run_id, step_key, pools, slots, result)
            # The slots this claim counted as taken may let a waiter in.
            self._wake_if_waiting()
        impossible = too_small(self._state, step_key, pools, slots)
        if impossible is not None:
            raise impossible
        if not wait:
            return None
        waiter = self._state.add(key, pools, slots, priority)
        granted = anyio.Event()
        self._granted[key] = granted
        # Emit while the waiter is certainly in line: the grant loop may hand
        # it slots while the pending row is being written below.
        self._events.emit(blocked_event(self._state, waiter))
        try:
            await self._storage.add_pending_step(
                pools=pools,
                run_id=run_id,
                step_key=step_key,
                slots=slots,
                priority=priority,
                owner=self._owner,
            )
            if granted.is_set():
                # Granted before the pending row landed: the grant's claim could
                # not delete a row that did not exist yet, so drop it now.
                await self._storage.remove_pending_step(run_id, step_key)
            self._wake.set()
            await granted.wait()
        except BaseException:
            with anyio.move_on_after(CLEANUP_TIMEOUT_S, shield=True):
                self._state.remove(key)
                self._granted.pop(key, None)
                self._failed.pop(key, None)
                claim = self._claims.get(key)
                if claim is not None:
                    await self.release(claim)
                else:
                    await self._storage.remove_pending_step(run_id, step_key)
            raise
        self._granted.pop(key, None)
        failure = self._failed.pop(key, None)
        if failure is not None:
            await self._storage.remove_pending_step(run_id, step_key)
            raise failure
        return self._claims[key]

    async def release(self, claim: Claim) -> None:
        """Give the claim's slots back (shielded) and wake the next waiters."""
        if self._claims.pop(claim.key, None) is None:
            return
        self._state.release(claim.pools, claim.slots)
        # Hand the freed slots straight to the waiters they let in: the release
        # and their claims are one transaction, written on the loop when the
        # write lock is free (no thread hop, no await), else on the SQLite thread.
        waiters = [w for w in self._state.grants() if w.key in self._granted]
        claims = [(*w.key, w.pools, w.slots, w.priority) for w in waiters]
        results: list[ClaimResult] | None = None
        failure: StorageError | None = None
        try:
            results = self._storage.release_and_claim_now(
                run_id=claim.run_id,
                step_key=claim.step_key,
                claims=claims,
                owner=self._owner,
                lease_s=self._lease_s,
            )
            if results is None:
                with anyio.move_on_after(CLEANUP_TIMEOUT_S, shield=True):
                    results = await self._storage.release_and_claim(
                        run_id=claim.run_id,
                        step_key=claim.step_key,
                        claims=claims,
                        owner=self._owner,
                        lease_s=self._lease_s,
                    )
        except StorageError as exc:
            failure = exc
        if results is None:
            # Nothing was written: undo. The waiters are back in line where they
            # were, the slots count as held, and the run loop retries the release.
            self._wake.set()
            self._unwritten.keep(claim, waiters, failure)  # raises or logs failure
            return
        for waiter, result in zip(waiters, results, strict=True):
            self._observe(result)
            await self._settle(waiter, result)
        self._events.emit(released_event(claim, self._clock.monotonic()))
        self._wake_if_waiting()

    async def _claim(
        self,
        run_id: str,
        step_key: str,
        pools: tuple[str, ...],
        slots: int,
        priority: int,
    ) -> ClaimResult:
        result = await self._storage.claim_pool_slots(
            run_id=run_id,
            step_key=step_key,
            pools=pools,
            slots=slots,
            owner=self._owner,
            lease_s=self._lease_s,
            priority=priority,
        )
        self._observe(result)
        return result

    def _observe(self, result: ClaimResult) -> None:
        for view in result.views:
            self._state.observe(view.pool, view.claimed, view.limit)
        for pool, priority in result.behind:
            self._state.observe_behind(pool, priority)
        for pool, wait_s in result.rate_wait:
            self._state.observe_rate(pool, self._clock.monotonic() + wait_s)
        if result.reclaimed:
            self._leases.report_reclaimed(list(result.reclaimed))
        self._fail_impossible()

    def _fail_impossible(self) -> None:
        """Fail at once the waiters a lowered limit left unable ever to fit."""
        for waiter in self._state.drop_impossible():
            self._fail_too_small(waiter)

    def _fail_too_small(self, waiter: Waiter) -> bool:
        """Fail ``waiter`` with PoolTooSmall if a pool's limit is below its slots."""
        error = too_small(self._state, waiter.key[1], waiter.pools, waiter.slots)
        granted = self._granted.get(waiter.key)
        if error is None or granted is None:
            return False
        self._failed[waiter.key] = error
        granted.set()
        return True

    async def _settle(self, waiter: Waiter, result: ClaimResult) -> None:
        """Act on a waiter's claim attempt: grant it, fail it, or put it back."""
        run_id, step_key = waiter.key
        granted = self._granted.get(waiter.key)
        if granted is None:
            # Cancelled while its claim was being written: give the slots back.
            if result.granted:
                with anyio.CancelScope(shield=True):
                    await self._storage.release_pool_slots(run_id, step_key)
                self._state.release(waiter.pools, waiter.slots)
                self._wake.set()
            return
        if result.granted:
            self._hold(run_id, step_key, waiter.pools, waiter.slots, result)
            granted.set()
            return
        if not self._fail_too_small(waiter):
            self._state.requeue(waiter)

    def _hold(
        self,
        run_id: str,
        step_key: str,
        pools: tuple[str, ...],
        slots: int,
        result: ClaimResult,
    ) -> Claim:
        claim = Claim(
            run_id,
            step_key,
            pools,
            slots,
            self._clock.monotonic(),
            result.tokens[0] if result.tokens else None,
            result.lease_expires_at,
        )
        self._claims[claim.key] = claim
        return claim

    def claimed_event(self, claim: Claim, waited_s: float) -> StepPoolClaimed:
        """Return the STEP_POOL_CLAIMED event of a fresh claim."""
        return claimed_event(claim, waited_s)

    # -------------------------------------------------------------------- loop

    async def run(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Grant waiters when woken, when a rate token is due and every poll
        interval; renew leases; stop revoked holders; retry unwritten releases."""
        with self._send, self._inbox:
            async with anyio.create_task_group() as tg:
                await tg.start(
                    partial(self._storage.listen, self._owner, self.wake_from_storage)
                )
                tg.start_soon(self._read_inbox)
                await self._loop(task_status)

    async def _read_inbox(self) -> None:
        """Apply each message of the inbox, in order."""
        async for message in self._inbox:
            match message:
                case LeasesReclaimed(claims=claims):
                    self._leases.report_reclaimed(list(claims))
                    self._wake.set()
                case _:
                    assert_never(message)

    async def _loop(self, task_status: TaskStatus[None]) -> None:
        renew_every = self._lease_s / 3
        next_renew = self._clock.monotonic() + renew_every
        next_check = self._clock.monotonic() + REVOKE_CHECK_S
        next_poll = 0.0  # the pools are re-read on the first turn with waiters
        task_status.started()
        while True:
            now = self._clock.monotonic()
            timeout = max(0.0, min(next_renew, next_check) - now)
            if self._state.waiters or self._unreleased:
                timeout = min(timeout, max(0.0, next_poll - now))
            due = min(self._state.rate_until.values(), default=None)
            if due is not None:  # wake when a rate token is due, to the millisecond
                timeout = min(timeout, max(0.0, due - now))
            with anyio.move_on_after(timeout):
                await self._wake.wait()
            self._wake = anyio.Event()
            stale, self._stale = self._stale, False
            if stale:  # a limit or rate may have changed: claims say anew
                self._state.rate_until.clear()
            self._state.rates_due(self._clock.monotonic())
            try:
                if self._unreleased:
                    await self._unwritten.retry_all()
                    self._wake_if_waiting()
                now = self._clock.monotonic()
                if now >= next_renew:
                    await self._leases.renew()
                    next_renew = self._clock.monotonic() + renew_every
                if now >= next_check:
                    await self._forget_stale_pending()
                if self._claims and (stale or now >= next_check):
                    await self._leases.stop_revoked()
                if now >= next_check:
                    next_check = self._clock.monotonic() + REVOKE_CHECK_S
                if self._state.waiters:
                    # Told to, or in case a wake-up was lost (not per rate token).
                    if stale or now >= next_poll:
                        await self._refresh()
                        next_poll = self._clock.monotonic() + POLL_INTERVAL_S
                    await self._grant_waiting()
            except StorageUnavailable as exc:
                logger.warning("pool manager: %s", exc)

    async def _forget_stale_pending(self) -> None:
        """Delete this process's pending rows that no waiter stands behind.

        Other processes wait behind every row of the line, so a row left by a
        waiter whose clean-up failed (storage unavailable) must not stay.
        """
        rows = await self._storage.get_pending_of(self._owner)
        for run_id, step_key in rows - set(self._granted):
            await self._storage.remove_pending_step(run_id, step_key)

    async def _refresh(self) -> None:
        pools = {
            pool for waiter in self._state.waiters.values() for pool in waiter.pools
        }
        for view in await self._storage.get_pool_views(sorted(pools)):
            self._state.observe(view.pool, view.claimed, view.limit)
        self._fail_impossible()

    async def _grant_waiting(self) -> None:
        for waiter in self._state.grants():
            if waiter.key not in self._granted:  # the waiter was cancelled meanwhile
                continue
            run_id, step_key = waiter.key
            result = await self._claim(
                run_id, step_key, waiter.pools, waiter.slots, waiter.priority
            )
            await self._settle(waiter, result)
