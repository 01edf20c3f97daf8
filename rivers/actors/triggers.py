"""TriggerRunner: evaluates schedules, sensors and automation conditions and submits
their runs through the run queue.

One runner per runtime; one runner per storage evaluates at a time (a leader lease,
like the queue coordinator's), the others stand by. The runner sleeps until the
earliest trigger is due (at most ``MAX_SLEEP_S``, to renew its lease) or until
``wake()``. ``tick_now()`` evaluates everything due at the clock's current time under
a lock, so the loop and a direct caller (a test advancing a ``ManualClock``) never
evaluate the same tick twice. Decisions come from ``rivers.core.triggers``.

Each evaluation submits first and stores the trigger's state after, so a crash in
between re-decides the same tick on restart, and the tick's run key (unique in
storage) keeps it from being submitted twice. A failing sensor or schedule function
is recorded (TRIGGER_FAILURE event, ``last_error`` in its state) and evaluated again
at its next due time; it never stops the runner.
"""

from __future__ import annotations

import functools
import inspect
import logging
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, final

import anyio

from rivers._tracebacks import MAX_TRACEBACK_CHARS
from rivers._user_code import UserCodeExited, describe, message_of, original
from rivers.core.triggers import (
    AutomationRule,
    TriggerKind,
    TriggerState,
    decide_automation,
    decide_schedule,
    describe_tick,
    schedule_due_at,
    schedule_run_key,
    sensor_due_at,
    state_key,
)
from rivers.definitions.requests import RunRequest
from rivers.definitions.triggers import (
    AUTOMATION_TAG,
    SCHEDULE_TAG,
    SENSOR_TAG,
    Schedule,
    ScheduleContext,
    Sensor,
    SensorContext,
)
from rivers.errors import ConfigError, StorageUnavailable
from rivers.messages import TriggerFailed
from rivers.storage.records import RunStatus, from_timestamp

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from anyio.abc import TaskStatus

    from rivers._clock import Clock
    from rivers.actors.events import EventWriter
    from rivers.definitions.repository import CodeRepository
    from rivers.run_handle import RunHandle
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
USER_CODE_TIMEOUT_S = 60.0
"""A sensor or schedule function running longer fails that evaluation."""
LEADER_RELEASE_S = 2.0  # best effort, not CLEANUP_TIMEOUT_S: leases expire anyway

_WAITING = (
    RunStatus.QUEUED,
    RunStatus.STARTING,
    RunStatus.STARTED,
    RunStatus.CANCELING,
)


@dataclass(slots=True)
class TickReport:
    """What one ``tick_now()`` did: runs submitted, triggers evaluated, errors."""

    leader: bool = False
    evaluated: list[str] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Trigger:
    kind: TriggerKind
    name: str
    repository: CodeRepository
    schedule: Schedule | None = None
    sensor: Sensor | None = None

    @property
    def key(self) -> str:
        return state_key(self.kind, self.name)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name!r}"


@final
class TriggerRunner:
    """Evaluates the triggers of a runtime's repositories; submits their runs."""

    def __init__(
        self,
        repositories: Sequence[CodeRepository],
        *,
        storage: RunStore,
        kv: StateStore,
        events: EventWriter,
        owner: str,
        clock: Clock,
        submit: Callable[[RunRequest, CodeRepository], Awaitable[RunHandle]],
    ) -> None:
        """Collect the repositories' triggers.

        Raises:
            ConfigError: two repositories define triggers with the same name.
        """
        self._storage = storage
        self._kv = kv
        self._events = events
        self._owner = owner
        self._clock = clock
        self._submit = submit
        self._triggers = _collect(repositories)
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

    def _due_at(self, trigger: _Trigger) -> float | None:
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
                if trigger.schedule is not None:
                    await self._evaluate_schedule(trigger, trigger.schedule, report)
                elif trigger.sensor is not None:
                    await self._evaluate_sensor(trigger, trigger.sensor, report)
                else:
                    await self._evaluate_automation(trigger, report)
        return report

    async def _load_states(self) -> None:
        for trigger in self._triggers:
            stored = await self._kv.get_state(trigger.key)
            self._states[trigger.key] = TriggerState.from_stored(stored)

    def _state(self, trigger: _Trigger) -> TriggerState:
        return self._states.setdefault(trigger.key, TriggerState())

    async def _save(self, trigger: _Trigger, state: TriggerState) -> None:
        self._states[trigger.key] = state
        await self._kv.put_state(trigger.key, state)

    async def _evaluate_schedule(
        self, trigger: _Trigger, schedule: Schedule, report: TickReport
    ) -> None:
        state = self._state(trigger)
        now = self._clock.time()
        decision = decide_schedule(
            schedule.cron,
            schedule.timezone,
            state.last_tick_at,
            now,
            catch_up=schedule.catch_up,
        )
        if decision.tick is None:
            if state.last_tick_at is not None and not decision.changed:
                return
            state.last_tick_at = decision.last_tick_at
            if decision.missed is not None:
                state.last_evaluation_at = now
                state.last_result = (
                    "skipped missed tick "
                    f"{describe_tick(decision.missed, schedule.timezone)}"
                )
            await self._save(trigger, state)
            return
        report.evaluated.append(trigger.label)
        tick = decision.tick
        state.last_tick_at = tick
        state.last_evaluation_at = now
        try:
            requests = await self._schedule_requests(schedule, tick)
            run_ids, repeated = await self._submit_all(trigger, requests)
        except StorageUnavailable:
            raise
        except Exception as exc:
            self._record_failure(trigger, state, exc, now, report)
        else:
            when = describe_tick(tick, schedule.timezone)
            late = " (catch-up)" if decision.late else ""
            self._record_success(state, run_ids, repeated, now, f"tick {when}{late}")
            report.submitted.extend(run_ids)
        await self._save(trigger, state)

    async def _schedule_requests(
        self, schedule: Schedule, tick: float
    ) -> list[RunRequest]:
        result: object = None
        if schedule.fn is not None:
            context = ScheduleContext(
                schedule_name=schedule.name,
                scheduled_at=datetime.fromtimestamp(tick, schedule.zone),
            )
            result = await _call_user(schedule.fn, context, schedule.takes_context)
        where = f"schedule {schedule.name!r}"
        given = [RunRequest()] if result is None else _as_requests(result, where)
        return [
            RunRequest(
                selection=schedule.selection if r.selection is None else r.selection,
                tags={**schedule.tags, **(r.tags or {}), SCHEDULE_TAG: schedule.name},
                priority=r.priority,
                run_key=(
                    schedule_run_key(schedule.name, tick, index)
                    if r.run_key is None
                    else f"schedule:{schedule.name}:{r.run_key}"
                ),
            )
            for index, r in enumerate(given)
        ]

    async def _evaluate_sensor(
        self, trigger: _Trigger, sensor: Sensor, report: TickReport
    ) -> None:
        state = self._state(trigger)
        now = self._clock.time()
        report.evaluated.append(trigger.label)
        context = SensorContext(
            cursor=state.cursor,
            sensor_name=sensor.name,
            last_evaluation_at=_datetime(state.last_evaluation_at),
            last_run_at=_datetime(state.last_run_at),
            evaluated_at=_datetime(now),
        )
        state.last_evaluation_at = now
        try:
            result = await _call_user(sensor.fn, context, sensor.takes_context)
            where = f"sensor {sensor.name!r}"
            requests = [
                RunRequest(
                    selection=sensor.selection if r.selection is None else r.selection,
                    tags={**sensor.tags, **(r.tags or {}), SENSOR_TAG: sensor.name},
                    priority=r.priority,
                    run_key=None
                    if r.run_key is None
                    else f"sensor:{sensor.name}:{r.run_key}",
                )
                for r in ([] if result is None else _as_requests(result, where))
            ]
            run_ids, repeated = await self._submit_all(trigger, requests)
        except StorageUnavailable:
            raise
        except Exception as exc:
            self._record_failure(trigger, state, exc, now, report)
        else:
            if context.cursor_updated:
                state.cursor = context.cursor
            self._record_success(state, run_ids, repeated, now, "evaluated")
            report.submitted.extend(run_ids)
        await self._save(trigger, state)

    async def _evaluate_automation(self, trigger: _Trigger, report: TickReport) -> None:
        repository = trigger.repository
        state = self._state(trigger)
        now = self._clock.time()
        report.evaluated.append(trigger.label)
        if state.since is None:
            state.since = now
        state.last_evaluation_at = now
        conditions = repository.automation_conditions
        rules = {
            name: AutomationRule(kind=c.kind, cron=c.cron, timezone=c.timezone)
            for name, c in conditions.items()
        }
        relevant = set(rules)
        for name in rules:
            relevant.update(repository.upstream[name])
        try:
            latest = await self._storage.get_latest_materializations(sorted(relevant))
            decision = decide_automation(
                rules,
                repository.order,
                repository.upstream,
                {asset: at for asset, (_, at) in latest.items()},
                await self._active_assets(repository),
                state.requested,
                state.since,
                now,
            )
            run_ids: list[str] = []
            if decision.selection:
                request = RunRequest(
                    selection=tuple(decision.selection),
                    tags={AUTOMATION_TAG: "true"},
                )
                run_ids = [(await self._submit(request, repository)).run_id]
                state.requested.update(decision.watermarks)
                state.requested_at.update(dict.fromkeys(decision.selection, now))
        except StorageUnavailable:
            raise
        except Exception as exc:
            self._record_failure(trigger, state, exc, now, report)
        else:
            what = (
                f"requested {', '.join(decision.selection)}"
                if decision.selection
                else "nothing to request"
            )
            if decision.held:
                what += f"; {', '.join(decision.held)} already queued or running"
            self._record_success(state, run_ids, 0, now, what)
            report.submitted.extend(run_ids)
        await self._save(trigger, state)

    async def _active_assets(self, repository: CodeRepository) -> set[str]:
        """The assets of the repository's queued and in-flight runs."""
        active: set[str] = set()
        for run in await self._storage.get_runs(status=_WAITING, limit=None):
            if run.repository != repository.name:
                continue
            active.update(
                run.selection if run.selection is not None else repository.order
            )
        return active

    async def _submit_all(
        self, trigger: _Trigger, requests: list[RunRequest]
    ) -> tuple[list[str], int]:
        """Submit ``requests``; return the new run ids and how many keys repeated.

        Every selection is checked before anything is submitted, so a bad request
        submits nothing (and a sensor's cursor does not move).
        """
        repository = trigger.repository
        for request in requests:
            repository.resolve_selection(
                None if request.selection is None else list(request.selection)
            )
        run_ids: list[str] = []
        repeated = 0
        for request in requests:
            key = request.run_key
            if key is not None and await self._storage.get_run_by_key(key) is not None:
                repeated += 1
                continue
            handle = await self._submit(request, repository)
            run_ids.append(handle.run_id)
        return run_ids, repeated

    def _record_success(
        self,
        state: TriggerState,
        run_ids: list[str],
        repeated: int,
        now: float,
        what: str,
    ) -> None:
        parts = [
            what,
            f"submitted {len(run_ids)} run{'s' if len(run_ids) != 1 else ''}",
        ]
        if repeated:
            parts.append(f"{repeated} already submitted (run_key)")
        state.last_result = "; ".join(parts)
        state.last_error = None
        if run_ids:
            state.last_run_at = now
            state.last_run_ids = run_ids

    def _record_failure(
        self,
        trigger: _Trigger,
        state: TriggerState,
        exc: Exception,
        now: float,
        report: TickReport,
    ) -> None:
        user = original(exc)
        if isinstance(user, TimeoutError):
            message = f"timed out after {USER_CODE_TIMEOUT_S:g}s"
            state.last_error = f"{type(user).__name__}: {message}"
        else:
            message = message_of(user) or type(user).__name__
            state.last_error = describe(user)
        state.last_error_at = now
        state.last_result = "error"
        report.errors.append(f"{trigger.label}: {state.last_error}")
        logger.warning("%s failed: %s", trigger.label, state.last_error)
        trace = "".join(traceback.format_exception(user))[-MAX_TRACEBACK_CHARS:]
        self._events.emit(
            TriggerFailed(
                trigger=trigger.name,
                trigger_type=trigger.kind,
                repository=trigger.repository.name,
                error=message,
                error_type=type(user).__name__,
                traceback=trace,
            )
        )


def _collect(repositories: Sequence[CodeRepository]) -> list[_Trigger]:
    triggers: list[_Trigger] = []
    owners: dict[str, str] = {}
    for repository in repositories:
        for schedule in repository.schedules:
            triggers.append(
                _Trigger("schedule", schedule.name, repository, schedule=schedule)
            )
        for sensor in repository.sensors:
            triggers.append(_Trigger("sensor", sensor.name, repository, sensor=sensor))
        if repository.automation_conditions:
            triggers.append(_Trigger("automation", repository.name, repository))
    for trigger in triggers:
        if trigger.kind == "automation":
            continue
        other = owners.setdefault(trigger.name, trigger.repository.name)
        if other != trigger.repository.name:
            raise ConfigError(
                f"repositories {other!r} and {trigger.repository.name!r} both define "
                f"a trigger named {trigger.name!r}; trigger names share one storage, "
                "so rename one"
            )
    return triggers


async def _call_user(fn: Callable[..., Any], context: object, pass_it: bool) -> Any:
    """Call a sensor or schedule function: async on the loop, sync in a thread."""
    args = (context,) if pass_it else ()
    try:
        with anyio.fail_after(USER_CODE_TIMEOUT_S):
            if inspect.iscoroutinefunction(fn):
                return await fn(*args)
            result = await anyio.to_thread.run_sync(
                functools.partial(fn, *args), abandon_on_cancel=True
            )
            if inspect.isawaitable(result):
                return await result
            return result
    except Exception:
        raise
    except BaseException as exc:
        # sys.exit() or KeyboardInterrupt in a sensor fails it, not the runtime.
        raise UserCodeExited.contain(exc) from exc


def _as_requests(result: object, where: str) -> list[RunRequest]:
    if isinstance(result, RunRequest):
        return [result]
    if isinstance(result, list | tuple) and all(
        isinstance(r, RunRequest) for r in result
    ):
        return list(result)
    raise TypeError(
        f"{where} returned {result!r}; return a rs.RunRequest, a list of them, or None"
    )


def _datetime(epoch_s: float | None) -> datetime | None:
    return from_timestamp(epoch_s)
