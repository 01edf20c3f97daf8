"""``rivers triggers list``: schedules, sensors and automation conditions, with state.

The definitions come from the code (``-f FILE`` / ``-m MODULE``); the state (last
tick, cursor, last result, last error) from the storage the daemon writes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import msgspec
import typer
from rich.table import Table

from rivers._text import format_seconds, safe
from rivers.actors.triggers import AUTOMATION_INTERVAL_S
from rivers.cli._help import RiversGroup
from rivers.cli._storage import existing_storage
from rivers.cli.loading import load_repository
from rivers.cli.options import (  # noqa: TC001  # typer reads them at runtime
    AttributeOption,
    FileOption,
    ModuleOption,
)
from rivers.cli.output import console, print_json
from rivers.core.triggers import TriggerState, next_tick, state_key
from rivers.materialize import run_sync
from rivers.storage.records import from_timestamp

if TYPE_CHECKING:
    from rivers.cli._common import CliState
    from rivers.definitions.repository import CodeRepository

__all__ = ("TriggerRow", "app", "describe_triggers")

app = typer.Typer(
    cls=RiversGroup,
    rich_markup_mode=None,  # as the rivers group it joins (rivers.cli.app)
    help="Inspect schedules, sensors and automation conditions.",
    no_args_is_help=True,
)


class TriggerRow(msgspec.Struct, frozen=True, kw_only=True):
    """One trigger as ``rivers triggers list`` shows it.

    ``next_tick`` is when it is next due (None: at the daemon's next start);
    automation conditions are listed per asset.
    """

    name: str
    kind: str
    repository: str
    definition: str
    next_tick: datetime | None
    last_evaluation_at: datetime | None
    last_result: str | None
    last_error: str | None
    last_error_at: datetime | None
    last_run_ids: list[str]
    cursor: str | None = None


def _at(epoch_s: float | None) -> datetime | None:
    return from_timestamp(epoch_s)


def describe_triggers(
    repository: CodeRepository, states: dict[str, TriggerState], now: float
) -> list[TriggerRow]:
    """Return a row per schedule, sensor and asset automation condition."""
    rows: list[TriggerRow] = []
    for schedule in repository.schedules:
        state = states.get(state_key("schedule", schedule.name)) or TriggerState()
        rows.append(
            TriggerRow(
                name=schedule.name,
                kind="schedule",
                repository=repository.name,
                definition=f"cron {schedule.cron} {schedule.timezone}"
                + (" catch_up" if schedule.catch_up else ""),
                next_tick=_at(next_tick(schedule.cron, schedule.timezone, now)),
                last_evaluation_at=_at(state.last_evaluation_at),
                last_result=state.last_result,
                last_error=state.last_error,
                last_error_at=_at(state.last_error_at),
                last_run_ids=state.last_run_ids,
            )
        )
    for sensor in repository.sensors:
        state = states.get(state_key("sensor", sensor.name)) or TriggerState()
        due = (
            None
            if state.last_evaluation_at is None
            else state.last_evaluation_at + sensor.interval_s
        )
        rows.append(
            TriggerRow(
                name=sensor.name,
                kind="sensor",
                repository=repository.name,
                definition=f"every {_interval(sensor.interval_s)}",
                next_tick=_at(due),
                last_evaluation_at=_at(state.last_evaluation_at),
                last_result=state.last_result,
                last_error=state.last_error,
                last_error_at=_at(state.last_error_at),
                last_run_ids=state.last_run_ids,
                cursor=state.cursor,
            )
        )
    state = states.get(state_key("automation", repository.name)) or TriggerState()
    for name, condition in repository.automation_conditions.items():
        if condition.cron is not None:
            due = next_tick(condition.cron, condition.timezone, now)
        elif state.last_evaluation_at is not None:
            due = state.last_evaluation_at + AUTOMATION_INTERVAL_S
        else:
            due = None
        requested = state.requested_at.get(name)
        rows.append(
            TriggerRow(
                name=name,
                kind="automation",
                repository=repository.name,
                definition=condition.describe(),
                next_tick=_at(due),
                last_evaluation_at=_at(state.last_evaluation_at),
                last_result=None
                if requested is None
                else f"requested at {datetime.fromtimestamp(requested, UTC):%Y-%m-%d %H:%M:%S} UTC",
                last_error=state.last_error,
                last_error_at=_at(state.last_error_at),
                last_run_ids=[],
            )
        )
    return rows


def _interval(seconds: float) -> str:
    """Return ``30s``, ``5m``, ``1h30m``, ``250ms``: an interval as people write it."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    parts: list[str] = []
    rest = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


def _when(at: datetime | None, now: datetime) -> str:
    """Return ``01-02 03:00 (in 5m00s)`` in UTC, ``... (due)``, or ``at start``."""
    if at is None:
        return "at start"
    seconds = (at - now).total_seconds()
    stamp = at.strftime("%m-%d %H:%M")
    if seconds <= 0:
        return f"{stamp} (due)"
    return f"{stamp} (in {format_seconds(seconds)})"


@app.command("list")
def list_triggers(
    ctx: typer.Context,
    file: FileOption = None,
    module: ModuleOption = None,
    attribute: AttributeOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List each trigger: kind, next tick, last result and last error.

    Example: rivers triggers list -f pipeline.py
    """
    state: CliState = ctx.obj
    repository = load_repository(file, module, attribute)
    where = state.storage
    if where is None and repository.backend is not None:
        where = repository.backend.storage

    keys = [state_key("schedule", s.name) for s in repository.schedules]
    keys += [state_key("sensor", s.name) for s in repository.sensors]
    keys.append(state_key("automation", repository.name))

    async def read() -> dict[str, TriggerState]:
        async with existing_storage(where) as storage:
            return {
                key: TriggerState.from_stored(await storage.state.get_state(key))
                for key in keys
            }

    states: dict[str, TriggerState] = run_sync(read)
    now = time.time()
    rows = describe_triggers(repository, states, now)
    if as_json:
        print_json(rows)
        return
    if not rows:
        console().print(
            f"repository {safe(repository.name)} defines no schedules, sensors or "
            "automation conditions"
        )
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in (
        "TRIGGER",
        "KIND",
        "WHEN",
        "NEXT (UTC)",
        "LAST RESULT",
        "LAST ERROR",
    ):
        table.add_column(column, overflow="fold")
    current = datetime.fromtimestamp(now, UTC)
    for row in rows:
        table.add_row(
            safe(row.name),
            row.kind,
            safe(row.definition),
            _when(row.next_tick, current),
            safe(row.last_result or "-"),
            safe((row.last_error or "").splitlines()[0] if row.last_error else "-"),
        )
    console().print(table)
