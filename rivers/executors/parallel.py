"""``Executor.parallel``: sync steps in warm worker processes, async steps on the loop.

Within one run at most ``max_workers`` sync steps and ``max_async_concurrent`` async
steps run at once (two separate gates). Worker processes come from the runtime's
shared ``WorkerPool``, so they stay warm across steps and runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import pickle
import sys
import weakref
from typing import TYPE_CHECKING, Any, final

from rivers._tracebacks import RemoteTraceback
from rivers.context import echo_step_log
from rivers.errors import LaunchFailed, WorkerCrashed
from rivers.executors._protocol import TaskLog, TaskRequest
from rivers.executors.base import LaunchResult, StepRequest
from rivers.executors.gate import StepGate, TagGates
from rivers.executors.in_process import AsyncStepRunner
from rivers.executors.process_pool import WorkerDied, WorkerPool
from rivers.messages import StepLogged

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rivers.definitions.asset import Asset
    from rivers.definitions.executor_configs import ParallelExecutor

__all__ = ("ParallelLauncher", "RemoteTraceback")


_PICKLED: weakref.WeakKeyDictionary[Asset[Any, Any], tuple[bytes, str]] = (
    weakref.WeakKeyDictionary()
)


class RemoteStepError(Exception):
    """A worker's exception that could not be sent back as itself."""


@final
class ParallelLauncher:
    """Launches one run's steps under ``Executor.parallel`` limits."""

    def __init__(self, config: ParallelExecutor, pool: WorkerPool) -> None:
        self._pool = pool
        self._workers = config.workers
        self._sync_gate = StepGate(config.workers)
        self._async_gate = StepGate(
            math.inf
            if config.max_async_concurrent is None
            else config.max_async_concurrent
        )
        self._tasks = AsyncStepRunner()
        self.tag_gates = TagGates([t.rule() for t in config.tag_concurrency_limits])
        self._io_manager: bytes | None = None

    async def warm(self, levels: Sequence[Sequence[Asset[Any, Any]]]) -> None:
        """Start as many workers as sync steps may run at once, up to the limit.

        That is the most sync steps in one level: a chain needs one worker, and
        workers that could not be used would only slow the others' start.
        """
        widest = max(
            (sum(not a.is_async for a in level) for level in levels), default=0
        )
        await self._pool.warm(min(self._workers, widest))

    def gate(self, asset: Asset[Any, Any]) -> StepGate:
        """Async steps share the async gate; sync steps the worker gate."""
        return self._async_gate if asset.is_async else self._sync_gate

    async def launch(self, request: StepRequest) -> LaunchResult:
        """Run an async step here, or a sync step in a worker process."""
        if request.asset.is_async:
            return await self._tasks.run(request)
        asset_bytes, digest = self._pickle_asset(request.asset)
        if self._io_manager is None:
            self._io_manager = _dumps(
                request.io_manager, request.asset.name, "IO manager"
            )
        task = TaskRequest(
            task_id=self._pool.next_task_id(),
            run_id=request.run_id,
            step_key=request.asset.name,
            attempt=request.attempt,
            run_tags=dict(request.run_tags),
            asset=asset_bytes,
            asset_digest=digest,
            io_manager=self._io_manager,
            pool_lease=None
            if request.pool_lease is None
            else request.pool_lease.to_wire(),
        )

        def on_log(log: TaskLog) -> None:
            if log.stream is None:
                echo_step_log(
                    request.run_id, request.asset.name, log.level, log.message
                )
            else:
                echo_output(log.stream, log.message)
            request.emit(
                StepLogged(
                    run_id=request.run_id,
                    step_key=request.asset.name,
                    level=log.level,
                    message=log.message,
                    stream=log.stream,
                )
            )

        try:
            done = await self._pool.run(
                task,
                on_start=lambda pid, startup_s: request.on_start(
                    f"pid {pid}", startup_s
                ),
                on_log=on_log,
            )
        except WorkerDied as exc:
            raise WorkerCrashed(
                request.asset.name, f"pid {exc.pid} {exc.detail}"
            ) from exc
        if done.ok:
            return LaunchResult(value=None, has_value=False)
        raise _rebuild_exception(
            done.exception, done.error_type, done.error_message, done.traceback
        )

    def _pickle_asset(self, asset: Asset[Any, Any]) -> tuple[bytes, str]:
        # Pickled once per asset object for the whole process: cloudpickle is slow
        # (it may scan every module to find a function's home).
        cached = _PICKLED.get(asset)
        if cached is None:
            data = _dumps(asset, asset.name, "function")
            cached = (data, hashlib.blake2b(data, digest_size=16).hexdigest())
            _PICKLED[asset] = cached
        return cached


def echo_output(stream: str, line: str) -> None:
    """Write a line a worker's step printed to this process's ``stream``.

    Written through ``sys.stdout``/``sys.stderr`` as they are now: while a live
    display shows, rich has replaced them so the line prints above it.
    """
    target = sys.stdout if stream == "stdout" else sys.stderr
    if target is None:  # pythonw, or closed by the embedding program
        return
    with contextlib.suppress(OSError, ValueError):
        target.write(line + "\n")
        target.flush()


def _dumps(value: object, step_key: str, what: str) -> bytes:
    from rivers.executors._pickling import dumps

    try:
        data = dumps(value)
    except Exception as exc:
        raise LaunchFailed(
            step_key,
            f"its {what} cannot be pickled for a worker process "
            f"({type(exc).__name__}: {exc}); use Executor.in_process() or make it "
            "importable",
        ) from exc
    return data


def _rebuild_exception(
    pickled: bytes | None,
    error_type: str | None,
    message: str | None,
    traceback: str | None,
) -> BaseException:
    exc: BaseException | None = None
    if pickled is not None:
        try:
            exc = pickle.loads(pickled)
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        exc = RemoteStepError(f"{error_type}: {message}")
    if traceback:
        exc.__cause__ = RemoteTraceback(traceback)
    return exc
