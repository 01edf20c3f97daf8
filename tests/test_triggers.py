"""Schedules, sensors and automation conditions end to end, on a manual clock.

Each test drives the runtime's trigger actor with ``tick_now()`` after moving a
``ManualClock``; nothing sleeps for the trigger's interval. Runs go through the real
run queue and storage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

import rivers as rs
from rivers._clock import ManualClock
from rivers.actors.triggers import AUTOMATION_INTERVAL_S, TriggerRunner
from rivers.cli.loading import load_repository
from rivers.core.triggers import TriggerState
from rivers.storage import open_backend

START = datetime(2024, 1, 1, 10, 30, tzinfo=UTC).timestamp()


def _at(hour: int, minute: int = 0, second: int = 0) -> float:
    return datetime(2024, 1, 1, hour, minute, second, tzinfo=UTC).timestamp()


def _runner(rt: rs.Runtime) -> TriggerRunner:
    assert rt.triggers is not None, "the runtime started no trigger runner"
    return rt.triggers


def _queue(**options: object) -> rs.RunQueueConfig:
    return rs.RunQueueConfig(dequeue_interval="20ms", **options)  # type: ignore[arg-type]


class Tracker:
    """An async asset that records the tags of its runs and their overlap."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.runs: list[dict[str, str]] = []
        self.running: list[dict[str, str]] = []
        self.peak_by: dict[str, int] = {}

        @rs.Asset
        async def work(context: rs.StepContext) -> None:
            tags = context.run_tags
            self.runs.append(tags)
            self.running.append(tags)
            for key, value in tags.items():
                label = f"{key}={value}"
                now = sum(1 for t in self.running if t.get(key) == value)
                self.peak_by[label] = max(self.peak_by.get(label, 0), now)
            await anyio.sleep(seconds)
            self.running.remove(tags)

        self.asset = work


async def _runs(rt: rs.Runtime, key: str, value: str) -> list[rs.RunRecord]:
    runs = await rt.storage.get_runs(tags={key: value}, limit=None)
    return sorted(runs, key=lambda r: r.run_key or r.run_id)


async def _wait_all(rt: rs.Runtime, runs: list[rs.RunRecord]) -> list[rs.RunRecord]:
    with anyio.fail_after(20):
        return [await rt.wait_for(r.run_id) for r in runs]


async def _state(rt: rs.Runtime, key: str) -> TriggerState:
    return TriggerState.from_stored(await rt._roles.state.get_state(key))


# ---------------------------------------------------------------------- schedules


async def test_schedule_ticks_submit_exactly_once_each_across_a_restart() -> None:
    tracker = Tracker()

    @rs.schedule(cron="0 * * * *", selection=["work"], tags={"team": "core"})
    def hourly() -> None: ...

    repo = rs.CodeRepository([tracker.asset], schedules=[hourly], run_queue=_queue())
    clock = ManualClock(START)
    async with rs.Runtime(repo, clock=clock) as rt:
        await _runner(rt).tick_now()  # first sight: counting starts at 10:30
        assert await _runs(rt, "rivers/schedule", "hourly") == []
        clock.set(_at(11, 0, 2))
        await _runner(rt).tick_now()
        await _runner(rt).tick_now()
        first = await _runs(rt, "rivers/schedule", "hourly")
        await _wait_all(rt, first)
    async with rs.Runtime(repo, clock=clock) as rt:  # restart at the same instant
        await _runner(rt).tick_now()
        assert len(await _runs(rt, "rivers/schedule", "hourly")) == 1
        clock.set(_at(12, 0, 1))
        await _runner(rt).tick_now()
        runs = await _wait_all(rt, await _runs(rt, "rivers/schedule", "hourly"))
    assert [r.run_key for r in runs] == [
        "schedule:hourly:2024-01-01T11:00:00+00:00",
        "schedule:hourly:2024-01-01T12:00:00+00:00",
    ]
    assert all(r.status is rs.RunStatus.SUCCESS for r in runs)
    assert all(r.tags == {"team": "core", "rivers/schedule": "hourly"} for r in runs)
    assert len(tracker.runs) == 2


async def test_missed_ticks_are_skipped_and_catch_up_submits_the_most_recent() -> None:
    tracker = Tracker()

    @rs.schedule(cron="0 * * * *")
    def skipper() -> None: ...

    @rs.schedule(cron="0 * * * *", catch_up=True)
    def catcher() -> None: ...

    repo = rs.CodeRepository(
        [tracker.asset], schedules=[skipper, catcher], run_queue=_queue()
    )
    clock = ManualClock(START)
    async with rs.Runtime(repo, clock=clock) as rt:
        await _runner(rt).tick_now()
    clock.set(_at(13, 30))  # down from 10:30 to 13:30: 11:00, 12:00, 13:00 missed
    async with rs.Runtime(repo, clock=clock) as rt:
        await _runner(rt).tick_now()
        skipped = await _runs(rt, "rivers/schedule", "skipper")
        caught = await _runs(rt, "rivers/schedule", "catcher")
        state = await _state(rt, "trigger.schedule.skipper")
        clock.set(_at(14, 0, 1))
        await _runner(rt).tick_now()
        later = await _runs(rt, "rivers/schedule", "skipper")
        await _wait_all(rt, await rt.storage.get_runs(limit=None))
    assert skipped == []
    assert state.last_result == "skipped missed tick 2024-01-01 13:00:00 UTC"
    assert [r.run_key for r in caught] == ["schedule:catcher:2024-01-01T13:00:00+00:00"]
    assert [r.run_key for r in later] == ["schedule:skipper:2024-01-01T14:00:00+00:00"]


async def test_a_schedule_function_shapes_or_skips_its_tick() -> None:
    tracker = Tracker()
    seen: list[datetime] = []

    @rs.schedule(cron="*/10 * * * *", timezone="Europe/Paris")
    def shaped(context: rs.ScheduleContext) -> list[rs.RunRequest]:
        seen.append(context.scheduled_at)
        if context.scheduled_at.minute == 40:
            return []  # skip this tick
        return [rs.RunRequest(tags={"slot": str(context.scheduled_at.minute)})]

    repo = rs.CodeRepository([tracker.asset], schedules=[shaped], run_queue=_queue())
    clock = ManualClock(START)
    async with rs.Runtime(repo, clock=clock) as rt:
        await _runner(rt).tick_now()
        for minute in (40, 50):
            clock.set(_at(10, minute, 1))
            await _runner(rt).tick_now()
        runs = await _wait_all(rt, await _runs(rt, "rivers/schedule", "shaped"))
    assert [t.isoformat() for t in seen] == [
        "2024-01-01T11:40:00+01:00",
        "2024-01-01T11:50:00+01:00",
    ]
    assert [r.tags["slot"] for r in runs] == ["50"]


async def test_the_actor_evaluates_on_its_own_when_woken() -> None:
    tracker = Tracker()

    @rs.schedule(cron="0 * * * *")
    def hourly() -> None: ...

    repo = rs.CodeRepository([tracker.asset], schedules=[hourly], run_queue=_queue())
    clock = ManualClock(START)
    async with rs.Runtime(repo, clock=clock) as rt:
        await _runner(rt).tick_now()
        clock.set(_at(11, 0, 1))
        _runner(rt).wake()
        with anyio.fail_after(5):
            while not await _runs(rt, "rivers/schedule", "hourly"):
                await anyio.sleep(0.01)
        await _wait_all(rt, await _runs(rt, "rivers/schedule", "hourly"))


# ------------------------------------------------------------------------ sensors


async def test_a_sensor_cursor_persists_across_restarts() -> None:
    tracker = Tracker()
    cursors: list[str | None] = []

    @rs.sensor(interval="30s", selection=["work"])
    def counter(context: rs.SensorContext) -> rs.RunRequest:
        cursors.append(context.cursor)
        count = int(context.cursor or 0) + 1
        context.update_cursor(str(count))
        return rs.RunRequest(run_key=f"n{count}")

    repo = rs.CodeRepository([tracker.asset], sensors=[counter], run_queue=_queue())
    clock = ManualClock(START)
    async with rs.Runtime(repo, clock=clock) as rt:
        await _runner(rt).tick_now()
        clock.advance(10)
        await _runner(rt).tick_now()  # not due yet: 30s interval
        clock.advance(20)
        await _runner(rt).tick_now()
    clock.advance(30)
    async with rs.Runtime(repo, clock=clock) as rt:
        await _runner(rt).tick_now()
        runs = await _wait_all(rt, await _runs(rt, "rivers/sensor", "counter"))
        state = await _state(rt, "trigger.sensor.counter")
    assert cursors == [None, "1", "2"]
    assert state.cursor == "3"
    assert [r.run_key for r in runs] == [
        "sensor:counter:n1",
        "sensor:counter:n2",
        "sensor:counter:n3",
    ]
    assert all(r.selection == ["work"] for r in runs)


async def test_a_sensor_run_key_is_submitted_only_once() -> None:
    tracker = Tracker()

    @rs.sensor(interval="1m")
    def same(context: rs.SensorContext) -> list[rs.RunRequest]:
        return [
            rs.RunRequest(run_key="daily-file"),
            rs.RunRequest(run_key="daily-file"),
        ]

    repo = rs.CodeRepository([tracker.asset], sensors=[same], run_queue=_queue())
    clock = ManualClock(START)
    async with rs.Runtime(repo, clock=clock) as rt:
        for _ in range(3):
            await _runner(rt).tick_now()
            clock.advance(60)
        runs = await _wait_all(rt, await _runs(rt, "rivers/sensor", "same"))
        state = await _state(rt, "trigger.sensor.same")
    assert [r.run_key for r in runs] == ["sensor:same:daily-file"]
    assert (
        state.last_result
        == "evaluated; submitted 0 runs; 2 already submitted (run_key)"
    )


async def test_a_failing_sensor_is_recorded_and_evaluated_again() -> None:
    tracker = Tracker()
    calls: list[int] = []

    @rs.sensor(interval="30s")
    async def flaky(context: rs.SensorContext) -> rs.RunRequest | None:
        calls.append(len(calls))
        if len(calls) == 1:
            context.update_cursor("lost")
            raise ConnectionError("bucket unreachable")
        return rs.RunRequest()

    repo = rs.CodeRepository([tracker.asset], sensors=[flaky], run_queue=_queue())
    clock = ManualClock(START)
    async with rs.Runtime(repo, clock=clock) as rt:
        await _runner(rt).tick_now()
        failed = await _state(rt, "trigger.sensor.flaky")
        clock.advance(30)
        await _runner(rt).tick_now()
        runs = await _wait_all(rt, await _runs(rt, "rivers/sensor", "flaky"))
        recovered = await _state(rt, "trigger.sensor.flaky")
    async with open_backend(rs.RunBackendConfig().storage) as storage:
        events = await storage.events.get_events(kinds=["TRIGGER_FAILURE"])
    assert len(calls) == 2
    assert failed.last_error == "ConnectionError: bucket unreachable"
    assert failed.cursor is None  # a failed evaluation does not move the cursor
    assert recovered.last_error is None
    assert len(runs) == 1
    (event,) = events
    assert event.run_id is None
    assert event.data["trigger"] == "flaky"
    assert event.data["trigger_type"] == "sensor"
    assert event.data["error"] == "bucket unreachable"
    assert "ConnectionError" in event.data["traceback"]


async def test_a_sensor_returning_something_else_is_an_error_not_a_crash() -> None:
    tracker = Tracker()

    @rs.sensor
    def wrong(context: rs.SensorContext) -> object:
        return "run please"

    @rs.sensor
    def unknown(context: rs.SensorContext) -> rs.RunRequest:
        return rs.RunRequest(selection=("nope",))

    repo = rs.CodeRepository([tracker.asset], sensors=[wrong, unknown])
    async with rs.Runtime(repo, clock=ManualClock(START)) as rt:
        await _runner(rt).tick_now()
        wrong_state = await _state(rt, "trigger.sensor.wrong")
        unknown_state = await _state(rt, "trigger.sensor.unknown")
    assert wrong_state.last_error is not None
    assert "returned 'run please'; return a rs.RunRequest" in wrong_state.last_error
    assert unknown_state.last_error is not None
    assert "no asset named 'nope'" in unknown_state.last_error


async def test_sensors_run_on_their_interval_with_the_real_clock() -> None:
    tracker = Tracker()
    calls: list[datetime | None] = []

    @rs.sensor(interval="50ms")
    def quick(context: rs.SensorContext) -> None:
        calls.append(context.evaluated_at)

    repo = rs.CodeRepository([tracker.asset], sensors=[quick])
    async with rs.Runtime(repo):
        with anyio.fail_after(5):
            while len(calls) < 3:
                await anyio.sleep(0.01)
    assert all(c is not None for c in calls)


# --------------------------------------------------------------------- automation


async def test_eager_automation_runs_an_asset_after_its_upstream_materializes() -> None:
    built: list[int] = []

    @rs.Asset
    async def raw() -> int:
        return len(built) + 1

    @rs.Asset(automation_condition=rs.AutomationCondition.eager())
    async def clean(raw: int) -> int:
        built.append(raw)
        return raw * 10

    repo = rs.CodeRepository([raw, clean], run_queue=_queue())
    clock = ManualClock(START)
    async with rs.Runtime(repo, clock=clock) as rt:
        await _runner(rt).tick_now()
        assert await _runs(rt, "rivers/automation", "true") == []
        clock.advance(1)
        assert (await rt.materialize(["raw"])).success
        clock.advance(AUTOMATION_INTERVAL_S)
        await _runner(rt).tick_now()
        (run,) = await _wait_all(rt, await _runs(rt, "rivers/automation", "true"))
        clock.advance(AUTOMATION_INTERVAL_S)
        await _runner(rt).tick_now()  # clean is newer than raw now: nothing to do
        assert len(await _runs(rt, "rivers/automation", "true")) == 1
        clock.advance(1)
        assert (await rt.materialize(["raw"])).success
        clock.advance(AUTOMATION_INTERVAL_S)
        await _runner(rt).tick_now()
        runs = await _wait_all(rt, await _runs(rt, "rivers/automation", "true"))
    assert run.status is rs.RunStatus.SUCCESS
    assert run.selection == ["clean"]
    assert run.tags == {"rivers/automation": "true"}
    assert len(runs) == 2
    assert built == [1, 2]  # each run read the newer upstream value


async def test_automation_never_requests_an_asset_twice_while_it_is_queued() -> None:
    @rs.Asset
    async def raw() -> int:
        return 1

    @rs.Asset(automation_condition=rs.AutomationCondition.eager())
    async def clean(raw: int) -> int:
        return raw

    repo = rs.CodeRepository([raw, clean], run_queue=_queue(max_concurrent_runs=0))
    clock = ManualClock(START)
    async with rs.Runtime(repo, clock=clock) as rt:
        await _runner(rt).tick_now()
        for _ in range(3):
            clock.advance(1)
            assert (await rt.materialize(["raw"])).success  # bypasses the paused queue
            clock.advance(AUTOMATION_INTERVAL_S)
            await _runner(rt).tick_now()
        runs = await _runs(rt, "rivers/automation", "true")
        state = await _state(rt, "trigger.automation.default")
    assert [r.status for r in runs] == [rs.RunStatus.QUEUED]
    assert state.last_result == (
        "nothing to request; clean already queued or running; submitted 0 runs"
    )


# ------------------------------------------------------------------ the run queue


async def test_trigger_runs_are_queued_and_a_tag_limit_on_sensors_holds() -> None:
    tracker = Tracker(seconds=0.1)

    @rs.sensor(interval="30s")
    def burst(context: rs.SensorContext) -> list[rs.RunRequest]:
        return [rs.RunRequest(run_key=str(i)) for i in range(4)]

    @rs.sensor(interval="30s")
    def other(context: rs.SensorContext) -> list[rs.RunRequest]:
        return [rs.RunRequest(run_key=str(i)) for i in range(2)]

    limits = [
        rs.TagConcurrencyLimit(key="rivers/sensor", limit=1, per_unique_value=True)
    ]
    repo = rs.CodeRepository(
        [tracker.asset],
        sensors=[burst, other],
        run_queue=_queue(max_concurrent_runs=10, tag_concurrency_limits=limits),
    )
    async with rs.Runtime(repo, clock=ManualClock(START)) as rt:
        await _runner(rt).tick_now()
        runs = await rt.storage.get_runs(limit=None)
        records = await _wait_all(rt, runs)
        dequeued = await rt.storage.get_events(kinds=["RUN_DEQUEUED"])
    assert len(records) == 6
    assert all(r.status is rs.RunStatus.SUCCESS for r in records)
    assert tracker.peak_by["rivers/sensor=burst"] == 1
    assert tracker.peak_by["rivers/sensor=other"] == 1
    assert len(dequeued) >= 1  # they went through the queue coordinator


async def test_every_kind_of_trigger_run_waits_in_a_paused_queue() -> None:
    tracker = Tracker()

    @rs.Asset
    async def raw() -> int:
        return 1

    @rs.Asset(automation_condition=rs.AutomationCondition.eager())
    async def clean(raw: int) -> int:
        return raw

    @rs.schedule(cron="0 * * * *", selection=["work"])
    def hourly() -> None: ...

    @rs.sensor(selection=["work"])
    def always(context: rs.SensorContext) -> rs.RunRequest:
        return rs.RunRequest()

    repo = rs.CodeRepository(
        [tracker.asset, raw, clean],
        schedules=[hourly],
        sensors=[always],
        run_queue=_queue(max_concurrent_runs=0),
    )
    clock = ManualClock(START)
    async with rs.Runtime(repo, clock=clock) as rt:
        await _runner(rt).tick_now()
        await rt.materialize(["raw"])
        clock.set(_at(11, 0, 1))
        await _runner(rt).tick_now()
        await anyio.sleep(0.1)
        runs = await rt.storage.get_runs(status=rs.RunStatus.QUEUED, limit=None)
    kinds = sorted(key for r in runs for key in r.tags if key.startswith("rivers/"))
    assert kinds == [
        "rivers/automation",
        "rivers/schedule",
        "rivers/sensor",
        "rivers/sensor",
    ]
    assert tracker.runs == []


async def test_two_repositories_may_not_share_a_trigger_name() -> None:
    tracker = Tracker()

    @rs.sensor(name="watch")
    def one(context: rs.SensorContext) -> None: ...

    first = rs.CodeRepository([tracker.asset], sensors=[one], name="first")
    second = rs.CodeRepository([tracker.asset], sensors=[one], name="second")
    # Raised while the runtime starts, unwrapped from its task group.
    with pytest.raises(rs.ConfigError, match="both define a trigger named 'watch'"):
        async with rs.Runtime(first, second):
            pass


# ------------------------------------------------------------------ command line

PIPELINE = """
import rivers as rs

@rs.Asset
async def work() -> int:
    return 1

@rs.sensor(interval="30s", selection=["work"])
def inbox(context: rs.SensorContext) -> rs.RunRequest:
    count = int(context.cursor or 0) + 1
    context.update_cursor(str(count))
    return rs.RunRequest(run_key=f"file-{count}")

@rs.sensor(interval="1m")
def broken(context: rs.SensorContext) -> None:
    raise ValueError("boom")

@rs.schedule(cron="0 3 * * *", timezone="Europe/Paris")
def nightly() -> None: ...

@rs.Asset(automation_condition=rs.AutomationCondition.on_cron("0 * * * *"))
async def hourly_summary(work: int) -> int:
    return work

repo = rs.CodeRepository(
    [work, hourly_summary],
    sensors=[inbox, broken],
    schedules=[nightly],
    run_queue=rs.RunQueueConfig(dequeue_interval="20ms"),
)
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rivers", *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_cli_lists_sensor_runs_by_tag_and_shows_triggers(tmp_path: Path) -> None:
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(textwrap.dedent(PIPELINE))
    repo = load_repository(str(pipeline), None, None)
    clock = ManualClock(START)
    async with rs.Runtime(repo, clock=clock) as rt:
        await _runner(rt).tick_now()
        clock.advance(30)
        await _runner(rt).tick_now()
        submitted = await _wait_all(rt, await _runs(rt, "rivers/sensor", "inbox"))

    listed = _cli("runs", "list", "--tag", "rivers/sensor=inbox", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {r["run_id"] for r in json.loads(listed.stdout)} == {
        r.run_id for r in submitted
    }
    assert len(submitted) == 2

    shown = _cli("triggers", "list", "-f", str(pipeline), "--json")
    assert shown.returncode == 0, shown.stderr
    rows = {row["name"]: row for row in json.loads(shown.stdout)}
    assert [(name, rows[name]["kind"]) for name in rows] == [
        ("nightly", "schedule"),
        ("inbox", "sensor"),
        ("broken", "sensor"),
        ("hourly_summary", "automation"),
    ]
    assert rows["inbox"]["cursor"] == "2"
    assert rows["inbox"]["last_result"] == "evaluated; submitted 1 run"
    assert rows["inbox"]["next_tick"] == "2024-01-01T10:31:00Z"
    assert rows["broken"]["last_error"] == "ValueError: boom"
    assert rows["nightly"]["definition"] == "cron 0 3 * * * Europe/Paris"
    assert rows["hourly_summary"]["definition"] == "on_cron(0 * * * *)"

    table = _cli("triggers", "list", "-f", str(pipeline))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "TRIGGER",
        "KIND",
        "WHEN",
        "NEXT",
        "(UTC)",
        "LAST",
        "RESULT",
        "LAST",
        "ERROR",
    ]
    broken = next(line for line in lines if line.startswith("broken"))
    assert broken.split()[:4] == ["broken", "sensor", "every", "1m"]
    assert "ValueError:" in broken
    inbox = next(line for line in lines if line.startswith("inbox"))
    assert "01-01 10:31" in inbox

    missing = _cli("triggers", "list", "-f", str(tmp_path / "nope.py"))
    assert missing.returncode == 2
    assert missing.stderr.startswith("rivers: error: no such file")
