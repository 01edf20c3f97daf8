"""The pool part of ``SqliteStorage``: claims, leases, limits and inspection."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from rivers.storage import _pools_sql as sql
from rivers.storage._pool_limit_methods import PoolLimitMethods
from rivers.storage.records import PendingStep, SlotHolder, from_timestamp

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Iterable


__all__ = ("PoolMethods",)

T = TypeVar("T")


class PoolMethods(PoolLimitMethods):
    """Pool methods shared by the SQLite storage (mixed into ``SqliteStorage``)."""

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
        """
        now = self.clock.time()
        result = await self._write_soon(
            lambda conn: sql.claim(
                conn,
                run_id=run_id,
                step_key=step_key,
                pools=pools,
                slots=slots,
                owner=owner,
                now=now,
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

        rows, wake = await self._write(write)
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
        results, wake = await self._write_soon(
            _release_and_claim(
                run_id, step_key, claims, owner, self.clock.time(), lease_s
            )
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
        done, written = self._write_now(
            _release_and_claim(
                run_id, step_key, claims, owner, self.clock.time(), lease_s
            )
        )
        if not done or written is None:
            return None
        results, wake = written
        self._wake(wake)
        return results

    async def renew_leases(
        self, owner: str, keys: list[tuple[str, str]], lease_s: float
    ) -> set[tuple[str, str]]:
        """Extend the unexpired leases of ``keys``; return those renewed."""
        now = self.clock.time()
        return await self._write(
            lambda conn: sql.renew(conn, owner, keys, now, lease_s)
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

        rows, wake = await self._write(write)
        self._wake(wake)
        return rows

    async def get_pool_views(self, pools: Iterable[str]) -> tuple[sql.PoolView, ...]:
        """Return each pool's effective limit and live claimed slots."""
        names = tuple(pools)
        now = self.clock.time()
        return await self._call(lambda conn: sql.pool_views(conn, names, now))

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
        await self._write(
            lambda conn: conn.executemany(
                "INSERT OR REPLACE INTO pending_steps "
                "(pool, run_id, step_key, slots, priority, owner, enqueued_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
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

        self._wake(await self._write(write))

    async def get_pending_of(self, owner: str) -> set[tuple[str, str]]:
        """Return the (run, step) of ``owner``'s steps recorded as waiting."""

        def read(conn: sqlite3.Connection) -> set[tuple[str, str]]:
            rows = conn.execute(
                "SELECT DISTINCT run_id, step_key FROM pending_steps WHERE owner = ?",
                (owner,),
            )
            return {(row[0], row[1]) for row in rows}

        return await self._call(read)

    async def get_revoked_claims(self, owner: str) -> set[tuple[str, str]]:
        """Return the (run, step) of ``owner``'s claims that were revoked."""
        return await self._call(lambda conn: sql.revoked_claims(conn, owner))

    # ----------------------------------------------------------- API.md §4

    async def get_pool_slot_holders(self, name: str) -> list[SlotHolder]:
        """Return the steps holding live claims of a pool, oldest first."""
        now = self.clock.time()

        def read(conn: sqlite3.Connection) -> list[SlotHolder]:
            rows = conn.execute(
                "SELECT run_id, step_key, slots, claimed_at, lease_expires_at, owner "
                "FROM pool_claims WHERE pool = ? AND lease_expires_at > ? "
                "ORDER BY claimed_at",
                (name, now),
            )
            return [
                SlotHolder(
                    run_id=r[0],
                    step_key=r[1],
                    slots=r[2],
                    claimed_at=from_timestamp(r[3]),  # type: ignore[arg-type]
                    lease_expires_at=from_timestamp(r[4]),  # type: ignore[arg-type]
                    owner=r[5],
                )
                for r in rows
            ]

        return await self._call(read)

    async def get_pending_steps(self, name: str) -> list[PendingStep]:
        """Return the steps waiting for a pool, in line order (priority, arrival)."""

        def read(conn: sqlite3.Connection) -> list[PendingStep]:
            rows = conn.execute(
                "SELECT run_id, step_key, slots, priority, enqueued_at FROM pending_steps "
                "WHERE pool = ? ORDER BY priority DESC, enqueued_at",
                (name,),
            )
            return [
                PendingStep(
                    run_id=r[0],
                    step_key=r[1],
                    slots=r[2],
                    priority=r[3],
                    enqueued_at=from_timestamp(r[4]),  # type: ignore[arg-type]
                )
                for r in rows
            ]

        return await self._call(read)

    async def free_pool_slots(self, run_id: str, step_key: str | None = None) -> int:
        """Free the claims of a run (or one step) by hand; return the slots freed.

        A claim whose holder may still run is revoked: the holder's runtime is woken,
        stops the step (it fails with ``LeaseLost``) and only then releases the
        slots to the next waiter. If that runtime does not answer, the slots come
        back when the lease runs out (a revoked claim is never renewed). A claim
        whose holder process is gone (on this host) is freed at once.
        """
        now = self.clock.time()
        slots, wake = await self._write(
            lambda conn: sql.revoke(conn, run_id, step_key, now)
        )
        self._wake(wake)
        return slots


def _release_and_claim(
    run_id: str,
    step_key: str,
    claims: list[tuple[str, str, tuple[str, ...], int, int]],
    owner: str,
    now: float,
    lease_s: float,
) -> Callable[[sqlite3.Connection], tuple[list[sql.ClaimResult], frozenset[str]]]:
    def write(
        conn: sqlite3.Connection,
    ) -> tuple[list[sql.ClaimResult], frozenset[str]]:
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
