"""``SqlEvents``: the ``EventStore`` of both backends (SQLite, PostgreSQL). The
event log, appended in batches that also project step rows and materializations,
read in order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from rivers.messages import EventBody, event_data, event_kind
from rivers.storage import _rows
from rivers.storage._run_changes import apply_run_change
from rivers.storage._step_rows import UPSERT_STEP, StepRow, fold_step_rows, step_row
from rivers.storage.records import Event, RunChange, from_timestamp

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Sequence

    from rivers.storage._connection import SqlConnection

__all__ = ("SqlEvents",)

_encode = msgspec.json.Encoder().encode


class SqlEvents:
    """The event log in SQL (the ``EventStore`` role)."""

    def __init__(self, db: SqlConnection) -> None:
        self._db = db

    async def append_events(
        self, batch: Sequence[tuple[EventBody, float]]
    ) -> list[Event]:
        """Write events (body, wall time) in one transaction; return them with ids.

        Step events also update the step's row, and ``STEP_SUCCESS`` records the
        asset's materialization, in the same transaction.
        """
        return (await self.write_batch(batch, ()))[0]

    async def write_batch(
        self, batch: Sequence[tuple[EventBody, float]], changes: Sequence[RunChange]
    ) -> tuple[list[Event], list[bool]]:
        """Write events (as ``append_events``) and run changes in one transaction.

        Returns the stored events (the batch's, then the event of each change that
        applied) and whether each change applied.
        """
        prepared = _prepare_events(batch)

        def write(
            conn: sqlite3.Connection,
        ) -> tuple[int, list[_Prepared], int, list[bool]]:
            first = _insert_events(conn, prepared) if prepared else 0
            applied = [apply_run_change(conn, change) for change in changes]
            logged = _prepare_events(
                (c.event, c.at)
                for c, ok in zip(changes, applied, strict=True)
                if ok and c.event is not None
            )
            return first, logged, _insert_events(conn, logged) if logged else 0, applied

        first, logged, later, applied = await self._db.write(write)
        return _stored_events(first, prepared) + _stored_events(later, logged), applied

    async def get_events(
        self,
        run_id: str | None = None,
        after: int | None = None,
        limit: int | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[Event]:
        """Return events oldest first: of one run, after an event id, of some kinds."""
        sql, params = _rows.events_query(run_id, after, limit, kinds)

        def read(conn: sqlite3.Connection) -> list[Event]:
            return [_rows.event(row) for row in conn.execute(sql, params)]

        return await self._db.call(read)


_Prepared = tuple[str, str, str | None, float, dict[str, Any]]


def _prepare_events(batch: Iterable[tuple[EventBody, float]]) -> list[_Prepared]:
    return [
        (
            event_kind(body),
            body.run_id,
            getattr(body, "step_key", None),
            at,
            event_data(body),
        )
        for body, at in batch
    ]


def _insert_events(conn: sqlite3.Connection, prepared: list[_Prepared]) -> int:
    """Insert events and their projections; return the first event id."""
    first: int = conn.execute(
        "SELECT COALESCE(MAX(event_id), 0) + 1 FROM events"
    ).fetchone()[0]
    conn.executemany(
        "INSERT INTO events (event_id, kind, run_id, step_key, timestamp, data) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (first + i, kind, run_id, step_key, at, _encode(data))
            for i, (kind, run_id, step_key, at, data) in enumerate(prepared)
        ],
    )
    steps: list[StepRow] = []
    materialized: list[tuple[Any, ...]] = []
    for i, (kind, run_id, step_key, at, data) in enumerate(prepared):
        row = step_row(kind, run_id, step_key, at, data)
        if row is None:
            continue
        steps.append(row)
        if kind == "STEP_SUCCESS":
            materialized.append((step_key, run_id, first + i, at))
    if steps:
        conn.executemany(UPSERT_STEP, fold_step_rows(steps))
    if materialized:
        conn.executemany(
            "INSERT INTO materializations (asset_key, run_id, event_id, materialized_at) "
            "VALUES (?, ?, ?, ?)",
            materialized,
        )
    return first


def _stored_events(first: int, prepared: list[_Prepared]) -> list[Event]:
    return [
        Event(
            event_id=first + i,
            kind=kind,
            run_id=run_id,
            step_key=step_key,
            timestamp=from_timestamp(at),  # type: ignore[arg-type]  # never None
            data=data,
        )
        for i, (kind, run_id, step_key, at, data) in enumerate(prepared)
    ]
