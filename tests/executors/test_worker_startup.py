"""Worker start-up: begun with the run, recorded apart, never inside a step's time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import rivers as rs
from rivers.dashboard.timeline import TIMELINE_EVENT_KINDS, build_timeline
from rivers.runtime import current_runtime
from rivers.storage import open_backend


async def test_a_cold_workers_start_up_is_recorded_apart_from_the_step() -> None:
    @rs.Asset
    def quick() -> int:
        return 1

    repo = rs.CodeRepository([quick], executor=rs.Executor.parallel(max_workers=1))
    result = await repo.materialize()
    assert result.success, result.error
    async with open_backend() as storage:
        run = await storage.runs.get_run(result.run_id)
        events = await storage.events.get_events(
            result.run_id, kinds=TIMELINE_EVENT_KINDS
        )
    assert run is not None
    started = next(e for e in events if e.kind == "STEP_STARTED")
    succeeded = next(e for e in events if e.kind == "STEP_SUCCESS")
    startup = started.data["startup_s"]
    # A new Python process importing rivers takes tens of milliseconds at least;
    # the step itself (return 1) takes far less, and its duration is only that.
    assert startup > succeeded.data["duration_s"]
    step_record = result.step_record("quick")
    assert step_record.duration_s is not None
    assert step_record.duration_s < startup
    # The timeline shows the start-up as time waiting for a worker, not running.
    [step] = build_timeline(run, events, datetime.now(UTC)).steps
    assert abs(step.total_s("worker") - startup) < 0.01
    assert step.total_s("running") < startup


async def test_the_runs_workers_start_before_its_first_sync_step_is_ready() -> None:
    seen: dict[str, Any] = {}

    @rs.Asset
    async def first() -> int:
        runtime = current_runtime()
        assert runtime is not None
        seen["pids"] = list(runtime.worker_pids)
        return 1

    @rs.Asset
    def left(first: int) -> int:
        return first

    @rs.Asset
    def right(first: int) -> int:
        return first

    @rs.Asset
    def last(left: int, right: int) -> int:
        return left + right

    repo = rs.CodeRepository(
        [first, left, right, last], executor=rs.Executor.parallel(max_workers=2)
    )
    async with rs.Runtime(repo) as rt:
        result = await rt.materialize()
        assert result.success, result.error
        # Two workers (the run's limit, fewer than its three sync steps) were
        # started while the run began, before any sync step could run.
        assert len(seen["pids"]) == 2
        used = {result.step_record(s).worker for s in ("left", "right", "last")}
        assert used <= {f"pid {pid}" for pid in seen["pids"]}


async def test_a_timeout_counts_from_the_steps_start_not_its_workers() -> None:
    @rs.Asset(timeout="50ms")
    def quick() -> int:
        return 1

    repo = rs.CodeRepository([quick], executor=rs.Executor.parallel(max_workers=1))
    result = await repo.materialize()
    # The worker takes longer than 50ms to start; the step itself does not.
    assert result.success, result.error
