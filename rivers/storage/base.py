"""What storage is to rivers: one protocol per role, and the public inspection surface.

Each actor is typed against the role it uses, never against a concrete storage:

| Role | Used by |
|---|---|
| ``RunStore`` | Runtime (create, admit inline), RunExecutor, TriggerRunner, CLI |
| ``EventStore`` | EventWriter, CLI (logs, follow) |
| ``PoolStore`` | PoolManager, LeaseGC, Runtime (declare), CLI ``pools`` |
| ``QueueStore`` | QueueCoordinator, Runtime (admit inline), explanations |
| ``StateStore`` | QueueCoordinator and TriggerRunner (leader leases, cursors) |
| ``ProcessStore`` | ProcessMonitor, Runtime (serve), explanations |
| ``DashboardReads`` | ``rivers top``, metrics |

A backend bundles one object per role in a ``StorageBackend``; the objects may be
the same (a backend written as one class passes itself for every role).
``Storage`` (``rivers.storage.facade``) is what users get (``rt.storage``,
``rs.open_storage``): exactly the inspection methods of API.md §4, over these roles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

    from anyio.abc import TaskStatus

    from rivers._clock import Clock
    from rivers.core.ownership import Served
    from rivers.errors import StorageCorrupted
    from rivers.messages import EventBody
    from rivers.storage.records import (
        ClaimResult,
        Event,
        NewRun,
        PendingStep,
        PoolInfo,
        PoolView,
        PruneResult,
        RunChange,
        RunRecord,
        RunStatus,
        SlotHolder,
        StepRecord,
        StepStatus,
    )

__all__ = (
    "DashboardReads",
    "Definition",
    "EventStore",
    "PoolStore",
    "ProcessStore",
    "QueueStore",
    "QueuedRow",
    "Released",
    "Reclaimed",
    "RunStore",
    "StateStore",
    "StorageBackend",
    "WantedClaim",
)

QueuedRow = tuple[int, str, int, float, dict[str, str], "list[str] | None"]
"""(rowid, run id, priority, created_at, tags, selection or None: all) of a queued
run."""
Definition = tuple[str, str, "Sequence[str]"]
"""(repository name, fingerprint, asset names)."""
Released = tuple[str, str, str, int, float]
"""(pool, run id, step key, slots, claimed_at) of a released claim."""
Reclaimed = tuple[str, str, str, int, str]
"""(pool, run id, step key, slots, owner) of a claim whose lease expired."""
WantedClaim = tuple[str, str, tuple[str, ...], int, int]
"""(run id, step key, pools, slots, priority) of a claim to try."""


class RunStore(Protocol):
    """Runs and their steps: create, move between statuses, finish, read."""

    async def create_run(self, run: NewRun) -> RunRecord | None: ...

    async def create_runs(self, runs: Sequence[NewRun]) -> list[RunRecord | None]: ...

    async def transition_run(
        self,
        run_id: str,
        to: RunStatus,
        *,
        expected: Iterable[RunStatus],
        reason: str | None = None,
        owner: str | None = None,
    ) -> bool: ...

    async def finish_run(
        self,
        run_id: str,
        to: RunStatus,
        *,
        expected: Iterable[RunStatus],
        reason: str | None,
        event: EventBody,
    ) -> list[Event]: ...

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def get_run_by_key(self, run_key: str) -> RunRecord | None: ...

    async def find_run_ids(self, fragment: str, limit: int) -> list[str]: ...

    async def get_runs(
        self,
        status: RunStatus | str | Iterable[RunStatus | str] | None = None,
        tags: Mapping[str, str | Sequence[str]] | None = None,
        limit: int | None = 100,
    ) -> list[RunRecord]: ...

    async def count_runs(self, statuses: Iterable[RunStatus]) -> int: ...

    async def prune_runs(
        self, cutoff: float, *, dry_run: bool = False
    ) -> PruneResult: ...

    async def get_step_records(self, run_id: str) -> list[StepRecord]: ...

    async def get_latest_materializations(
        self, asset_keys: Iterable[str] | None = None
    ) -> dict[str, tuple[str, float]]: ...


class EventStore(Protocol):
    """The event log: append in batches (projecting step rows), read in order."""

    async def append_events(
        self, batch: Sequence[tuple[EventBody, float]]
    ) -> list[Event]: ...

    async def write_batch(
        self, batch: Sequence[tuple[EventBody, float]], changes: Sequence[RunChange]
    ) -> tuple[list[Event], list[bool]]: ...

    async def get_events(
        self,
        run_id: str | None = None,
        after: int | None = None,
        limit: int | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[Event]: ...


class PoolStore(Protocol):
    """Pool claims, leases, lines, limits and their inspection."""

    async def listen(
        self,
        owner: str,
        on_wake: Callable[[], None],
        *,
        task_status: TaskStatus[None] = ...,
    ) -> None:
        """Call ``on_wake`` whenever another process wakes ``owner`` (a release or
        a limit change concerning its waiters), until cancelled."""
        ...

    async def declare_pools(
        self,
        limits: dict[str, int | None],
        declared_by: str,
        default_limit: int | None = None,
        rates: dict[str, tuple[str, int] | None] | None = None,
    ) -> None: ...

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
    ) -> ClaimResult: ...

    async def release_pool_slots(
        self, run_id: str, step_key: str
    ) -> list[Released]: ...

    async def release_and_claim(
        self,
        *,
        run_id: str,
        step_key: str,
        claims: list[WantedClaim],
        owner: str,
        lease_s: float,
    ) -> list[ClaimResult]: ...

    def release_and_claim_now(
        self,
        *,
        run_id: str,
        step_key: str,
        claims: list[WantedClaim],
        owner: str,
        lease_s: float,
    ) -> list[ClaimResult] | None: ...

    async def renew_leases(
        self, owner: str, keys: list[tuple[str, str]], lease_s: float
    ) -> set[tuple[str, str]]: ...

    async def reclaim_expired_leases(self) -> list[Reclaimed]: ...

    async def get_pool_views(self, pools: Iterable[str]) -> tuple[PoolView, ...]: ...

    async def add_pending_step(
        self,
        *,
        pools: tuple[str, ...],
        run_id: str,
        step_key: str,
        slots: int,
        priority: int,
        owner: str,
    ) -> None: ...

    async def remove_pending_step(self, run_id: str, step_key: str) -> None: ...

    async def get_pending_of(self, owner: str) -> set[tuple[str, str]]: ...

    async def get_revoked_claims(self, owner: str) -> set[tuple[str, str]]: ...

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


class QueueStore(Protocol):
    """The run queue: queued runs of a definition, guarded admission, reasons."""

    async def get_queued_since(
        self, rowid: int, repository: str, fingerprint: str, limit: int = 50_000
    ) -> list[QueuedRow]: ...

    async def get_in_flight_tags(self) -> list[dict[str, str]]: ...

    async def admit_run(
        self,
        run_id: str,
        *,
        owner: str,
        max_concurrent_runs: int,
        tag_guards: Iterable[tuple[str, str | None, int]],
    ) -> bool: ...

    async def admit_runs(
        self,
        candidates: list[tuple[str, list[tuple[str, str | None, int]]]],
        *,
        owner: str,
        max_concurrent_runs: int,
    ) -> list[bool]: ...

    async def admit_queued(
        self,
        candidates: list[tuple[str, list[tuple[str, str | None, int]]]],
        *,
        owner: str,
        max_concurrent_runs: int,
    ) -> list[RunRecord | None]: ...

    async def set_run_reasons(self, reasons: dict[str, str]) -> None: ...

    async def queue_position(self, run_id: str) -> int | None: ...


class StateStore(Protocol):
    """Leader leases (queue, triggers) and small JSON values (configs, cursors)."""

    async def acquire_leadership(
        self, name: str, owner: str, lease_s: float
    ) -> bool: ...

    async def release_leadership(self, name: str, owner: str) -> None: ...

    async def put_state(self, key: str, value: object) -> None: ...

    async def get_state(self, key: str) -> Any: ...


class ProcessStore(Protocol):
    """Which processes are alive, what they serve, and recovery of dead ones."""

    async def register_process(self, owner: str, pid: int, host: str) -> None: ...

    async def heartbeat(self, owner: str) -> None: ...

    async def unregister_process(self, owner: str) -> None: ...

    async def get_in_flight_owners(self) -> dict[str, float | None]: ...

    async def get_owners_to_check(
        self,
    ) -> tuple[dict[str, float | None], dict[str, float | None]]: ...

    async def get_cancel_requests(self, owner: str) -> list[str]: ...

    async def fail_runs_of_owner(self, owner: str, reason: str) -> list[str]: ...

    async def get_started_runs(self, owner: str) -> list[str]: ...

    async def fail_started_runs(
        self, owner: str, run_ids: Iterable[str], reason: str
    ) -> list[str]: ...

    async def record_definitions(self, definitions: Iterable[Definition]) -> None: ...

    async def serve(self, owner: str, definitions: Iterable[Definition]) -> None: ...

    async def get_served(self) -> list[tuple[Served, float | None]]: ...

    async def get_definition_assets(self, fingerprint: str) -> list[str]: ...


class DashboardReads(Protocol):
    """Bounded reads for ``rivers top`` (each costs the same at any storage size)."""

    async def refuse_writes(self) -> None: ...

    async def count_runs_by_status(
        self, statuses: Iterable[RunStatus]
    ) -> dict[RunStatus, int]: ...

    async def oldest_queued_at(self) -> float | None: ...

    async def get_queued_runs(self, limit: int) -> list[RunRecord]: ...

    async def dequeue_times(self, since: float) -> list[float]: ...

    async def get_recent_events(
        self, kinds: Iterable[str], limit: int
    ) -> list[Event]: ...

    async def get_events_since(
        self, kinds: Iterable[str], since_s: float
    ) -> list[Event]: ...

    async def get_step_progress(
        self, run_ids: Iterable[str]
    ) -> dict[str, dict[str, int]]: ...

    async def get_step_totals(self, run_ids: Iterable[str]) -> dict[str, int]: ...

    async def get_recent_finished_runs(self, limit: int) -> list[RunRecord]: ...

    async def count_runs_created_since(
        self, since: float, statuses: Iterable[RunStatus] = ...
    ) -> dict[RunStatus, int]: ...

    async def get_waiting_steps(
        self, run_ids: Iterable[str]
    ) -> dict[str, list[str]]: ...

    async def get_steps_in_status(
        self, run_ids: Iterable[str], status: StepStatus
    ) -> dict[str, list[str]]: ...

    async def get_waiting_step_events(
        self, run_id: str, step_keys: Iterable[str]
    ) -> dict[str, Event]: ...


@dataclass(frozen=True, eq=False)
class StorageBackend:
    """One open storage: an object per role, and how to close it.

    Made by ``rivers.storage.open_backend``; the runtime hands each actor the
    roles it uses, and users get ``Storage(backend)``.
    """

    runs: RunStore
    events: EventStore
    pools: PoolStore
    queue: QueueStore
    state: StateStore
    processes: ProcessStore
    dashboard: DashboardReads
    clock: Clock
    describe: str
    """The storage as a user names it (a file path or a URL without password)."""
    close: Callable[[], Awaitable[None]]
    corruption: Callable[[], StorageCorrupted | None]
    """The damage found while it was open (it then refuses writes), or None."""

    async def aclose(self) -> None:
        """Close the storage; later calls raise ``StorageError``."""
        await self.close()

    @property
    def corrupted(self) -> StorageCorrupted | None:
        """The damage found while this storage was open, or None."""
        return self.corruption()
