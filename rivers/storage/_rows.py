"""Decoding stored rows into records, and the query that reads runs: one place for
every storage module."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from rivers.storage.records import Event, RunRecord, RunStatus, from_timestamp

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = (
    "RUN_COLUMNS",
    "decode_dict",
    "decode_list",
    "decode_tags",
    "event",
    "run_record",
    "runs_query",
)

RUN_COLUMNS = (
    "run_id, status, tags, selection, priority, created_at, started_at, ended_at, "
    "reason, repository, run_key, owner, fingerprint"
)
"""The ``runs`` columns ``run_record`` reads, in its order."""

decode_dict = msgspec.json.Decoder(dict[str, Any]).decode
decode_tags = msgspec.json.Decoder(dict[str, str]).decode
decode_list = msgspec.json.Decoder(list[str] | None).decode


def event(row: tuple[Any, ...]) -> Event:
    """(event_id, kind, run_id, step_key, timestamp, data) -> Event."""
    return Event(
        event_id=row[0],
        kind=row[1],
        run_id=row[2],
        step_key=row[3],
        timestamp=from_timestamp(row[4]),  # type: ignore[arg-type]  # NOT NULL
        data=decode_dict(row[5]),
    )


def run_record(row: tuple[Any, ...]) -> RunRecord:
    """A ``runs`` row in ``RUN_COLUMNS`` order -> RunRecord."""
    return RunRecord(
        run_id=row[0],
        status=RunStatus(row[1]),
        tags=decode_tags(row[2]),
        selection=None if row[3] is None else decode_list(row[3]),
        priority=row[4],
        created_at=from_timestamp(row[5]),  # type: ignore[arg-type]  # NOT NULL
        started_at=from_timestamp(row[6]),
        ended_at=from_timestamp(row[7]),
        reason=row[8],
        repository=row[9],
        run_key=row[10],
        owner=row[11],
        fingerprint=row[12],
    )


def runs_query(
    status: RunStatus | str | Iterable[RunStatus | str] | None,
    tags: Mapping[str, str | Sequence[str]] | None,
    limit: int | None,
) -> tuple[str, list[Any]]:
    """The query of ``get_runs`` (newest first; ``runs_by_status_created`` serves a
    status filter without sorting every run of that status)."""
    where: list[str] = []
    params: list[Any] = []
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        values = [RunStatus(s).value for s in statuses]
        where.append(f"status IN ({', '.join('?' * len(values))})")
        params.extend(values)
    for key, value in (tags or {}).items():
        values = [value] if isinstance(value, str) else list(value)
        if not values:
            where.append("0")  # no value is allowed: nothing matches
            continue
        where.append(
            "run_id IN (SELECT run_id FROM run_tags WHERE key = ? AND value IN "
            f"({', '.join('?' * len(values))}))"
        )
        params.extend([key, *values])
    sql = f"SELECT {RUN_COLUMNS} FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, run_id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return sql, params
