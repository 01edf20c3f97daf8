"""The ``rivers top`` panels of the gates: the run queue, the tag limits (or both
folded into a two-line summary) and the pools; pure functions of a snapshot.

All user text goes through ``rivers._text.safe()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from rivers._text import format_seconds, safe
from rivers.dashboard._tables import age, cut, more
from rivers.dashboard._widgets import bar, sparkline
from rivers.dashboard.views import ADMISSION_WINDOW_MIN

if TYPE_CHECKING:
    from datetime import datetime

    from rich.console import RenderableType

    from rivers.dashboard.views import (
        DashboardSnapshot,
        PoolView,
        QueueView,
        TagLimitView,
    )

__all__ = ("pools_panel", "queue_panel", "summary_panel", "tags_panel")


def queue_panel(queue: QueueView, now: datetime, bar_width: int) -> Panel:
    """The run queue: in flight against ``max_concurrent_runs``, queued, admitted."""
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
        f", oldest waiting {age(queue.oldest_queued_at, now)}" if queue.queued else ""
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


def summary_panel(snapshot: DashboardSnapshot, bar_width: int) -> Panel:
    """The run queue and the tag limits in two lines, for short terminals."""
    queue = snapshot.queue
    if queue.max_concurrent_runs is None:
        in_flight = f"in flight {queue.in_flight}"
    else:
        in_flight = "in flight " + bar(
            queue.in_flight, queue.max_concurrent_runs, bar_width
        )
    oldest = (
        f", oldest {age(queue.oldest_queued_at, snapshot.taken_at)}"
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


def tags_panel(limits: tuple[TagLimitView, ...], bar_width: int) -> Panel:
    """Each tag limit's in-flight runs (per value, for a per-value limit)."""
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


def pools_panel(
    pools: tuple[PoolView, ...],
    now: datetime,
    bar_width: int,
    wide: bool,
    rows: int,
) -> Panel:
    """Each pool's limit, claims and waiting steps: ``rows`` rows at most."""
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
    for pool in cut(pools, rows):
        source = pool.limit_source or ""
        limit = f"{pool.limit} {source if wide else source[:4]}".rstrip()
        limit = "unlimited" if pool.limit is None else limit
        limit += f", {pool.next_change}" if wide and pool.next_change else ""
        if pool.rate:  # the rate alone when narrow, with what its bucket allows wide
            limit += f", {pool.rate if wide else pool.rate.split(':')[0]}"
        expiry = pool.next_lease_expiry_at
        lease = "-" if expiry is None else "in " + age(now, expiry)
        row = [
            safe(pool.name),
            limit,
            bar(pool.claimed, pool.limit, bar_width),
            *([str(pool.holders)] if wide else []),
            str(pool.pending) if pool.pending else "[dim]0[/]",
            age(pool.oldest_pending_at, now),
            lease,
        ]
        table.add_row(*row)
    more(table, len(pools), rows)
    return Panel(table, title="pools", title_align="left")
