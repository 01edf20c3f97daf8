"""Pool and claim transactions (they run on the storage's connection thread).

A claim re-reads every named pool's effective limit and the sum of its unexpired
claims inside one ``BEGIN IMMEDIATE`` transaction, so no two processes sharing the
file can exceed a limit together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

__all__ = (
    "ClaimResult",
    "PoolView",
    "claim",
    "effective_limit",
    "pool_views",
    "reclaim_expired",
    "release",
    "renew",
)


@dataclass(frozen=True, slots=True)
class PoolView:
    """A pool's effective limit (None: unlimited) and live claimed slots."""

    pool: str
    limit: int | None
    claimed: int


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """Whether a claim was written, what each pool looked like, and the lease end."""

    granted: bool
    views: tuple[PoolView, ...]
    lease_expires_at: float | None
    reclaimed: tuple[tuple[str, str, str, int, str], ...] = ()


def effective_limit(conn: sqlite3.Connection, pool: str) -> int | None:
    """Return the override if set, else the declared limit, else None (unlimited)."""
    row = conn.execute(
        "SELECT override_limit, declared_limit FROM pools WHERE name = ?", (pool,)
    ).fetchone()
    if row is None:
        return None
    limit: int | None = row[0] if row[0] is not None else row[1]
    return limit


def pool_views(
    conn: sqlite3.Connection, pools: tuple[str, ...], now: float
) -> tuple[PoolView, ...]:
    """Return each pool's limit and unexpired claimed slots."""
    views = []
    for pool in pools:
        claimed = conn.execute(
            "SELECT COALESCE(SUM(slots), 0) FROM pool_claims "
            "WHERE pool = ? AND lease_expires_at > ?",
            (pool, now),
        ).fetchone()[0]
        views.append(PoolView(pool, effective_limit(conn, pool), claimed))
    return tuple(views)


def claim(
    conn: sqlite3.Connection,
    *,
    run_id: str,
    step_key: str,
    pools: tuple[str, ...],
    slots: int,
    owner: str,
    now: float,
    lease_s: float,
) -> ClaimResult:
    """Claim ``slots`` in every pool, or none of them (inside a transaction)."""
    for pool in pools:
        conn.execute(
            "INSERT INTO pools (name, updated_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (pool, now),
        )
    marks = ", ".join("?" * len(pools))
    reclaimed: tuple[tuple[str, str, str, int, str], ...] = tuple(
        (row[0], row[1], row[2], row[3], row[4])
        for row in conn.execute(
            f"DELETE FROM pool_claims WHERE pool IN ({marks}) AND lease_expires_at <= ? "
            "RETURNING pool, run_id, step_key, slots, owner",
            (*pools, now),
        )
    )
    views = pool_views(conn, pools, now)
    for view in views:
        if view.limit is not None and (
            view.limit == 0 or view.claimed + slots > view.limit
        ):
            return ClaimResult(False, views, None, reclaimed)
    expires = now + lease_s
    conn.executemany(
        "INSERT OR REPLACE INTO pool_claims "
        "(pool, run_id, step_key, slots, owner, claimed_at, lease_expires_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(pool, run_id, step_key, slots, owner, now, expires) for pool in pools],
    )
    conn.execute(
        "DELETE FROM pending_steps WHERE run_id = ? AND step_key = ?",
        (run_id, step_key),
    )
    granted = tuple(PoolView(v.pool, v.limit, v.claimed + slots) for v in views)
    return ClaimResult(True, granted, expires, reclaimed)


def release(
    conn: sqlite3.Connection, run_id: str, step_key: str | None
) -> list[tuple[str, str, str, int, float]]:
    """Delete claims (and pending rows); return (pool, run, step, slots, claimed_at)."""
    params: tuple[str, ...]
    if step_key is None:
        where, params = "run_id = ?", (run_id,)
    else:
        where, params = "run_id = ? AND step_key = ?", (run_id, step_key)
    rows = conn.execute(
        f"DELETE FROM pool_claims WHERE {where} "
        "RETURNING pool, run_id, step_key, slots, claimed_at",
        params,
    ).fetchall()
    conn.execute(f"DELETE FROM pending_steps WHERE {where}", params)
    return [tuple(row) for row in rows]


def renew(
    conn: sqlite3.Connection,
    owner: str,
    keys: list[tuple[str, str]],
    now: float,
    lease_s: float,
) -> set[tuple[str, str]]:
    """Extend the unexpired leases of ``keys``; return the keys that were renewed.

    An expired lease is not revived: other processes already stopped counting it.
    """
    renewed: set[tuple[str, str]] = set()
    for run_id, step_key in keys:
        changed = conn.execute(
            "UPDATE pool_claims SET lease_expires_at = ? "
            "WHERE run_id = ? AND step_key = ? AND owner = ? AND lease_expires_at > ?",
            (now + lease_s, run_id, step_key, owner, now),
        ).rowcount
        if changed:
            renewed.add((run_id, step_key))
    return renewed


def reclaim_expired(
    conn: sqlite3.Connection, now: float
) -> list[tuple[str, str, str, int, str]]:
    """Delete claims whose lease ended; return (pool, run, step, slots, owner)."""
    rows = conn.execute(
        "DELETE FROM pool_claims WHERE lease_expires_at <= ? "
        "RETURNING pool, run_id, step_key, slots, owner",
        (now,),
    ).fetchall()
    return [tuple(row) for row in rows]
