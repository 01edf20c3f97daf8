"""ProcessStore: registration, heartbeats, what is served, recovery of the dead."""

from __future__ import annotations

import rivers as rs
from rivers._clock import ManualClock
from rivers.messages import StepStarted
from rivers.storage.base import StorageBackend
from tests.storage.contract._helpers import T0, batch, new_run
from tests.storage.contract.conftest import OpenStore


async def test_a_registered_process_beats_and_serves_until_it_unregisters(
    open_store: OpenStore,
) -> None:
    clock = ManualClock(T0)
    async with open_store(clock=clock) as storage:
        processes = storage.processes
        await processes.register_process("host:1:0", 1, "host")
        await processes.serve("host:1:0", [("repo", "f1", ["b", "a"])])
        [(served, beat)] = await processes.get_served()
        assert (served.owner, served.repository, served.fingerprint) == (
            "host:1:0",
            "repo",
            "f1",
        )
        assert served.assets == ("a", "b")
        assert beat == T0
        clock.advance(3)
        await processes.heartbeat("host:1:0")
        assert (await processes.get_served())[0][1] == T0 + 3
        assert await processes.get_definition_assets("f1") == ["a", "b"]
        await processes.unregister_process("host:1:0")
        assert await processes.get_served() == []
        assert await processes.get_definition_assets("f1") == ["a", "b"]  # kept


async def test_recorded_definitions_name_their_assets(storage: StorageBackend) -> None:
    await storage.processes.record_definitions([("repo", "f9", ["x"])])
    assert await storage.processes.get_definition_assets("f9") == ["x"]
    assert await storage.processes.get_definition_assets("unknown") == []


async def test_cancel_requests_and_in_flight_owners_are_read_per_owner(
    storage: StorageBackend,
) -> None:
    await storage.processes.register_process("alive", 1, "h")
    await storage.runs.create_run(new_run("r1", rs.RunStatus.STARTING, owner="alive"))
    await storage.runs.create_run(new_run("r2", rs.RunStatus.STARTING, owner="ghost"))
    await storage.runs.transition_run(
        "r1", rs.RunStatus.CANCELING, expected=[rs.RunStatus.STARTING]
    )
    assert await storage.processes.get_cancel_requests("alive") == ["r1"]
    assert await storage.processes.get_cancel_requests("ghost") == []
    owners = await storage.processes.get_in_flight_owners()
    assert set(owners) == {"alive", "ghost"}
    assert owners["alive"] is not None
    assert owners["ghost"] is None


async def test_recovery_fails_the_dead_owners_runs_and_requeues_unlaunched_ones(
    storage: StorageBackend,
) -> None:
    await storage.processes.register_process("dead", 1, "h")
    await storage.processes.serve("dead", [("repo", "f1", ["a"])])
    await storage.runs.create_run(
        new_run("running", rs.RunStatus.STARTING, owner="dead")
    )
    await storage.runs.transition_run(
        "running", rs.RunStatus.STARTED, expected=[rs.RunStatus.STARTING]
    )
    await storage.events.append_events(
        batch(StepStarted(run_id="running", step_key="a", attempt=1, worker="w"))
    )
    await storage.runs.create_run(new_run("admitted"))
    await storage.queue.admit_run(
        "admitted", owner="dead", max_concurrent_runs=5, tag_guards=[]
    )
    await storage.pools.add_pending_step(
        pools=("db",), run_id="running", step_key="b", slots=1, priority=0, owner="dead"
    )
    failed = await storage.processes.fail_runs_of_owner("dead", "its process died")
    assert failed == ["running"]
    running = await storage.runs.get_run("running")
    assert running is not None
    assert (running.status, running.reason) == (
        rs.RunStatus.FAILURE,
        "its process died",
    )
    [step] = await storage.runs.get_step_records("running")
    assert (step.status, step.error) == (rs.StepStatus.FAILURE, "its process died")
    admitted = await storage.runs.get_run("admitted")
    assert admitted is not None
    assert (admitted.status, admitted.owner) == (rs.RunStatus.QUEUED, None)
    assert await storage.pools.get_pending_steps("db") == []
    assert await storage.processes.get_served() == []


async def test_owners_to_check_are_those_of_in_flight_runs_and_of_served_definitions(
    open_store: OpenStore,
) -> None:
    clock = ManualClock(T0)
    async with open_store(clock=clock) as storage:
        processes = storage.processes
        await processes.register_process("runner", 1, "host")
        await processes.register_process("server", 2, "host")
        await processes.serve("server", [("repo", "f1", ["a"])])
        await storage.runs.create_run(
            new_run("live", rs.RunStatus.STARTED, owner="runner")
        )
        await storage.runs.create_run(
            new_run("orphan", rs.RunStatus.STARTED, owner="gone")
        )
        await storage.runs.create_run(new_run("queued"))
        runners, servers = await processes.get_owners_to_check()
        assert runners == {"runner": T0, "gone": None}
        assert servers == {"server": T0}
        assert runners == await processes.get_in_flight_owners()
