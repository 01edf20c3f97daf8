"""Evaluating one due trigger: call its function, or decide its automation
conditions, submit the runs it asks for and record the outcome in its state.

``TriggerEvaluator.evaluate`` changes the trigger's ``TriggerState`` in place and
says whether it must be stored; the ``TriggerRunner`` (``rivers.actors.triggers``)
stores it after the runs were submitted. Decisions come from
``rivers.core.triggers``, the requests from ``trigger_requests``. A failing sensor
or schedule function is recorded (TRIGGER_FAILURE event, ``last_error`` in its
state), never raised: only a ``StorageUnavailable`` is.
"""

from __future__ import annotations

import contextlib
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
from rivers.actors.trigger_requests import schedule_requests, sensor_requests
from rivers.commands import RunsSubmitted
from rivers.core.triggers import (
    AutomationRule,
    decide_automation,
    decide_schedule,
    describe_tick,
)
from rivers.definitions.requests import RunRequest
from rivers.definitions.triggers import AUTOMATION_TAG, ScheduleContext, SensorContext
from rivers.errors import StorageUnavailable
from rivers.messages import TriggerFailed
from rivers.storage.records import RunStatus, from_timestamp
from rivers.submission import enqueue, queued_run

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from anyio.streams.memory import MemoryObjectSendStream

    from rivers._clock import Clock
    from rivers.actors.ports import EventLog
    from rivers.actors.trigger_requests import Trigger
    from rivers.commands import CoordinatorMessage
    from rivers.core.triggers import TriggerState
    from rivers.definitions.repository import CodeRepository
    from rivers.definitions.triggers import Schedule, Sensor
    from rivers.storage.base import RunStore

__all__ = ("USER_CODE_TIMEOUT_S", "TickReport", "TriggerEvaluator")

logger = logging.getLogger(__name__)

USER_CODE_TIMEOUT_S = 60.0
"""A sensor or schedule function running longer fails that evaluation."""

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


@final
class TriggerEvaluator:
    """Evaluates due triggers: submits their runs and fills in their states."""

    def __init__(
        self,
        *,
        storage: RunStore,
        events: EventLog,
        clock: Clock,
        queues: Mapping[str, MemoryObjectSendStream[CoordinatorMessage]],
    ) -> None:
        self._storage = storage
        self._events = events
        self._clock = clock
        self._queues = queues

    async def evaluate(
        self, trigger: Trigger, state: TriggerState, report: TickReport
    ) -> bool:
        """Evaluate ``trigger``, which is due; return whether ``state`` must be stored.

        Raises:
            StorageUnavailable: the storage could not be read or written.
        """
        if trigger.schedule is not None:
            return await self._schedule(trigger, trigger.schedule, state, report)
        if trigger.sensor is not None:
            await self._sensor(trigger, trigger.sensor, state, report)
        else:
            await self._automation(trigger, state, report)
        return True

    async def _schedule(
        self,
        trigger: Trigger,
        schedule: Schedule,
        state: TriggerState,
        report: TickReport,
    ) -> bool:
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
                return False
            state.last_tick_at = decision.last_tick_at
            if decision.missed is not None:
                state.last_evaluation_at = now
                state.last_result = (
                    "skipped missed tick "
                    f"{describe_tick(decision.missed, schedule.timezone)}"
                )
            return True
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
            _record_success(state, run_ids, repeated, now, f"tick {when}{late}")
            report.submitted.extend(run_ids)
        return True

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
        return schedule_requests(schedule, tick, result)

    async def _sensor(
        self,
        trigger: Trigger,
        sensor: Sensor,
        state: TriggerState,
        report: TickReport,
    ) -> None:
        now = self._clock.time()
        report.evaluated.append(trigger.label)
        context = SensorContext(
            cursor=state.cursor,
            sensor_name=sensor.name,
            last_evaluation_at=from_timestamp(state.last_evaluation_at),
            last_run_at=from_timestamp(state.last_run_at),
            evaluated_at=from_timestamp(now),
        )
        state.last_evaluation_at = now
        try:
            result = await _call_user(sensor.fn, context, sensor.takes_context)
            requests = sensor_requests(sensor, result)
            run_ids, repeated = await self._submit_all(trigger, requests)
        except StorageUnavailable:
            raise
        except Exception as exc:
            self._record_failure(trigger, state, exc, now, report)
        else:
            if context.cursor_updated:
                state.cursor = context.cursor
            _record_success(state, run_ids, repeated, now, "evaluated")
            report.submitted.extend(run_ids)

    async def _automation(
        self, trigger: Trigger, state: TriggerState, report: TickReport
    ) -> None:
        repository = trigger.repository
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
                run_ids = await self._enqueue(repository, [request])
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
            _record_success(state, run_ids, 0, now, what)
            report.submitted.extend(run_ids)

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
        self, trigger: Trigger, requests: list[RunRequest]
    ) -> tuple[list[str], int]:
        """Submit ``requests``; return the new run ids and how many keys repeated
        (used before, or earlier in ``requests``: those write nothing)."""
        run_ids = await self._enqueue(trigger.repository, requests)
        return run_ids, len(requests) - len(run_ids)

    async def _enqueue(
        self, repository: CodeRepository, requests: list[RunRequest]
    ) -> list[str]:
        """Write the runs ``requests`` ask for QUEUED and tell the repository's
        queue coordinator (``RunsSubmitted``), which admits them; return the ids
        of the runs written.

        Every selection is checked before anything is written, so a bad request
        submits nothing (and a sensor's cursor does not move). Without a
        coordinator here (none serves the repository yet), the runs wait in the
        storage for the runtime that serves it.
        """
        runs = [queued_run(repository, request) for request in requests]
        if not runs:
            return []
        _, written = await enqueue(self._storage, self._events, runs)
        inbox = self._queues.get(repository.name)
        if written and inbox is not None:
            with contextlib.suppress(anyio.ClosedResourceError):  # stopping
                inbox.send_nowait(RunsSubmitted(run_ids=tuple(written)))
        return written

    def _record_failure(
        self,
        trigger: Trigger,
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


def _record_success(
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
