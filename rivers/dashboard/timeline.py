"""A run's timeline: where each step's time went, from the run's events.

``build_timeline`` (pure) turns a run and its events into segments per step:

- ``queue``: the run waited for the run queue (created until admitted or started);
- ``worker``: the step waited for an executor slot (``STEP_WAITING`` on) or for its
  worker process to start (the ``startup_s`` before its ``STEP_STARTED``);
- ``pool``: it waited for pool slots (``STEP_POOL_BLOCKED`` to ``STEP_POOL_CLAIMED``);
- ``retry``: it waited out a retry delay (``STEP_RETRY`` on);
- ``running``: an attempt ran (``STEP_STARTED`` to its end).

Gaps are time spent waiting for upstream steps (or launching). ``render_timeline``
draws one bar per step on a shared time axis, with the totals beside it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

import msgspec
from rich.console import Group
from rich.table import Table
from rich.text import Text

from rivers._text import format_seconds, safe
from rivers.storage.records import RunStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from rich.console import RenderableType

    from rivers.storage.records import Event, RunRecord

__all__ = (
    "SEGMENT_KINDS",
    "TIMELINE_EVENT_KINDS",
    "Segment",
    "SegmentKind",
    "StepTimeline",
    "Timeline",
    "build_timeline",
    "render_timeline",
)

SegmentKind = Literal["queue", "worker", "pool", "retry", "running"]
SEGMENT_KINDS: tuple[SegmentKind, ...] = ("queue", "worker", "pool", "retry", "running")

TIMELINE_EVENT_KINDS = (
    "RUN_DEQUEUED",
    "RUN_STARTED",
    "STEP_WAITING",
    "STEP_POOL_BLOCKED",
    "STEP_POOL_CLAIMED",
    "STEP_STARTED",
    "STEP_RETRY",
    "STEP_SUCCESS",
    "STEP_FAILURE",
    "STEP_SKIPPED",
    "STEP_CANCELED",
)
"""The events a timeline is built from (read only these: logs can be many)."""

_ENDS = {
    "STEP_SUCCESS": "SUCCESS",
    "STEP_FAILURE": "FAILURE",
    "STEP_SKIPPED": "SKIPPED",
    "STEP_CANCELED": "CANCELED",
}
_WORKER_STARTUP = "worker start-up"
"""Not an event kind: the start of a ``STEP_STARTED`` event's ``startup_s``."""
_OPENS: dict[str, SegmentKind] = {
    "STEP_WAITING": "worker",
    _WORKER_STARTUP: "worker",
    "STEP_POOL_BLOCKED": "pool",
    "STEP_RETRY": "retry",
    "STEP_STARTED": "running",
}
_GLYPHS: dict[SegmentKind, tuple[str, str]] = {
    "queue": ("░", "cyan"),
    "worker": ("▒", "yellow"),
    "pool": ("▓", "magenta"),
    "retry": ("╌", "red"),
    "running": ("█", "green"),
}
_LABELS: dict[SegmentKind, str] = {
    "queue": "QUEUE",
    "worker": "WORKER",
    "pool": "POOL",
    "retry": "RETRY",
    "running": "RUN",
}
MIN_BAR = 10
HALF_CELL = 0.5
SHORTEST_S = 0.0005
"""Totals below this print as ``-``."""


class Segment(msgspec.Struct, frozen=True):
    """A stretch of one step's time: what it did from ``start_s`` to ``end_s``.

    Offsets are seconds since the run was created.
    """

    kind: SegmentKind
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        """How long the stretch lasted."""
        return max(0.0, self.end_s - self.start_s)


class StepTimeline(msgspec.Struct, frozen=True, kw_only=True):
    """One step's segments, in time order, and how it ended (None: still going)."""

    step_key: str
    outcome: str | None
    first_s: float
    """When the step's first event came (seconds since the run was created)."""
    segments: tuple[Segment, ...]

    def total_s(self, kind: SegmentKind) -> float:
        """Seconds this step spent in segments of ``kind``."""
        return sum(s.duration_s for s in self.segments if s.kind == kind)


class Timeline(msgspec.Struct, frozen=True, kw_only=True):
    """A run's timeline: its span and one ``StepTimeline`` per step that began."""

    run_id: str
    status: str
    created_at: datetime
    span_s: float
    """Seconds from creation to the end (or to now, for a run still going)."""
    queue_s: float
    steps: tuple[StepTimeline, ...]


def build_timeline(run: RunRecord, events: Iterable[Event], now: datetime) -> Timeline:
    """Return where the time of ``run`` went, from its events (oldest first).

    Args:
        run: the run.
        events: its events; kinds outside ``TIMELINE_EVENT_KINDS`` are ignored.
        now: where open segments of an unfinished run end.
    """
    created = run.created_at

    def offset(at: datetime) -> float:
        return max(0.0, (at - created).total_seconds())

    dequeued: float | None = None
    per_step: dict[str, list[Event]] = {}
    last = 0.0
    for event in events:
        last = max(last, offset(event.timestamp))
        if event.kind == "RUN_DEQUEUED":
            if dequeued is None:
                dequeued = offset(event.timestamp)
        elif event.step_key is not None and event.kind in TIMELINE_EVENT_KINDS:
            per_step.setdefault(event.step_key, []).append(event)
    if run.ended_at is not None:
        end = offset(run.ended_at)
    elif run.status.is_finished:
        end = last
    else:
        end = max(last, offset(now))
    # Only a run the queue admitted waited for it: materialize() runs are created
    # STARTING, and a run still queued has waited until now.
    if dequeued is not None:
        queue_s = min(dequeued, end)
    elif run.status is RunStatus.QUEUED or (
        run.status is RunStatus.CANCELED and run.started_at is None
    ):
        queue_s = end
    else:
        queue_s = 0.0
    steps = [
        _step_timeline(step, _marks(step_events, offset), queue_s, end)
        for step, step_events in per_step.items()
    ]
    steps.sort(key=lambda s: s.first_s)
    return Timeline(
        run_id=run.run_id,
        status=run.status.value,
        created_at=created,
        span_s=max(end, queue_s),
        queue_s=queue_s,
        steps=tuple(steps),
    )


def _marks(
    events: list[Event], offset: Callable[[datetime], float]
) -> list[tuple[float, str]]:
    """(offset, kind) of each event; a worker's start-up opens before its start."""
    marks: list[tuple[float, str]] = []
    for event in events:
        at = offset(event.timestamp)
        startup = event.data.get("startup_s") if event.kind == "STEP_STARTED" else None
        if isinstance(startup, int | float) and startup > 0:
            since = max(at - startup, marks[-1][0] if marks else 0.0)
            marks.append((since, _WORKER_STARTUP))
        marks.append((at, event.kind))
    return marks


def _step_timeline(
    step: str, events: list[tuple[float, str]], queue_s: float, end: float
) -> StepTimeline:
    """Fold one step's (offset, kind) events into segments."""
    segments: list[Segment] = []
    if queue_s > 0:
        segments.append(Segment("queue", 0.0, queue_s))
    current: tuple[SegmentKind, float] | None = None
    outcome: str | None = None
    for at, kind in events:
        opens = _OPENS.get(kind)
        # Any later event ends the open stretch, except another pool block while
        # the step already waits for pools (one per pool it names).
        if current is not None and not (opens == current[0] == "pool"):
            segments.append(Segment(current[0], current[1], max(at, current[1])))
            current = None
        if kind in _ENDS:
            outcome = _ENDS[kind]
        elif opens is not None and current is None:
            current = (opens, at)
            outcome = None
    if current is not None:
        segments.append(Segment(current[0], current[1], max(end, current[1])))
    return StepTimeline(
        step_key=step,
        outcome=outcome,
        first_s=events[0][0] if events else end,
        segments=tuple(segments),
    )


# ------------------------------------------------------------------ rendering


def render_timeline(timeline: Timeline, width: int) -> RenderableType:
    """Draw one bar per step on a shared time axis, with totals per kind.

    At 120 columns and more every kind gets a totals column; narrower, the
    totals fold into WAITED and RAN.
    """
    if not timeline.steps:
        note = "no step has begun yet"
        if timeline.queue_s > 0:
            note += f"; waited {format_seconds(timeline.queue_s)} for the run queue"
        return Text(note, style="dim")
    wide = width >= 120
    name_width = min(24, max(len(s.step_key) for s in timeline.steps))
    totals = [_LABELS[k] for k in SEGMENT_KINDS] if wide else ["WAITED", "RAN"]
    totals_width = 8 * len(totals)
    bar_width = max(MIN_BAR, width - name_width - totals_width - 4)
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 1))
    table.add_column("STEP", no_wrap=True, overflow="ellipsis", max_width=name_width)
    table.add_column(_axis(timeline.span_s, bar_width), no_wrap=True)
    for label in totals:
        table.add_column(label, no_wrap=True, justify="right")
    for step in timeline.steps:
        cells = [safe(step.step_key), _bar(step, timeline.span_s, bar_width)]
        if wide:
            cells.extend(_seconds(step.total_s(kind)) for kind in SEGMENT_KINDS)
        else:
            waited = sum(step.total_s(k) for k in SEGMENT_KINDS if k != "running")
            cells.extend([_seconds(waited), _seconds(step.total_s("running"))])
        table.add_row(*cells)
    legend = "  ".join(
        f"[{style}]{glyph}[/] {kind}" for kind, (glyph, style) in _GLYPHS.items()
    )
    return Group(
        table,
        Text.from_markup(
            f"[dim]run {safe(timeline.run_id)} {timeline.status}, "
            f"{format_seconds(timeline.span_s)} since created[/]\n"
            f"{legend}  [dim](blank: upstream steps)[/]"
        ),
    )


def _seconds(value: float) -> str:
    return "-" if value < SHORTEST_S else format_seconds(value)


def _axis(span_s: float, width: int) -> str:
    right = format_seconds(span_s)
    return "0" + " " * max(1, width - 1 - len(right)) + right


def _bar(step: StepTimeline, span_s: float, width: int) -> str:
    cells: list[SegmentKind | None] = [None] * width
    scale = width / span_s if span_s > 0 else 0.0
    for segment in step.segments:
        cells_long = segment.duration_s * scale
        if segment.kind != "running" and cells_long < HALF_CELL:
            continue  # a wait too short to see; a run always shows
        first = min(width - 1, int(segment.start_s * scale))
        last = max(first + 1, min(width, round(segment.end_s * scale)))
        for index in range(first, last):
            cells[index] = segment.kind
    failed = step.outcome == "FAILURE"
    parts: list[str] = []
    for kind in cells:
        if kind is None:
            parts.append(" ")
            continue
        glyph, style = _GLYPHS[kind]
        if kind == "running" and failed:
            style = "red"
        parts.append(f"[{style}]{glyph}[/]")
    return "".join(parts)
