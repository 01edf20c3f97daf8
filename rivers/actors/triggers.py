"""TriggerRunner: evaluates schedules, sensors and automation conditions and submits
their runs through the run queue: it writes them QUEUED and tells the repository's
queue coordinator (``RunsSubmitted`` in its inbox), which admits them.

One runner per runtime; one runner per storage evaluates at a time (a leader lease,
like the queue coordinator's), the others stand by. The runner sleeps until the
earliest trigger is due (at most ``MAX_SLEEP_S``, to renew its lease) or until
``wake()``. ``tick_now()`` evaluates everything due at the clock's current time under
a lock, so the loop and a direct caller (a test advancing a ``ManualClock``) never
evaluate the same tick twice. Decisions come from ``rivers.core.triggers``; one
trigger's evaluation is ``trigger_evaluation``'s, the triggers and the requests
their functions make are ``trigger_requests``'.

Each evaluation submits first and stores the trigger's state after, so a crash in
between re-decides the same tick on restart, and the tick's run key (unique in
storage) keeps it from being submitted twice. A failing sensor or schedule function
is recorded (TRIGGER_FAILURE event, ``last_error`` in its state) and evaluated again
at its next due time; it never stops the runner.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, final

import anyio

from rivers.actors.trigger_evaluation import (
    USER_CODE_TIMEOUT_S,
    TickReport,
    TriggerEvaluator,
)
from rivers.actors.trigger_requests import collect_triggers
from rivers.core.triggers import TriggerState, schedule_due_at, sensor_due_at
from rivers.errors import StorageUnavailable

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from anyio.abc import TaskStatus
    from anyio.streams.memory import MemoryObjectSendStream

    from rivers._clock import Clock
    from rivers.actors.ports import EventLog
    from rivers.actors.trigger_requests import Trigger
    from rivers.commands import CoordinatorMessage
    from rivers.definitions.repository import CodeRepository
    from rivers.storage.base import RunStore, StateStore

__all__ = (
    "AUTOMATION_INTERVAL_S",
    "LEADER_KEY",
    "LEADER_LEASE_S",
    "MAX_SLEEP_S",
    "USER_CODE_TIMEOUT_S",
    "TickReport",
    "TriggerRunner",
)

logger = logging.getLogger(__name__)

LEADER_KEY = "triggers.leader"
"""The prefix of the lease naming the runtime that evaluates a set of repositories'
triggers: the repositories' names and fingerprints follow it, so daemons of other
repositories on the storage evaluate theirs too."""
LEADER_LEASE_S = 15.0
MAX_SLEEP_S = 5.0
"""The longest the runner sleeps: it renews its leader lease at least this often."""
MIN_SLEEP_S = 0.05
AUTOMATION_INTERVAL_S = 30.0
LEADER_RELEASE_S = 2.0  # best effort, not CLEANUP_TIMEOUT_S: leases expire anyway


@final
class TriggerRunner:
    """Evaluates the triggers of a runtime's repositories; submits their runs."""

    def __init__(
        self,
        repositories: Sequence[CodeRepository],
        *,
        storage: RunStore,
        kv: StateStore,
        events: EventLog,
        owner: str,
        clock: Clock,
        queues: Mapping[str, MemoryObjectSendStream[CoordinatorMessage]],
    ) -> None:
        """Collect the repositories' triggers.

        Raises:
            ConfigError: two repositories define triggers with the same name.
        """
        self._kv = kv
        self._owner = owner
        self._clock = clock
        self._evaluator = TriggerEvaluator(
            storage=storage, events=events, clock=clock, queues=queues
        )
        self._triggers = collect_triggers(repositories)
        self._leader_key = (
            LEADER_KEY
            + ":"
            + ",".join(
                sorted(
                    f"{r.name}@{r.fingerprint}" for r in repositories if r.has_triggers
                )
            )
        )
        self._states: dict[str, TriggerState] = {}
        self._lock = anyio.Lock()
        self._wake = anyio.Event()
        self._scope = anyio.CancelScope()
        self._done = anyio.Event()
        self.is_leader = False

    # ------------------------------------------------------------------- loop

    def wake(self) -> None:
        """Evaluate soon (the loop wakes at once)."""
        self._wake.set()

    async def run(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Evaluate due triggers until cancelled or ``aclose()``; give up leadership."""
        try:
            with self._scope:
                task_status.started()
                while True:
                    try:
                        await self.tick_now()
                    except StorageUnavailable as exc:
                        logger.warning("trigger runner: %s", exc)
                    with anyio.move_on_after(self._sleep_s()):
                        await self._wake.wait()
                    self._wake = anyio.Event()
        finally:
            try:
                if self.is_leader:
                    with anyio.move_on_after(LEADER_RELEASE_S, shield=True):
                        await self._kv.release_leadership(self._leader_key, self._owner)
                    self.is_leader = False
            finally:
                self._done.set()

    async def aclose(self) -> None:
        """Stop the loop (after any evaluation in progress) and wait for it."""
        self._scope.cancel()
        with anyio.move_on_after(LEADER_RELEASE_S * 2, shield=True):
            await self._done.wait()

    def _sleep_s(self) -> float:
        if not self.is_leader:
            return MAX_SLEEP_S
        now = self._clock.time()
        soonest = now + MAX_SLEEP_S
        for trigger in self._triggers:
            due = self._due_at(trigger)
            if due is None:
                return MIN_SLEEP_S
            soonest = min(soonest, due)
        return min(MAX_SLEEP_S, max(MIN_SLEEP_S, soonest - now))

    def _due_at(self, trigger: Trigger) -> float | None:
        """When ``trigger`` is next due (None: now); +inf for a cron that never fires."""
        state = self._state(trigger)
        if trigger.schedule is not None:
            if state.last_tick_at is None:
                return None
            due = schedule_due_at(
                trigger.schedule.cron, trigger.schedule.timezone, state
            )
            return float("inf") if due is None else due
        if trigger.sensor is not None:
            return sensor_due_at(trigger.sensor.interval_s, state)
        return sensor_due_at(AUTOMATION_INTERVAL_S, state)

    # ------------------------------------------------------------- evaluation

    async def tick_now(self) -> TickReport:
        """Evaluate every trigger that is due at the clock's current time.

        Only the leader of the storage evaluates; the report says whether this
        runner was it. Safe to call while the loop runs (they take turns).

        Raises:
            StorageUnavailable: the storage could not be read or written.
        """
        report = TickReport()
        async with self._lock:
            leader = await self._kv.acquire_leadership(
                self._leader_key, self._owner, LEADER_LEASE_S
            )
            if leader and not self.is_leader:
                await self._load_states()
            self.is_leader = report.leader = leader
            if not leader:
                return report
            for trigger in self._triggers:
                due = self._due_at(trigger)
                if due is not None and self._clock.time() < due:
                    continue
                state = self._state(trigger)
                if await self._evaluator.evaluate(trigger, state, report):
                    await self._save(trigger, state)
        return report

    async def _load_states(self) -> None:
        for trigger in self._triggers:
            stored = await self._kv.get_state(trigger.key)
            self._states[trigger.key] = TriggerState.from_stored(stored)

    def _state(self, trigger: Trigger) -> TriggerState:
        return self._states.setdefault(trigger.key, TriggerState())

    async def _save(self, trigger: Trigger, state: TriggerState) -> None:
        self._states[trigger.key] = state
        await self._kv.put_state(trigger.key, state)
