"""QueueStore and StateStore: queued runs, guarded admission, leader leases, state."""

from __future__ import annotations

import rivers as rs
from rivers._clock import ManualClock
from rivers.storage.base import StorageBackend
from tests.storage.contract._helpers import T0, new_run
from tests.storage.contract.conftest import OpenStore


async def test_queued_runs_of_one_definition_are_read_after_a_rowid(
    storage: StorageBackend,
) -> None:
    await storage.runs.create_run(new_run("a", fingerprint="f1", tags={"t": "1"}))
    await storage.runs.create_run(new_run("other", fingerprint="f2"))
    await storage.runs.create_run(new_run("old"))  # no fingerprint: any definition
    await storage.runs.create_run(
        new_run("b", priority=2, fingerprint="f1", selection=["x", "y"])
    )
    rows = await storage.queue.get_queued_since(0, "default", "f1")
    assert [(row[1], row[2], row[4], row[5]) for row in rows] == [
        ("a", 0, {"t": "1"}, None),
        ("old", 0, {}, None),
        ("b", 2, {}, ["x", "y"]),
    ]
    later = await storage.queue.get_queued_since(rows[1][0], "default", "f1")
    assert [row[1] for row in later] == ["b"]
    assert await storage.queue.queue_position("b") == 1  # the highest priority
    assert await storage.queue.queue_position("a") == 2
    assert await storage.queue.queue_position("missing") is None


async def test_admission_respects_max_concurrent_runs_across_the_storage(
    storage: StorageBackend,
) -> None:
    for run_id in ("a", "b", "c"):
        await storage.runs.create_run(new_run(run_id))
    admitted = await storage.queue.admit_runs(
        [("a", []), ("b", []), ("c", [])], owner="me", max_concurrent_runs=2
    )
    assert admitted == [True, True, False]
    record = await storage.runs.get_run("a")
    assert record is not None
    assert (record.status, record.owner, record.started_at) == (
        rs.RunStatus.STARTING,
        "me",
        None,  # set when its owner launches it
    )
    assert await storage.runs.count_runs([rs.RunStatus.STARTING]) == 2
    # An admitted run is not admitted twice.
    assert not await storage.queue.admit_run(
        "a", owner="me", max_concurrent_runs=10, tag_guards=[]
    )


async def test_admission_respects_tag_limits_per_value_and_per_key(
    storage: StorageBackend,
) -> None:
    await storage.runs.create_run(new_run("a1", tags={"team": "a"}))
    await storage.runs.create_run(new_run("a2", tags={"team": "a"}))
    await storage.runs.create_run(new_run("b1", tags={"team": "b"}))
    await storage.runs.create_run(new_run("b2", tags={"team": "b"}))
    by_value = [("team", "a", 1)]
    assert await storage.queue.admit_run(
        "a1", owner="me", max_concurrent_runs=10, tag_guards=by_value
    )
    assert not await storage.queue.admit_run(
        "a2", owner="me", max_concurrent_runs=10, tag_guards=by_value
    )
    any_value = [("team", None, 2)]
    assert await storage.queue.admit_run(
        "b1", owner="me", max_concurrent_runs=10, tag_guards=any_value
    )
    assert not await storage.queue.admit_run(
        "b2", owner="me", max_concurrent_runs=10, tag_guards=any_value
    )
    assert sorted(t["team"] for t in await storage.queue.get_in_flight_tags()) == [
        "a",
        "b",
    ]


async def test_reasons_are_kept_only_on_runs_still_queued(
    storage: StorageBackend,
) -> None:
    await storage.runs.create_run(new_run("waiting"))
    await storage.runs.create_run(new_run("gone"))
    await storage.queue.admit_run(
        "gone", owner="me", max_concurrent_runs=5, tag_guards=[]
    )
    await storage.queue.set_run_reasons({"waiting": "queue full", "gone": "late"})
    waiting = await storage.runs.get_run("waiting")
    gone = await storage.runs.get_run("gone")
    assert waiting is not None
    assert waiting.reason == "queue full"
    assert gone is not None
    assert gone.reason is None


async def test_a_leader_lease_is_held_until_it_lapses_or_is_given_up(
    open_store: OpenStore,
) -> None:
    clock = ManualClock(T0)
    async with open_store(clock=clock) as storage:
        state = storage.state
        assert await state.acquire_leadership("queue.leader:x", "one", 5)
        assert not await state.acquire_leadership("queue.leader:x", "two", 5)
        assert await state.acquire_leadership("queue.leader:x", "one", 5)  # renewed
        clock.advance(6)
        assert await state.acquire_leadership("queue.leader:x", "two", 5)  # lapsed
        await state.release_leadership("queue.leader:x", "one")  # not its lease
        assert not await state.acquire_leadership("queue.leader:x", "one", 5)
        await state.release_leadership("queue.leader:x", "two")
        assert await state.acquire_leadership("queue.leader:x", "one", 5)


async def test_state_values_round_trip_as_json(storage: StorageBackend) -> None:
    assert await storage.state.get_state("cursor") is None
    await storage.state.put_state("cursor", {"n": 1, "names": ["a"]})
    await storage.state.put_state("cursor", {"n": 2, "names": ["b"]})
    assert await storage.state.get_state("cursor") == {"n": 2, "names": ["b"]}


async def test_a_runs_place_is_the_same_counted_from_either_end_of_the_line(
    open_store: OpenStore,
) -> None:
    """Runs near the front count those ahead, runs near the back those behind."""
    clock = ManualClock(T0)
    line = [("p1-a", 1), ("p1-b", 1)]  # then priority 0 in arrival order, then -1
    line += [(f"p0-{i}", 0) for i in range(7)] + [("m1-a", -1), ("m1-b", -1)]
    arrival = [line[i] for i in (2, 9, 3, 0, 4, 5, 10, 6, 1, 7, 8)]
    async with open_store(clock=clock) as storage:
        for run_id, priority in arrival:
            await storage.runs.create_run(new_run(run_id, priority=priority))
            clock.advance(1.0)
        await storage.runs.create_run(new_run("done", status=rs.RunStatus.SUCCESS))
        places = {
            run_id: await storage.queue.queue_position(run_id) for run_id, _ in line
        }
    assert places == {run_id: place for place, (run_id, _) in enumerate(line, 1)}


async def test_admit_queued_returns_the_records_of_the_runs_admitted(
    storage: StorageBackend,
) -> None:
    for run_id in ("a", "b", "c"):
        await storage.runs.create_run(new_run(run_id, tags={"team": "x"}))
    await storage.runs.transition_run(
        "c", rs.RunStatus.CANCELED, expected=[rs.RunStatus.QUEUED]
    )
    records = await storage.queue.admit_queued(
        [("a", [("team", "x", 5)]), ("b", [("team", "x", 1)]), ("c", [])],
        owner="me",
        max_concurrent_runs=10,
    )
    # b's tag bucket is full once a is in; c is no longer QUEUED.
    assert [None if r is None else r.run_id for r in records] == ["a", None, None]
    [admitted, _, _] = records
    assert admitted is not None
    assert (admitted.status, admitted.owner, admitted.tags) == (
        rs.RunStatus.STARTING,
        "me",
        {"team": "x"},
    )
    assert admitted == await storage.runs.get_run("a")
