"""The ``rivers top`` recent-events panel, and ``describe_event``: what an event
means, in one plain line.

All user text goes through ``rivers._text.safe()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from rivers._text import format_seconds, safe
from rivers.dashboard._tables import cut, first_line, more
from rivers.dashboard._widgets import short_run_id
from rivers.explain import ordinal

if TYPE_CHECKING:
    from rivers.storage.records import Event

__all__ = ("describe_event", "events_panel")


def events_panel(events: tuple[Event, ...], wide: bool, rows: int) -> Panel:
    """The recent events, ``rows`` rows at most; 0 folds the panel into a line."""
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
    for event in cut(events, rows):
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
    more(table, len(events), rows)
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
        return first_line(data.get("reason"))
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
        return f"{step}: {first_line(data.get('error'))}"
    if kind == "STEP_RETRY":
        return (
            f"{step}: attempt {data.get('attempt')} failed, retry in "
            f"{seconds('delay_s')}: {first_line(data.get('error'))}"
        )
    if kind == "LEASE_EXPIRED":
        return (
            f"{step}: {data.get('slots')} slot(s) of pool {data.get('pool')} reclaimed "
            f"from {data.get('owner')}"
        )
    if kind == "TRIGGER_FAILURE":
        return f"{data.get('trigger')}: {first_line(data.get('error'))}"
    return step


def _steps(count: object) -> str:
    return f"{count} step" if count == 1 else f"{count} steps"
