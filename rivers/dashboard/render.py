"""The ``rivers top`` frame: rich renderables, pure functions of a snapshot.

``render(snapshot, width)`` returns panels for the run queue, tag limits, pools,
runs and recent events. At 120 columns and more the queue and tag-limit panels sit
side by side and tables show every column; narrower, panels stack and the widest
columns shrink. Given a height (``rivers top`` on a terminal), the measured frame
fits it, borders and all: lists are cut ("+N more"), then the queue and tag-limit
panels fold into a summary, then the events panel folds. All user text (tags, step
names, reasons, errors) goes through ``rivers._text.safe()``: nothing stored can
drive the terminal.

This module lays the frame out and fits it; the panels are drawn by
``gate_panels`` (run queue, tag limits, pools), ``runs_panel`` and
``events_panel``."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from rivers._text import safe
from rivers.dashboard.events_panel import describe_event, events_panel
from rivers.dashboard.gate_panels import (
    pools_panel,
    queue_panel,
    summary_panel,
    tags_panel,
)
from rivers.dashboard.runs_panel import runs_panel

if TYPE_CHECKING:
    from rich.console import RenderableType

    from rivers.dashboard.views import DashboardSnapshot

__all__ = ("WIDE_COLUMNS", "describe_event", "render")

WIDE_COLUMNS = 120
"""From this width on, panels sit side by side and tables show every column."""

MIN_ROWS = 3
"""Rows the events list keeps before the next way of saving lines is tried."""
MIN_RUN_ROWS = 5
"""Rows the runs list keeps before the queue and tag panels fold."""


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
        panels.append(summary_panel(snapshot, bar_width))
    elif wide:
        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(ratio=1)
        grid.add_column(ratio=1)
        grid.add_row(
            queue_panel(snapshot.queue, snapshot.taken_at, bar_width),
            tags_panel(snapshot.tag_limits, bar_width),
        )
        panels.append(grid)
    else:
        panels.append(queue_panel(snapshot.queue, snapshot.taken_at, bar_width))
        panels.append(tags_panel(snapshot.tag_limits, bar_width))
    panels.append(
        pools_panel(snapshot.pools, snapshot.taken_at, bar_width, wide, fit.pools)
    )
    panels.append(runs_panel(snapshot, wide, fit.runs, fit.fitted))
    if fit.events is not None:
        panels.append(events_panel(snapshot.recent_events, wide, fit.events))
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
