"""Queue controls at run time (issue 21 §7): ``rivers queue pause|resume|set`` from
another process, picked up by a running runtime without a restart; what overlapped
and what waited is recorded, and ``runs why`` names the control."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

import rivers as rs
from rivers.core.ownership import queue_config_key


class Overlap:
    """An async asset that records how many runs it has running at once."""

    def __init__(self, seconds: float) -> None:
        self.running = 0
        self.peak = 0
        self.started = 0

        @rs.Asset
        async def work() -> None:
            self.started += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
            try:
                await anyio.sleep(seconds)
            finally:
                self.running -= 1

        self.asset = work


def _repo(tmp_path: Path, overlap: Overlap, **queue: Any) -> rs.CodeRepository:
    return rs.CodeRepository(
        [overlap.asset],
        run_queue=rs.RunQueueConfig(dequeue_interval="20ms", **queue),
        backend=rs.RunBackendConfig(storage=str(tmp_path / "rivers.db")),
    )


async def _queue_cli(tmp_path: Path, *args: str) -> str:
    storage = str(tmp_path / "rivers.db")
    done = await anyio.run_process(
        [sys.executable, "-m", "rivers", "--storage", storage, "queue", *args],
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


async def _until(condition: Any) -> None:
    with anyio.fail_after(10):
        while not await condition():
            await anyio.sleep(0.05)


async def _published(
    rt: rs.Runtime, repo: rs.CodeRepository, **expected: object
) -> None:
    """Wait until the queue's leader publishes these settings (it reads the stored
    controls every second)."""
    key = queue_config_key(repo.name, repo.fingerprint)

    async def applied() -> bool:
        published = await rt._roles.state.get_state(key)
        return all(published.get(k) == v for k, v in expected.items())

    await _until(applied)


async def test_a_paused_queue_admits_nothing_until_resumed(tmp_path: Path) -> None:
    overlap = Overlap(0.05)
    repo = _repo(tmp_path, overlap)
    async with rs.Runtime(repo) as rt:
        await _queue_cli(tmp_path, "pause")

        async def applied() -> bool:  # the leader read the control (within 1 s)
            key = queue_config_key(repo.name, repo.fingerprint)
            published = await rt._roles.state.get_state(key)
            return bool(published["paused"])

        await _until(applied)
        handles = [await rt.submit(rs.RunRequest()) for _ in range(3)]
        await anyio.sleep(0.3)  # many dequeue ticks
        assert overlap.started == 0
        why = await rt.explain(handles[0].run_id)
        assert "the run queue of repository 'default' is paused" in why
        # A gate for the whole queue: no reason nor RUN_BLOCKED event per run.
        assert await rt.storage.get_events(kinds=["RUN_BLOCKED"]) == []
        assert "rivers queue resume --repository default" in why
        status = json.loads(await _queue_cli(tmp_path, "status", "--json"))
        assert (status["paused"], status["served"], status["queued"]) == (True, True, 3)
        await _queue_cli(tmp_path, "resume")
        with anyio.fail_after(10):
            records = [await rt.wait_for(h.run_id) for h in handles]
    assert all(r.status is rs.RunStatus.SUCCESS for r in records)
    assert overlap.started == 3


async def test_an_override_of_max_concurrent_runs_holds_until_reset(
    tmp_path: Path,
) -> None:
    overlap = Overlap(0.15)
    repo = _repo(tmp_path, overlap, max_concurrent_runs=3)
    async with rs.Runtime(repo) as rt:
        await _queue_cli(tmp_path, "set", "--max-concurrent-runs", "1")
        await _published(rt, repo, max_concurrent_runs=1)
        handles = [await rt.submit(rs.RunRequest()) for _ in range(4)]
        with anyio.fail_after(20):
            for handle in handles:
                await rt.wait_for(handle.run_id)
        assert overlap.peak == 1
        status = json.loads(await _queue_cli(tmp_path, "status", "--json"))
        assert (
            status["max_concurrent_runs"],
            status["max_concurrent_runs_source"],
        ) == (
            1,
            "override",
        )
        await _queue_cli(tmp_path, "set", "--reset")
        await _published(rt, repo, max_concurrent_runs=3)
        overlap.peak = 0
        handles = [await rt.submit(rs.RunRequest()) for _ in range(4)]
        with anyio.fail_after(20):
            for handle in handles:
                await rt.wait_for(handle.run_id)
    assert overlap.peak == 3


async def test_a_tag_limit_override_replaces_the_repositorys(tmp_path: Path) -> None:
    overlap = Overlap(0.15)
    repo = _repo(
        tmp_path,
        overlap,
        tag_concurrency_limits=[
            rs.TagConcurrencyLimit(key="env", value="prod", limit=3)
        ],
    )
    async with rs.Runtime(repo) as rt:
        await _queue_cli(tmp_path, "set", "--tag-limit", "env=prod:1")
        await _published(rt, repo, tag_concurrency_limits_source="override")
        handles = [
            await rt.submit(rs.RunRequest(tags={"env": "prod"})) for _ in range(3)
        ]

        async def one_waits_on_the_override() -> bool:
            reasons = [await rt.explain(h.run_id) for h in handles]
            return any("tag limit env=prod 1/1 (override)" in r for r in reasons)

        await _until(one_waits_on_the_override)
        with anyio.fail_after(20):
            for handle in handles:
                await rt.wait_for(handle.run_id)
    assert overlap.peak == 1


async def test_malformed_published_settings_are_one_clear_error(tmp_path: Path) -> None:
    """The published ``queue.config`` record is read through one decoder: a value it
    cannot read is a one-line error naming the key, in the API and the CLI alike."""
    repo = _repo(tmp_path, Overlap(0.01), max_concurrent_runs=0)
    key = queue_config_key(repo.name, repo.fingerprint)
    async with rs.Runtime(repo) as rt:
        await _published(rt, repo, max_concurrent_runs=0)
        handle = await rt.submit(rs.RunRequest())
        await rt._roles.state.put_state(key, {"max_concurrent_runs": "ten"})
        with pytest.raises(rs.StorageError, match="malformed") as caught:
            await rt.explain(handle.run_id)
        assert key in str(caught.value)
        assert "\n" not in str(caught.value)
        storage = str(tmp_path / "rivers.db")
        command = [sys.executable, "-m", "rivers", "--storage", storage]
        done = await anyio.run_process([*command, "queue", "status"], check=False)
    assert done.returncode == 2  # the CLI's code for an error it names
    error = done.stderr.decode().strip()
    assert error.startswith("rivers: error: the run-queue settings stored under")
    assert key in error
    assert len(error.splitlines()) == 1
