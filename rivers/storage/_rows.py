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
    "events_query",
    "run_id_queries",
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


NEWEST_FIRST = "created_at DESC, run_id DESC"


def runs_query(
    status: RunStatus | str | Iterable[RunStatus | str] | None,
    tags: Mapping[str, str | Sequence[str]] | None,
    limit: int | None,
) -> tuple[str, list[Any]]:
    """The query of ``get_runs`` (newest first; ``runs_by_status_created`` serves a
    status filter without sorting every run of that status, ``_tagged_runs`` a tag
    filter)."""
    where: list[str] = []
    params: list[Any] = []
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        values = [RunStatus(s).value for s in statuses]
        where.append(f"runs.status IN ({', '.join('?' * len(values))})")
        params.extend(values)
    wanted = {
        key: [value] if isinstance(value, str) else list(value)
        for key, value in (tags or {}).items()
    }
    if not all(wanted.values()):
        where.append("0")  # a key allows no value: nothing matches
    elif wanted:
        return _tagged_runs(where, params, wanted, limit)
    return _select(
        f"SELECT {RUN_COLUMNS} FROM runs", where, params, NEWEST_FIRST, limit
    )


def _tagged_runs(
    where: list[str], params: list[Any], tags: dict[str, list[str]], limit: int | None
) -> tuple[str, list[Any]]:
    """Runs with tags, newest first: each value of the first key is a range of
    ``run_tags_by_tag_created`` (schema 11) read in creation order and stopped at
    ``limit`` matches; the other keys are looked up per run in ``run_tags``'s
    primary key. Collecting every run with the tag, then sorting, took 600 ms for
    ``--tag env=prod`` over a million runs."""
    (key, values), *others = tags.items()
    for other, allowed in others:
        where.append(
            "EXISTS (SELECT 1 FROM run_tags o WHERE o.run_id = runs.run_id "
            f"AND o.key = ? AND o.value IN ({', '.join('?' * len(allowed))}))"
        )
        params.extend([other, *allowed])
    columns = ", ".join(f"runs.{column}" for column in RUN_COLUMNS.split(", "))
    ranges: list[str] = []
    all_params: list[Any] = []
    for value in values:
        sql, value_params = _select(
            f"SELECT {columns} FROM run_tags t CROSS JOIN runs "
            "ON runs.run_id = t.run_id",
            ["t.key = ?", "t.value = ?", *where],
            [key, value, *params],
            "t.created_at DESC, t.run_id DESC",
            limit,
        )
        ranges.append(f"SELECT * FROM ({sql}) AS r{len(ranges)}")
        all_params.extend(value_params)
    return _select(" UNION ALL ".join(ranges), [], all_params, NEWEST_FIRST, limit)


def _select(
    select: str, where: list[str], params: list[Any], order: str, limit: int | None
) -> tuple[str, list[Any]]:
    """``select`` with the conditions ``where`` (all must hold), ordered and limited."""
    sql = select
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {order}"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return sql, params


EVENT_COLUMNS = "event_id, kind, run_id, step_key, timestamp, data"
"""The ``events`` columns ``event`` reads, in its order."""


def events_query(
    run_id: str | None,
    after: int | None,
    limit: int | None,
    kinds: Iterable[str] | None,
) -> tuple[str, list[Any]]:
    """The query of ``get_events`` (oldest first).

    A run's events are read from ``events_by_run`` even when kinds are asked for
    ('+kind'): ``events_by_kind`` gives id order too, so SQLite walked every event
    of the kinds in the storage instead (``runs logs`` of one run: 1.1 s over
    10,000,000 events, 1,500,000 of them log lines).
    """
    where: list[str] = []
    params: list[Any] = []
    if run_id is not None:
        where.append("run_id = ?")
        params.append(run_id)
    if after is not None:
        where.append("event_id > ?")
        params.append(after)
    if kinds is not None:
        kind_list = list(kinds)
        column = "kind" if run_id is None else "+kind"
        where.append(f"{column} IN ({', '.join('?' * len(kind_list))})")
        params.extend(kind_list)
    return _select(
        f"SELECT {EVENT_COLUMNS} FROM events", where, params, "event_id", limit
    )


ID_TAIL = 4
"""How many of a run id's last characters ``runs_by_id_tail`` (schema 10) indexes."""


def run_id_queries(fragment: str, limit: int) -> list[tuple[str, list[Any]]]:
    """The queries of ``find_run_ids``: (created_at, run_id) of up to ``limit`` runs
    whose id begins with ``fragment`` (a range of the primary key), and of those
    whose id ends with it (``runs_by_id_tail``; a shorter fragment reads every run).
    """
    size = len(fragment)
    # The range narrows the primary key to the ids that begin with the fragment
    # (every one but an id continuing with the last code point, U+10FFFF).
    prefix = (
        "SELECT created_at, run_id FROM runs WHERE run_id >= ? AND run_id < ? "
        "AND substr(run_id, 1, ?) = ? ORDER BY created_at DESC LIMIT ?"
    )
    queries = [(prefix, [fragment, fragment + "\U0010ffff", size, fragment, limit])]
    tail = f"substr(run_id, -{ID_TAIL}) = ? AND " if size >= ID_TAIL else ""
    suffix = (
        f"SELECT created_at, run_id FROM runs WHERE {tail}substr(run_id, -?) = ? "
        "ORDER BY created_at DESC LIMIT ?"
    )
    params = [fragment[-ID_TAIL:]] if tail else []
    queries.append((suffix, [*params, size, fragment, limit]))
    return queries
