"""LimitWindows: declares each pool's limit in force and changes it at window edges.

A repository's ``pool_limits`` may hold ``rs.PoolLimit``s with time windows. This actor
declares every pool of the repositories its runtime registers at the limit in force
now (with its rate and burst, if it has one); from the first windowed pool on, its
task sleeps until the next window edge (at most ``RECHECK_S``, so a clock jump or a
DST change is seen) and declares the pools whose limit changed. ``declare_pools``
wakes every runtime with a step waiting for a changed pool: a raised limit lets them
in, a lowered one lets the holders finish and admits nobody until the pool is under it.

It also keeps the storage-wide ``pools.windows`` value (pool -> its windows), which
``rivers pools list`` reads to show the window in force and the next change. Several
runtimes declaring one pool agree: its limit in force is a function of the time.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, final

import anyio

from rivers.core.limit_windows import WINDOWS_KEY, schedules_from_state, stored_window
from rivers.errors import StorageUnavailable

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from rivers._clock import Clock
    from rivers.core.limit_windows import LimitSchedule
    from rivers.definitions.pool_limit import PoolLimit
    from rivers.definitions.repository import CodeRepository
    from rivers.storage.base import PoolStore, StateStore

__all__ = ("RECHECK_S", "LimitWindows", "stored_schedules")

logger = logging.getLogger(__name__)

RECHECK_S = 300.0
"""The longest the actor sleeps between looks at the clock."""


async def stored_schedules(state: StateStore) -> dict[str, LimitSchedule]:
    """Every windowed pool's schedule, as the runtimes declaring them stored it."""
    return schedules_from_state(await state.get_state(WINDOWS_KEY))


@final
class LimitWindows:
    """Owns the declared limits of the windowed pools of its runtime's repositories."""

    def __init__(
        self, pools: PoolStore, state: StateStore, clock: Clock, task_group: TaskGroup
    ) -> None:
        self._pools = pools
        self._state = state
        self._clock = clock
        self._task_group = task_group
        # pool -> (the repository declaring it, its limit)
        self._windowed: dict[str, tuple[CodeRepository, PoolLimit]] = {}
        self._applied: dict[str, int] = {}
        self._declared: set[str] = set()  # repository names
        self._woken: anyio.Event | None = None  # set once its task runs

    async def declare(self, repository: CodeRepository) -> bool:
        """Declare ``repository``'s pools at the limits in force now (and its
        ``default_pool_limit``), once; return whether this call declared them."""
        if repository.name in self._declared:
            return False
        now = self._clock.time()
        limits: dict[str, int | None] = dict.fromkeys(repository.pools)
        rates = {
            name: config.declared_rate
            for name, config in repository.pool_limit_configs.items()
        }
        for name, config in repository.pool_limit_configs.items():
            limit = limits[name] = config.schedule().limit_at(now)
            if config.windows:
                self._windowed[name] = (repository, config)
                self._applied[name] = limit
        if limits:  # a repository naming no pool has nothing to declare or show
            await self._pools.declare_pools(
                limits,
                declared_by=repository.name,
                default_limit=repository.default_pool_limit,
                rates=rates,
            )
            await self._publish(repository)
        self._declared.add(repository.name)
        if self._woken is not None:
            self._woken.set()
        elif self._windowed:  # the first windowed pool: the task starts
            self._woken = anyio.Event()
            self._task_group.start_soon(self.run, name="rivers.windows")
        return True

    async def _publish(self, repository: CodeRepository) -> None:
        """Keep ``pools.windows`` true for ``repository``'s pools (one read)."""
        stored = await self._state.get_state(WINDOWS_KEY)
        current: dict[str, Any] = dict(stored) if isinstance(stored, dict) else {}
        wanted = {  # without the pools this repository declared but names no more
            name: entry
            for name, entry in current.items()
            if name in repository.pools
            or not isinstance(entry, dict)
            or entry.get("declared_by") != repository.name
        }
        for name in repository.pools:
            config = repository.pool_limit_configs.get(name)
            if config is not None and config.windows:
                wanted[name] = stored_window(config.schedule(), repository.name)
            else:
                wanted.pop(name, None)
        if wanted != current:
            await self._state.put_state(WINDOWS_KEY, wanted)

    async def tick_now(self) -> dict[str, int]:
        """Declare every windowed pool whose limit in force changed; return them."""
        now = self._clock.time()
        changed: dict[str, int] = {}
        by_repository: dict[CodeRepository, dict[str, int | None]] = {}
        for name, (repository, config) in self._windowed.items():
            limit = config.schedule().limit_at(now)
            if self._applied.get(name) != limit:
                limits = by_repository.setdefault(repository, {})
                changed[name] = limits[name] = limit
        for repository, limits in by_repository.items():
            await self._pools.declare_pools(
                limits,
                declared_by=repository.name,
                default_limit=repository.default_pool_limit,
            )
        self._applied.update(changed)
        return changed

    def _sleep_s(self) -> float:
        now = self._clock.time()
        edges = [
            change.at
            for _, config in self._windowed.values()
            if (change := config.schedule().next_change(now)) is not None
        ]
        return min([RECHECK_S, *(max(0.0, at - now) for at in edges)])

    async def run(self) -> None:
        """Change windowed limits at their edges until cancelled (started by the
        first ``declare`` of a windowed pool)."""
        while True:
            woken = self._woken = anyio.Event()
            with anyio.move_on_after(self._sleep_s()):
                await woken.wait()
            try:
                await self.tick_now()
            except StorageUnavailable as exc:
                logger.warning("pool limit windows: %s", exc)
