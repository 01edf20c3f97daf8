"""The pool-limit part of ``SqliteStorage``: declared limits, overrides, the default
pool limit and pool inspection (which limit wins: ``_pool_limits_sql``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from rivers._validate import MAX_LIMIT, check_int, check_pool_name
from rivers._wakeups import WakeSender
from rivers.core.rates import check_rate_override
from rivers.storage import _pool_limits_sql as limits_sql
from rivers.storage._pools_sql import all_waiting_owners, waiting_owners

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Iterable
    from pathlib import Path

    from rivers._clock import Clock
    from rivers.storage.records import PoolInfo

__all__ = ("PoolLimitMethods",)

T = TypeVar("T")


class PoolLimitMethods:
    """Pool limits and their inspection (a base of ``PoolMethods``)."""

    clock: Clock
    path: Path
    _wake_sender: WakeSender | None = None

    def _wake(self, owners: Iterable[str]) -> None:
        """Wake the runtimes of ``owners`` (after the write that concerns them)."""
        if owners:
            if self._wake_sender is None:
                self._wake_sender = WakeSender(self.path)
            self._wake_sender.wake(owners)

    def _close_wakes(self) -> None:
        if self._wake_sender is not None:
            self._wake_sender.close()

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # pragma: no cover - provided by SqliteStorage

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # pragma: no cover - provided by SqliteStorage

    async def _write_soon(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # pragma: no cover - provided by SqliteStorage

    def _write_now(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> tuple[bool, T | None]:
        raise NotImplementedError  # pragma: no cover - provided by SqliteStorage

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
            return frozenset().union(*(waiting_owners(conn, name) for name in changed))

        self._wake(await self._write(write))

    async def get_all_pool_infos(self) -> list[PoolInfo]:
        """Return every known pool: limit, its source, claimed slots, pending steps."""
        now = self.clock.time()
        return await self._call(lambda conn: limits_sql.pool_infos(conn, None, now))

    async def get_pool_info(self, name: str) -> PoolInfo:
        """Return one pool (an unknown name has zero counts and the stored default
        limit, or none)."""
        now = self.clock.time()
        infos = await self._call(lambda conn: limits_sql.pool_infos(conn, name, now))
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
            return waiting_owners(conn, name)

        # Every process with a waiter re-reads the limit now: steps it lets in
        # claim, and steps it leaves unable ever to fit fail with PoolTooSmall.
        self._wake(await self._write(write))

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
            return waiting_owners(conn, name)

        self._wake(await self._write(write))

    async def get_default_pool_limit(self) -> int | None:
        """Return the stored default pool limit (``set_default_pool_limit``), if any."""
        return await self._call(limits_sql.stored_default)

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
            return all_waiting_owners(conn)

        self._wake(await self._write(write))

    async def clear_default_pool_limit(self) -> None:
        """Remove the stored default: repositories' ``default_pool_limit`` (or none)
        applies again to the pools nobody configured."""

        def write(conn: sqlite3.Connection) -> frozenset[str]:
            limits_sql.clear_stored_default(conn)
            return all_waiting_owners(conn)

        self._wake(await self._write(write))
