"""Default pool limits (issue 21 §2): a repository's ``default_pool_limit`` and the
stored default (``rivers pools set-default``), recorded overlap in one process and
across processes, precedence, and waiters woken when the default changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

import rivers as rs
from rivers.storage import open_backend
from tests._overlap import logged_intervals, peak_overlap, pool_script


class Overlap:
    """Async steps that record how many of them run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0

    def asset(self, name: str, pool: str, seconds: float) -> rs.Asset[Any, Any]:
        async def body() -> None:
            self.running += 1
            self.peak = max(self.peak, self.running)
            try:
                await anyio.sleep(seconds)
            finally:
                self.running -= 1

        body.__name__ = name
        return rs.Asset(body, pool=pool)


def _backend(tmp_path: Path) -> rs.RunBackendConfig:
    return rs.RunBackendConfig(storage=str(tmp_path / "rivers.db"))


async def test_a_repository_default_limits_every_pool_it_does_not_declare(
    tmp_path: Path,
) -> None:
    overlap = Overlap()
    repo = rs.CodeRepository(
        [overlap.asset(f"call{i}", "api", 0.1) for i in range(6)],
        default_pool_limit=2,
        backend=_backend(tmp_path),
    )
    async with rs.Runtime(repo) as rt:
        assert (await rt.materialize()).success
        info = await rt.storage.get_pool_info("api")
    assert overlap.peak == 2
    assert (info.limit, info.limit_source) == (2, "default")


async def test_the_stored_default_wins_over_the_repository_default_and_loses_to_limits(
    tmp_path: Path,
) -> None:
    overlap = Overlap()
    repo = rs.CodeRepository(
        [overlap.asset(f"call{i}", "api", 0.1) for i in range(6)]
        + [rs.Asset(lambda: 1, name="load", pool="db")],
        pool_limits={"db": 5},
        default_pool_limit=1,
        backend=_backend(tmp_path),
    )
    async with rs.Runtime(repo) as rt:
        await rt.storage.set_default_pool_limit(3)
        assert await rt.storage.get_default_pool_limit() == 3
        assert (await rt.materialize()).success
        api = await rt.storage.get_pool_info("api")
        db = await rt.storage.get_pool_info("db")
        unknown = await rt.storage.get_pool_info("never_seen")
        await rt.storage.set_pool_limit("api", 4)
        overridden = await rt.storage.get_pool_info("api")
        await rt.storage.clear_pool_limit("api")
        await rt.storage.clear_default_pool_limit()
        back = await rt.storage.get_pool_info("api")
    assert overlap.peak == 3
    assert (api.limit, api.limit_source) == (3, "default")
    assert (db.limit, db.limit_source) == (5, "repository")
    assert (unknown.limit, unknown.limit_source) == (3, "default")
    assert (overridden.limit, overridden.limit_source) == (4, "override")
    assert (back.limit, back.limit_source) == (1, "default")  # the repository's again


async def test_without_any_default_an_undeclared_pool_stays_unlimited(
    tmp_path: Path,
) -> None:
    overlap = Overlap()
    repo = rs.CodeRepository(
        [overlap.asset(f"call{i}", "api", 0.1) for i in range(4)],
        backend=_backend(tmp_path),
    )
    async with rs.Runtime(repo) as rt:
        assert (await rt.materialize()).success
        info = await rt.storage.get_pool_info("api")
    assert overlap.peak == 4
    assert (info.limit, info.limit_source) == (None, None)


async def test_raising_the_stored_default_starts_the_waiting_steps(
    tmp_path: Path,
) -> None:
    overlap = Overlap()
    repo = rs.CodeRepository(
        [overlap.asset(f"call{i}", "api", 0.6) for i in range(3)],
        default_pool_limit=1,
        backend=_backend(tmp_path),
    )
    async with rs.Runtime(repo) as rt, anyio.create_task_group() as tg:
        tg.start_soon(rt.materialize, None)
        with anyio.fail_after(5):
            while (await rt.storage.get_pool_info("api")).pending_steps < 2:
                await anyio.sleep(0.02)
        await rt.storage.set_default_pool_limit(3)
    assert overlap.peak == 3


def test_the_stored_default_holds_across_processes(tmp_path: Path) -> None:
    storage = tmp_path / "shared.db"
    env = {**os.environ, "RIVERS_HOME": str(tmp_path / "home")}
    cli = [sys.executable, "-m", "rivers", "--storage", str(storage), "pools"]
    done = subprocess.run(
        [*cli, "set-default", "2"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "default pool limit: 2"
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(pool_script(tmp_path, name, storage, hold_s=0.25, count=4)),
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("left", "right")
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in processes]
    assert outputs == ["SUCCESS", "SUCCESS"]
    intervals = logged_intervals(tmp_path, "left", "right")
    assert len(intervals) == 8
    assert peak_overlap(intervals) == 2
    listed = subprocess.run(
        [*cli, "list", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert json.loads(listed.stdout) == [
        {
            "name": "shared",
            "limit": 2,
            "limit_source": "default",
            "claimed_slots": 0,
            "pending_steps": 0,
        }
    ]
    reset = subprocess.run(
        [*cli, "reset-default"], env=env, capture_output=True, text=True, timeout=60
    )
    assert reset.returncode == 0, reset.stderr


async def test_a_default_is_checked_and_bounds_pool_slots(tmp_path: Path) -> None:
    heavy = rs.Asset(lambda: 1, name="heavy", pool="api", pool_slots=3)
    with pytest.raises(rs.ConfigError, match="whose limit is default_pool_limit=2"):
        rs.CodeRepository([heavy], default_pool_limit=2)
    with pytest.raises(rs.ConfigError, match="default_pool_limit must be in 0"):
        rs.CodeRepository([], default_pool_limit=-1)
    assert rs.CodeRepository([heavy], default_pool_limit=0).default_pool_limit == 0
    async with open_backend(tmp_path / "rivers.db") as backend:
        with pytest.raises(rs.ConfigError, match="default pool limit must be in 0"):
            await backend.pools.set_default_pool_limit(10_001)
