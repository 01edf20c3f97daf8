"""RunStore: create, transition, finish, read and filter runs."""

from __future__ import annotations

from datetime import UTC

import pytest

import rivers as rs
from rivers._clock import ManualClock
from rivers.messages import RunFailed
from rivers.storage.base import StorageBackend
from tests.storage.contract._helpers import (
    T0,
    SteppingClock,
    at,
    batch,
    logged,
    new_run,
)
from tests.storage.contract.conftest import OpenStore


async def test_create_run_then_get_run_returns_what_was_written(
    storage: StorageBackend,
) -> None:
    created = await storage.runs.create_run(
        new_run(
            "r1", tags={"team": "core"}, selection=["a", "b"], priority=3, run_key="k1"
        )
    )
    stored = await storage.runs.get_run("r1")
    assert stored is not None
    assert created == stored
    assert stored.status is rs.RunStatus.QUEUED
    assert stored.tags == {"team": "core"}
    assert stored.selection == ["a", "b"]
    assert stored.priority == 3
    assert stored.run_key == "k1"
    assert stored.created_at.tzinfo is UTC
    assert stored.started_at is None
    assert stored.ended_at is None


async def test_a_run_created_starting_has_a_start_time(storage: StorageBackend) -> None:
    await storage.runs.create_run(new_run("r1", rs.RunStatus.STARTING))
    stored = await storage.runs.get_run("r1")
    assert stored is not None
    assert stored.started_at == stored.created_at


async def test_get_run_of_an_unknown_id_is_none(storage: StorageBackend) -> None:
    assert await storage.runs.get_run("nope") is None


async def test_a_duplicate_run_id_is_a_storage_error(storage: StorageBackend) -> None:
    await storage.runs.create_run(new_run("r1"))
    with pytest.raises(rs.StorageError, match="UNIQUE"):
        await storage.runs.create_run(new_run("r1"))


async def test_a_reused_run_key_is_not_created_again(storage: StorageBackend) -> None:
    first = await storage.runs.create_run(new_run("r1", run_key="daily-2024-01-01"))
    assert first is not None
    assert (
        await storage.runs.create_run(new_run("r2", run_key="daily-2024-01-01")) is None
    )
    assert await storage.runs.get_run("r2") is None
    by_key = await storage.runs.get_run_by_key("daily-2024-01-01")
    assert by_key is not None
    assert by_key.run_id == "r1"
    assert [r.run_id for r in await storage.runs.get_runs()] == ["r1"]


async def test_runs_are_listed_newest_first_up_to_the_limit(
    open_store: OpenStore,
) -> None:
    async with open_store(clock=SteppingClock()) as storage:
        for run_id in ("first", "second", "third", "fourth"):
            await storage.runs.create_run(new_run(run_id))
        listed = await storage.runs.get_runs()
        limited = await storage.runs.get_runs(limit=2)
    assert [r.run_id for r in listed] == ["fourth", "third", "second", "first"]
    assert [r.created_at for r in listed] == sorted(
        (r.created_at for r in listed), reverse=True
    )
    assert [r.run_id for r in limited] == ["fourth", "third"]


async def test_run_ids_are_found_by_prefix_or_suffix_newest_first(
    open_store: OpenStore,
) -> None:
    ids = ("aaaa0001ffff", "aaaa0002eeee", "bbbb0003ffff", "ffff0004dddd")
    async with open_store(clock=SteppingClock()) as storage:
        for run_id in ids:
            await storage.runs.create_run(new_run(run_id))
        by_prefix = await storage.runs.find_run_ids("aaaa", 10)
        by_suffix = await storage.runs.find_run_ids("01ffff", 10)
        either = await storage.runs.find_run_ids("ffff", 10)
        limited = await storage.runs.find_run_ids("ffff", 2)
        short = await storage.runs.find_run_ids("eee", 10)
        none = await storage.runs.find_run_ids("cccc", 10)
    assert by_prefix == ["aaaa0002eeee", "aaaa0001ffff"]
    assert by_suffix == ["aaaa0001ffff"]
    assert either == ["ffff0004dddd", "bbbb0003ffff", "aaaa0001ffff"]
    assert limited == ["ffff0004dddd", "bbbb0003ffff"]
    assert short == ["aaaa0002eeee"]
    assert none == []


async def test_runs_are_filtered_by_one_or_several_statuses(
    storage: StorageBackend,
) -> None:
    await storage.runs.create_run(new_run("queued"))
    await storage.runs.create_run(new_run("starting", rs.RunStatus.STARTING))
    await storage.runs.create_run(new_run("done", rs.RunStatus.STARTING))
    await storage.runs.transition_run(
        "done", rs.RunStatus.SUCCESS, expected=[rs.RunStatus.STARTING]
    )
    only_queued = await storage.runs.get_runs(status=rs.RunStatus.QUEUED)
    as_text = await storage.runs.get_runs(status="SUCCESS")
    several = await storage.runs.get_runs(
        status=[rs.RunStatus.QUEUED, rs.RunStatus.STARTING]
    )
    assert [r.run_id for r in only_queued] == ["queued"]
    assert [r.run_id for r in as_text] == ["done"]
    assert {r.run_id for r in several} == {"queued", "starting"}
    assert (
        await storage.runs.count_runs([rs.RunStatus.QUEUED, rs.RunStatus.SUCCESS]) == 2
    )


async def test_runs_are_filtered_by_tags_which_must_all_match(
    storage: StorageBackend,
) -> None:
    await storage.runs.create_run(new_run("a", tags={"team": "x", "env": "prod"}))
    await storage.runs.create_run(new_run("b", tags={"team": "x", "env": "dev"}))
    await storage.runs.create_run(new_run("c", tags={"team": "y"}))
    await storage.runs.create_run(new_run("d"))
    team_x = await storage.runs.get_runs(tags={"team": "x"})
    both = await storage.runs.get_runs(tags={"team": "x", "env": "prod"})
    none = await storage.runs.get_runs(tags={"team": "z"})
    assert {r.run_id for r in team_x} == {"a", "b"}
    assert [r.run_id for r in both] == ["a"]
    assert none == []


async def test_runs_with_any_of_several_tag_values_are_newest_first_to_the_limit(
    open_store: OpenStore,
) -> None:
    async with open_store(clock=SteppingClock()) as storage:
        for n, (env, team) in enumerate(
            [("dev", "x"), ("prod", "x"), ("test", "x"), ("prod", "y"), ("dev", "x")]
        ):
            await storage.runs.create_run(
                new_run(f"r{n}", tags={"env": env, "team": team})
            )
        newest = await storage.runs.get_runs(tags={"env": ["dev", "prod"]}, limit=3)
        team_x = await storage.runs.get_runs(
            tags={"env": ["prod", "dev"], "team": "x"}, limit=10
        )
        unlimited = await storage.runs.get_runs(tags={"env": "prod"}, limit=None)
    assert [r.run_id for r in newest] == ["r4", "r3", "r1"]
    assert [r.run_id for r in team_x] == ["r4", "r1", "r0"]
    assert [r.run_id for r in unlimited] == ["r3", "r1"]


async def test_status_and_tag_filters_combine(storage: StorageBackend) -> None:
    await storage.runs.create_run(new_run("q", tags={"team": "x"}))
    await storage.runs.create_run(
        new_run("s", rs.RunStatus.STARTING, tags={"team": "x"})
    )
    found = await storage.runs.get_runs(
        status=rs.RunStatus.STARTING, tags={"team": "x"}
    )
    assert [r.run_id for r in found] == ["s"]


async def test_transition_run_only_moves_from_an_expected_status(
    storage: StorageBackend,
) -> None:
    await storage.runs.create_run(new_run("r1"))
    moved = await storage.runs.transition_run(
        "r1", rs.RunStatus.STARTED, expected=[rs.RunStatus.STARTING]
    )
    assert moved is False
    record = await storage.runs.get_run("r1")
    assert record is not None
    assert record.status is rs.RunStatus.QUEUED
    assert record.started_at is None


async def test_transition_run_sets_start_end_reason_and_owner(
    open_store: OpenStore,
) -> None:
    async with open_store(clock=SteppingClock()) as storage:
        await storage.runs.create_run(new_run("r1"))
        assert await storage.runs.transition_run(
            "r1", rs.RunStatus.STARTING, expected=[rs.RunStatus.QUEUED], owner="me"
        )
        starting = await storage.runs.get_run("r1")
        assert await storage.runs.transition_run(
            "r1", rs.RunStatus.STARTED, expected=[rs.RunStatus.STARTING]
        )
        started = await storage.runs.get_run("r1")
        assert await storage.runs.transition_run(
            "r1",
            rs.RunStatus.FAILURE,
            expected=[rs.RunStatus.STARTED],
            reason="step 'a' failed",
        )
        failed = await storage.runs.get_run("r1")
        # A later transition without a reason keeps the old one.
        assert await storage.runs.transition_run(
            "r1", rs.RunStatus.CANCELED, expected=[rs.RunStatus.FAILURE]
        )
        canceled = await storage.runs.get_run("r1")
    assert starting is not None
    assert started is not None
    assert failed is not None
    assert canceled is not None
    assert starting.owner == "me"
    assert starting.started_at is not None
    assert started.started_at == starting.started_at  # set once
    assert started.ended_at is None
    assert failed.ended_at is not None
    assert failed.ended_at > failed.started_at  # type: ignore[operator]
    assert failed.reason == "step 'a' failed"
    assert canceled.reason == "step 'a' failed"


async def test_transition_of_an_unknown_run_changes_nothing(
    storage: StorageBackend,
) -> None:
    assert not await storage.runs.transition_run(
        "ghost", rs.RunStatus.CANCELED, expected=list(rs.RunStatus)
    )


async def test_finish_run_writes_status_and_event_together(
    storage: StorageBackend,
) -> None:
    await storage.runs.create_run(new_run("r1", rs.RunStatus.STARTING))
    stored = await storage.runs.finish_run(
        "r1",
        rs.RunStatus.FAILURE,
        expected=[rs.RunStatus.STARTING],
        reason="boom",
        event=RunFailed(run_id="r1", reason="boom"),
    )
    assert [e.kind for e in stored] == ["RUN_FAILURE"]
    again = await storage.runs.finish_run(
        "r1",
        rs.RunStatus.CANCELED,
        expected=[rs.RunStatus.STARTING],
        reason="late",
        event=RunFailed(run_id="r1", reason="late"),
    )
    assert again == []
    record = await storage.runs.get_run("r1")
    assert record is not None
    assert (record.status, record.reason) == (rs.RunStatus.FAILURE, "boom")
    assert [e.kind for e in await storage.events.get_events(run_id="r1")] == [
        "RUN_FAILURE"
    ]


async def test_create_runs_writes_each_in_submission_order_skipping_used_keys(
    storage: StorageBackend,
) -> None:
    await storage.runs.create_run(new_run("old", run_key="k1"))
    created = await storage.runs.create_runs(
        [
            new_run("a", run_key="k1"),  # used by an earlier run
            new_run("b", run_key="k2"),
            new_run("c", run_key="k2"),  # used earlier in this batch
            new_run("d", tags={"t": "1"}),
        ]
    )
    assert [None if r is None else r.run_id for r in created] == [None, "b", None, "d"]
    b, d = created[1], created[3]
    assert b is not None
    assert d is not None
    assert b.created_at < d.created_at  # queue order is submission order
    assert d == await storage.runs.get_run("d")
    assert [r.run_id for r in await storage.runs.get_runs()] == ["d", "b", "old"]


async def test_prune_runs_deletes_finished_runs_before_the_cutoff_or_counts_them(
    open_store: OpenStore,
) -> None:
    clock = ManualClock(T0)
    async with open_store(clock=clock) as storage:
        runs = storage.runs
        for run_id in ("done", "failed", "queued"):
            await runs.create_run(new_run(run_id))
        for run_id, to in (
            ("done", rs.RunStatus.SUCCESS),
            ("failed", rs.RunStatus.FAILURE),
        ):
            await runs.transition_run(run_id, to, expected=[rs.RunStatus.QUEUED])
        await storage.events.append_events(
            batch(logged("done", "one"), logged("done", "two"), start=T0)
        )
        clock.advance(100)
        await runs.create_run(new_run("recent"))
        await runs.transition_run(
            "recent", rs.RunStatus.SUCCESS, expected=[rs.RunStatus.QUEUED]
        )
        # The storage's newest event is always kept (event ids never go back).
        await storage.events.append_events(batch(logged("recent", "hi")))
        cutoff = T0 + 50
        would = await runs.prune_runs(cutoff, dry_run=True)
        assert (would.dry_run, would.runs, would.events) == (True, 2, 2)
        assert await runs.get_run("done") is not None  # nothing deleted
        pruned = await runs.prune_runs(cutoff)
        assert (pruned.dry_run, pruned.runs, pruned.events) == (False, 2, 2)
        assert pruned.cutoff == at(cutoff)
        left = sorted(r.run_id for r in await runs.get_runs())
        assert left == ["queued", "recent"]
        assert await storage.events.get_events(run_id="done") == []
