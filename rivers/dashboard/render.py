"""The ``rivers top`` frame: rich renderables, pure functions of a snapshot.

``render(snapshot, width)`` returns panels for the run queue, tag limits, pools,
runs and recent events. At 120 columns and more the queue and tag-limit panels sit
side by side and tables show every column; narrower, panels stack and the widest
columns shrink. Every piece of user text (tags, step names, reasons, errors) goes
through ``output.safe()``, so nothing stored can drive the terminal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from rivers.cli.output import format_seconds, safe
from rivers.dashboard._widgets import bar, short_run_id, sparkline, status_markup
from rivers.dashboard.snapshot import ADMISSION_WINDOW_MIN
from rivers.explain import ordinal
from rivers.storage.records import RunStatus

if TYPE_CHECKING:
    from datetime import datetime

    from rich.console import RenderableType

    from rivers.dashboard.snapshot import (
        DashboardSnapshot,
        PoolView,
        QueueView,
        RunView,
        TagLimitView,
    )
    from rivers.storage.records import Event

__all__ = ("WIDE_COLUMNS", "describe_event", "render")

WIDE_COLUMNS = 120
"""From this width on, panels sit side by side and tables show every column."""
MIN_ROWS = 3


def render(
    snapshot: DashboardSnapshot, width: int, height: int | None = None
) -> RenderableType:
    """Return one dashboard frame for a terminal ``width`` columns wide.

    Args:
        snapshot: what to show.
        width: the terminal width; 120 and more is the wide layout.
        height: the terminal height, when the frame must fit (the runs and events
            lists are cut to fit, with a "+N more" line); None shows them whole.
    """
    wide = width >= WIDE_COLUMNS
    bar_width = 16 if wide else 10
    queue = _queue_panel(snapshot.queue, snapshot.taken_at, bar_width)
    tags = _tags_panel(snapshot.tag_limits, bar_width)
    pools = _pools_panel(snapshot.pools, snapshot.taken_at, bar_width, wide)
    top: list[RenderableType]
    if wide:
        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(ratio=1)
        grid.add_column(ratio=1)
        grid.add_row(queue, tags)
        top = [grid]
        fixed = max(7, 3 + _tag_rows(snapshot))
    else:
        top = [queue, tags]
        fixed = 7 + 3 + _tag_rows(snapshot)
    # The header line, the pools panel, and the borders and headers of the runs
    # and events panels.
    fixed += 1 + 3 + max(1, len(snapshot.pools)) + 3 + 3
    run_rows, event_rows = None, None
    if height is not None:
        spare = max(2 * MIN_ROWS, height - fixed)
        run_rows = max(MIN_ROWS, spare * 3 // 5)
        event_rows = max(MIN_ROWS, spare - run_rows)
    header = Text.from_markup(
        f"[bold]rivers top[/]  {safe(snapshot.storage)}  "
        f"{snapshot.taken_at:%Y-%m-%d %H:%M:%S} UTC",
        overflow="ellipsis",
    )
    header.no_wrap = True
    return Group(
        header,
        *top,
        pools,
        _runs_panel(snapshot, wide, run_rows),
        _events_panel(snapshot.recent_events, wide, event_rows),
    )


def _tag_rows(snapshot: DashboardSnapshot) -> int:
    return max(
        1,
        sum(
            1 + (len(view.buckets) if view.per_unique_value else 0)
            for view in snapshot.tag_limits
        ),
    )


def _age(since: datetime | None, now: datetime) -> str:
    if since is None:
        return "-"
    return format_seconds(max(0.0, (now - since).total_seconds()))


# ----------------------------------------------------------------- run queue


def _queue_panel(queue: QueueView, now: datetime, bar_width: int) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    if queue.max_concurrent_runs is None:
        grid.add_row(
            "in flight", f"{queue.in_flight} (no daemon with a run queue is running)"
        )
    else:
        grid.add_row(
            "in flight",
            bar(queue.in_flight, queue.max_concurrent_runs, bar_width)
            + " max_concurrent_runs",
        )
    oldest = (
        f", oldest waiting {_age(queue.oldest_queued_at, now)}" if queue.queued else ""
    )
    grid.add_row("queued", f"{queue.queued}{oldest}")
    last = queue.admitted_per_minute[-1] if queue.admitted_per_minute else 0
    grid.add_row(
        "admitted/min",
        f"{sparkline(queue.admitted_per_minute)} "
        f"{sum(queue.admitted_per_minute)} in {ADMISSION_WINDOW_MIN}m, {last} last min",
    )
    done = queue.finished_last_hour
    grid.add_row(
        "last hour",
        f"[green]{done.get('SUCCESS', 0)} ok[/], "
        f"[red]{done.get('FAILURE', 0)} failed[/], "
        f"[yellow]{done.get('CANCELED', 0)} canceled[/]",
    )
    if queue.dequeue_interval_s is not None:
        grid.add_row("dequeue", f"every {format_seconds(queue.dequeue_interval_s)}")
    return Panel(grid, title="run queue", title_align="left")


# ---------------------------------------------------------------- tag limits


def _tags_panel(limits: tuple[TagLimitView, ...], bar_width: int) -> Panel:
    if not limits:
        body: RenderableType = Text("no tag concurrency limits", style="dim")
    else:
        table = Table(box=None, header_style="bold", pad_edge=False, expand=False)
        table.add_column("LIMIT", no_wrap=True, overflow="ellipsis", max_width=32)
        table.add_column("USED", no_wrap=True)
        for view in limits:
            if not view.per_unique_value:
                bucket = view.buckets[0] if view.buckets else None
                used = 0 if bucket is None else bucket.used
                table.add_row(safe(view.label), bar(used, view.limit, bar_width))
                continue
            table.add_row(
                f"{safe(view.label)} [dim](each value)[/]",
                "" if view.buckets else f"[dim]none in flight, limit {view.limit}[/]",
            )
            for bucket in view.buckets:
                table.add_row(
                    f"  {safe(bucket.label)}", bar(bucket.used, view.limit, bar_width)
                )
        body = table
    return Panel(body, title="tag limits (in-flight runs)", title_align="left")


# --------------------------------------------------------------------- pools


def _pools_panel(
    pools: tuple[PoolView, ...], now: datetime, bar_width: int, wide: bool
) -> Panel:
    if not pools:
        return Panel(
            Text("no pools yet: they appear once a repository naming them runs", "dim"),
            title="pools",
            title_align="left",
        )
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("POOL", no_wrap=True, overflow="ellipsis", max_width=24)
    table.add_column("LIMIT", no_wrap=True)
    table.add_column("CLAIMED", no_wrap=True)
    if wide:
        table.add_column("HOLDERS", no_wrap=True, justify="right")
    table.add_column("PENDING", no_wrap=True, justify="right")
    table.add_column("OLDEST WAIT" if wide else "WAIT", no_wrap=True)
    table.add_column("NEXT LEASE EXPIRY" if wide else "LEASE", no_wrap=True)
    for pool in pools:
        if pool.limit is None:
            limit = "unlimited"
        else:
            source = pool.limit_source or ""
            limit = f"{pool.limit} {source if wide else source[:4]}".rstrip()
        lease = (
            "-"
            if pool.next_lease_expiry_at is None
            else "in "
            + format_seconds(
                max(0.0, (pool.next_lease_expiry_at - now).total_seconds())
            )
        )
        row = [
            safe(pool.name),
            limit,
            bar(pool.claimed, pool.limit, bar_width),
            *([str(pool.holders)] if wide else []),
            str(pool.pending) if pool.pending else "[dim]0[/]",
            _age(pool.oldest_pending_at, now),
            lease,
        ]
        table.add_row(*row)
    return Panel(table, title="pools", title_align="left")


# ---------------------------------------------------------------------- runs


def _runs_panel(snapshot: DashboardSnapshot, wide: bool, rows: int | None) -> Panel:
    queue = snapshot.queue
    title = f"runs: {queue.in_flight} in flight, {queue.queued} queued"
    runs = snapshot.runs
    if not runs:
        return Panel(Text("no runs", style="dim"), title=title, title_align="left")
    table = Table(box=None, header_style="bold", pad_edge=False, expand=True)
    table.add_column("RUN", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column(
        "TAGS", no_wrap=True, overflow="ellipsis", max_width=40 if wide else 14
    )
    table.add_column("AGE", no_wrap=True, justify="right")
    table.add_column("STEPS", no_wrap=True, justify="right")
    table.add_column("WAITING ON / REASON", overflow="fold", ratio=1)
    shown = runs if rows is None or len(runs) <= rows else runs[: rows - 1]
    for run in shown:
        table.add_row(*_run_row(run, snapshot.taken_at, wide))
    if len(shown) < len(runs):
        table.add_row(f"[dim]+{len(runs) - len(shown)} more[/]", "", "", "", "", "")
    return Panel(table, title=title, title_align="left")


def _run_row(run: RunView, now: datetime, wide: bool) -> list[str]:
    status = status_markup(run.status.value)
    if run.position is not None:
        status += f" #{run.position}"
    tags = safe(" ".join(f"{k}={v}" for k, v in run.tags.items())) or "[dim]-[/]"
    if run.status.is_finished:
        steps = ""
    elif run.steps_total is None:
        steps = "-" if run.position is None else ""
    else:
        steps = f"{run.steps_done}/{run.steps_total}"
    reason = safe(_first_line(run.waiting_on))
    if run.status is RunStatus.FAILURE and reason:
        reason = f"[red]{reason}[/]"
    elif run.status.is_in_flight and not run.waiting_on and run.steps_running:
        reason = f"[dim]{run.steps_running} running[/]"
    return [
        safe(short_run_id(run.run_id, narrow=not wide)),
        status,
        tags,
        _age(run.created_at, now),
        steps,
        reason,
    ]


# -------------------------------------------------------------------- events


def _events_panel(events: tuple[Event, ...], wide: bool, rows: int | None) -> Panel:
    if not events:
        return Panel(Text("no events yet", style="dim"), title="recent events")
    table = Table(box=None, header_style="bold", pad_edge=False, expand=True)
    table.add_column("TIME", no_wrap=True, min_width=8)
    table.add_column("EVENT", no_wrap=True, min_width=17)
    table.add_column("RUN", no_wrap=True, min_width=10)
    table.add_column("DETAIL", overflow="ellipsis", no_wrap=True, ratio=1)
    shown = events if rows is None else events[:rows]
    for event in shown:
        kind = event.kind
        style = (
            "red"
            if kind.endswith("FAILURE") or kind == "LEASE_EXPIRED"
            else "yellow"
            if kind
            in ("RUN_BLOCKED", "STEP_POOL_BLOCKED", "STEP_WAITING", "STEP_RETRY")
            else ""
        )
        table.add_row(
            f"{event.timestamp:%H:%M:%S}",
            f"[{style}]{kind}[/]" if style else kind,
            safe(short_run_id(event.run_id or "-", narrow=not wide)),
            safe(describe_event(event)),
        )
    return Panel(table, title="recent events", title_align="left")


def describe_event(event: Event) -> str:
    """Return one plain line saying what an event means (not yet escaped)."""
    data = event.data
    step = event.step_key or ""
    kind = event.kind

    def seconds(key: str) -> str:
        value = data.get(key)
        return format_seconds(float(value)) if isinstance(value, int | float) else "-"

    if kind == "RUN_BLOCKED":
        return str(data.get("reason", ""))
    if kind == "RUN_DEQUEUED":
        return f"admitted after {seconds('waited_s')} in the queue"
    if kind == "RUN_STARTED":
        return f"{_steps(data.get('steps'))} on {data.get('executor')}"
    if kind == "RUN_SUCCESS":
        return f"succeeded in {seconds('duration_s')}"
    if kind in ("RUN_FAILURE", "RUN_CANCELED"):
        return _first_line(data.get("reason"))
    if kind == "STEP_WAITING":
        return (
            f"{step}: worker slots {data.get('capacity')}/{data.get('capacity')}, "
            f"{ordinal(int(data.get('position') or 1))} in line"
        )
    if kind == "STEP_POOL_BLOCKED":
        return (
            f"{step}: pool {data.get('pool')} {data.get('claimed')}/{data.get('limit')}, "
            f"{ordinal(int(data.get('position') or 1))} in line"
        )
    if kind == "STEP_POOL_CLAIMED":
        pools = ", ".join(str(p) for p in data.get("pools") or ())
        return f"{step}: {data.get('slots')} slot(s) of {pools} after {seconds('waited_s')}"
    if kind == "STEP_FAILURE":
        return f"{step}: {_first_line(data.get('error'))}"
    if kind == "STEP_RETRY":
        return (
            f"{step}: attempt {data.get('attempt')} failed, retry in "
            f"{seconds('delay_s')}: {_first_line(data.get('error'))}"
        )
    if kind == "LEASE_EXPIRED":
        return (
            f"{step}: {data.get('slots')} slot(s) of pool {data.get('pool')} reclaimed "
            f"from {data.get('owner')}"
        )
    if kind == "TRIGGER_FAILURE":
        return f"{data.get('trigger')}: {_first_line(data.get('error'))}"
    return step


def _steps(count: object) -> str:
    return f"{count} step" if count == 1 else f"{count} steps"


def _first_line(text: object) -> str:
    lines = str(text or "").splitlines()
    return lines[0] if lines else ""
