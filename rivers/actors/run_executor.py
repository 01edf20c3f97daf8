"""RunExecutor: drives one run's steps through the executor gate to their ends.

The step order comes from ``core.plan.PlanState``; this actor only performs
effects: it starts a task per ready step, runs its attempts (each through the
executor gate, its pools and the launcher: ``step_attempt.AttemptRunner``), records
events, applies retries, and finishes the run (its status from ``run_outcome``).
Cancellation (``cancel()``, the runtime stopping, the caller being cancelled) stops
every step, records each as CANCELED and the run as CANCELED, shielded and bounded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, final

import anyio

from rivers._error_groups import one_storage_error
from rivers.actors.cleanup import CLEANUP_TIMEOUT_S
from rivers.actors.run_outcome import StepTrack, run_end, step_records
from rivers.actors.run_pools import hold_run_pools
from rivers.actors.step_attempt import AttemptRunner
from rivers.core.plan import PlanState, StepOutcome
from rivers.messages import (
    RunStarted,
    StepCanceled,
    StepFailed,
    StepRetrying,
    StepSkipped,
)
from rivers.results import MaterializeResult
from rivers.storage.records import RunChange, RunStatus, StepStatus

if TYPE_CHECKING:
    from collections.abc import Mapping

    from anyio.streams.memory import MemoryObjectSendStream

    from rivers._clock import Clock
    from rivers.actors.ports import EventLog, PoolClaims
    from rivers.definitions.asset import Asset
    from rivers.definitions.repository import CodeRepository
    from rivers.errors import LeaseLost
    from rivers.executors.base import StepLauncher

__all__ = ("CLEANUP_TIMEOUT_S", "RunExecutor")  # the runtime takes it from here

logger = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class _StepDone:
    step: str
    outcome: StepOutcome


@final
class RunExecutor:
    """Executes one run; ``run()`` returns its ``MaterializeResult``."""

    def __init__(
        self,
        *,
        run_id: str,
        repository: CodeRepository,
        selection: list[str],
        tags: Mapping[str, str],
        launcher: StepLauncher,
        executor_name: str,
        events: EventLog,
        pools: PoolClaims,
        clock: Clock,
        owner: str,
        priority: int = 0,
    ) -> None:
        self.run_id = run_id
        self._priority = priority  # the run's: added to each step's own
        self._run_pools = repository.run_pools(selection)  # pool_granularity="run"
        self._repository = repository
        self._selection = selection
        self._launcher = launcher
        self._executor_name = executor_name
        self._events = events
        self._pools = pools
        self._clock = clock
        self._owner = owner
        self._values: dict[str, object] = {}
        self._tracks: dict[str, StepTrack] = {step: StepTrack() for step in selection}
        self._first_error: BaseException | None = None
        self._cancel_scope = anyio.CancelScope()
        self._cancel_reason: str | None = None
        self._runner = AttemptRunner(
            run_id=run_id,
            repository=repository,
            tags=dict(tags),
            values=self._values,
            launcher=launcher,
            events=events,
            pools=pools,
            clock=clock,
            priority=priority,
            run_holds_pools=bool(self._run_pools),
        )

    def cancel(self, reason: str) -> None:
        """Stop the run: running steps are cancelled, the run ends CANCELED."""
        if self._cancel_reason is None:
            self._cancel_reason = reason
        self._cancel_scope.cancel()

    async def run(self) -> MaterializeResult:
        """Run every selected step; return the result once the run is recorded.

        The run must be STARTING in storage. Cancelled from outside, it is recorded
        CANCELED before the cancellation propagates."""
        started = self._clock.monotonic()
        plan = self._repository.plan(self._selection)
        await self._warm(plan)
        self._events.emit(
            RunStarted(
                run_id=self.run_id,
                steps=len(self._selection),
                executor=self._executor_name,
                owner=self._owner,
            )
        )
        await self._change(RunStatus.STARTED, (RunStatus.STARTING,))
        hold = hold_run_pools(
            self._pools, self.run_id, self._run_pools, self._priority, self._lost
        )
        try:
            with self._cancel_scope:
                async with hold:
                    await self._execute(plan)
        except BaseExceptionGroup as group:
            # Several steps failing on one storage fault: raise it once.
            single = one_storage_error(group)
            if single is None:
                raise
            raise single  # noqa: B904  # its own cause is the sqlite3 error
        except anyio.get_cancelled_exc_class():
            with anyio.move_on_after(CLEANUP_TIMEOUT_S, shield=True):
                self._cancel_reason = self._cancel_reason or "the runtime stopped"
                await self._finish(plan, started)
            raise
        return await self._finish(plan, started)

    async def _warm(self, plan: PlanState) -> None:
        """Start the run's worker processes without waiting (failures are logged)."""
        assets = self._repository.assets
        levels = [[assets[step] for step in level] for level in plan.levels()]
        try:
            await self._launcher.warm(levels)
        except Exception as exc:
            logger.warning("run %s: could not start workers: %s", self.run_id, exc)

    async def _execute(self, plan: PlanState) -> None:
        send, receive = anyio.create_memory_object_stream[_StepDone](
            max(1, len(plan.order))
        )
        # The task group exits (every step task done) before the streams close.
        async with send, receive, anyio.create_task_group() as tg:
            for step in plan.initial():
                tg.start_soon(self._run_step, step, send, name=self._task_name(step))
            while not plan.done:
                done = await receive.receive()
                ready, skipped = plan.finish(done.step, done.outcome)
                for step in skipped:
                    self._skip(step, done.step)
                for step in ready:
                    tg.start_soon(
                        self._run_step, step, send, name=self._task_name(step)
                    )

    def _task_name(self, step: str) -> str:
        return f"rivers.step[{self.run_id}:{step}]"

    async def _finish(self, plan: PlanState, started: float) -> MaterializeResult:
        for step in plan.cancel_unstarted():
            self._mark(step, StepStatus.CANCELED, error="the run was canceled")
            self._events.emit(
                StepCanceled(
                    run_id=self.run_id,
                    step_key=step,
                    reason="the run was canceled before the step started",
                )
            )
        status, reason, final = run_end(
            self.run_id,
            succeeded=plan.succeeded,
            cancel_reason=self._cancel_reason,
            tracks=self._tracks,
            first_error=self._first_error,
            duration_s=self._clock.monotonic() - started,
        )
        expected = (RunStatus.STARTED, RunStatus.CANCELING)
        await self._change(status, expected, reason, final)
        return MaterializeResult(
            run_id=self.run_id,
            status=status,
            step_records=step_records(self._tracks),
            error=self._first_error,
            values=self._values,
            io_manager=self._repository.io_manager,
        )

    async def _change(
        self, to: RunStatus, expected: tuple[RunStatus, ...], *final: Any
    ) -> None:
        """Move the run (logging ``final``: a reason and an event) in the event
        writer's next batch: one transaction with the events emitted before."""
        reason, event = final or (None, None)
        at = self._clock.time()
        run_id = self.run_id
        change = RunChange(run_id=run_id, to=to, expected=expected, at=at)
        await self._events.change_run(replace(change, reason=reason, event=event))

    def _lost(self, error: LeaseLost) -> None:
        self._first_error = self._first_error or error  # the run's own pool claim

    def _mark(self, step: str, status: StepStatus, *, error: str | None = None) -> None:
        self._tracks[step].end(status, error)

    def _skip(self, step: str, because: str) -> None:
        reason = f"upstream step {because!r} did not succeed"
        self._mark(step, StepStatus.SKIPPED, error=reason)
        self._events.emit(StepSkipped(run_id=self.run_id, step_key=step, reason=reason))

    async def _run_step(
        self, step: str, done: MemoryObjectSendStream[_StepDone]
    ) -> None:
        outcome = StepOutcome.CANCELED
        try:
            outcome = await self._attempts(self._repository.assets[step])
        except anyio.get_cancelled_exc_class():
            self._mark(step, StepStatus.CANCELED, error="the run was canceled")
            self._events.emit(
                StepCanceled(
                    run_id=self.run_id,
                    step_key=step,
                    reason=self._cancel_reason or "the run was canceled",
                )
            )
            raise
        finally:
            done.send_nowait(_StepDone(step, outcome))

    async def _attempts(self, asset: Asset[Any, Any]) -> StepOutcome:
        policy = asset.retry_policy
        attempt = 1
        while True:
            priority = self._priority + asset.priority
            async with self._launcher.tag_gates.hold(asset.tags, priority):
                error, trace, ran_s = await self._runner.attempt(
                    asset, attempt, self._tracks[asset.name]
                )
            if error is None:
                return StepOutcome.SUCCEEDED
            if attempt <= policy.max_retries:
                delay = policy.delay_before(attempt + 1)
                self._events.emit(
                    StepRetrying(
                        run_id=self.run_id,
                        step_key=asset.name,
                        attempt=attempt,
                        error=str(error),
                        delay_s=delay,
                    )
                )
                self._tracks[asset.name].status = StepStatus.WAITING
                if delay:
                    await anyio.sleep(delay)
                attempt += 1
                continue
            self._mark(asset.name, StepStatus.FAILURE, error=str(error))
            self._events.emit(
                StepFailed(
                    run_id=self.run_id,
                    step_key=asset.name,
                    attempt=attempt,
                    error=str(error),
                    error_type=type(error.__cause__ or error).__name__,
                    traceback=trace,
                    duration_s=ran_s,
                )
            )
            if self._first_error is None:
                self._first_error = error
            return StepOutcome.FAILED
