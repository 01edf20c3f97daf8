"""Run timelines: where each step's time went, from the run's events."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from rich.console import Console

import rivers as rs
from rivers.dashboard.timeline import (
    TIMELINE_EVENT_KINDS,
    Segment,
    Timeline,
    build_timeline,
    render_timeline,
)
from rivers.storage.facade import Storage
from rivers.storage.records import Event, RunRecord

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _run(status: rs.RunStatus, ended: float | None = None) -> RunRecord:
    return RunRecord(
        run_id="01a2b3c4d5e6f7a8b9c0d1",
        status=status,
        tags={},
        selection=None,
        priority=0,
        created_at=T0,
        started_at=None if status is rs.RunStatus.QUEUED else _at(2),
        ended_at=None if ended is None else _at(ended),
    )


def _events(*items: tuple[float, str, str | None]) -> list[Event]:
    return [
        Event(
            event_id=n,
            kind=kind,
            run_id="01a2b3c4d5e6f7a8b9c0d1",
            step_key=step,
            timestamp=_at(at),
            data={},
        )
        for n, (at, kind, step) in enumerate(items, start=1)
    ]


EVERY_GATE = _events(
    (2.0, "RUN_DEQUEUED", None),
    (2.1, "RUN_STARTED", None),
    (2.2, "STEP_WAITING", "load"),
    (3.0, "STEP_POOL_BLOCKED", "load"),
    (5.0, "STEP_POOL_CLAIMED", "load"),
    (5.1, "STEP_STARTED", "load"),
    (5.5, "STEP_LOG", "load"),
    (6.0, "STEP_RETRY", "load"),
    (7.0, "STEP_STARTED", "load"),
    (8.0, "STEP_SUCCESS", "load"),
    (8.0, "STEP_STARTED", "report"),
    (9.0, "STEP_FAILURE", "report"),
)


def _text(timeline: Timeline, width: int) -> str:
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(render_timeline(timeline, width))
    return console.export_text()


def test_each_gate_becomes_a_segment_of_the_step() -> None:
    timeline = build_timeline(_run(rs.RunStatus.FAILURE, ended=9.5), EVERY_GATE, T0)
    load, report = timeline.steps
    assert load.step_key == "load"
    assert load.outcome == "SUCCESS"
    assert report.outcome == "FAILURE"
    assert load.segments == (
        Segment("queue", 0.0, 2.0),
        Segment("worker", 2.2, 3.0),
        Segment("pool", 3.0, 5.0),
        Segment("running", 5.1, 6.0),
        Segment("retry", 6.0, 7.0),
        Segment("running", 7.0, 8.0),
    )
    assert load.total_s("running") == pytest.approx(1.9)
    assert timeline.queue_s == 2.0
    assert timeline.span_s == 9.5


def test_a_running_step_of_an_unfinished_run_runs_until_now() -> None:
    events = _events((0.5, "RUN_STARTED", None), (1.0, "STEP_STARTED", "load"))
    timeline = build_timeline(_run(rs.RunStatus.STARTED), events, _at(4))
    (load,) = timeline.steps
    assert load.outcome is None
    assert load.segments == (Segment("running", 1.0, 4.0),)
    assert timeline.queue_s == 0.0  # never dequeued: it did not wait for the queue


def test_a_queued_run_has_waited_for_the_queue_until_now() -> None:
    timeline = build_timeline(_run(rs.RunStatus.QUEUED), [], _at(30))
    assert timeline.steps == ()
    assert timeline.queue_s == 30.0
    assert "waited 30.0s for the run queue" in _text(timeline, 80)


def test_bars_show_the_gates_in_time_order_at_both_widths() -> None:
    timeline = build_timeline(_run(rs.RunStatus.FAILURE, ended=9.5), EVERY_GATE, T0)
    wide = _text(timeline, 160)
    narrow = _text(timeline, 80)
    assert max(len(line) for line in wide.splitlines()) <= 160
    assert max(len(line) for line in narrow.splitlines()) <= 80
    for text in (wide, narrow):
        bar = next(line for line in text.splitlines() if line.startswith("load"))
        positions = [bar.index(glyph) for glyph in "░▒▓█╌"]
        assert positions[:4] == sorted(positions[:4])  # queue, worker, pool, running
        assert bar.index("╌") > bar.index("█")  # the retry delay after the first try
        assert "░ queue" in text
    header = next(line for line in wide.splitlines() if line.startswith("STEP"))
    for column in ("QUEUE", "WORKER", "POOL", "RETRY", "RUN"):
        assert column in header
    load = next(line for line in wide.splitlines() if line.startswith("load"))
    assert load.split()[-5:] == ["2.0s", "800ms", "2.0s", "1.0s", "1.9s"]
    header = next(line for line in narrow.splitlines() if line.startswith("STEP"))
    assert header.split()[-2:] == ["WAITED", "RAN"]
    load = next(line for line in narrow.splitlines() if line.startswith("load"))
    assert load.split()[-2:] == ["5.8s", "1.9s"]


# ------------------------------------------------------------ from real runs


def _sleeper(name: str, seconds: float, **options: Any) -> rs.Asset[Any, Any]:
    async def body() -> None:
        await anyio.sleep(seconds)

    body.__name__ = name
    return rs.Asset(body, **options)


async def _timeline(storage: Storage, run_id: str) -> Timeline:
    run = await storage.get_run(run_id)
    assert run is not None
    events = await storage.get_events(run_id, kinds=TIMELINE_EVENT_KINDS)
    return build_timeline(run, events, datetime.now(UTC))


async def test_a_real_step_waiting_for_a_pool_shows_that_wait() -> None:
    repo = rs.CodeRepository(
        [_sleeper("first", 0.2, pool="db"), _sleeper("second", 0.2, pool="db")],
        pool_limits={"db": 1},
    )
    async with rs.Runtime(repo) as rt:
        result = await rt.materialize()
        timeline = await _timeline(rt.storage, result.run_id)
    pools = sorted(step.total_s("pool") for step in timeline.steps)
    assert pools[0] == 0.0
    assert pools[1] >= 0.15
    assert all(step.total_s("running") >= 0.19 for step in timeline.steps)
    assert "▓" in _text(timeline, 80)


async def test_a_real_step_waiting_for_a_worker_shows_that_wait() -> None:
    repo = rs.CodeRepository(
        [_sleeper("first", 0.2), _sleeper("second", 0.2)],
        executor=rs.Executor.parallel(max_async_concurrent=1),
    )
    async with rs.Runtime(repo) as rt:
        result = await rt.materialize()
        timeline = await _timeline(rt.storage, result.run_id)
    workers = sorted(step.total_s("worker") for step in timeline.steps)
    assert workers[0] == 0.0
    assert workers[1] >= 0.15


async def test_a_real_run_held_by_the_queue_shows_its_queue_wait() -> None:
    repo = rs.CodeRepository(
        [_sleeper("only", 0.2)],
        run_queue=rs.RunQueueConfig(max_concurrent_runs=1, dequeue_interval="20ms"),
    )
    async with rs.Runtime(repo) as rt:
        first = await rt.submit(rs.RunRequest())
        second = await rt.submit(rs.RunRequest())
        with anyio.fail_after(10):
            await first.wait()
            await second.wait()
        timeline = await _timeline(rt.storage, second.run_id)
    (only,) = timeline.steps
    assert timeline.queue_s >= 0.15
    assert only.segments[0].kind == "queue"
    assert only.total_s("running") >= 0.19


# --------------------------------------------------------- rivers runs show

PIPELINE = textwrap.dedent(
    """
    import rivers as rs

    @rs.Asset(pool="db")
    def numbers() -> list[int]:
        return [1, 2, 3]

    @rs.Asset
    def total(numbers: list[int]) -> int:
        return sum(numbers)

    repo = rs.CodeRepository([numbers, total], pool_limits={"db": 1},
                             executor=rs.Executor.in_process())
    """
)


def _rivers(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RIVERS_HOME": str(home), "COLUMNS": "100"}
    done = subprocess.run(
        [sys.executable, "-m", "rivers", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done


def test_runs_show_prints_a_timeline_and_json_carries_it(tmp_path: Path) -> None:
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(PIPELINE)
    home = tmp_path / "home"
    _rivers(home, "materialize", "-f", str(pipeline))
    (run,) = json.loads(_rivers(home, "runs", "list", "--json").stdout)
    text = _rivers(home, "runs", "show", run["run_id"]).stdout
    assert "\x1b" not in text  # not a terminal: no colour codes
    timeline = text[text.index("timeline") :]
    bars = [
        line for line in timeline.splitlines() if line.startswith(("numbers", "total"))
    ]
    assert [line.split()[0] for line in bars] == ["numbers", "total"]
    assert all("█" in line for line in bars)
    assert "░ queue  ▒ worker  ▓ pool" in timeline
    document = json.loads(_rivers(home, "runs", "show", run["run_id"], "--json").stdout)
    assert document["run"]["run_id"] == run["run_id"]
    assert [s["step_key"] for s in document["steps"]] == ["numbers", "total"]
    steps = document["timeline"]["steps"]
    assert [s["step_key"] for s in steps] == ["numbers", "total"]
    assert all(any(seg["kind"] == "running" for seg in s["segments"]) for s in steps)


def test_a_workers_start_up_is_worker_time_before_the_step_runs() -> None:
    events = [
        Event(
            event_id=1,
            kind="STEP_STARTED",
            run_id="01a2b3c4d5e6f7a8b9c0d1",
            step_key="load",
            timestamp=_at(3.0),
            data={"attempt": 1, "worker": "pid 7", "startup_s": 0.75},
        ),
        Event(
            event_id=2,
            kind="STEP_SUCCESS",
            run_id="01a2b3c4d5e6f7a8b9c0d1",
            step_key="load",
            timestamp=_at(3.5),
            data={"attempt": 1, "duration_s": 0.5},
        ),
    ]
    timeline = build_timeline(_run(rs.RunStatus.SUCCESS, ended=4.0), events, _at(9))
    [step] = timeline.steps
    assert step.segments == (
        Segment("worker", 2.25, 3.0),
        Segment("running", 3.0, 3.5),
    )
    assert step.total_s("worker") == pytest.approx(0.75)
    assert step.total_s("running") == pytest.approx(0.5)
