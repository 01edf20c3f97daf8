"""The pure rule of pool-aware admission: a run's roots, their room, the reason."""

from __future__ import annotations

from rivers.core.pool_admission import (
    ROOTS_TAG,
    UNBOUNDED,
    RootsIndex,
    pool_room,
    pools_blocked_reason,
    roots_key,
    roots_of,
)

UPSTREAM = {"extract": (), "load": ("extract",), "ping": (), "report": ("load",)}
POOLS = {"extract": ("db",), "load": ("db", "wh"), "ping": (), "report": ("wh",)}


def test_roots_are_the_pools_of_the_steps_with_no_upstream_in_the_run() -> None:
    assert roots_of(["extract", "load"], UPSTREAM, POOLS) == (("db",),)
    assert roots_of(["load", "report"], UPSTREAM, POOLS) == (("db", "wh"),)
    assert roots_of(["extract", "ping"], UPSTREAM, POOLS) is None  # ping: no pool
    assert roots_key((("db",), ("db", "wh"))) == "db|db,wh"


def test_room_is_the_most_free_slots_of_any_root_at_its_fullest_pool() -> None:
    views = {"db": (4, 3), "wh": (2, 2)}
    assert pool_room((("db",),), views, buffer=0) == 1
    assert pool_room((("db",),), views, buffer=1) == 0
    assert pool_room((("db", "wh"),), views, buffer=0) == 0  # wh is full
    assert pool_room((("db", "wh"), ("db",)), views, buffer=0) == 1
    assert pool_room((("free",),), views, buffer=0) >= UNBOUNDED - 1  # unlimited


def test_the_reason_names_the_full_pools_and_the_buffer() -> None:
    views = {"db": (4, 3), "wh": (2, 2)}
    assert pools_blocked_reason((("db", "wh"),), views, 0) == (
        "its first steps all wait on full pools: wh 2/2"
    )
    assert pools_blocked_reason((("db",),), views, 1) == (
        "its first steps all wait on full pools: db 3/4 (with pool_slot_buffer 1)"
    )


def test_the_index_counts_each_roots_bucket_full_exactly_when_no_room_is_left() -> None:
    index = RootsIndex(lambda selection: roots_of(selection or [], UPSTREAM, POOLS), 0)
    key = index.key_of(["extract", "load"])
    assert key == "db"
    assert index.key_of(["extract", "ping"]) is None
    assert index.pools() == ["db"]
    rule = index.rule("db")
    bucket = rule.bucket({ROOTS_TAG: "db"})
    assert bucket is not None
    full = index.counts({"db": (2, 2)})
    assert rule.blocked_reason(bucket, full[bucket]) is not None
    room_two = index.counts({"db": (2, 0)})
    assert rule.blocked_reason(bucket, room_two[bucket]) is None
    assert rule.blocked_reason(bucket, room_two[bucket] + 1) is None  # one admitted
    assert rule.blocked_reason(bucket, room_two[bucket] + 2) is not None  # two
