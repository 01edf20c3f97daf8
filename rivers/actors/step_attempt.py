"""AttemptRunner: one attempt of a run's step, through the executor gate and its pools.

An attempt takes an executor slot, then its pools' slots (step granularity), then
launches the step; it records the step's start and success on its ``StepTrack`` and in
the event log, turns what the step raised, a lost pool claim or an overrun timeout
into the attempt's error, and releases everything it took when it ends. Retries and
failures are the RunExecutor's: it gets each attempt's error back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, final

import anyio

from rivers._tracebacks import remote_traceback, step_traceback
from rivers._user_code import describe, is_runtime_cancellation
from rivers.actors.deadlines import overrun
from rivers.errors import ExecutionError, LeaseLost, StepError, StepTimeout
from rivers.executors.base import LaunchResult, StepLauncher, StepRequest
from rivers.messages import StepStarted, StepSucceeded, StepWaiting
from rivers.storage.records import StepStatus

if TYPE_CHECKING:
    from rivers._clock import Clock
    from rivers.actors.pool_claim import Claim
    from rivers.actors.ports import EventLog, PoolClaims
    from rivers.actors.run_outcome import StepTrack
    from rivers.definitions.asset import Asset
    from rivers.definitions.repository import CodeRepository
    from rivers.executors.gate import StepGate

__all__ = ("AttemptRunner",)


@final
class AttemptRunner:
    """Runs the attempts of one run's steps; owned by the run's RunExecutor."""

    def __init__(
        self,
        *,
        run_id: str,
        repository: CodeRepository,
        tags: dict[str, str],
        values: dict[str, object],
        launcher: StepLauncher,
        events: EventLog,
        pools: PoolClaims,
        clock: Clock,
        priority: int,
        run_holds_pools: bool,
    ) -> None:
        self._run_id = run_id
        self._repository = repository
        self._tags = tags
        self._values = values
        """The run's step values, shared: a step that succeeds adds its own."""
        self._launcher = launcher
        self._events = events
        self._pools = pools
        self._clock = clock
        self._priority = priority  # the run's: added to each step's own
        self._run_holds_pools = run_holds_pools  # pool_granularity="run"

    async def attempt(
        self, asset: Asset[Any, Any], attempt: int, track: StepTrack
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
                    run_id=self._run_id,
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
            if asset.pools and not self._run_holds_pools:
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
                run_id=self._run_id,
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
        track.end(StepStatus.SUCCESS)
        self._events.emit(
            StepSucceeded(
                run_id=self._run_id,
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
                run_id=self._run_id,
                step_key=asset.name,
                position=gate.waiting + 1,
                capacity=int(gate.total_tokens),
            )
        )
        await gate.acquire(self._priority + asset.priority)

    async def _claim(self, asset: Asset[Any, Any], *, wait: bool) -> Claim | None:
        return await self._pools.acquire(
            run_id=self._run_id,
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
                self._run_id, claim.step_key, claim.pools[0], revoked=claim.revoked
            )
        return result
