"""The pool-limit part of ``SqliteStorage``: declared limits, overrides, the default
pool limit and pool inspection (which limit wins: ``_pool_limits_sql``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from rivers._validate import MAX_LIMIT, check_int, check_pool_name
from rivers._wakeups import WakeSender
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
    ) -> None:
        """Record the pools a repository names, their declared limits and the
        repository's ``default_pool_limit``; wake the runtimes waiting for a pool
        whose limit in force changed (a time window's edge, a new default)."""
        now = self.clock.time()

        def write(conn: sqlite3.Connection) -> frozenset[str]:
            before = {name: limits_sql.effective_limit(conn, name) for name in limits}
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
            changed = [
                name
                for name, limit in before.items()
                if limits_sql.effective_limit(conn, name) != limit
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

    async def set_pool_limit(self, name: str, limit: int) -> None:
        """Override a pool's limit (wins over the declared one; survives restarts).

        Raises:
            ConfigError: the name is invalid or the limit is not in 0..10,000.
        """
        check_pool_name(name)
        check_int(limit, f"limit of pool {name!r}", minimum=0, maximum=MAX_LIMIT)
        now = self.clock.time()

        def write(conn: sqlite3.Connection) -> frozenset[str]:
            conn.execute(
                "INSERT INTO pools (name, override_limit, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET override_limit = excluded.override_limit, "
                "updated_at = excluded.updated_at",
                (name, limit, now),
            )
            return waiting_owners(conn, name)

        # Every process with a waiter re-reads the limit now: steps it lets in
        # claim, and steps it leaves unable ever to fit fail with PoolTooSmall.
        self._wake(await self._write(write))

    async def clear_pool_limit(self, name: str) -> None:
        """Remove a pool's override; its declared limit (or none) applies again."""
        now = self.clock.time()

        def write(conn: sqlite3.Connection) -> frozenset[str]:
            conn.execute(
                "UPDATE pools SET override_limit = NULL, updated_at = ? WHERE name = ?",
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
