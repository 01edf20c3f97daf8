"""Rendering for the command line: tables, run summaries, JSON."""

from __future__ import annotations

import os
import re
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
from rich.console import Console
from rich.table import Table

from rivers._text import format_seconds, safe
from rivers.storage.records import (
    Event,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
)

if TYPE_CHECKING:
    from rivers.results import MaterializeResult

__all__ = (
    "console",
    "drawing_width",
    "format_log_line",
    "print_json",
    "print_failures",
    "print_result",
    "run_table",
    "step_table",
)

_STATUS_STYLE = {
    "SUCCESS": "green",
    "FAILURE": "red",
    "CANCELED": "yellow",
    "CANCELING": "yellow",
    "SKIPPED": "dim",
    "QUEUED": "cyan",
    "STARTING": "blue",
    "STARTED": "blue",
    "RUNNING": "blue",
    "WAITING": "cyan",
}


UNWRAPPED_WIDTH = 1_000_000
"""The width of a console whose output is not a terminal: lines are never wrapped."""
DRAWING_WIDTH = 80
"""The width of a drawing (a timeline, ``top --once``) when output is not a terminal."""


def console(*, stderr: bool = False, drawing: bool = False) -> Console:
    """Return a console; colour is off when NO_COLOR is set or output is piped.

    On a terminal lines wrap at its width. Otherwise (a pipe, a log file) each line
    is printed whole, unless ``COLUMNS`` is set; a ``drawing`` console (panels that
    fill the width) is ``COLUMNS`` or 80 wide there instead.
    """
    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty()
    unwrapped = not (terminal or drawing or os.environ.get("COLUMNS"))
    return Console(
        file=stream,
        no_color=bool(os.environ.get("NO_COLOR")) or not terminal,
        highlight=False,
        soft_wrap=False,
        width=UNWRAPPED_WIDTH if unwrapped else None,
    )


def drawing_width(out: Console) -> int:
    """The width to draw in: the terminal's or ``COLUMNS``; else ``DRAWING_WIDTH``."""
    return DRAWING_WIDTH if out.width >= UNWRAPPED_WIDTH else out.width


def _status(status: RunStatus | StepStatus) -> str:
    style = _STATUS_STYLE.get(status.value, "")
    return f"[{style}]{status.value}[/]" if style else status.value


def run_table(runs: list[RunRecord]) -> Table:
    """Return a table of runs, newest first."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("RUN", "STATUS"):
        table.add_column(column, no_wrap=True)
    table.add_column("TAGS", overflow="fold")
    table.add_column("CREATED", no_wrap=True)
    table.add_column("DURATION", no_wrap=True)
    table.add_column("REASON", overflow="fold")
    for run in runs:
        duration = None
        if run.started_at is not None:
            end = run.ended_at or datetime.now(UTC)
            duration = (end - run.started_at).total_seconds()
        table.add_row(
            safe(run.run_id),
            _status(run.status),
            safe(" ".join(f"{k}={v}" for k, v in run.tags.items())) or "-",
            run.created_at.strftime("%m-%d %H:%M:%S"),
            format_seconds(duration),
            safe(run.reason or ""),
        )
    return table


def step_table(steps: list[StepRecord]) -> Table:
    """Return a table of a run's steps."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("STEP", "STATUS", "ATTEMPTS", "DURATION", "WORKER", "ERROR"):
        table.add_column(column, overflow="fold")
    for step in steps:
        table.add_row(
            safe(step.step_key),
            _status(step.status),
            str(step.attempts),
            format_seconds(step.duration_s),
            safe(step.worker or "-"),
            safe((step.error or "").splitlines()[0] if step.error else ""),
        )
    return table


def print_failures(out: Console, failures: list[Event]) -> None:
    """Print each failed step's traceback (``STEP_FAILURE`` events that have one)."""
    for event in failures:
        trace = event.data.get("traceback")
        if event.kind != "STEP_FAILURE" or not isinstance(trace, str) or not trace:
            continue
        ran = event.data.get("duration_s")
        after = f" after {format_seconds(ran)}" if isinstance(ran, int | float) else ""
        out.print(
            f"[red]step {safe(event.step_key)!r} failed{after} "
            f"(attempt {safe(event.data.get('attempt'))}):[/]"
        )
        out.print(safe(trace.rstrip("\n")), highlight=False, soft_wrap=True)


def format_log_line(event: Event) -> str:
    """``17:02:03.120 step LEVEL message``: one log event as plain text."""
    data = event.data
    level = data.get("stream") or data.get("level") or event.kind
    when = event.timestamp.astimezone().strftime("%H:%M:%S.%f")[:-3]
    text = "".join(
        ch if ch.isprintable() or ch in "\n\t" else "\ufffd"
        for ch in str(data.get("message", ""))
    )
    return f"{when} {event.step_key or '-'} {level} {text}"


def print_result(
    out: Console, result: MaterializeResult, failures: list[Event] | None = None
) -> None:
    """Print a materialization's steps, the tracebacks of its failures, its outcome."""
    out.print(step_table(result.step_records))
    print_failures(out, failures or [])
    done = sum(1 for s in result.step_records if s.status is StepStatus.SUCCESS)
    line = (
        f"run {result.run_id} {_status(result.status)}: {done}/"
        f"{len(result.step_records)} steps succeeded"
    )
    out.print(line)
    if result.error is not None:
        out.print(f"[red]{safe(result.error)}[/]")


# Characters JSON may carry raw that a terminal could still act on: C1 controls
# (U+009B is a one-character CSI) and bidirectional overrides. They can only occur
# inside JSON strings, where a \uXXXX escape means the same.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def print_json(value: Any) -> None:
    """Print ``value`` (Structs, lists, dicts) as JSON on stdout.

    Control characters are escaped (``\\u001b``), so stored text cannot drive
    the terminal even when the JSON is not piped anywhere.
    """
    text = msgspec.json.encode(value).decode()
    text = _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    sys.stdout.write(text + "\n")
