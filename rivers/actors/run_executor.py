"""RunExecutor: drives one run's steps through the executor gate to their ends.

The step order comes from ``core.plan.PlanState``; this actor only performs
effects: it starts a task per ready step, waits for an executor slot, launches the
attempt, records events, applies retries and timeouts, and finishes the run.
Cancellation (``cancel()``, the runtime stopping, the caller being cancelled) stops
every step, records each as CANCELED and the run as CANCELED, shielded and bounded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, final

import anyio

from rivers._error_groups import one_storage_error
from rivers._tracebacks import remote_traceback, step_traceback
from rivers._user_code import describe, is_runtime_cancellation
from rivers.actors.cleanup import CLEANUP_TIMEOUT_S
from rivers.actors.deadlines import overrun
from rivers.actors.run_pools import hold_run_pools
from rivers.core.plan import PlanState, StepOutcome
from rivers.errors import ExecutionError, LeaseLost, StepError, StepTimeout
from rivers.executors.base import LaunchResult, StepLauncher, StepRequest
from rivers.messages import (
    RunCanceled,
    RunFailed,
    RunStarted,
    RunSucceeded,
    StepCanceled,
    StepFailed,
    StepRetrying,
    StepSkipped,
    StepStarted,
    StepSucceeded,
    StepWaiting,
)
from rivers.results import MaterializeResult
from rivers.storage.records import RunChange, RunStatus, StepRecord, StepStatus

if TYPE_CHECKING:
    from collections.abc import Mapping

    from anyio.streams.memory import MemoryObjectSendStream

    from rivers._clock import Clock
    from rivers.actors.events import EventWriter
    from rivers.actors.pools import Claim, PoolManager
    from rivers.definitions.asset import Asset
    from rivers.definitions.repository import CodeRepository
    from rivers.executors.gate import StepGate

__all__ = ("CLEANUP_TIMEOUT_S", "RunExecutor")  # the runtime takes it from here

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _StepTrack:
    status: StepStatus = StepStatus.WAITING
    attempts: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None
    worker: str | None = None


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
        events: EventWriter,
        pools: PoolManager,
        clock: Clock,
        owner: str,
        priority: int = 0,
    ) -> None:
        self.run_id = run_id
        self._priority = priority  # the run's: added to each step's own
        self._run_pools = repository.run_pools(selection)  # pool_granularity="run"
        self._repository = repository
        self._selection = selection
        self._tags = dict(tags)
        self._launcher = launcher
        self._executor_name = executor_name
        self._events = events
        self._pools = pools
        self._clock = clock
        self._owner = owner
        self._values: dict[str, object] = {}
        self._tracks: dict[str, _StepTrack] = {step: _StepTrack() for step in selection}
        self._first_error: BaseException | None = None
        self._cancel_scope = anyio.CancelScope()
        self._cancel_reason: str | None = None

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
        duration = self._clock.monotonic() - started
        if self._cancel_reason is not None and not plan.succeeded:
            status, reason = RunStatus.CANCELED, self._cancel_reason
            final: Any = RunCanceled(run_id=self.run_id, reason=reason)
        elif plan.succeeded:
            status, reason = RunStatus.SUCCESS, None
            final = RunSucceeded(run_id=self.run_id, duration_s=duration)
        else:
            status, reason = RunStatus.FAILURE, self._failure_reason()
            final = RunFailed(run_id=self.run_id, reason=reason, duration_s=duration)
        expected = (RunStatus.STARTED, RunStatus.CANCELING)
        await self._change(status, expected, reason, final)
        return MaterializeResult(
            run_id=self.run_id,
            status=status,
            step_records=self._step_records(),
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

    def _failure_reason(self) -> str:
        failed = [s for s, t in self._tracks.items() if t.status is StepStatus.FAILURE]
        if not failed and self._first_error is not None:
            return str(self._first_error)
        if len(failed) == 1:
            return self._tracks[failed[0]].error or f"step {failed[0]!r} failed"
        return f"{len(failed)} steps failed: {', '.join(failed)}"

    def _step_records(self) -> list[StepRecord]:
        return [
            StepRecord(
                step_key=step,
                status=track.status,
                attempts=track.attempts,
                started_at=track.started_at,
                ended_at=track.ended_at,
                error=track.error,
                worker=track.worker,
            )
            for step, track in self._tracks.items()
        ]

    def _mark(self, step: str, status: StepStatus, *, error: str | None = None) -> None:
        track = self._tracks[step]
        track.status = status
        track.ended_at = datetime.now(UTC)
        track.error = error

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
                error, trace, ran_s = await self._attempt(asset, attempt)
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

    async def _attempt(
        self, asset: Asset[Any, Any], attempt: int
    ) -> tuple[ExecutionError | None, str | None, float]:
        """Run one attempt through the executor gate, then the pool gate.

        A step takes an executor slot, then tries its pools at once; while they are
        full it gives the slot back (other steps fill the workers) and takes one
        again once its pools are claimed. All is released when the attempt ends.

        Returns:
            (the attempt's error or None, a traceback when the user's code raised,
            the seconds it ran: from its start on a worker, without the wait for
            one, to its end; 0 when it never started).
        """
        step = asset.name
        gate = self._launcher.gate(asset)
        track = self._tracks[step]

        began: float | None = None
        # The timeout counts from the attempt's start: not its wait for a worker.
        timeout = anyio.CancelScope()

        def on_start(worker: str, startup_s: float = 0.0) -> None:
            nonlocal began
            began = self._clock.monotonic()
            if asset.timeout_s is not None:
                timeout.deadline = anyio.current_time() + asset.timeout_s
            track.attempts = attempt
            track.status = StepStatus.RUNNING
            track.worker = worker
            if track.started_at is None:
                track.started_at = datetime.now(UTC)
            self._events.emit(
                StepStarted(
                    run_id=self.run_id,
                    step_key=step,
                    attempt=attempt,
                    worker=worker,
                    startup_s=startup_s,
                )
            )

        await self._enter_gate(gate, asset)
        holding_gate = True
        claim: Claim | None = None
        try:
            if asset.pools and not self._run_pools:
                waiting_since = self._clock.monotonic()
                try:
                    claim = await self._claim(asset, wait=False)
                    if claim is None:
                        # Never hold a worker while waiting for a pool.
                        gate.release()
                        holding_gate = False
                        claim = await self._claim(asset, wait=True)
                        await self._enter_gate(gate, asset)
                        holding_gate = True
                except ExecutionError as exc:
                    return exc, None, 0.0
                assert claim is not None
                self._events.emit(
                    self._pools.claimed_event(
                        claim, self._clock.monotonic() - waiting_since
                    )
                )
            request = StepRequest(
                run_id=self.run_id,
                asset=asset,
                attempt=attempt,
                run_tags=self._tags,
                known_values=self._values,
                io_manager=self._repository.io_manager,
                emit=self._events.emit,
                on_start=on_start,
                pool_lease=None if claim is None else claim.lease,
            )
            result: LaunchResult | None = None
            overran_s: float | None = None
            try:
                with timeout:
                    result = await self._launch(request, claim)
                if asset.timeout_s is not None:
                    overran_s = overrun(timeout, asset.timeout_s)
            except ExecutionError as exc:
                return exc, remote_traceback(exc), self._since(began)
            except BaseException as exc:
                # Whatever the step raised (sys.exit() and KeyboardInterrupt too) is
                # its failure; only the runtime's own cancellation goes on.
                if is_runtime_cancellation(exc):
                    raise
                error = StepError(step, describe(exc))
                error.__cause__ = exc
                return error, step_traceback(exc), self._since(began)
            if result is None or overran_s is not None:
                # A result that came back past the deadline (the loop was blocked,
                # by this async step or another) is too late: the step timed out.
                assert asset.timeout_s is not None
                timed_out = StepTimeout(
                    step, asset.timeout_s, returned_after_s=overran_s
                )
                return timed_out, None, self._since(began)
        finally:
            if claim is not None:
                await self._pools.release(claim)
            if holding_gate:
                gate.release()
        if result.has_value:
            self._values[step] = result.value
        track.status = StepStatus.SUCCESS
        track.ended_at = datetime.now(UTC)
        track.error = None
        self._events.emit(
            StepSucceeded(
                run_id=self.run_id,
                step_key=step,
                attempt=attempt,
                duration_s=self._since(began),
            )
        )
        return None, None, self._since(began)

    def _since(self, began: float | None) -> float:
        return 0.0 if began is None else self._clock.monotonic() - began

    async def _enter_gate(self, gate: StepGate, asset: Asset[Any, Any]) -> None:
        if gate.try_acquire():  # no yield: a wide level reaches its pool claims first
            return
        self._events.emit(
            StepWaiting(
                run_id=self.run_id,
                step_key=asset.name,
                position=gate.waiting + 1,
                capacity=int(gate.total_tokens),
            )
        )
        await gate.acquire(self._priority + asset.priority)

    async def _claim(self, asset: Asset[Any, Any], *, wait: bool) -> Claim | None:
        return await self._pools.acquire(
            run_id=self.run_id,
            step_key=asset.name,
            pools=asset.pools,
            slots=asset.pool_slots,
            priority=self._priority + asset.priority,
            wait=wait,
        )

    async def _launch(self, request: StepRequest, claim: Claim | None) -> LaunchResult:
        """Launch the attempt; if its pool claim is lost meanwhile, stop it."""
        if claim is None:
            return await self._launcher.launch(request)
        result: LaunchResult | None = None
        with anyio.CancelScope() as scope:
            claim.cancel_on_loss(scope)
            result = await self._launcher.launch(request)
        if result is None:
            raise LeaseLost(
                self.run_id, claim.step_key, claim.pools[0], revoked=claim.revoked
            )
        return result
