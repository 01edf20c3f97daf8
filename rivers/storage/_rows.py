"""Decoding stored rows into records: one place for every storage module."""

from __future__ import annotations

from typing import Any

import msgspec

from rivers.storage.records import Event, RunRecord, RunStatus, from_timestamp

__all__ = (
    "RUN_COLUMNS",
    "decode_dict",
    "decode_list",
    "decode_tags",
    "event",
    "run_record",
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
