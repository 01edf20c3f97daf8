"""``SqlPools``: the ``PoolStore`` of both backends (SQLite, PostgreSQL). Claims,
leases, lines, limits and their inspection (the SQL: ``_pools_sql``,
``_pool_limits_sql``, ``_pool_inspection_sql``).

Claims and the release that hands slots on go through ``write_soon`` (on the loop
thread when the write lock is free); after a write that concerns other runtimes'
waiters, those runtimes are woken (the connection's ``wakes``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from rivers._validate import MAX_LIMIT, check_int, check_pool_name
from rivers.core.rates import check_rate_override
from rivers.storage import (
    _pool_inspection_sql as inspect,
    _pool_limits_sql as limits_sql,
    _pools_sql as sql,
)

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Iterable

    from anyio.abc import TaskStatus

    from rivers._clock import Clock
    from rivers.storage._connection import SqlConnection
    from rivers.storage.records import PendingStep, PoolInfo, SlotHolder

__all__ = ("SqlPools",)


class SqlPools:
    """Pool claims, leases, lines and limits in SQL (the ``PoolStore`` role)."""

    def __init__(self, db: SqlConnection) -> None:
        self._db = db
        self.clock = db.clock

    def _wake(self, owners: Iterable[str]) -> None:
        """Wake the runtimes of ``owners`` (after the write that concerns them)."""
        self._db.wakes.send(owners)

    async def listen(
        self,
        owner: str,
        on_wake: Callable[[], None],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Call ``on_wake`` whenever another process wakes ``owner`` (a release
        or a limit change that concerns its waiters), until cancelled."""
        await self._db.wakes.listen(owner, on_wake, task_status=task_status)

    # ------------------------------------------------------------ runtime side

    async def claim_pool_slots(
        self,
        *,
        run_id: str,
        step_key: str,
        pools: tuple[str, ...],
        slots: int,
        owner: str,
        lease_s: float,
        priority: int = 0,
    ) -> sql.ClaimResult:
        """Claim ``slots`` of every pool at once, or nothing (BEGIN IMMEDIATE).

        Refused also when another process's live waiter stands ahead in a line.
        The time is read inside the transaction: a write that waited (a lock, a
        lost connection) checks the limits and starts the lease when it is made.
        """
        clock = self.clock
        result = await self._db.write_soon(
            lambda conn: sql.claim(
                conn,
                run_id=run_id,
                step_key=step_key,
                pools=pools,
                slots=slots,
                owner=owner,
                now=clock.time(),
                lease_s=lease_s,
                priority=priority,
            )
        )
        self._wake(result.wake)
        return result

    async def release_pool_slots(
        self, run_id: str, step_key: str
    ) -> list[tuple[str, str, str, int, float]]:
        """Release a step's claims and pending rows; return what was released."""
        now = self.clock.time()

        def write(
            conn: sqlite3.Connection,
        ) -> tuple[list[tuple[str, str, str, int, float]], frozenset[str]]:
            rows = sql.release(conn, run_id, step_key)
            pools = tuple(sorted({row[0] for row in rows}))
            return rows, sql.line_heads(conn, pools, "", now)

        rows, wake = await self._db.write(write)
        self._wake(wake)
        return rows

    async def release_and_claim(
        self,
        *,
        run_id: str,
        step_key: str,
        claims: list[tuple[str, str, tuple[str, ...], int, int]],
        owner: str,
        lease_s: float,
    ) -> list[sql.ClaimResult]:
        """Release a step's claims, then try ``claims`` (run, step, pools, slots,
        priority).

        One transaction: the freed slots go to the next waiters without another
        round trip. Each claim is checked against the limits and the lines as
        usual; another process whose waiter now leads a freed pool is woken.
        """
        results, wake = await self._db.write_soon(
            _release_and_claim(run_id, step_key, claims, owner, self.clock, lease_s)
        )
        self._wake(wake)
        return results

    def release_and_claim_now(
        self,
        *,
        run_id: str,
        step_key: str,
        claims: list[tuple[str, str, tuple[str, ...], int, int]],
        owner: str,
        lease_s: float,
    ) -> list[sql.ClaimResult] | None:
        """``release_and_claim`` on the loop thread if the write lock is free now.

        Returns None, having written nothing, when it would have to wait: then
        call ``release_and_claim``.
        """
        done, written = self._db.write_now(
            _release_and_claim(run_id, step_key, claims, owner, self.clock, lease_s)
        )
        if not done or written is None:
            return None
        results, wake = written
        self._wake(wake)
        return results

    async def renew_leases(
        self, owner: str, keys: list[tuple[str, str]], lease_s: float
    ) -> set[tuple[str, str]]:
        """Extend the leases of ``keys`` unexpired when the transaction runs (not
        when it was asked for); return those renewed."""
        clock = self.clock
        return await self._db.write(
            lambda conn: sql.renew(conn, owner, keys, clock.time(), lease_s)
        )

    async def reclaim_expired_leases(self) -> list[tuple[str, str, str, int, str]]:
        """Delete expired claims (re-checked in the transaction); return them.

        Other processes whose waiters now lead a reclaimed pool are woken.
        """
        now = self.clock.time()

        def write(
            conn: sqlite3.Connection,
        ) -> tuple[list[tuple[str, str, str, int, str]], frozenset[str]]:
            rows = sql.reclaim_expired(conn, now)
            pools = tuple(sorted({row[0] for row in rows}))
            return rows, sql.line_heads(conn, pools, "", now)

        rows, wake = await self._db.write(write)
        self._wake(wake)
        return rows

    async def get_pool_views(self, pools: Iterable[str]) -> tuple[sql.PoolView, ...]:
        """Return each pool's effective limit and live claimed slots."""
        names = tuple(pools)
        now = self.clock.time()
        return await self._db.call(lambda conn: sql.pool_views(conn, names, now))

    async def add_pending_step(
        self,
        *,
        pools: tuple[str, ...],
        run_id: str,
        step_key: str,
        slots: int,
        priority: int,
        owner: str,
    ) -> None:
        """Record that a step waits for ``pools`` (for inspection)."""
        now = self.clock.time()
        await self._db.write(
            lambda conn: conn.executemany(
                "INSERT INTO pending_steps "
                "(pool, run_id, step_key, slots, priority, owner, enqueued_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (pool, run_id, step_key) "
                "DO UPDATE SET slots = excluded.slots, priority = excluded.priority, "
                "owner = excluded.owner, enqueued_at = excluded.enqueued_at",
                [
                    (pool, run_id, step_key, slots, priority, owner, now)
                    for pool in pools
                ],
            )
        )

    async def remove_pending_step(self, run_id: str, step_key: str) -> None:
        """Forget that a step waits (and wake whoever now leads its lines)."""
        now = self.clock.time()

        def write(conn: sqlite3.Connection) -> frozenset[str]:
            pools = tuple(
                row[0]
                for row in conn.execute(
                    "DELETE FROM pending_steps WHERE run_id = ? AND step_key = ? "
                    "RETURNING pool",
                    (run_id, step_key),
                )
            )
            return sql.line_heads(conn, pools, "", now) if pools else frozenset()

        self._wake(await self._db.write(write))

    async def get_pending_of(self, owner: str) -> set[tuple[str, str]]:
        """Return the (run, step) of ``owner``'s steps recorded as waiting."""

        def read(conn: sqlite3.Connection) -> set[tuple[str, str]]:
            rows = conn.execute(
                "SELECT DISTINCT run_id, step_key FROM pending_steps WHERE owner = ?",
                (owner,),
            )
            return {(row[0], row[1]) for row in rows}

        return await self._db.call(read)

    async def get_revoked_claims(self, owner: str) -> set[tuple[str, str]]:
        """Return the (run, step) of ``owner``'s claims that were revoked."""
        return await self._db.call(lambda conn: sql.revoked_claims(conn, owner))

    async def declare_pools(
        self,
        limits: dict[str, int | None],
        declared_by: str,
        default_limit: int | None = None,
        rates: dict[str, tuple[str, int] | None] | None = None,
    ) -> None:
        """Record the pools a repository names, their declared limits and the
        repository's ``default_pool_limit`` (and, when ``rates`` is given, each
        pool's declared rate and burst: None for none); wake the runtimes waiting
        for a pool whose limit or rate in force changed (a time window's edge, a
        new default)."""
        now = self.clock.time()

        def write(conn: sqlite3.Connection) -> frozenset[str]:
            before = {name: limits_sql.limits_in_force(conn, name) for name in limits}
            conn.executemany(
                "INSERT INTO pools (name, declared_limit, declared_by, default_limit, "
                "updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "declared_limit = excluded.declared_limit, "
                "declared_by = excluded.declared_by, "
                "default_limit = excluded.default_limit, updated_at = excluded.updated_at",
                [
                    (name, limit, declared_by, default_limit, now)
                    for name, limit in limits.items()
                ],
            )
            if rates is not None:
                conn.executemany(
                    "UPDATE pools SET declared_rate = ?, declared_burst = ? "
                    "WHERE name = ?",
                    [(*(rates.get(name) or (None, None)), name) for name in limits],
                )
            changed = [
                name
                for name, in_force in before.items()
                if limits_sql.limits_in_force(conn, name) != in_force
            ]
            return frozenset().union(
                *(sql.waiting_owners(conn, name) for name in changed)
            )

        self._wake(await self._db.write(write))

    async def get_all_pool_infos(self) -> list[PoolInfo]:
        """Return every known pool: limit, its source, claimed slots, pending steps."""
        now = self.clock.time()
        return await self._db.call(lambda conn: limits_sql.pool_infos(conn, None, now))

    async def get_pool_info(self, name: str) -> PoolInfo:
        """Return one pool (an unknown name has zero counts and the stored default
        limit, or none)."""
        now = self.clock.time()
        infos = await self._db.call(lambda conn: limits_sql.pool_infos(conn, name, now))
        return infos[0]

    async def set_pool_limit(
        self,
        name: str,
        limit: int,
        *,
        rate: str | None = None,
        burst: int | None = None,
    ) -> None:
        """Override a pool's limit (wins over the declared one; survives restarts).

        With ``rate`` the override also limits starts (``"100/min"``; ``"none"``
        lifts a declared rate), ``burst`` at most at once (default 1); without it
        the declared rate, if any, applies.

        Raises:
            ConfigError: the name is invalid, the limit is not in 0..10,000, the
                rate is not a rate, or the burst is not in 1..10,000 or has no rate.
        """
        check_pool_name(name)
        check_int(limit, f"limit of pool {name!r}", minimum=0, maximum=MAX_LIMIT)
        stored_rate = check_rate_override(rate, burst, f"rate of pool {name!r}")
        now = self.clock.time()

        def write(conn: sqlite3.Connection) -> frozenset[str]:
            conn.execute(
                "INSERT INTO pools (name, override_limit, override_rate, "
                "override_burst, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET override_limit = excluded.override_limit, "
                "override_rate = excluded.override_rate, "
                "override_burst = excluded.override_burst, "
                "updated_at = excluded.updated_at",
                (name, limit, *stored_rate, now),
            )
            return sql.waiting_owners(conn, name)

        # Every process with a waiter re-reads the limit now: steps it lets in
        # claim, and steps it leaves unable ever to fit fail with PoolTooSmall.
        self._wake(await self._db.write(write))

    async def clear_pool_limit(self, name: str) -> None:
        """Remove a pool's override (limit and rate); its declared limit and rate
        (or none) apply again."""
        now = self.clock.time()

        def write(conn: sqlite3.Connection) -> frozenset[str]:
            conn.execute(
                "UPDATE pools SET override_limit = NULL, override_rate = NULL, "
                "override_burst = NULL, updated_at = ? WHERE name = ?",
                (now, name),
            )
            return sql.waiting_owners(conn, name)

        self._wake(await self._db.write(write))

    async def get_default_pool_limit(self) -> int | None:
        """Return the stored default pool limit (``set_default_pool_limit``), if any."""
        return await self._db.call(limits_sql.stored_default)

    async def set_default_pool_limit(self, limit: int) -> None:
        """Set the limit of every pool with neither an override nor a declared limit
        (storage-wide; wins over a repository's ``default_pool_limit``).

        Raises:
            ConfigError: the limit is not in 0..10,000.
        """
        check_int(limit, "default pool limit", minimum=0, maximum=MAX_LIMIT)
        now = self.clock.time()

        def write(conn: sqlite3.Connection) -> frozenset[str]:
            limits_sql.set_stored_default(conn, limit, now)
            return sql.all_waiting_owners(conn)

        self._wake(await self._db.write(write))

    async def clear_default_pool_limit(self) -> None:
        """Remove the stored default: repositories' ``default_pool_limit`` (or none)
        applies again to the pools nobody configured."""

        def write(conn: sqlite3.Connection) -> frozenset[str]:
            limits_sql.clear_stored_default(conn)
            return sql.all_waiting_owners(conn)

        self._wake(await self._db.write(write))

    # ----------------------------------------------------------- API.md §4

    async def get_pool_slot_holders(self, name: str) -> list[SlotHolder]:
        """Return the steps holding live claims of a pool, oldest first."""
        now = self.clock.time()
        return await self._db.call(lambda conn: inspect.slot_holders(conn, name, now))

    async def get_pending_steps(self, name: str) -> list[PendingStep]:
        """Return the steps waiting for a pool, in line order (priority, arrival)."""
        return await self._db.call(lambda conn: inspect.pending_steps(conn, name))

    async def free_pool_slots(self, run_id: str, step_key: str | None = None) -> int:
        """Free the claims of a run (or one step) by hand; return the slots freed.

        A claim whose holder may still run is revoked: the holder's runtime is woken,
        stops the step (it fails with ``LeaseLost``) and only then releases the
        slots to the next waiter. If that runtime does not answer, the slots come
        back when the lease runs out (a revoked claim is never renewed). A claim
        whose holder process is gone (on this host) is freed at once.
        """
        now = self.clock.time()
        slots, wake = await self._db.write(
            lambda conn: sql.revoke(conn, run_id, step_key, now)
        )
        self._wake(wake)
        return slots


def _release_and_claim(
    run_id: str,
    step_key: str,
    claims: list[tuple[str, str, tuple[str, ...], int, int]],
    owner: str,
    clock: Clock,
    lease_s: float,
) -> Callable[[sqlite3.Connection], tuple[list[sql.ClaimResult], frozenset[str]]]:
    def write(
        conn: sqlite3.Connection,
    ) -> tuple[list[sql.ClaimResult], frozenset[str]]:
        now = clock.time()  # when the transaction runs: it may have waited
        released = sql.release(conn, run_id, step_key, pending=False)
        results = [
            sql.claim(
                conn,
                run_id=claim_run,
                step_key=claim_step,
                pools=pools,
                slots=slots,
                owner=owner,
                now=now,
                lease_s=lease_s,
                priority=priority,
            )
            for claim_run, claim_step, pools, slots, priority in claims
        ]
        freed = tuple(sorted({row[0] for row in released}))
        wake = sql.line_heads(conn, freed, owner, now) if freed else frozenset()
        return results, wake.union(*(r.wake for r in results))

    return write
