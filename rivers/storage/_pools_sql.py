"""Pool and claim transactions (they run on the storage's connection thread).

A claim re-reads every named pool's effective limit and the sum of its unexpired
claims inside one ``BEGIN IMMEDIATE`` transaction, so no two processes sharing the
file can exceed a limit together. It also reads the pool's line (``pending_steps``
of live processes, by priority then arrival): a claim goes through only for a step
nobody in any process waits ahead of, so one line serves every process.

Every claim attempt on a pool takes the pool's next fencing token, so every grant
has a larger token than the grants before it. A claim freed by hand
while its holder may run is revoked, not deleted: it keeps counting until its
holder stops the step and releases it, or until its lease runs out (a revoked
claim is never renewed).

Transactions that may let another process's waiter in return that process's
owner id (``wake``): the caller wakes it once the transaction committed.

A pool with a rate also keeps a token bucket in its row (``rivers.core.rates``): a
claim that fits and leads the line is refused while the bucket holds no whole
token, saying when one is due (``rate_wait``); a grant takes one token of each
rate-limited pool in the same transaction, so processes sharing the file share
one bucket and never start more than it allows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rivers._liveness import STALE_AFTER_S, owner_is_alive
from rivers.core.rates import available, wait_s
from rivers.storage._pool_limits_sql import (
    RATE_COLUMNS,
    RateInForce,
    limit_of,
    limits_in_force,
    rate_of,
)
from rivers.storage.records import ClaimResult, PoolView

if TYPE_CHECKING:
    import sqlite3

__all__ = (
    "ClaimResult",  # re-exported from rivers.storage.records
    "PoolView",
    "claim",
    "pool_views",
    "reclaim_expired",
    "release",
    "renew",
    "revoke",
    "revoked_claims",
    "all_waiting_owners",
    "waiting_owners",
)


def pool_views(
    conn: sqlite3.Connection, pools: tuple[str, ...], now: float
) -> tuple[PoolView, ...]:
    """Return each pool's limit and unexpired claimed slots."""
    return tuple(
        PoolView(pool, limits_in_force(conn, pool)[0], _claimed(conn, pool, now))
        for pool in pools
    )


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
    priority: int = 0,
) -> ClaimResult:
    """Claim ``slots`` in every pool, or none of them (inside a transaction).

    Refused when a pool is full, or when a live waiter of another process stands
    ahead of this step in a pool's line (``behind``).
    """
    # Each attempt takes the pools' next fencing tokens (a refused one leaves a
    # gap) and reads their limits: one statement per pool, which also creates a
    # pool seen for the first time.
    tokens: list[int] = []
    limits: list[int | None] = []
    buckets: list[tuple[str, RateInForce, float, float]] = []
    for pool in pools:
        row = conn.execute(
            "INSERT INTO pools (name, updated_at, last_token) VALUES (?, ?, 1) "
            "ON CONFLICT (name) DO UPDATE SET last_token = pools.last_token + 1 "
            "RETURNING last_token, override_limit, declared_limit, default_limit, "
            f"{RATE_COLUMNS}, tokens, tokens_at",
            (pool, now),
        ).fetchone()
        tokens.append(row[0])
        limits.append(limit_of(conn, row[1], row[2], row[3])[0])
        in_force = rate_of(row[4], row[5], row[6], row[7])
        if in_force is not None:
            left = available(row[8], row[9], now, in_force.rate, in_force.burst)
            # Counted at the later of now and the last count: a claim whose clock
            # was read before another process's later claim committed must not
            # move the count back (and credit that time twice).
            buckets.append((pool, in_force, left, max(now, row[9] or now)))
    marks = ", ".join("?" * len(pools))
    # One read per pool gives its live claimed slots and whether a lease ran
    # out; the expired claims are deleted only when there are some (a DELETE
    # that finds nothing costs more than this read).
    views = []
    expired = False
    for pool, limit in zip(pools, limits, strict=True):
        claimed, earliest = conn.execute(
            "SELECT COALESCE(SUM(slots) FILTER (WHERE lease_expires_at > ?), 0), "
            "MIN(lease_expires_at) FROM pool_claims WHERE pool = ?",
            (now, pool),
        ).fetchone()
        views.append(PoolView(pool, limit, claimed))
        expired = expired or (earliest is not None and earliest <= now)
    reclaimed: tuple[tuple[str, str, str, int, str], ...] = ()
    if expired:
        reclaimed = tuple(
            (row[0], row[1], row[2], row[3], row[4])
            for row in conn.execute(
                f"DELETE FROM pool_claims WHERE pool IN ({marks}) "
                "AND lease_expires_at <= ? "
                "RETURNING pool, run_id, step_key, slots, owner",
                (*pools, now),
            )
        )
    for view in views:
        if view.limit is not None and (
            view.limit == 0 or view.claimed + slots > view.limit
        ):
            return ClaimResult(False, tuple(views), None, reclaimed)
    rate_wait = tuple(
        (pool, wait_s(left, in_force.rate))
        for pool, in_force, left, _ in buckets
        if left < 1.0
    )
    if rate_wait:
        return ClaimResult(False, tuple(views), None, reclaimed, rate_wait=rate_wait)
    # The common case, nobody waiting for these pools, costs one lookup.
    waiting = (
        conn.execute(
            f"SELECT 1 FROM pending_steps WHERE pool IN ({marks}) LIMIT 1", pools
        ).fetchone()
        is not None
    )
    if waiting:
        behind = _ahead_elsewhere(conn, pools, run_id, step_key, owner, priority, now)
        if behind:
            return ClaimResult(False, tuple(views), None, reclaimed, behind=behind)
    expires = now + lease_s
    conn.executemany(
        "INSERT INTO pool_claims "
        "(pool, run_id, step_key, slots, owner, claimed_at, lease_expires_at, token) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (pool, run_id, step_key) DO "
        "UPDATE SET slots = excluded.slots, owner = excluded.owner, claimed_at = "
        "excluded.claimed_at, lease_expires_at = excluded.lease_expires_at, "
        "token = excluded.token, revoked_at = NULL",
        [
            (pool, run_id, step_key, slots, owner, now, expires, token)
            for pool, token in zip(pools, tokens, strict=True)
        ],
    )
    if buckets:
        conn.executemany(
            "UPDATE pools SET tokens = ?, tokens_at = ? WHERE name = ?",
            [(left - 1.0, counted_at, pool) for pool, _, left, counted_at in buckets],
        )
    granted = tuple(PoolView(v.pool, v.limit, v.claimed + slots) for v in views)
    wake: frozenset[str] = frozenset()
    if waiting:
        conn.execute(
            "DELETE FROM pending_steps WHERE run_id = ? AND step_key = ?",
            (run_id, step_key),
        )
        roomy = tuple(v.pool for v in granted if v.limit is None or v.claimed < v.limit)
        wake = line_heads(conn, roomy, owner, now) if roomy else frozenset()
    return ClaimResult(
        True, granted, expires, reclaimed, tokens=tuple(tokens), wake=wake
    )


def _claimed(conn: sqlite3.Connection, pool: str, now: float) -> int:
    claimed: int = conn.execute(
        "SELECT COALESCE(SUM(slots), 0) FROM pool_claims "
        "WHERE pool = ? AND lease_expires_at > ?",
        (pool, now),
    ).fetchone()[0]
    return claimed


_LIVE = (
    "EXISTS (SELECT 1 FROM processes p WHERE p.owner = s.owner AND p.heartbeat_at > ?)"
)


_OTHERS_AHEAD = (
    "SELECT s.priority FROM pending_steps s WHERE s.pool = ? AND s.owner {} ? "
    "AND (s.priority > ? OR (s.priority = ? AND s.enqueued_at < ?)) "
    f"AND {_LIVE}"
)
_AHEAD = (
    f"SELECT MAX(priority) FROM ({_OTHERS_AHEAD.format('<')} UNION ALL "
    f"{_OTHERS_AHEAD.format('>')}) AS ahead"
)
"""The highest priority of another live owner's waiter ahead in a pool's line: two
ranges of ``pending_steps_by_owner`` around this owner, never this owner's rows."""


def _ahead_elsewhere(
    conn: sqlite3.Connection,
    pools: tuple[str, ...],
    run_id: str,
    step_key: str,
    owner: str,
    priority: int,
    now: float,
) -> tuple[tuple[str, int], ...]:
    """Return (pool, priority) of another process's live waiter ahead in each line.

    A step that waits is placed by its pending row; one that does not is a
    newcomer (arriving now). Waiters of this process are ordered by its own
    PoolManager, which never lets a step overtake a local waiter.
    """
    row = conn.execute(
        "SELECT priority, enqueued_at FROM pending_steps "
        "WHERE run_id = ? AND step_key = ? LIMIT 1",
        (run_id, step_key),
    ).fetchone()
    mine, arrived = (priority, now) if row is None else (row[0], row[1])
    behind = []
    live_since = now - STALE_AFTER_S
    for pool in pools:
        ahead = conn.execute(
            _AHEAD, (pool, owner, mine, mine, arrived, live_since) * 2
        ).fetchone()[0]
        if ahead is not None:
            behind.append((pool, ahead))
    return tuple(behind)


def line_heads(
    conn: sqlite3.Connection, pools: tuple[str, ...], owner: str, now: float
) -> frozenset[str]:
    """Return the other live owners whose waiters lead the lines of ``pools``."""
    heads = set()
    for pool in pools:
        row = conn.execute(
            f"SELECT s.owner FROM pending_steps s WHERE s.pool = ? AND {_LIVE} "
            "ORDER BY s.priority DESC, s.enqueued_at LIMIT 1",
            (pool, now - STALE_AFTER_S),
        ).fetchone()
        if row is not None and row[0] != owner:
            heads.add(row[0])
    return frozenset(heads)


def all_waiting_owners(conn: sqlite3.Connection) -> frozenset[str]:
    """Return every owner with a step waiting for any pool."""
    rows = conn.execute("SELECT DISTINCT owner FROM pending_steps").fetchall()
    return frozenset(owner for (owner,) in rows)


def waiting_owners(conn: sqlite3.Connection, pool: str) -> frozenset[str]:
    """Return every owner with a step waiting for ``pool``."""
    rows = conn.execute(
        "SELECT DISTINCT owner FROM pending_steps WHERE pool = ?", (pool,)
    )
    return frozenset(row[0] for row in rows)


def release(
    conn: sqlite3.Connection,
    run_id: str,
    step_key: str | None,
    *,
    pending: bool = True,
) -> list[tuple[str, str, str, int, float]]:
    """Delete claims (and pending rows); return (pool, run, step, slots, claimed_at).

    For the holder's own release only: ``revoke`` frees another's claim. A step
    that held its claim has no pending row (the grant deleted it): its release may
    pass ``pending=False``.
    """
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
    if pending:
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

    An expired lease is not revived: other processes already stopped counting it;
    nor is a revoked one: its holder must stop.
    """
    renewed: set[tuple[str, str]] = set()
    for run_id, step_key in keys:
        changed = conn.execute(
            "UPDATE pool_claims SET lease_expires_at = ? "
            "WHERE run_id = ? AND step_key = ? AND owner = ? AND lease_expires_at > ? "
            "AND revoked_at IS NULL",
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


def revoke(
    conn: sqlite3.Connection, run_id: str, step_key: str | None, now: float
) -> tuple[int, frozenset[str]]:
    """Free claims by hand; return (slots freed or revoked, owners to wake).

    A claim whose holder is certainly gone (its process ended, on this host) or
    whose lease already ran out is deleted. Any other claim is revoked: it keeps
    counting until its holder stops the step and releases it, or until its lease
    runs out. The holders, and the waiters the deleted claims let in, are woken.
    Pending rows of the run (or step) are deleted, as by a release.
    """
    params: tuple[str, ...] = (run_id,) if step_key is None else (run_id, step_key)
    and_step = "" if step_key is None else " AND step_key = ?"
    and_c_step = "" if step_key is None else " AND c.step_key = ?"
    rows = conn.execute(
        "SELECT c.pool, c.step_key, c.slots, c.owner, c.lease_expires_at, "
        "p.heartbeat_at FROM pool_claims c LEFT JOIN processes p ON p.owner = c.owner "
        f"WHERE c.run_id = ?{and_c_step}",
        params,
    ).fetchall()
    conn.execute(f"DELETE FROM pending_steps WHERE run_id = ?{and_step}", params)
    slots = 0
    holders: set[str] = set()
    freed: set[str] = set()
    for pool, step, count, owner, expires, heartbeat_at in rows:
        key = (pool, run_id, step)
        if expires > now and owner_is_alive(owner, heartbeat_at, now, STALE_AFTER_S):
            conn.execute(
                "UPDATE pool_claims SET revoked_at = ? "
                "WHERE pool = ? AND run_id = ? AND step_key = ? AND revoked_at IS NULL",
                (now, *key),
            )
            holders.add(owner)
        else:
            conn.execute(
                "DELETE FROM pool_claims WHERE pool = ? AND run_id = ? AND step_key = ?",
                key,
            )
            freed.add(pool)
        if expires > now:
            slots += count
    wake = holders | line_heads(conn, tuple(sorted(freed)), "", now)
    return slots, frozenset(wake)


def revoked_claims(conn: sqlite3.Connection, owner: str) -> set[tuple[str, str]]:
    """Return the (run, step) of ``owner``'s claims that were revoked."""
    rows = conn.execute(
        "SELECT run_id, step_key FROM pool_claims "
        "WHERE owner = ? AND revoked_at IS NOT NULL",
        (owner,),
    )
    return {(row[0], row[1]) for row in rows}
