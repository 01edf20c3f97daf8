"""One line per pool across processes, revocation that stops the holder first,
fencing tokens, and limits lowered below a waiting step's slots.

The cross-process tests drive real runtime processes (``_member``) over stdin and
read what their steps recorded in a shared log: when each started, with which
fencing token, and (for a step holding a slot in a worker process) a tick every
10 ms while it still ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import anyio
import pytest

import rivers as rs
from rivers.storage import open_backend
from rivers.storage.base import StorageBackend

MEMBER = textwrap.dedent(
    """
    import json, os, sys, time
    import anyio
    import rivers as rs
    import rivers.actors.pools

    storage, log, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    if sys.argv[4] == "wake-ups only":
        # No safety re-check within the test: a step that gets its slot was woken.
        rivers.actors.pools.POLL_INTERVAL_S = 60.0

    def record(*fields):
        with open(log, "a") as f:
            f.write(json.dumps([*fields, time.time()]) + "\\n")

    def make(name, priority, kind):
        if kind == "hold":
            def body(context: rs.StepContext) -> None:
                record("start", name, context.pool_lease.token)
                while True:
                    record("tick", name)
                    time.sleep(0.01)
        else:
            async def body(context: rs.StepContext) -> None:
                record("start", name, context.pool_lease.token)
                await anyio.sleep(0.05)
                record("end", name)
        body.__name__ = body.__qualname__ = name
        return rs.Asset(body, pool="db", priority=priority)

    repo = rs.CodeRepository(
        [make(*item) for item in spec],
        backend=rs.RunBackendConfig(storage=storage, lease_duration="30s"),
    )

    async def main():
        async with rs.Runtime(repo) as rt, anyio.create_task_group() as tg:
            async def run(name):
                result = await rt.materialize([name])
                error = "" if result.error is None else type(result.error).__name__
                print("done", name, result.status.value, error, flush=True)

            print("ready", flush=True)
            while True:
                line = (await anyio.to_thread.run_sync(sys.stdin.readline)).split()
                if not line or line[0] == "quit":
                    break
                tg.start_soon(run, line[1])

    anyio.run(main)
    """
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The storage the member processes share: a SQLite file in the test's folder,
    or a fresh PostgreSQL database (wake-ups through LISTEN/NOTIFY)."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return str(tmp_path / "lines.db")


class Member:
    """A runtime process whose steps are started one run each, on command."""

    def __init__(
        self,
        tmp_path: Path,
        storage: str,
        log: Path,
        spec: list[Any],
        checks: str = "wake-ups only",
    ) -> None:
        script = tmp_path / "member.py"
        script.write_text(MEMBER)
        arguments = [storage, str(log), json.dumps(spec), checks]
        self.process = subprocess.Popen(
            [sys.executable, str(script), *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._line() == "ready"

    def _line(self) -> str:
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        return stdout.readline().strip()

    def run(self, name: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"run {name}\n")
        self.process.stdin.flush()

    def results(self, count: int) -> dict[str, tuple[str, ...]]:
        """Read ``count`` finished runs: step name -> (status, error type)."""
        done = {}
        for _ in range(count):
            _, name, status, *error = self._line().split(" ")
            done[name] = (status, *error) if error else (status, "")
        return done

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def _records(log: Path) -> list[list[Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


async def _wait_pending(storage: StorageBackend, count: int) -> None:
    with anyio.fail_after(30):
        while (await storage.pools.get_pool_info("db")).pending_steps < count:
            await anyio.sleep(0.01)


async def _hold_slot(storage: StorageBackend) -> None:
    """Take the pool's one slot from the test itself, so every step must wait."""
    await storage.pools.set_pool_limit("db", 1)
    held = await storage.pools.claim_pool_slots(
        run_id="blocker",
        step_key="blocker",
        pools=("db",),
        slots=1,
        owner="test:0:0",
        lease_s=60,
    )
    assert held.granted


async def _line_order(
    tmp_path: Path,
    storage_path: str,
    arrivals: list[tuple[str, str]],
    spec: dict[str, list[Any]],
) -> list[str]:
    """Start the steps in ``arrivals`` (member, step), each once the one before it
    waits, release the slot, and return the order in which the steps started."""
    log = tmp_path / "log.jsonl"
    log.touch()
    members: dict[str, Member] = {}
    try:
        async with open_backend(storage_path) as storage:
            await _hold_slot(storage)
            for key, steps in spec.items():
                members[key] = Member(tmp_path, storage_path, log, steps)
            for count, (member, step) in enumerate(arrivals, start=1):
                members[member].run(step)
                await _wait_pending(storage, count)
            began = time.monotonic()
            await storage.pools.release_pool_slots("blocker", "blocker")
            for key, process in members.items():
                mine = sum(1 for owner, _ in arrivals if owner == key)
                outcome = await anyio.to_thread.run_sync(process.results, mine)
                assert all(status == ("SUCCESS", "") for status in outcome.values())
            # No safety re-check runs within 60 s: every hand-over was a wake-up.
            assert time.monotonic() - began < 20
    finally:
        for process in members.values():
            process.close()
    starts = sorted((r[-1], r[1]) for r in _records(log) if r[0] == "start")
    return [name for _, name in starts]


async def test_one_line_across_processes_by_priority(
    tmp_path: Path, storage_url: str
) -> None:
    a: list[Any] = [[f"a{p}", p, "async"] for p in (20, 18, 16, 14, 12, 10)]
    b: list[Any] = [[f"b{p}", p, "async"] for p in (19, 17, 15, 13, 11, 9)]
    arrivals = [("a", str(step[0])) for step in a] + [("b", str(step[0])) for step in b]
    order = await _line_order(tmp_path, storage_url, arrivals, {"a": a, "b": b})
    # All twelve waited before the first release; B's higher-priority steps
    # interleave with A's although each process's own release could serve A.
    expected = sorted([*a, *b], key=lambda step: -int(step[1]))
    assert order == [step[0] for step in expected]


async def test_one_line_across_processes_first_come_first_served(
    tmp_path: Path, storage_url: str
) -> None:
    a = [[f"a{i}", 0, "async"] for i in range(3)]
    b = [[f"b{i}", 0, "async"] for i in range(3)]
    arrivals = [(member, f"{member}{i}") for i in range(3) for member in ("a", "b")]
    order = await _line_order(tmp_path, storage_url, arrivals, {"a": a, "b": b})
    assert order == ["a0", "b0", "a1", "b1", "a2", "b2"]


@pytest.mark.parametrize("how", ["api", "cli"])
async def test_freeing_a_live_holder_stops_it_before_the_next_step_starts(
    tmp_path: Path,
    storage_url: str,
    how: str,
    record_figure: Callable[[str], None],
) -> None:
    storage_path = storage_url
    log = tmp_path / "log.jsonl"
    log.touch()
    holder = waiter = None
    try:
        async with open_backend(storage_path) as storage:
            await storage.pools.set_pool_limit("db", 1)
            # Safety re-checks as usual: a waiter polling storage must still not
            # get the slot while the holder runs.
            holder = Member(tmp_path, storage_path, log, [["held", 0, "hold"]], "")
            waiter = Member(tmp_path, storage_path, log, [["next", 0, "async"]], "")
            holder.run("held")
            with anyio.fail_after(30):
                while not any(r[0] == "tick" for r in _records(log)):
                    await anyio.sleep(0.01)
            waiter.run("next")
            await _wait_pending(storage, 1)
            (claim,) = await storage.pools.get_pool_slot_holders("db")
            freed_at = time.time()
            if how == "api":
                assert await storage.pools.free_pool_slots(claim.run_id, "held") == 1
            else:
                command = [sys.executable, "-m", "rivers", "--storage"]
                cli = subprocess.run(
                    [
                        *command,
                        storage_path,
                        "pools",
                        "free",
                        claim.run_id,
                        "held",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    env={**os.environ, "NO_COLOR": "1"},
                )
                assert cli.returncode == 0, cli.stderr
                assert "freed 1 slot(s)" in cli.stdout
            held = await anyio.to_thread.run_sync(holder.results, 1)
            assert held == {"held": ("FAILURE", "LeaseLost")}
            assert await anyio.to_thread.run_sync(waiter.results, 1) == {
                "next": ("SUCCESS", "")
            }
            info = await storage.pools.get_pool_info("db")
            assert (info.claimed_slots, info.pending_steps) == (0, 0)
    finally:
        for member in (holder, waiter):
            if member is not None:
                member.close()
    records = _records(log)
    last_tick = max(r[-1] for r in records if r[0] == "tick")
    (next_start,) = [r for r in records if r[:2] == ["start", "next"]]
    (held_start,) = [r for r in records if r[:2] == ["start", "held"]]
    # The holder's worker stopped ticking before the next step started: a limit-1
    # pool never ran two steps at once. Across processes it takes milliseconds
    # (plus the CLI's start-up when freed with the CLI).
    assert last_tick < next_start[-1]
    assert next_start[-1] - freed_at < (3 if how == "api" else 10)
    backend = "postgres" if storage_path.startswith("postgresql://") else "sqlite"
    record_figure(
        f"pools free ({how}, {backend}; the call began) to the next step's start: "
        f"{next_start[-1] - freed_at:.3f} s (holder's last tick "
        f"{next_start[-1] - last_tick:.3f} s before it)"
    )
    assert next_start[2] > held_start[2]  # the later grant has the larger token


async def test_fencing_tokens_increase_with_every_grant() -> None:
    tokens: list[rs.PoolLease | None] = []

    def make(index: int) -> rs.Asset[Any, Any]:
        async def body(context: rs.StepContext) -> None:
            tokens.append(context.pool_lease)

        body.__name__ = f"s{index}"
        return rs.Asset(body, pool="db", deps=[f"s{index - 1}"] if index else [])

    @rs.Asset
    async def unpooled(context: rs.StepContext) -> None:
        tokens.append(context.pool_lease)

    repo = rs.CodeRepository([*(make(i) for i in range(4)), unpooled])
    assert (await repo.materialize()).success
    assert (await repo.materialize()).success
    leases = [lease for lease in tokens if lease is not None]
    assert tokens.count(None) == 2
    assert [lease.token for lease in leases] == sorted(
        {lease.token for lease in leases}
    )
    assert len(leases) == 8
    assert all(lease.pool == "db" and lease.slots == 1 for lease in leases)
    assert all(lease.expires_at.timestamp() > time.time() for lease in leases)


class _Gate:
    def __init__(self) -> None:
        self.holding = anyio.Event()
        self.release = anyio.Event()


async def _lowered_while_waiting(
    gate: _Gate, lower: Callable[[StorageBackend], Awaitable[None]], limit_after: int
) -> tuple[rs.MaterializeResult, rs.PoolInfo, bool]:
    """A 1-slot step holds pool gpu (limit 2) while a 2-slot step waits; ``lower``
    then changes the limit. Return the run, the pool after it, and whether the
    waiter ended while the holder still held its slot."""

    @rs.Asset(pool="gpu")
    async def small() -> None:
        gate.holding.set()
        await gate.release.wait()

    @rs.Asset(pool="gpu", pool_slots=2)
    async def big() -> None:
        pass

    ended_while_held = False
    repo = rs.CodeRepository([small, big], pool_limits={"gpu": 2})
    async with rs.Runtime(repo) as rt:
        results: list[rs.MaterializeResult] = []
        async with anyio.create_task_group() as tg:

            async def go() -> None:
                results.append(await rt.materialize())

            tg.start_soon(go)
            await gate.holding.wait()
            with anyio.fail_after(10):
                while (await rt.storage.get_pool_info("gpu")).pending_steps < 1:
                    await anyio.sleep(0.01)
            await lower(rt._roles)
            with anyio.fail_after(10):
                while (await rt.storage.get_pool_info("gpu")).pending_steps:
                    await anyio.sleep(0.01)
            steps = {
                s.step_key: s
                for s in await rt._roles.runs.get_step_records(
                    (await rt.storage.get_runs(limit=1))[0].run_id
                )
            }
            ended_while_held = steps["big"].status is rs.StepStatus.FAILURE
            if limit_after:
                await rt.storage.set_pool_limit("gpu", limit_after)
            gate.release.set()
        info = await rt.storage.get_pool_info("gpu")
    return results[0], info, ended_while_held


async def test_a_limit_lowered_below_a_waiters_slots_fails_it_at_once() -> None:
    async def lower(storage: StorageBackend) -> None:
        await storage.pools.set_pool_limit("gpu", 1)

    result, info, ended_while_held = await _lowered_while_waiting(_Gate(), lower, 0)
    assert ended_while_held
    assert isinstance(result.error, rs.PoolTooSmall)
    assert "needs 2 slots of pool 'gpu', whose limit is 1" in str(result.error)
    assert (info.limit, info.claimed_slots, info.pending_steps) == (1, 0, 0)


async def test_a_limit_lowered_by_the_cli_fails_the_waiter_at_once(
    tmp_path: Path,
) -> None:
    async def lower(storage: StorageBackend) -> None:
        command = [sys.executable, "-m", "rivers", "--storage", storage.describe]
        done = await anyio.run_process([*command, "pools", "set", "gpu", "1"])
        assert done.returncode == 0

    result, info, ended_while_held = await _lowered_while_waiting(_Gate(), lower, 0)
    assert ended_while_held
    assert isinstance(result.error, rs.PoolTooSmall)
    assert (info.claimed_slots, info.pending_steps) == (0, 0)


async def test_a_limit_of_zero_pauses_a_waiter_until_it_is_raised() -> None:
    gate = _Gate()
    paused: list[int] = []

    async def lower(storage: StorageBackend) -> None:
        await storage.pools.set_pool_limit("gpu", 0)
        await anyio.sleep(0.5)  # several safety re-checks: still waiting, not failed
        paused.append((await storage.pools.get_pool_info("gpu")).pending_steps)
        await storage.pools.set_pool_limit("gpu", 3)  # room for both: it runs at once

    result, info, _ = await _lowered_while_waiting(gate, lower, 0)
    assert paused == [1]
    assert result.success
    assert (info.claimed_slots, info.pending_steps) == (0, 0)


async def test_freeing_a_holder_in_this_process_stops_it_before_the_waiter_starts() -> (
    None
):
    running: list[str] = []
    overlapped: list[list[str]] = []
    began: list[float] = []

    def make(name: str) -> rs.Asset[Any, Any]:
        async def body() -> None:
            running.append(name)
            overlapped.append(list(running))
            began.append(time.monotonic())
            try:
                await anyio.sleep(30 if name == "held" else 0.01)
            finally:
                running.remove(name)

        body.__name__ = name
        return rs.Asset(body, pool="db")

    repo = rs.CodeRepository([make("held"), make("next")], pool_limits={"db": 1})
    async with rs.Runtime(repo) as rt, anyio.create_task_group() as tg:
        results: list[rs.MaterializeResult] = []

        async def go(name: str) -> None:
            results.append(await rt.materialize([name]))

        tg.start_soon(go, "held")
        with anyio.fail_after(10):
            while not running:
                await anyio.sleep(0.01)
        tg.start_soon(go, "next")
        await _wait_pending(rt._roles, 1)
        (claim,) = await rt.storage.get_pool_slot_holders("db")
        freed_at = time.monotonic()
        assert await rt.storage.free_pool_slots(claim.run_id) == 1
    assert overlapped == [["held"], ["next"]]
    assert began[1] - freed_at < 1
    errors = {type(r.error).__name__: str(r.error) for r in results if r.error}
    assert "revoked by hand" in errors["LeaseLost"]
    assert len(results) == 2


async def test_a_pending_row_no_waiter_stands_behind_is_deleted() -> None:
    # Left by a waiter whose clean-up failed: it would hold up every other
    # process's steps behind it in the line.
    @rs.Asset(pool="db")
    async def step() -> None:
        pass

    repo = rs.CodeRepository([step], pool_limits={"db": 1})
    async with rs.Runtime(repo) as rt:
        await rt._roles.pools.add_pending_step(
            pools=("db",),
            run_id="r",
            step_key="gone",
            slots=1,
            priority=9,
            owner=rt.owner,
        )
        with anyio.fail_after(5):
            while (await rt.storage.get_pool_info("db")).pending_steps:
                await anyio.sleep(0.05)
        assert (await rt.materialize()).success
