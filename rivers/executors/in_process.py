"""Steps run one at a time in this process: sync ones in a thread, async on the loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from functools import partial
from typing import TYPE_CHECKING, Any, final

from rivers._threads import call_from_thread, run_sync
from rivers.executors.base import LaunchResult, StepRequest, call_step, load_inputs
from rivers.executors.gate import StepGate, TagGates
from rivers.io import FilesystemIOManager

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rivers.definitions.asset import Asset
    from rivers.messages import EventBody

__all__ = ("AsyncStepRunner", "InProcessLauncher", "ThreadStepRunner")


@final
class ThreadStepRunner:
    """Runs a sync step in a worker thread so the event loop keeps ticking.

    A thread cannot be killed: when the attempt is cancelled (timeout, run cancel)
    the thread is abandoned, and its value, if it ever returns, is not stored.
    """

    async def run(self, request: StepRequest) -> LaunchResult:
        """Run the sync step in a thread, store its value, return it."""
        abandoned = threading.Event()
        loop = asyncio.get_running_loop()

        def emit_from_thread(body: EventBody) -> None:
            # RuntimeError: the loop is gone because the run was abandoned.
            with contextlib.suppress(RuntimeError):
                call_from_thread(loop, request.emit, body)

        def work() -> object:
            inputs = load_inputs(
                request.asset, request.known_values, request.io_manager
            )
            value = call_step(
                request.asset,
                inputs,
                run_id=request.run_id,
                run_tags=request.run_tags,
                attempt=request.attempt,
                emit=emit_from_thread,
                pool_lease=request.pool_lease,
            )
            if not abandoned.is_set():
                request.io_manager.store(request.asset.name, value)
            return value

        request.on_start("thread")
        try:
            value = await run_sync(work, abandon_on_cancel=True)
        except BaseException:
            abandoned.set()
            raise
        return LaunchResult(value=value, has_value=True)


@final
class AsyncStepRunner:
    """Runs an async step as a task on the event loop."""

    async def run(self, request: StepRequest) -> LaunchResult:
        """Await the step, store its value off the loop, return it."""
        asset = request.asset
        request.on_start("event loop")
        if all(name in request.known_values for name in asset.params):
            inputs = {name: request.known_values[name] for name in asset.params}
        else:
            inputs = await run_sync(
                partial(load_inputs, asset, request.known_values, request.io_manager)
            )
        value = await call_step(  # type: ignore[misc]
            asset,
            inputs,
            run_id=request.run_id,
            run_tags=request.run_tags,
            attempt=request.attempt,
            emit=request.emit,
            pool_lease=request.pool_lease,
        )
        if stores_quickly(request.io_manager, value):
            request.io_manager.store(asset.name, value)
        else:
            await run_sync(partial(request.io_manager.store, asset.name, value))
        return LaunchResult(value=value, has_value=True)


INLINE_STORE_MAX_BYTES = 4096


def stores_quickly(io_manager: object, value: object) -> bool:
    """Whether storing ``value`` costs less than a hop to a thread and back.

    True for rivers' own filesystem IO manager and a small scalar, string or bytes
    (pickled and written in tens of microseconds): the store runs on the loop.
    Anything else, and every other IO manager (which may do network I/O), is
    stored in a thread so the loop never blocks on it.
    """
    if type(io_manager) is not FilesystemIOManager:
        return False
    if value is None or type(value) in (bool, float):
        return True
    if type(value) is int:
        return value.bit_length() <= 8 * INLINE_STORE_MAX_BYTES
    if type(value) in (str, bytes):
        return len(value) <= INLINE_STORE_MAX_BYTES  # type: ignore[arg-type]
    return False


@final
class InProcessLauncher:
    """``Executor.in_process()``: one step at a time, in this process."""

    def __init__(self) -> None:
        self._slot = StepGate(1)
        self._threads = ThreadStepRunner()
        self._tasks = AsyncStepRunner()
        self.tag_gates = TagGates()  # one step at a time: no tag limit applies

    async def warm(self, levels: Sequence[Sequence[Asset[Any, Any]]]) -> None:
        """Nothing to start: steps run in this process."""

    def gate(self, asset: Asset[Any, Any]) -> StepGate:
        """Every step shares the one slot."""
        return self._slot

    async def launch(self, request: StepRequest) -> LaunchResult:
        """Run the step here."""
        if request.asset.is_async:
            return await self._tasks.run(request)
        return await self._threads.run(request)
