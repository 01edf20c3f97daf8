"""A live progress line for ``rivers materialize`` and ``repo.materialize()``.

``materialize_progress(runtime)`` follows the runtime's events while its block runs
and shows, per run, steps done of total, how many run, and what the others wait
for (``2 waiting on pool warehouse``). The display is transient: it disappears
when the block ends, leaving the terminal as it was. It shows nothing when stdout
is not a terminal, when ``RIVERS_NO_PROGRESS=1``, or while another progress
display of this process is showing. rich is imported only when it shows.
"""

from __future__ import annotations

import os
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import TaskStatus

    from rivers.runtime import Runtime
    from rivers.storage.records import Event

__all__ = (
    "NO_PROGRESS_ENV",
    "ProgressState",
    "RunProgress",
    "materialize_progress",
    "progress_enabled",
)

NO_PROGRESS_ENV = "RIVERS_NO_PROGRESS"
REFRESH_S = 0.1
"""How often the line is redrawn (the spinner and elapsed time move)."""

_ENDED = {
    "STEP_SUCCESS": "done",
    "STEP_SKIPPED": "done",
    "STEP_CANCELED": "done",
    "STEP_FAILURE": "failed",
}
_RUN_ENDED = {
    "RUN_SUCCESS": "SUCCESS",
    "RUN_FAILURE": "FAILURE",
    "RUN_CANCELED": "CANCELED",
}

# One progress display per process: a terminal shows one live region well, and
# two concurrent ``await repo.materialize()`` calls would interleave their lines.
_showing = False


def progress_enabled() -> bool:
    """Whether a progress display should show: stdout is a terminal, not disabled."""
    if os.environ.get(NO_PROGRESS_ENV, "") not in ("", "0"):
        return False
    stream = sys.stdout
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # replaced by an object, or closed
        return False


@dataclass(slots=True)
class RunProgress:
    """What one run's steps are doing, folded from its events."""

    total: int | None = None
    done: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    running: set[str] = field(default_factory=set)
    pool_waits: dict[str, str] = field(default_factory=dict)
    """Step -> the pool it waits for."""
    worker_waits: set[str] = field(default_factory=set)
    status: str | None = None
    """The run's final status once it ended."""

    @property
    def finished(self) -> int:
        """Steps that ended, however they ended."""
        return len(self.done) + len(self.failed)

    def detail(self) -> str:
        """Return ``1 running, 2 waiting on pool warehouse, 1 failed``."""
        parts = []
        if self.running:
            parts.append(f"{len(self.running)} running")
        by_pool: dict[str, int] = {}
        for pool in self.pool_waits.values():
            by_pool[pool] = by_pool.get(pool, 0) + 1
        parts.extend(
            f"{count} waiting on pool {pool}" for pool, count in sorted(by_pool.items())
        )
        if self.worker_waits:
            parts.append(f"{len(self.worker_waits)} waiting for a worker")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return ", ".join(parts)


@dataclass(slots=True)
class ProgressState:
    """Every run's progress, folded from the event stream (no I/O)."""

    runs: dict[str, RunProgress] = field(default_factory=dict)

    def apply(self, event: Event) -> str | None:
        """Fold one event in; return the id of the run it changed, if any."""
        run_id = event.run_id
        if run_id is None:
            return None
        kind = event.kind
        if kind == "RUN_STARTED":
            started = self.runs.setdefault(run_id, RunProgress())
            steps = event.data.get("steps")
            started.total = steps if isinstance(steps, int) else None
            return run_id
        run = self.runs.get(run_id)
        if run is None:
            return None  # a run that started before we listened
        step = event.step_key
        if kind in _RUN_ENDED:
            run.status = _RUN_ENDED[kind]
            return run_id
        if step is None:
            return None
        run.worker_waits.discard(step)
        if kind != "STEP_POOL_BLOCKED":
            run.pool_waits.pop(step, None)
        if kind == "STEP_STARTED":
            run.running.add(step)
        elif kind == "STEP_WAITING":
            run.worker_waits.add(step)
        elif kind == "STEP_POOL_BLOCKED":
            run.pool_waits.setdefault(step, str(event.data.get("pool")))
        elif kind == "STEP_RETRY":
            run.running.discard(step)
        elif kind in _ENDED:
            run.running.discard(step)
            (run.done if _ENDED[kind] == "done" else run.failed).add(step)
        else:
            return None
        return run_id


@asynccontextmanager
async def materialize_progress(runtime: Runtime) -> AsyncIterator[None]:
    """Show the progress of ``runtime``'s runs while the block runs, then erase it.

    Does nothing (and imports nothing) when ``progress_enabled()`` is False or
    another progress display is showing.
    """
    global _showing
    if _showing or not progress_enabled():
        yield
        return
    _showing = True
    try:
        async with _Display.open() as display, anyio.create_task_group() as tg:
            await tg.start(display.follow, runtime, name="rivers.progress.follow")
            tg.start_soon(display.tick, name="rivers.progress.tick")
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
    finally:
        _showing = False


class _Display:
    """The rich Progress the state is drawn into (one task per run)."""

    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._state = ProgressState()
        self._tasks: dict[str, Any] = {}

    @classmethod
    @asynccontextmanager
    async def open(cls) -> AsyncIterator[_Display]:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        progress = Progress(
            SpinnerColumn(),
            TextColumn("run {task.fields[run]}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[detail]}", markup=False),
            console=Console(file=sys.stdout, highlight=False),
            transient=True,
            auto_refresh=False,
        )
        with progress:
            yield cls(progress)

    async def follow(
        self,
        runtime: Runtime,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        events = runtime.events()
        # The subscription is registered when the generator first runs, which
        # happens before this task yields control: no event of the run is missed.
        task_status.started()
        async for event in events:
            run_id = self._state.apply(event)
            if run_id is not None:
                self._update(run_id)

    async def tick(self) -> None:
        while True:
            self._progress.refresh()
            await anyio.sleep(REFRESH_S)

    def _update(self, run_id: str) -> None:
        run = self._state.runs[run_id]
        task = self._tasks.get(run_id)
        if task is None:
            task = self._progress.add_task(
                "", total=run.total, run=run_id, detail=run.detail()
            )
            self._tasks[run_id] = task
        self._progress.update(
            task, total=run.total, completed=run.finished, detail=run.detail()
        )
        self._progress.refresh()
