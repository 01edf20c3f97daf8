"""QueueCoordinator: admits one repository's queued runs under the queue limits.

Each long-lived runtime runs one coordinator per repository definition it serves
(name + fingerprint). Every ``dequeue_interval`` (or at once when woken by a local
submit or a run ending: ``RunsSubmitted`` or ``RunEnded`` in its inbox) the
definition's leader reads only the runs of that
definition queued since its last look, counts what is in flight in the whole
storage, asks ``core.queue.QueueState`` which runs fit, and admits each to itself
with a transaction that re-checks the limits; then it sends each to the
RunSupervisor's inbox (``StartRun``). It records
why blocked runs wait (RUN_BLOCKED when the reason changes). Exactly one
coordinator per definition admits: the others stand by and take over when the
leader's lease (renewed every tick) runs out. A repository without a run queue
gets a coordinator without limits, so runs submitted from other processes start
at once (within ``NO_QUEUE_POLL_S``), and runs submitted in this process and left
to it (``RunsSubmitted``: the TriggerRunner's) start here at once, leader or not
(``submission.start_here``). The leader reads the repository's stored queue
controls (``rivers queue pause|resume|set``) every ``CONTROLS_CHECK_S``: a paused
queue admits nothing, and an override replaces ``max_concurrent_runs`` or the tag
limits, without a restart.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, assert_never, final

import anyio

from rivers.actors.limit_windows import RECHECK_S
from rivers.commands import (
    CoordinatorMessage,
    RunEnded,
    RunsChangedElsewhere,
    RunsSubmitted,
    StartRun,
)
from rivers.core.ownership import queue_config_key, queue_leader_key
from rivers.core.pool_admission import ROOTS_TAG, RootsIndex
from rivers.core.queue import Bucket, LimitRule, QueuedRun, QueueState, bucket_counts
from rivers.core.queue_config import QueueConfig, encode_queue_config
from rivers.core.queue_controls import (
    CONTROLS_CHECK_S,
    InForce,
    QueueControls,
    controls_key,
    in_force,
)
from rivers.errors import StorageUnavailable
from rivers.messages import RunBlocked, RunDequeued
from rivers.submission import start_here

if TYPE_CHECKING:
    from anyio.abc import TaskStatus
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from rivers._clock import Clock
    from rivers.actors.ports import EventLog
    from rivers.commands import SupervisorCommand
    from rivers.core.limit_windows import LimitWindow
    from rivers.definitions.repository import CodeRepository
    from rivers.storage.base import PoolStore, QueueStore, RunStore, StateStore

__all__ = ("LEADER_LEASE_S", "NO_QUEUE_POLL_S", "QueueCoordinator")

logger = logging.getLogger(__name__)

LEADER_LEASE_S = 5.0
MAX_LEADER_CHECK_S = 1.0
NO_QUEUE_POLL_S = 0.5
"""How often a repository without a run queue looks for runs submitted elsewhere."""
UNLIMITED = 2**31


@final
class QueueCoordinator:
    """The admission loop of one repository definition in one runtime.

    It reads its own inbox (``CoordinatorMessage``) and holds only the send end of
    the RunSupervisor's.
    """

    def __init__(
        self,
        *,
        storage: QueueStore,
        kv: StateStore,
        runs: RunStore,
        events: EventLog,
        owner: str,
        clock: Clock,
        pools: PoolStore,
        repository: CodeRepository,
        inbox: MemoryObjectReceiveStream[CoordinatorMessage],
        supervisor: MemoryObjectSendStream[SupervisorCommand],
    ) -> None:
        self._storage = storage
        self._kv = kv
        self._runs = runs
        self._pools = pools
        self._events = events
        self._owner = owner
        self._clock = clock
        self._config = config = repository.run_queue
        self._repository = repository.name
        self._fingerprint = repository.fingerprint
        self._leader_key = queue_leader_key(repository.name, repository.fingerprint)
        # Pool-aware admission: runs grouped by the pools their first steps claim.
        per_run = repository.pool_granularity == "run"
        self._roots = (
            RootsIndex(repository.root_pools, config.pool_slot_buffer, per_run)
            if config is not None and (config.block_pool_limited_runs or per_run)
            else None
        )
        self._run_roots: dict[str, str] = {}  # run id -> its roots key
        self._inbox = inbox
        self._supervisor = supervisor
        self._interval = (
            NO_QUEUE_POLL_S if config is None else config.dequeue_interval_s
        )
        self._base_rules: tuple[LimitRule, ...] = (
            ()
            if config is None
            else tuple(t.rule() for t in config.tag_concurrency_limits)
        )
        self._controls = QueueControls()
        self._controls_read_at = -math.inf
        # max_concurrent_runs windows: the window in force and when it may change.
        self._schedule = None if not config or not config.windows else config.schedule()
        self._window: LimitWindow | None = None
        self._window_until = -math.inf
        self._in_force = self._limits_in_force()
        self._state = QueueState(
            max_concurrent_runs=self._max_runs, rules=self._in_force.rules
        )
        self._last_rowid = 0
        self._reasons: dict[str, str] = {}
        self._start_here: list[str] = []
        """Runs submitted here without a run queue, to start here at once."""
        self.is_leader = False

    def _heed(self, message: CoordinatorMessage) -> bool:
        """Whether ``message`` calls for a tick now.

        Under a run queue, runs submitted here or elsewhere and a run ending
        do. Without one nothing limits a run: runs submitted here
        (``RunsSubmitted``, by the TriggerRunner) are kept to start at once,
        leader or not, and runs queued elsewhere call for the leader's tick.
        """
        match message:
            case RunsSubmitted(run_ids=run_ids):
                if self._config is None:
                    self._start_here.extend(run_ids)
                    return False
                return True
            case RunEnded():
                return self._config is not None
            case RunsChangedElsewhere():
                return True
            case _:
                assert_never(message)

    async def _wait_for_messages(self, wait: float) -> bool:
        """Wait up to ``wait`` seconds for a message; take every one waiting.
        Return whether one calls for a tick now (runs to start here return too)."""
        woken = False
        with anyio.move_on_after(wait):
            woken = self._heed(await self._inbox.receive())
            while not woken and not self._start_here:  # nothing to do: sleep on
                woken = self._heed(await self._inbox.receive())
        while True:
            try:
                woken = self._heed(self._inbox.receive_nowait()) or woken
            except anyio.WouldBlock:
                return woken

    @property
    def _max_runs(self) -> int:
        return self._in_force.max_concurrent_runs

    def _limits_in_force(self) -> InForce:
        if self._config is None:
            return in_force(UNLIMITED, (), QueueControls())
        window = self._window
        return in_force(
            self._config.max_concurrent_runs if window is None else window.limit,
            self._base_rules,
            self._controls,
            "repository" if window is None else f"window {window.cron!r}",
        )

    def _window_due(self) -> bool:
        return self._schedule is not None and self._clock.time() >= self._window_until

    async def _follow_windows(self) -> None:
        """At a window edge, put the ``max_concurrent_runs`` it brings in force."""
        now = self._clock.time()
        if self._schedule is None or now < self._window_until:
            return
        change = self._schedule.next_change(now)
        # No change within the horizon: look again later (a monthly window).
        self._window_until = now + RECHECK_S if change is None else change.at
        window = self._schedule.window_at(now)
        if window != self._window:
            self._window = window
            await self._apply_in_force()

    async def _apply_in_force(self) -> None:
        """Put the limits in force (windows and controls applied) into the queue
        core and publish them: the one place either of them changes the queue."""
        self._in_force = self._limits_in_force()
        pseudo = tuple(r for r in self._state.rules if r.key == ROOTS_TAG)
        if self._in_force.rules + pseudo != self._state.rules:
            self._state = QueueState(
                max_concurrent_runs=self._max_runs, rules=self._in_force.rules + pseudo
            )
            self._last_rowid = 0  # index the queue again under the new rules
        self._state.max_concurrent_runs = self._max_runs
        await self._publish_config()

    async def _publish_config(self) -> None:
        """Store the settings in force, which ``runs why`` and ``top`` read."""
        config = (
            QueueConfig.no_queue(NO_QUEUE_POLL_S)
            if self._config is None
            else QueueConfig.of(self._in_force, self._config.dequeue_interval_s)
        )
        await self._kv.put_state(
            queue_config_key(self._repository, self._fingerprint),
            encode_queue_config(config),
        )

    async def refresh_controls(self, *, force: bool = False) -> bool:
        """Read the stored queue controls (at most every ``CONTROLS_CHECK_S``
        unless ``force``); apply and publish them if they changed. Return whether
        they did."""
        now = self._clock.monotonic()
        if self._config is None or (
            not force and now - self._controls_read_at < CONTROLS_CHECK_S
        ):
            return False
        self._controls_read_at = now
        stored = await self._kv.get_state(controls_key(self._repository))
        controls = QueueControls.from_stored(stored)
        if controls == self._controls:
            return False
        self._controls = controls
        await self._apply_in_force()
        return True

    async def run(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Tick until cancelled; give the leadership up on the way out."""
        await self._follow_windows()
        if not await self.refresh_controls(force=True):
            await self._publish_config()
        task_status.started()
        interval = self._interval
        next_tick = 0.0  # loop time of the next dequeue tick
        try:
            while True:
                wait = interval if self.is_leader else min(interval, MAX_LEADER_CHECK_S)
                if self._config is not None:  # controls and window edges: ~1 s
                    wait = min(wait, CONTROLS_CHECK_S)
                woken = await self._wait_for_messages(wait)
                if self._start_here:
                    await self._start_submitted_here()
                try:
                    self.is_leader = await self._kv.acquire_leadership(
                        self._leader_key, self._owner, max(LEADER_LEASE_S, 3 * interval)
                    )
                    if self.is_leader and (
                        await self.refresh_controls()
                        or woken
                        or anyio.current_time() >= next_tick
                        or self._window_due()
                    ):
                        next_tick = anyio.current_time() + interval
                        await self.tick()
                except StorageUnavailable as exc:
                    logger.warning("queue coordinator: %s", exc)
        finally:
            if self.is_leader:
                with anyio.move_on_after(2, shield=True):
                    await self._kv.release_leadership(self._leader_key, self._owner)

    async def _start_submitted_here(self) -> None:
        """Start the runs submitted here without a run queue (leader or not); on a
        storage error they stay listed, for the next turn."""
        try:
            await start_here(
                self._storage, self._supervisor, self._owner, self._start_here
            )
        except StorageUnavailable as exc:
            logger.warning("queue coordinator: %s", exc)
        else:
            self._start_here.clear()

    async def tick(self) -> int:
        """Admit what fits now; return how many runs were admitted."""
        await self._follow_windows()
        for (
            rowid,
            run_id,
            priority,
            created_at,
            tags,
            selection,
        ) in await self._storage.get_queued_since(
            self._last_rowid, self._repository, self._fingerprint
        ):
            self._last_rowid = max(self._last_rowid, rowid)
            tags = self._with_roots(run_id, selection, tags)
            self._state.add(
                QueuedRun(-priority, created_at, run_id, tuple(sorted(tags.items())))
            )
        if not len(self._state):
            return 0
        if self._in_force.paused:
            # A gate for the whole queue, as max_concurrent_runs is: `runs why`, `top`
            # and `queue status` read it from the published controls, so pausing a
            # million queued runs writes no million reasons and RUN_BLOCKED events.
            return 0
        in_flight_tags = await self._storage.get_in_flight_tags()
        counts = bucket_counts(self._state.rules, in_flight_tags)
        views = await self._pool_views(counts)
        result = self._state.tick(len(in_flight_tags), counts)
        admitted = 0
        rules = {rule.ident: rule for rule in self._state.rules}
        candidates = [
            (
                admission.run_id,
                [
                    (b[1], b[2], rules[b[0]].limit)
                    for b in admission.buckets
                    if b[1] != ROOTS_TAG  # not a tag: re-checked when its steps claim
                ],
            )
            for admission in result.admitted
        ]
        outcomes = (
            await self._storage.admit_queued(
                candidates,
                owner=self._owner,
                max_concurrent_runs=self._max_runs,
            )
            if candidates
            else []
        )
        for admission, record in zip(result.admitted, outcomes, strict=True):
            roots = self._run_roots.pop(admission.run_id, None)
            created = admission.created_at
            self._reasons.pop(admission.run_id, None)
            if record is not None:
                admitted += 1
                self._events.emit(
                    RunDequeued(
                        run_id=admission.run_id, waited_s=self._clock.time() - created
                    )
                )
                # No checkpoint between admitting and handing over: a stop here
                # would strand the run STARTING (the inbox has no bound).
                self._supervisor.send_nowait(StartRun(record=record))
            elif await self._still_queued(admission.run_id):
                # Another process took the capacity meanwhile: back in line.
                self._state.readd(admission)
                if roots is not None:
                    self._run_roots[admission.run_id] = roots
        await self._record_reasons(self._explain_roots(result.blocked, views))
        return admitted

    def _with_roots(
        self, run_id: str, selection: list[str] | None, tags: dict[str, str]
    ) -> dict[str, str]:
        """Add the pseudo tag of the run's roots (pool-aware admission only)."""
        key = None if self._roots is None else self._roots.key_of(selection)
        if key is None or self._roots is None:
            return tags
        rule = self._roots.rule(key)
        if rule not in self._state.rules:
            self._state.rules = (*self._state.rules, rule)
        self._run_roots[run_id] = key
        return {**tags, ROOTS_TAG: key}

    async def _pool_views(
        self, counts: dict[Bucket, int]
    ) -> dict[str, tuple[int | None, int]]:
        """Read the pools of the queued runs' roots; count each roots' room."""
        if self._roots is None or not self._run_roots:
            return {}
        wanted = set(self._roots.pools())
        views = {  # claimed slots and waiting steps: runs already admitted count
            info.name: (info.limit, info.claimed_slots + info.pending_steps)
            for info in await self._pools.get_all_pool_infos()  # one read
            if info.name in wanted
        }
        counts.update(self._roots.counts(views))
        return views

    def _explain_roots(
        self, blocked: dict[str, str], views: dict[str, tuple[int | None, int]]
    ) -> dict[str, str]:
        """Say which pools hold a run back, where the pseudo tag limit did."""
        if self._roots is None:
            return blocked
        prefix = f"tag limit {ROOTS_TAG}="
        return {
            run_id: self._roots.reason(self._run_roots[run_id], views)
            if reason.startswith(prefix) and run_id in self._run_roots
            else reason
            for run_id, reason in blocked.items()
        }

    async def _still_queued(self, run_id: str) -> bool:
        record = await self._runs.get_run(run_id)
        return record is not None and record.status.value == "QUEUED"

    async def _record_reasons(self, blocked: dict[str, str]) -> None:
        changed = {
            run_id: reason
            for run_id, reason in blocked.items()
            if self._reasons.get(run_id) != reason
        }
        if not changed:
            return
        self._reasons.update(changed)
        await self._storage.set_run_reasons(changed)
        for run_id, reason in changed.items():
            # A blocked run reported here heads the line of its binding limit; its
            # place in the whole queue is computed on demand by explain().
            self._events.emit(RunBlocked(run_id=run_id, reason=reason, position=1))
