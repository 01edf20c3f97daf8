"""``Storage``: what users get from ``rt.storage`` and ``rs.open_storage`` (API.md §4).

Exactly the inspection and steering methods users are promised, over a backend's
roles (``rivers.storage.base``); nothing of the runtime's own traffic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rivers._durations import MAX_RETENTION_S, parse_duration

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import timedelta

    from rivers.storage.base import StorageBackend
    from rivers.storage.records import (
        Event,
        PendingStep,
        PoolInfo,
        PruneResult,
        RunRecord,
        RunStatus,
        SlotHolder,
    )

__all__ = ("Storage", "backend_of")


class Storage:
    """The storage as users inspect it (API.md §4), whatever the backend."""

    __slots__ = ("_backend",)

    def __init__(self, backend: StorageBackend) -> None:
        self._backend = backend

    def __repr__(self) -> str:
        return f"<rivers storage {self._backend.describe}>"

    async def get_all_pool_infos(self) -> list[PoolInfo]:
        """Return every known pool: limit, its source, claimed slots, pending steps."""
        return await self._backend.pools.get_all_pool_infos()

    async def get_pool_info(self, name: str) -> PoolInfo:
        """Return one pool (an unknown name has zero counts and the default limit)."""
        return await self._backend.pools.get_pool_info(name)

    async def get_pool_slot_holders(self, name: str) -> list[SlotHolder]:
        """Return the steps holding live claims of a pool, oldest first."""
        return await self._backend.pools.get_pool_slot_holders(name)

    async def get_pending_steps(self, name: str) -> list[PendingStep]:
        """Return the steps waiting for a pool, in line order (priority, arrival)."""
        return await self._backend.pools.get_pending_steps(name)

    async def set_pool_limit(
        self,
        name: str,
        limit: int,
        *,
        rate: str | None = None,
        burst: int | None = None,
    ) -> None:
        """Override a pool's limit (wins over the declared one; survives restarts).

        With ``rate`` (``"100/min"``) the override also limits how many steps start
        per period, ``burst`` (default 1) at most at once; ``rate="none"`` lifts a
        declared rate; without ``rate`` the declared rate, if any, applies.

        Raises:
            ConfigError: the name is invalid, the limit is not in 0..10,000, the
                rate is not a rate, or the burst is not in 1..10,000.
        """
        await self._backend.pools.set_pool_limit(name, limit, rate=rate, burst=burst)

    async def clear_pool_limit(self, name: str) -> None:
        """Remove a pool's override (limit and rate); its declared limit and rate
        (or none) apply again."""
        await self._backend.pools.clear_pool_limit(name)

    async def set_default_pool_limit(self, limit: int) -> None:
        """Set the limit of every pool with neither an override nor a declared limit
        (storage-wide; wins over a repository's ``default_pool_limit``; survives
        restarts).

        Raises:
            ConfigError: the limit is not in 0..10,000.
        """
        await self._backend.pools.set_default_pool_limit(limit)

    async def clear_default_pool_limit(self) -> None:
        """Remove the stored default pool limit (repositories' own apply again)."""
        await self._backend.pools.clear_default_pool_limit()

    async def get_default_pool_limit(self) -> int | None:
        """Return the stored default pool limit, or None when none is set."""
        return await self._backend.pools.get_default_pool_limit()

    async def free_pool_slots(self, run_id: str, step_key: str | None = None) -> int:
        """Free the claims of a run (or one step) by hand; return the slots freed.

        A live holder is stopped first (its step fails with ``LeaseLost``).
        """
        return await self._backend.pools.free_pool_slots(run_id, step_key)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """Return the run with this id, or None."""
        return await self._backend.runs.get_run(run_id)

    async def get_runs(
        self,
        status: RunStatus | str | Iterable[RunStatus | str] | None = None,
        tags: Mapping[str, str | Sequence[str]] | None = None,
        limit: int | None = 100,
    ) -> list[RunRecord]:
        """Return runs, newest first, filtered by status(es) and tags.

        Every tag key must match; a key mapped to a list of values matches any of
        them (``{"env": ["dev", "prod"], "team": "core"}``).
        """
        return await self._backend.runs.get_runs(status, tags, limit)

    async def get_events(
        self,
        run_id: str | None = None,
        after: int | None = None,
        limit: int | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[Event]:
        """Return events oldest first: of one run, after an event id, of some kinds."""
        return await self._backend.events.get_events(run_id, after, limit, kinds)

    async def prune(
        self, *, older_than: float | str | timedelta, dry_run: bool = False
    ) -> PruneResult:
        """Delete the finished runs (SUCCESS, FAILURE, CANCELED) created and ended
        more than ``older_than`` ago (``"30d"``, seconds or a ``timedelta``), with
        their events and steps, a few hundred runs per transaction so live runs
        are never held up; each asset's latest materialization is kept. A file
        created by this rivers then gives the freed pages back to the disk.

        With ``dry_run`` nothing is deleted: the result says what would be.

        Raises:
            ConfigError: ``older_than`` is not a duration from 0 to 100 years.
        """
        seconds = parse_duration(older_than, "older_than", maximum=MAX_RETENTION_S)
        cutoff = self._backend.clock.time() - seconds
        return await self._backend.runs.prune_runs(cutoff, dry_run=dry_run)


def backend_of(storage: Storage) -> StorageBackend:
    """Return the backend behind a public ``Storage`` (for rivers' own tests and
    tools; not a public name)."""
    return storage._backend
