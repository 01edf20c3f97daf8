"""PoolStore: claims, limits, lines, leases, tokens, reclaim, free and revoke."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from rivers._clock import ManualClock
from rivers._ids import this_owner
from rivers.storage.base import StorageBackend
from tests.storage.contract._helpers import T0
from tests.storage.contract.conftest import OpenStore


async def _claim(storage: StorageBackend, step: str, owner: str) -> bool:
    result = await storage.pools.claim_pool_slots(
        run_id="r", step_key=step, pools=("db",), slots=1, owner=owner, lease_s=60
    )
    return result.granted


async def test_freeing_a_live_holders_claim_revokes_it_until_the_lease_ends(
    open_store: OpenStore,
) -> None:
    clock = ManualClock(T0)
    me = this_owner()  # a live process on this host, but no runtime answers
    async with open_store(clock=clock) as storage:
        await storage.pools.set_pool_limit("db", 1)
        assert await _claim(storage, "held", me)
        assert await storage.pools.free_pool_slots("r", "held") == 1
        assert await storage.pools.get_revoked_claims(me) == {("r", "held")}
        # Still counted: the holder must stop before anyone else gets the slot.
        assert (await storage.pools.get_pool_info("db")).claimed_slots == 1
        assert not await _claim(storage, "next", me)
        clock.advance(30)
        assert await storage.pools.renew_leases(me, [("r", "held")], 60) == set()
        clock.advance(31)  # the lease, never renewed, ran out
        assert await _claim(storage, "next", me)


async def test_freeing_a_claim_whose_process_is_gone_frees_it_at_once(
    open_store: OpenStore,
) -> None:
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # its pid is free now: the owner id names a process that is gone
    gone = f"{socket.gethostname()}:{ended.pid}:0"
    async with open_store() as storage:
        await storage.pools.set_pool_limit("db", 1)
        assert await _claim(storage, "held", gone)
        assert await storage.pools.free_pool_slots("r") == 1
        assert (await storage.pools.get_pool_info("db")).claimed_slots == 0
        assert await _claim(storage, "next", this_owner())


async def test_every_grant_of_a_pool_takes_a_larger_fencing_token(
    open_store: OpenStore,
) -> None:
    async with open_store() as storage:
        tokens = []
        for step in ("a", "b", "c"):
            result = await storage.pools.claim_pool_slots(
                run_id="r",
                step_key=step,
                pools=("db", "api"),
                slots=1,
                owner=this_owner(),
                lease_s=60,
            )
            tokens.append(result.tokens)
            await storage.pools.release_pool_slots("r", step)
    assert tokens == [(1, 1), (2, 2), (3, 3)]


async def _claim_slots(
    storage: StorageBackend,
    step: str,
    slots: int,
    owner: str = "o",
    lease_s: float = 60,
) -> bool:
    result = await storage.pools.claim_pool_slots(
        run_id="r",
        step_key=step,
        pools=("db",),
        slots=slots,
        owner=owner,
        lease_s=lease_s,
    )
    return result.granted


async def test_a_claim_is_granted_within_the_limit_and_refused_beyond(
    storage: StorageBackend,
) -> None:
    await storage.pools.declare_pools({"db": 3}, declared_by="repo")
    assert await _claim_slots(storage, "a", 2)
    assert not await _claim_slots(storage, "b", 2)  # 2 + 2 > 3
    assert await _claim_slots(storage, "c", 1)
    info = await storage.pools.get_pool_info("db")
    assert (info.limit, info.limit_source, info.claimed_slots) == (3, "repository", 3)
    holders = await storage.pools.get_pool_slot_holders("db")
    assert sorted((h.step_key, h.slots) for h in holders) == [("a", 2), ("c", 1)]
    released = await storage.pools.release_pool_slots("r", "a")
    assert [(row[0], row[2], row[3]) for row in released] == [("db", "a", 2)]
    assert await _claim_slots(storage, "b", 2)


async def test_an_override_wins_over_the_declared_limit_until_cleared(
    storage: StorageBackend,
) -> None:
    await storage.pools.declare_pools({"db": 1}, declared_by="repo")
    await storage.pools.set_pool_limit("db", 4)
    info = await storage.pools.get_pool_info("db")
    assert (info.limit, info.limit_source) == (4, "override")
    await storage.pools.declare_pools({"db": 2}, declared_by="repo")  # a restart
    assert (await storage.pools.get_pool_info("db")).limit == 4
    await storage.pools.clear_pool_limit("db")
    info = await storage.pools.get_pool_info("db")
    assert (info.limit, info.limit_source) == (2, "repository")
    (view,) = await storage.pools.get_pool_views(["db"])
    assert (view.pool, view.limit, view.claimed) == ("db", 2, 0)


async def test_defaults_apply_to_pools_with_no_override_and_no_declared_limit(
    storage: StorageBackend,
) -> None:
    pools = storage.pools
    await pools.declare_pools({"db": None, "wh": 5}, declared_by="r", default_limit=1)
    assert [
        (i.name, i.limit, i.limit_source) for i in await pools.get_all_pool_infos()
    ] == [
        ("db", 1, "default"),
        ("wh", 5, "repository"),
    ]
    assert await _claim_slots(storage, "a", 1)
    assert not await _claim_slots(storage, "b", 1)  # the repository default: 1
    assert await pools.get_default_pool_limit() is None
    await pools.set_default_pool_limit(2)  # the stored default wins over it
    assert await pools.get_default_pool_limit() == 2
    assert await _claim_slots(storage, "b", 1)
    (view,) = await pools.get_pool_views(["db"])
    assert (view.limit, view.claimed) == (2, 2)
    info = await pools.get_pool_info("never_named")
    assert (info.limit, info.limit_source) == (2, "default")
    await pools.set_pool_limit("db", 3)  # an override wins over both
    assert (await pools.get_pool_info("db")).limit_source == "override"
    await pools.clear_pool_limit("db")
    await pools.clear_default_pool_limit()
    info = await pools.get_pool_info("db")
    assert (info.limit, info.limit_source) == (1, "default")
    await pools.declare_pools({"db": None}, declared_by="r")  # no default any more
    assert (await pools.get_pool_info("db")).limit is None


async def test_a_zero_limit_refuses_every_claim(storage: StorageBackend) -> None:
    await storage.pools.set_pool_limit("db", 0)
    assert not await _claim_slots(storage, "a", 1)


async def test_an_unknown_pool_is_unlimited_with_zero_counts(
    storage: StorageBackend,
) -> None:
    info = await storage.pools.get_pool_info("nowhere")
    assert (info.limit, info.claimed_slots, info.pending_steps) == (None, 0, 0)
    assert await storage.pools.get_all_pool_infos() == []
    await storage.pools.declare_pools({"free": None}, declared_by="repo")
    assert [i.name for i in await storage.pools.get_all_pool_infos()] == ["free"]


async def test_the_line_is_ordered_by_priority_then_arrival_and_holds_back_others(
    open_store: OpenStore,
) -> None:
    clock = ManualClock(T0)
    me = this_owner()
    async with open_store(clock=clock) as storage:
        # A waiter is live while its process beats.
        await storage.processes.register_process(me, os.getpid(), socket.gethostname())
        await storage.pools.set_pool_limit("db", 1)
        for step, priority in (("low", 0), ("high", 5), ("low2", 0)):
            await storage.pools.add_pending_step(
                pools=("db",),
                run_id="r",
                step_key=step,
                slots=1,
                priority=priority,
                owner=me,
            )
            clock.advance(1)
        line = await storage.pools.get_pending_steps("db")
        assert [p.step_key for p in line] == ["high", "low", "low2"]
        assert (await storage.pools.get_pool_info("db")).pending_steps == 3
        assert await storage.pools.get_pending_of(me) == {
            ("r", "high"),
            ("r", "low"),
            ("r", "low2"),
        }
        # Another process's step may not jump the live line.
        other = await storage.pools.claim_pool_slots(
            run_id="x",
            step_key="x",
            pools=("db",),
            slots=1,
            owner="elsewhere:1:0",
            lease_s=60,
        )
        assert not other.granted
        assert other.behind
        await storage.pools.remove_pending_step("r", "high")
        assert [p.step_key for p in await storage.pools.get_pending_steps("db")] == [
            "low",
            "low2",
        ]


async def test_release_and_claim_hands_the_freed_slots_on_in_one_go(
    storage: StorageBackend,
) -> None:
    await storage.pools.set_pool_limit("db", 1)
    assert await _claim_slots(storage, "first", 1)
    results = await storage.pools.release_and_claim(
        run_id="r",
        step_key="first",
        claims=[("r", "second", ("db",), 1, 0), ("r", "third", ("db",), 1, 0)],
        owner="o",
        lease_s=60,
    )
    assert [r.granted for r in results] == [True, False]
    holders = await storage.pools.get_pool_slot_holders("db")
    assert [h.step_key for h in holders] == ["second"]


async def test_leases_renew_and_expired_ones_are_reclaimed(
    open_store: OpenStore,
) -> None:
    clock = ManualClock(T0)
    async with open_store(clock=clock) as storage:
        assert await _claim_slots(storage, "kept", 1, lease_s=10)
        assert await _claim_slots(storage, "lost", 1, lease_s=10)
        clock.advance(5)
        assert await storage.pools.renew_leases("o", [("r", "kept")], 10) == {
            ("r", "kept")
        }
        clock.advance(6)  # "lost" expired at T0 + 10; "kept" now lasts to T0 + 15
        reclaimed = await storage.pools.reclaim_expired_leases()
        assert [(row[0], row[2], row[3], row[4]) for row in reclaimed] == [
            ("db", "lost", 1, "o")
        ]
        assert await storage.pools.reclaim_expired_leases() == []
        assert [
            h.step_key for h in await storage.pools.get_pool_slot_holders("db")
        ] == ["kept"]
        # A lease that ran out is not renewed.
        assert await storage.pools.renew_leases("o", [("r", "lost")], 10) == set()


async def test_release_and_claim_now_hands_on_at_once_or_writes_nothing(
    storage: StorageBackend,
) -> None:
    await storage.pools.set_pool_limit("db", 1)
    assert await _claim_slots(storage, "first", 1)
    results = storage.pools.release_and_claim_now(
        run_id="r",
        step_key="first",
        claims=[("r", "second", ("db",), 1, 0), ("r", "third", ("db",), 1, 0)],
        owner="o",
        lease_s=60,
    )
    holders = [h.step_key for h in await storage.pools.get_pool_slot_holders("db")]
    if results is None:  # it would have had to wait: the caller goes the slow way
        assert holders == ["first"]
    else:
        assert [r.granted for r in results] == [True, False]
        assert holders == ["second"]
