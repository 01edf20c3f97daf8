"""``StorageInspection``: the protocol of API.md §4, what ``rt.storage`` and
``rs.open_storage`` promise users (``rivers.storage.facade.Storage`` implements it
over a backend's roles)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import timedelta

    from rivers.storage.records import (
        Event,
        PendingStep,
        PoolInfo,
        PruneResult,
        RunRecord,
        RunStatus,
        SlotHolder,
    )

__all__ = ("StorageInspection",)


class StorageInspection(Protocol):
    """API.md §4: what ``rt.storage`` and ``rs.open_storage`` give users."""

    async def get_all_pool_infos(self) -> list[PoolInfo]: ...

    async def get_pool_info(self, name: str) -> PoolInfo: ...

    async def get_pool_slot_holders(self, name: str) -> list[SlotHolder]: ...

    async def get_pending_steps(self, name: str) -> list[PendingStep]: ...

    async def set_pool_limit(
        self,
        name: str,
        limit: int,
        *,
        rate: str | None = None,
        burst: int | None = None,
    ) -> None: ...

    async def clear_pool_limit(self, name: str) -> None: ...

    async def set_default_pool_limit(self, limit: int) -> None: ...

    async def clear_default_pool_limit(self) -> None: ...

    async def get_default_pool_limit(self) -> int | None: ...

    async def free_pool_slots(
        self, run_id: str, step_key: str | None = None
    ) -> int: ...

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def get_runs(
        self,
        status: RunStatus | str | Iterable[RunStatus | str] | None = None,
        tags: Mapping[str, str | Sequence[str]] | None = None,
        limit: int | None = 100,
    ) -> list[RunRecord]: ...

    async def get_events(
        self,
        run_id: str | None = None,
        after: int | None = None,
        limit: int | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[Event]: ...

    async def prune(
        self, *, older_than: float | str | timedelta, dry_run: bool = False
    ) -> PruneResult: ...
