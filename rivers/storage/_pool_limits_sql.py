"""Which limit a pool has, and where it comes from: the one place of that rule.

In order, the first that is set wins:

1. ``override``: ``rivers pools set`` / ``storage.set_pool_limit`` (per pool);
2. ``repository``: the ``pool_limits`` of a repository naming the pool (its
   limit in force, for a ``PoolLimit`` with time windows);
3. ``default``: the stored default, ``rivers pools set-default`` /
   ``storage.set_default_pool_limit`` (every pool, storage-wide);
4. ``default``: the ``default_pool_limit`` of a repository naming the pool;
5. none: the pool is unlimited.

A pool's rate (``rivers.core.rates``) comes from its override if one sets a rate
(``rivers pools set NAME LIMIT --rate R``; ``--rate none`` lifts a declared rate),
else from the repository's ``PoolLimit(rate=)``; no default rate exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rivers.core.rates import NO_RATE, Rate, available, parse_rate, wait_s
from rivers.storage.records import PoolInfo

if TYPE_CHECKING:
    import sqlite3

__all__ = (
    "RATE_COLUMNS",
    "RateInForce",
    "clear_stored_default",
    "limit_of",
    "limits_in_force",
    "pool_infos",
    "rate_of",
    "set_stored_default",
    "stored_default",
)


RATE_COLUMNS = "override_rate, override_burst, declared_rate, declared_burst"
"""The ``pools`` columns ``rate_of`` reads, in its argument order."""


@dataclass(frozen=True, slots=True)
class RateInForce:
    """A pool's rate, its bucket's size, and where the rate comes from."""

    rate: Rate
    burst: int
    source: str


def rate_of(
    override_rate: str | None,
    override_burst: int | None,
    declared_rate: str | None,
    declared_burst: int | None,
) -> RateInForce | None:
    """Return a pool's rate in force from its row (None: starts are not limited)."""
    if override_rate is not None:
        if override_rate == NO_RATE:
            return None
        return RateInForce(parse_rate(override_rate), override_burst or 1, "override")
    if declared_rate is not None:
        return RateInForce(parse_rate(declared_rate), declared_burst or 1, "repository")
    return None


def stored_default(conn: sqlite3.Connection) -> int | None:
    """Return the storage-wide default pool limit, if one is set."""
    row = conn.execute("SELECT default_limit FROM pool_default WHERE id = 1").fetchone()
    return None if row is None else int(row[0])


def set_stored_default(conn: sqlite3.Connection, limit: int, now: float) -> None:
    conn.execute(
        "INSERT INTO pool_default (id, default_limit, updated_at) VALUES (1, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET default_limit = excluded.default_limit, "
        "updated_at = excluded.updated_at",
        (limit, now),
    )


def clear_stored_default(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM pool_default WHERE id = 1")


def limit_of(
    conn: sqlite3.Connection,
    override: int | None,
    declared: int | None,
    repository_default: int | None,
) -> tuple[int | None, str | None]:
    """Return a pool's limit and its source from its row's three columns (the
    stored default is read only when neither an override nor a declared limit is
    set)."""
    if override is not None:
        return override, "override"
    if declared is not None:
        return declared, "repository"
    default = stored_default(conn)
    if default is None:
        default = repository_default
    return (None, None) if default is None else (default, "default")


def limits_in_force(
    conn: sqlite3.Connection, pool: str
) -> tuple[int | None, RateInForce | None]:
    """Return ``pool``'s limit and rate now (a change wakes its waiters)."""
    row = conn.execute(
        "SELECT override_limit, declared_limit, default_limit, "
        f"{RATE_COLUMNS} FROM pools WHERE name = ?",
        (pool,),
    ).fetchone()
    if row is None:
        return limit_of(conn, None, None, None)[0], None
    return limit_of(conn, *row[:3])[0], rate_of(*row[3:])


def pool_infos(
    conn: sqlite3.Connection, name: str | None, now: float
) -> list[PoolInfo]:
    """Return every known pool (or the one named; an unknown name has zero counts
    and the stored default, if any): limit and source, claimed and pending."""
    where = "" if name is None else "WHERE p.name = ?"
    params: list[object] = [now]
    if name is not None:
        params.append(name)
    rows = conn.execute(
        "SELECT p.name, p.override_limit, p.declared_limit, p.default_limit, "
        f"{RATE_COLUMNS}, p.tokens, p.tokens_at, "
        "(SELECT COALESCE(SUM(c.slots), 0) FROM pool_claims c "
        " WHERE c.pool = p.name AND c.lease_expires_at > ?), "
        "(SELECT COUNT(*) FROM pending_steps s WHERE s.pool = p.name) "
        f"FROM pools p {where} ORDER BY p.name",
        params,
    ).fetchall()
    if not rows and name is not None:
        rows = [(name, None, None, None, None, None, None, None, None, None, 0, 0)]
    infos = []
    for row in rows:
        pool, override, declared, default = row[:4]
        limit, source = limit_of(conn, override, declared, default)
        in_force = rate_of(*row[4:8])
        tokens = None
        if in_force is not None:
            tokens = available(row[8], row[9], now, in_force.rate, in_force.burst)
        infos.append(
            PoolInfo(
                name=pool,
                limit=limit,
                limit_source=source,
                claimed_slots=row[10],
                pending_steps=row[11],
                rate=None if in_force is None else in_force.rate.text,
                rate_source=None if in_force is None else in_force.source,
                burst=None if in_force is None else in_force.burst,
                tokens=None if tokens is None else round(tokens, 3),
                next_token_in_s=(
                    None
                    if in_force is None or tokens is None
                    else round(wait_s(tokens, in_force.rate), 3)
                ),
            )
        )
    return infos
