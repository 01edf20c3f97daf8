"""The ``rivers top`` runs panel: one row per run, with what it waits on; a pure
function of a snapshot.

All user text (tags, step names, reasons) goes through ``rivers._text.safe()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from rivers._text import safe
from rivers.dashboard._tables import age, cut, first_line, more
from rivers.dashboard._widgets import short_run_id, status_markup
from rivers.storage.records import RunStatus

if TYPE_CHECKING:
    from datetime import datetime

    from rivers.dashboard.views import DashboardSnapshot, RunView

__all__ = ("runs_panel",)

MAX_RUNNING_NAMES = 3
"""Running steps a run's row names before it counts the rest."""


def runs_panel(
    snapshot: DashboardSnapshot, wide: bool, rows: int, fitted: bool
) -> Panel:
    """The runs, ``rows`` rows at most; ``fitted`` keeps each row one line."""
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
    for run in cut(runs, rows):
        table.add_row(*_run_row(run, snapshot.taken_at, wide))
    more(table, len(runs), rows)
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
    reason = safe(first_line(run.waiting_on))
    if run.status is RunStatus.FAILURE and reason:
        reason = f"[red]{reason}[/]"
    elif run.status.is_in_flight and not run.waiting_on and run.steps_running:
        reason = f"[dim]running {safe(_names(run.running_steps, run.steps_running))}[/]"
    return [
        safe(short_run_id(run.run_id, narrow=not wide)),
        status,
        tags,
        age(run.created_at, now),
        steps,
        reason,
    ]


def _names(names: tuple[str, ...], count: int) -> str:
    """Return ``load, report +3``: a few names, and how many more there are."""
    shown = ", ".join(names[:MAX_RUNNING_NAMES])
    rest = count - min(len(names), MAX_RUNNING_NAMES)
    if not shown:
        return f"{count} step(s)"
    return f"{shown} +{rest}" if rest > 0 else shown
