"""The ``rivers top`` frame: rich renderables, pure functions of a snapshot.

``render(snapshot, width)`` returns panels for the run queue, tag limits, pools,
runs and recent events. At 120 columns and more the queue and tag-limit panels sit
side by side and tables show every column; narrower, panels stack and the widest
columns shrink. Given a height (``rivers top`` on a terminal), the measured frame
fits it, borders and all: lists are cut ("+N more"), then the queue and tag-limit
panels fold into a summary, then the events panel folds. All user text (tags, step
names, reasons, errors) goes through ``rivers._text.safe()``: nothing stored can
drive the terminal."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, TypeVar

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from rivers._text import format_seconds, safe
from rivers.dashboard._widgets import bar, short_run_id, sparkline, status_markup
from rivers.dashboard.views import ADMISSION_WINDOW_MIN
from rivers.explain import ordinal
from rivers.storage.records import RunStatus

if TYPE_CHECKING:
    from datetime import datetime

    from rich.console import RenderableType

    from rivers.dashboard.views import (
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
T = TypeVar("T")

MIN_ROWS = 3
"""Rows the events list keeps before the next way of saving lines is tried."""
MIN_RUN_ROWS = 5
"""Rows the runs list keeps before the queue and tag panels fold."""
MAX_RUNNING_NAMES = 3
"""Running steps a run's row names before it counts the rest."""


def render(
    snapshot: DashboardSnapshot, width: int, height: int | None = None
) -> RenderableType:
    """Return one dashboard frame for a terminal ``width`` columns wide.

    Args:
        snapshot: what to show.
        width: the terminal width; 120 and more is the wide layout.
        height: the terminal height, when the frame must fit (``rivers top`` on a
            terminal); None shows every list whole.

    A frame that must fit keeps every panel whole, borders included: lists are cut
    with a "+N more" line, then the run-queue and tag-limit panels fold into one
    two-line summary, then the events panel folds into one line (and goes last).
    """
    wide = width >= WIDE_COLUMNS
    header = Text.from_markup(
        f"[bold]rivers top[/]  {safe(snapshot.storage)}  "
        f"{snapshot.taken_at:%Y-%m-%d %H:%M:%S} UTC",
        overflow="ellipsis",
    )
    header.no_wrap = True
    if height is None:
        return Group(header, *_panels(snapshot, wide, _Fit.whole(snapshot, False)))
    return Group(header, *_fitted(snapshot, width, height - 1, wide))


class _Fit:
    """How much of each list a frame shows, and which panels are folded."""

    __slots__ = ("compact_top", "events", "fitted", "pools", "runs")

    def __init__(self, fitted: bool, pools: int, runs: int, events: int | None) -> None:
        self.fitted = fitted
        """Whether rows must stay one line each (long text is cut with "…")."""
        self.compact_top = False
        self.pools = pools
        self.runs = runs
        self.events = events
        """Rows of events; 0 folds the panel into one line, None leaves it out."""

    @classmethod
    def whole(cls, snapshot: DashboardSnapshot, fitted: bool) -> _Fit:
        return cls(
            fitted,
            len(snapshot.pools),
            len(snapshot.runs),
            len(snapshot.recent_events),
        )


def _panels(snapshot: DashboardSnapshot, wide: bool, fit: _Fit) -> list[RenderableType]:
    bar_width = 16 if wide else 10
    panels: list[RenderableType] = []
    if fit.compact_top:
        panels.append(_summary_panel(snapshot, bar_width))
    elif wide:
        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(ratio=1)
        grid.add_column(ratio=1)
        grid.add_row(
            _queue_panel(snapshot.queue, snapshot.taken_at, bar_width),
            _tags_panel(snapshot.tag_limits, bar_width),
        )
        panels.append(grid)
    else:
        panels.append(_queue_panel(snapshot.queue, snapshot.taken_at, bar_width))
        panels.append(_tags_panel(snapshot.tag_limits, bar_width))
    panels.append(
        _pools_panel(snapshot.pools, snapshot.taken_at, bar_width, wide, fit.pools)
    )
    panels.append(_runs_panel(snapshot, wide, fit.runs, fit.fitted))
    if fit.events is not None:
        panels.append(_events_panel(snapshot.recent_events, wide, fit.events))
    return panels


def _fitted(
    snapshot: DashboardSnapshot, width: int, height: int, wide: bool
) -> list[RenderableType]:
    """Return the panels, shrunk step by step until they fit ``height`` lines."""
    fit = _Fit.whole(snapshot, True)
    measure = Console(width=width, file=io.StringIO(), color_system=None)

    def overflow() -> int:
        lines = sum(
            len(measure.render_lines(panel, pad=False))
            for panel in _panels(snapshot, wide, fit)
        )
        return lines - height

    def shrink(current: int, floor: int) -> int:
        return max(floor, min(current, current - overflow()))

    if overflow() > 0 and fit.events:
        fit.events = shrink(fit.events, min(fit.events, MIN_ROWS))
    if overflow() > 0:
        fit.runs = shrink(fit.runs, min(fit.runs, MIN_RUN_ROWS))
    if overflow() > 0:
        fit.compact_top = True
    if overflow() > 0:
        fit.pools = shrink(fit.pools, min(fit.pools, 1))
    if overflow() > 0 and fit.events:
        fit.events = 0
    if overflow() > 0:
        fit.runs = shrink(fit.runs, min(fit.runs, 1))
    if overflow() > 0:
        fit.events = None
    # Lines the folding freed go back to the runs, then to the events.
    fit.runs = min(len(snapshot.runs), fit.runs - overflow())
    if fit.events:
        fit.events = min(len(snapshot.recent_events), fit.events - overflow())
    return _panels(snapshot, wide, fit)


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
        controls = f" [bold yellow]({queue.controls})[/]" if queue.controls else ""
        grid.add_row(
            "in flight",
            bar(queue.in_flight, queue.max_concurrent_runs, bar_width)
            + f" max_concurrent_runs{controls}",
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


def _summary_panel(snapshot: DashboardSnapshot, bar_width: int) -> Panel:
    """The run queue and the tag limits in two lines, for short terminals."""
    queue = snapshot.queue
    if queue.max_concurrent_runs is None:
        in_flight = f"in flight {queue.in_flight}"
    else:
        in_flight = "in flight " + bar(
            queue.in_flight, queue.max_concurrent_runs, bar_width
        )
    oldest = (
        f", oldest {_age(queue.oldest_queued_at, snapshot.taken_at)}"
        if queue.queued
        else ""
    )
    done = queue.finished_last_hour
    first = (
        f"{in_flight}  queued {queue.queued}{oldest}  last hour "
        f"[green]{done.get('SUCCESS', 0)} ok[/] [red]{done.get('FAILURE', 0)} failed[/]"
    )
    buckets = [
        f"{safe(bucket.label)} {bucket.used}/{view.limit}"
        for view in snapshot.tag_limits
        for bucket in view.buckets
    ]
    if buckets:
        second = "tag limits: " + ", ".join(buckets)
    elif snapshot.tag_limits:
        second = "tag limits: none in use"
    else:
        second = "[dim]no tag concurrency limits[/]"
    lines = [Text.from_markup(first), Text.from_markup(second)]
    for line in lines:
        line.no_wrap = True
        line.overflow = "ellipsis"
    return Panel(Group(*lines), title="run queue · tag limits", title_align="left")


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
    pools: tuple[PoolView, ...],
    now: datetime,
    bar_width: int,
    wide: bool,
    rows: int,
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
    for pool in _cut(pools, rows):
        source = pool.limit_source or ""
        limit = f"{pool.limit} {source if wide else source[:4]}".rstrip()
        limit = "unlimited" if pool.limit is None else limit
        limit += f", {pool.next_change}" if wide and pool.next_change else ""
        if pool.rate:  # the rate alone when narrow, with what its bucket allows wide
            limit += f", {pool.rate if wide else pool.rate.split(':')[0]}"
        expiry = pool.next_lease_expiry_at
        lease = "-" if expiry is None else "in " + _age(now, expiry)
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
    _more(table, len(pools), rows)
    return Panel(table, title="pools", title_align="left")


# ---------------------------------------------------------------------- runs


def _runs_panel(
    snapshot: DashboardSnapshot, wide: bool, rows: int, fitted: bool
) -> Panel:
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
    table.add_column(
        "WAITING ON / REASON",
        overflow="ellipsis" if fitted else "fold",
        no_wrap=fitted,
        ratio=1,
    )
    for run in _cut(runs, rows):
        table.add_row(*_run_row(run, snapshot.taken_at, wide))
    _more(table, len(runs), rows)
    return Panel(table, title=title, title_align="left")


def _cut(items: tuple[T, ...], rows: int) -> tuple[T, ...]:
    """Return what fits ``rows`` table rows, keeping the last for "+N more"."""
    return items if len(items) <= rows else items[: max(0, rows - 1)]


def _more(table: Table, total: int, rows: int) -> None:
    """Add the "+N more" row when ``total`` items do not fit ``rows``."""
    if total > rows:
        shown = max(0, rows - 1)
        cells = [""] * len(table.columns)
        cells[0] = f"[dim]+{total - shown} more[/]"
        table.add_row(*cells)


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
        reason = f"[dim]running {safe(_names(run.running_steps, run.steps_running))}[/]"
    return [
        safe(short_run_id(run.run_id, narrow=not wide)),
        status,
        tags,
        _age(run.created_at, now),
        steps,
        reason,
    ]


# -------------------------------------------------------------------- events


def _names(names: tuple[str, ...], count: int) -> str:
    """Return ``load, report +3``: a few names, and how many more there are."""
    shown = ", ".join(names[:MAX_RUNNING_NAMES])
    rest = count - min(len(names), MAX_RUNNING_NAMES)
    if not shown:
        return f"{count} step(s)"
    return f"{shown} +{rest}" if rest > 0 else shown


def _events_panel(events: tuple[Event, ...], wide: bool, rows: int) -> Panel:
    if not events:
        return Panel(
            Text("no events yet", style="dim"),
            title="recent events",
            title_align="left",
        )
    if rows == 0:
        folded = Text(
            f"{len(events)} recent; a taller terminal shows them", style="dim"
        )
        return Panel(folded, title="recent events", title_align="left")
    table = Table(box=None, header_style="bold", pad_edge=False, expand=True)
    table.add_column("TIME", no_wrap=True, min_width=8)
    table.add_column("EVENT", no_wrap=True, min_width=17)
    table.add_column("RUN", no_wrap=True, min_width=10)
    table.add_column("DETAIL", overflow="ellipsis", no_wrap=True, ratio=1)
    for event in _cut(events, rows):
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
    _more(table, len(events), rows)
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
