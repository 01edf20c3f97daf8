"""``rivers top``'s frame, rendered from a storage that real runs filled.

One runtime holds every state a user asks about: a run running (holding the
``env=prod`` tag slot and the only ``warehouse`` slot), a run queued behind the
``env=prod`` tag limit, a run whose step waits for ``warehouse``, and a failed run.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from rich.console import Console

import rivers as rs
from rivers.core.queue import LimitRule, bucket_counts, stored_rules
from rivers.dashboard.reasons import (
    queued_reason,
)
from rivers.dashboard.render import render
from rivers.dashboard.snapshot import (
    DashboardSnapshot,
    PoolView,
    QueueView,
    RunView,
    TagBucketView,
    TagLimitView,
    read_snapshot,
)
from rivers.storage import open_backend
from rivers.storage.base import StorageBackend
from rivers.storage.records import Event


@dataclass
class Busy:
    storage: StorageBackend
    running: str
    blocked: str
    pool_waiting: str
    failed: str


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    with anyio.fail_after(10):
        while not await check():
            await anyio.sleep(0.01)


@pytest.fixture
async def busy(tmp_path: Path) -> AsyncIterator[Busy]:
    release = anyio.Event()

    @rs.Asset(pool="warehouse")
    async def heavy() -> int:
        await release.wait()
        return 1

    @rs.Asset
    def broken() -> int:
        raise ValueError("no data today")

    repo = rs.CodeRepository(
        [heavy, broken],
        run_queue=rs.RunQueueConfig(
            max_concurrent_runs=3,
            dequeue_interval="20ms",
            tag_concurrency_limits=[
                rs.TagConcurrencyLimit(key="env", value="prod", limit=1),
                rs.TagConcurrencyLimit(key="team", limit=2, per_unique_value=True),
            ],
        ),
        pool_limits={"warehouse": 1},
        executor=rs.Executor.in_process(),
    )
    backend = rs.RunBackendConfig(storage=str(tmp_path / "busy.db"))
    async with rs.Runtime(repo, backend=backend) as rt:
        storage = rt._roles
        failed = await rt.materialize(["broken"])
        running = await rt.submit(
            rs.RunRequest(selection=("heavy",), tags={"env": "prod", "team": "a"})
        )

        async def holds_the_pool() -> bool:
            return bool(await storage.pools.get_pool_slot_holders("warehouse"))

        await _until(holds_the_pool)
        blocked = await rt.submit(
            rs.RunRequest(selection=("heavy",), tags={"env": "prod"})
        )
        pool_waiting = await rt.submit(
            rs.RunRequest(selection=("heavy",), tags={"env": "dev", "team": "a"})
        )

        async def all_waiting() -> bool:
            record = await storage.runs.get_run(blocked.run_id)
            pending = await storage.pools.get_pending_steps("warehouse")
            return bool(record and record.reason) and len(pending) == 1

        await _until(all_waiting)
        yield Busy(
            storage=storage,
            running=running.run_id,
            blocked=blocked.run_id,
            pool_waiting=pool_waiting.run_id,
            failed=failed.run_id,
        )
        release.set()
        with anyio.fail_after(10):
            for handle in (running, blocked, pool_waiting):
                await handle.wait()


def _frame(snapshot: DashboardSnapshot, width: int, height: int | None = None) -> str:
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(render(snapshot, width, height))
    return console.export_text()


def _line(text: str, *needles: str) -> str:
    """Return the first line holding every needle (fails the test if none does)."""
    for line in text.splitlines():
        if all(needle in line for needle in needles):
            return line
    raise AssertionError(f"no line holds {needles!r} in:\n{text}")


def _unwrapped(text: str) -> str:
    """The text with borders removed and whitespace collapsed (wrapped cells join)."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


async def test_snapshot_names_the_binding_gate_of_each_waiting_run(busy: Busy) -> None:
    snapshot = await read_snapshot(busy.storage)
    runs = {run.run_id: run for run in snapshot.runs}
    assert runs[busy.blocked].status is rs.RunStatus.QUEUED
    assert runs[busy.blocked].position == 1
    assert runs[busy.blocked].waiting_on == "tag env=prod 1/1"
    assert (
        runs[busy.pool_waiting].waiting_on == "heavy: pool warehouse 1/1, 1st in line"
    )
    assert runs[busy.running].steps_running == 1
    assert runs[busy.running].running_steps == ("heavy",)
    assert runs[busy.running].steps_total == 1
    assert runs[busy.failed].status is rs.RunStatus.FAILURE
    assert "no data today" in (runs[busy.failed].waiting_on or "")
    assert snapshot.queue.in_flight == 2
    assert snapshot.queue.queued == 1
    assert snapshot.queue.max_concurrent_runs == 3
    assert sum(snapshot.queue.admitted_per_minute) == 2
    assert snapshot.queue.finished_last_hour["FAILURE"] == 1


async def test_wide_frame_shows_every_gate_with_live_numbers(busy: Busy) -> None:
    text = _frame(await read_snapshot(busy.storage), 160)
    assert max(len(line) for line in text.splitlines()) <= 160
    # Queue and tag limits side by side at 160 columns.
    assert "2/3 max_concurrent_runs" in _line(text, "in flight", "LIMIT")
    assert "1, oldest waiting" in _line(text, "queued")
    assert "1/1" in _line(text, "env=prod", "█")
    assert "2/2" in _line(text, "team=a", "█")
    pool = _line(text, "warehouse", "repository")
    assert "1/1" in pool
    assert re.search(r"1/1\s+1\s+1\s", pool)  # 1 holder, 1 pending
    assert "runs: 2 in flight, 1 queued" in text
    assert "tag env=prod 1/1" in _line(text, busy.blocked, "QUEUED #1")
    assert "heavy: pool warehouse 1/1, 1st in line" in _line(text, busy.pool_waiting)
    assert "running heavy" in _line(text, busy.running, "STARTED")
    assert "ValueError: no data today" in _line(text, busy.failed, "FAILURE")
    for kind in ("RUN_BLOCKED", "STEP_POOL_BLOCKED", "STEP_FAILURE", "RUN_FAILURE"):
        assert kind in text
    assert "tag limit env=prod 1/1" in _line(text, "RUN_BLOCKED")


async def test_narrow_frame_fits_80_columns_and_keeps_the_reasons(busy: Busy) -> None:
    text = _frame(await read_snapshot(busy.storage), 80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "LIMIT" not in _line(text, "in flight")  # stacked, not side by side
    assert "2/3" in _line(text, "in flight")
    assert "1/1" in _line(text, "warehouse", "repo")
    # Narrow run ids keep their random tail.
    assert "tag env=prod 1/1" in _line(text, busy.blocked[-9:], "QUEUED #1")
    flat = _unwrapped(text)
    assert "heavy: pool warehouse 1/1, 1st in line" in flat
    assert "ValueError: no data today" in flat


async def test_a_connection_that_refuses_writes_still_reads_the_snapshot(
    busy: Busy,
) -> None:
    async with open_backend(Path(busy.storage.describe)) as reader:
        await reader.dashboard.refuse_writes()
        snapshot = await read_snapshot(reader)
        with pytest.raises(rs.StorageError):
            await reader.state.put_state("dashboard.probe", 1)
    assert snapshot.queue.in_flight == 2
    assert await busy.storage.state.get_state("dashboard.probe") is None


# ------------------------------------------------------- synthetic snapshots

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _snapshot(
    runs: tuple[RunView, ...] = (), events: tuple[Event, ...] = ()
) -> DashboardSnapshot:
    return DashboardSnapshot(
        taken_at=NOW,
        storage="/srv/rivers.db",
        queue=QueueView(
            configured=True,
            max_concurrent_runs=5,
            dequeue_interval_s=1.0,
            in_flight=5,
            queued=12,
            oldest_queued_at=NOW - timedelta(minutes=4, seconds=12),
            admitted_per_minute=(0,) * 13 + (3, 6),
            finished_last_hour={"SUCCESS": 7, "FAILURE": 1, "CANCELED": 0},
        ),
        tag_limits=(
            TagLimitView(
                label="team=*",
                limit=2,
                per_unique_value=True,
                buckets=(TagBucketView(label="team=a", used=2),),
            ),
        ),
        pools=(
            PoolView(
                name="warehouse",
                limit=4,
                limit_source="override",
                claimed=4,
                holders=2,
                pending=3,
                oldest_pending_at=NOW - timedelta(seconds=42),
                next_lease_expiry_at=NOW + timedelta(seconds=30),
            ),
        ),
        runs=runs,
        recent_events=events,
    )


def _queued(n: int, **fields: object) -> RunView:
    values: dict[str, object] = {
        "run_id": f"01a2b3c4d5e6{n:010x}",
        "status": rs.RunStatus.QUEUED,
        "tags": {},
        "priority": 0,
        "created_at": NOW - timedelta(seconds=n),
        "position": n,
        "waiting_on": "queue 5/5 in flight",
    }
    values.update(fields)
    return RunView(**values)  # type: ignore[arg-type]


def test_user_text_cannot_drive_the_terminal_or_rich_markup() -> None:
    hostile = "[blink]x[/blink] \x1b[2J\x07"
    run = _queued(1, tags={"env": hostile}, waiting_on=f"because {hostile}")
    event = Event(
        event_id=1,
        kind="STEP_FAILURE",
        run_id=run.run_id,
        step_key="s",
        timestamp=NOW,
        data={"error": hostile},
    )
    text = _frame(_snapshot((run,), (event,)), 160)
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "[blink]x[/blink]" in text  # shown literally, not interpreted


def test_a_short_terminal_cuts_the_runs_list_with_a_count() -> None:
    runs = tuple(_queued(n) for n in range(1, 41))
    text = _frame(_snapshot(runs), 100, height=30)
    assert "+" in _line(text, "more")
    assert _queued(40).run_id[-9:] not in text


BORDER_OPEN = "╭╮"
BORDER_CLOSE = "╰╯"


def _crowded() -> DashboardSnapshot:
    """A busy storage: 40 runs (one running four steps), 30 events."""
    running = _queued(
        1,
        status=rs.RunStatus.STARTED,
        position=None,
        waiting_on=None,
        steps_total=6,
        steps_running=4,
        running_steps=("extract", "load", "report"),
    )
    runs = (running, *(_queued(n) for n in range(2, 41)))
    events = tuple(
        Event(
            event_id=n,
            kind="STEP_POOL_BLOCKED",
            run_id=_queued(n).run_id,
            step_key="load",
            timestamp=NOW,
            data={"pool": "warehouse", "claimed": 4, "limit": 4, "position": n},
        )
        for n in range(1, 31)
    )
    return _snapshot(runs, events)


def _screen(snapshot: DashboardSnapshot, width: int, height: int) -> list[str]:
    """Render as ``rivers top`` does on a terminal (one line kept for its footer)."""
    console = Console(
        record=True,
        width=width,
        height=height,
        file=io.StringIO(),
        color_system=None,
    )
    console.print(render(snapshot, console.width, console.height - 1))
    return console.export_text().splitlines()


def _panel(body: list[str], title: str) -> list[str]:
    """Return the lines inside the full-width panel whose title starts with ``title``."""
    start = next(i for i, line in enumerate(body) if line.startswith(f"╭─ {title}"))
    end = next(i for i in range(start, len(body)) if body[i].startswith("╰"))
    return body[start + 1 : end]


def _count(rows: list[str], *needles: str) -> int:
    """Rows holding one of ``needles``, plus the N of a "+N more" row."""
    more = [int(m) for row in rows for m in re.findall(r"\+(\d+) more", row)]
    return sum(any(n in row for n in needles) for row in rows) + sum(more)


@pytest.mark.parametrize(("width", "height"), [(80, 24), (100, 30), (160, 40)])
def test_a_crowded_frame_fits_the_terminal_with_every_border(
    width: int, height: int
) -> None:
    lines = _screen(_crowded(), width, height)
    assert len(lines) <= height - 1
    assert lines[0].startswith("rivers top")
    body = [line.rstrip() for line in lines[1:]]
    # Every line is inside a panel, and every panel that opens closes.
    assert all(line[0] in "╭│╰" and line[-1] in "╮│╯" for line in body), body
    assert sum(line.count("╭") for line in body) == sum(
        line.count("╰") for line in body
    )
    # The lists are cut with a count, never silently.
    runs = _panel(body, "runs: 5 in flight, 12 queued")
    assert _count(runs, "QUEUED", "STARTED") == 40
    assert sum("QUEUED" in row or "STARTED" in row for row in runs) >= 4
    assert "running extract, load, report +1" in _line("\n".join(runs), "STARTED")
    assert _count(_panel(body, "recent events"), "STEP_POOL_BLOCKED") == 30
    assert _panel(body, "pools")


def test_a_short_terminal_folds_the_queue_and_tag_panels_first() -> None:
    lines = _screen(_crowded(), 80, 24)
    text = "\n".join(lines)
    assert "run queue · tag limits" in text
    assert "5/5" in _line(text, "in flight", "queued 12")
    assert "team=a 2/2" in _line(text, "tag limits:")
    # A tall terminal keeps them whole.
    tall = "\n".join(_screen(_crowded(), 80, 80))
    assert "╭─ run queue ─" in tall
    assert "tag limits (in-flight runs)" in tall


def test_pool_panel_shows_source_wait_and_nearest_lease_expiry() -> None:
    text = _frame(_snapshot(), 160)
    pool = _line(text, "warehouse")
    assert "4 override" in pool
    assert "4/4" in pool
    assert "42.0s" in pool
    assert "in 30.0s" in pool
    queue = _line(text, "admitted/min")
    assert "9 in 15m, 6 last min" in queue
    assert "4m12s" in _line(text, "oldest waiting")


# -------------------------------------------------------------- the reasons

LIMITS = (
    LimitRule(key="env", value="prod", limit=3, per_unique_value=False),
    LimitRule(key="team", value=None, limit=2, per_unique_value=True),
    LimitRule(key="tenant", value=None, limit=1, per_unique_value=False),
)


def _reason(
    tags: dict[str, str], in_flight: list[dict[str, str]], max_runs: int = 10
) -> str:
    return queued_reason(
        tags,
        configured=True,
        in_flight=len(in_flight),
        max_concurrent_runs=max_runs,
        limits=LIMITS,
        usage=bucket_counts(LIMITS, in_flight),
    )


def test_a_full_run_queue_is_named_before_any_tag_limit() -> None:
    in_flight = [{"env": "prod"}] * 3
    assert _reason({"env": "prod"}, in_flight, max_runs=3) == "queue 3/3 in flight"
    assert _reason({"env": "prod"}, in_flight) == "tag env=prod 3/3"


def test_per_value_limits_count_each_value_apart() -> None:
    in_flight = [{"team": "a"}, {"team": "a"}, {"team": "b"}]
    assert _reason({"team": "a"}, in_flight) == "tag team=a 2/2"
    assert _reason({"team": "b"}, in_flight) == "admissible: next dequeue tick"


def test_key_only_limits_count_any_value() -> None:
    assert _reason({"tenant": "x"}, [{"tenant": "y"}]) == "tag tenant 1/1"


def test_paused_and_unconfigured_queues_say_so() -> None:
    assert _reason({}, [], max_runs=0) == "queue paused: max_concurrent_runs 0"
    unconfigured = queued_reason(
        {},
        configured=False,
        in_flight=0,
        max_concurrent_runs=None,
        limits=(),
        usage={},
    )
    assert "rivers daemon" in unconfigured


def test_stored_limits_are_parsed_and_bad_entries_skipped() -> None:
    config = json.loads(
        '{"tag_concurrency_limits": [{"key": "env", "value": "prod", "limit": 3,'
        ' "per_unique_value": false}, {"value": "x"}, "junk"]}'
    )
    assert stored_rules(config) == (LIMITS[0],)
    assert stored_rules(None) == ()


# ------------------------------------------------------------------- scale


async def test_snapshot_of_100000_runs_reads_in_well_under_a_second(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.db"
    async with open_backend(path):
        pass
    now = time.time()
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO runs (run_id, status, repository, tags, priority, created_at, "
            "started_at, ended_at) VALUES (?, ?, 'default', ?, 0, ?, ?, ?)",
            [
                (
                    f"{n:022x}",
                    "QUEUED"
                    if n % 10 == 0
                    else "STARTED"
                    if n >= 99_990
                    else "SUCCESS",
                    json.dumps({"env": "prod" if n % 2 else "dev"}),
                    now - 100_000 + n,
                    None if n % 10 == 0 else now - 100_000 + n,
                    None if n % 10 == 0 or n >= 99_990 else now - 99_999 + n,
                )
                for n in range(100_000)
            ],
        )
        conn.executemany(
            "INSERT INTO events (kind, run_id, step_key, timestamp, data) "
            'VALUES (?, ?, NULL, ?, \'{"steps": 1, "waited_s": 1}\')',
            [
                (kind, f"{n:022x}", now - 100_000 + n)
                for n in range(100_000)
                if n % 10
                for kind in ("RUN_DEQUEUED", "RUN_STARTED", "RUN_SUCCESS")
            ],
        )
        conn.execute(
            "INSERT INTO kv (key, value, updated_at) VALUES ('queue.config', ?, ?)",
            (json.dumps({"max_concurrent_runs": 10, "dequeue_interval_s": 1}), now),
        )
    async with open_backend(path) as storage:
        began = time.perf_counter()
        snapshot = await read_snapshot(storage)
        took = time.perf_counter() - began
    assert snapshot.queue.queued == 10_000
    assert snapshot.queue.in_flight == 9
    assert snapshot.runs[0].status is rs.RunStatus.STARTED
    assert took < 0.5, f"read_snapshot took {took:.3f}s on 100,000 runs"
