"""Rate limits of pools (issue 21 §6): starts per period, recorded in one process and
across processes sharing one bucket, bursts, a bucket that outlives its runtime,
overrides that wake the waiters, and what ``pools``, ``top`` and ``runs why`` say."""

from __future__ import annotations

import io
import itertools
import json
import os
import subprocess
import sys
import time
from bisect import bisect_left
from pathlib import Path
from typing import Any

import anyio
import pytest
from rich.console import Console

import rivers as rs


class Starts:
    """Async steps of one pool that record the wall time each started."""

    def __init__(self) -> None:
        self.at: list[float] = []

    def assets(
        self, count: int, pool: str = "api", hold_s: float = 0.005
    ) -> list[rs.Asset[Any, Any]]:
        def make(index: int) -> rs.Asset[Any, Any]:
            async def body() -> None:
                self.at.append(time.time())
                await anyio.sleep(hold_s)

            body.__name__ = f"{pool}_call{index}"
            return rs.Asset(body, pool=pool)

        return [make(index) for index in range(count)]

    def gaps(self) -> list[float]:
        at = sorted(self.at)
        return [later - earlier for earlier, later in itertools.pairwise(at)]


def most_in_any_window(times: list[float], window_s: float) -> int:
    """The most of ``times`` that fall in any half-open window of ``window_s``."""
    at = sorted(times)
    return max(bisect_left(at, start + window_s) - i for i, start in enumerate(at))


def _repo(
    tmp_path: Path, assets: list[rs.Asset[Any, Any]], limit: rs.PoolLimit
) -> rs.CodeRepository:
    return rs.CodeRepository(
        assets,
        pool_limits={"api": limit},
        backend=rs.RunBackendConfig(storage=str(tmp_path / "rivers.db")),
    )


async def test_starts_are_spaced_by_the_rate_and_woken_when_each_token_is_due(
    tmp_path: Path,
) -> None:
    starts = Starts()
    repo = _repo(tmp_path, starts.assets(12), rs.PoolLimit(4, rate="10/s"))
    async with rs.Runtime(repo) as rt:
        assert (await rt.materialize()).success
    # Four slots would let four start at once: the rate lets one in every 0.1 s,
    # so no second holds more than 10 starts (a little slack for the time from a
    # claim to the step's first line).
    assert most_in_any_window(starts.at, 0.98) <= 10
    gaps = starts.gaps()
    assert min(gaps) > 0.09
    # Each waiter starts when its token is due, not at the next poll (0.2 s).
    assert sum(gaps) / len(gaps) < 0.13


async def test_a_burst_lets_that_many_start_at_once_then_the_rate_holds(
    tmp_path: Path,
) -> None:
    starts = Starts()
    repo = _repo(tmp_path, starts.assets(5), rs.PoolLimit(5, rate="4/s", burst=3))
    async with rs.Runtime(repo) as rt:
        assert (await rt.materialize()).success
        info = await rt.storage.get_pool_info("api")
    at = sorted(starts.at)
    assert at[2] - at[0] < 0.1  # the full bucket: three at once
    assert at[3] - at[0] > 0.2  # then one every 0.25 s
    assert at[4] - at[3] > 0.2
    assert (info.rate, info.rate_source, info.burst) == ("4/s", "repository", 3)
    assert info.tokens is not None
    assert info.tokens < 3


RUNS_SCRIPT = """
import json, sys, time
import anyio
import rivers as rs

storage, log, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])

async def call() -> None:
    with open(log, "a") as f:
        f.write(json.dumps(time.time()) + "\\n")

repo = rs.CodeRepository(
    [rs.Asset(call, pool="shared")],
    pool_limits={"shared": rs.PoolLimit(4, rate="20/s")},
    backend=rs.RunBackendConfig(storage=storage),
)

async def main() -> None:
    async with rs.Runtime(repo) as rt:
        for _ in range(runs):
            assert (await rt.materialize()).success
    print("SUCCESS", flush=True)

anyio.run(main)
"""


def test_processes_sharing_a_storage_share_one_bucket(tmp_path: Path) -> None:
    # Three processes each start one-step runs one after another: alone, each
    # would start 20 a second; sharing the bucket, all of them together do.
    script = tmp_path / "runs.py"
    script.write_text(RUNS_SCRIPT)
    names = ("one", "two", "three")
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(tmp_path / "shared.db"),
                str(tmp_path / f"{name}.log"),
                "20",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in processes]
    assert outputs == ["SUCCESS"] * 3
    logged = {
        name: [float(line) for line in (tmp_path / f"{name}.log").read_text().split()]
        for name in names
    }
    starts = [start for name in names for start in logged[name]]
    assert len(starts) == 60
    assert most_in_any_window(starts, 0.98) <= 20
    # While all three compete, the bucket is drained at its rate: each waiter is
    # woken when its token is due, whichever process it lives in.
    begin = max(min(at) for at in logged.values())
    end = min(max(at) for at in logged.values())
    together = sorted(s for s in starts if begin <= s <= end)
    assert len(together) >= 10, "the processes did not run at the same time"
    assert (len(together) - 1) / (together[-1] - together[0]) > 20 * 0.8
    assert all(any(begin <= s <= end for s in logged[name]) for name in names)


async def test_the_bucket_outlives_the_runtime_that_emptied_it(tmp_path: Path) -> None:
    starts = Starts()
    limit = rs.PoolLimit(1, rate="1/1500ms")
    async with rs.Runtime(_repo(tmp_path, starts.assets(1), limit)) as rt:
        assert (await rt.materialize()).success
    later = Starts()
    async with rs.Runtime(_repo(tmp_path, later.assets(1), limit)) as rt:
        assert (await rt.materialize()).success
    assert later.at[0] - starts.at[0] > 1.5 * 0.97


async def test_an_override_rate_wins_at_once_and_reset_restores_the_declared_one(
    tmp_path: Path,
) -> None:
    starts = Starts()
    repo = _repo(tmp_path, starts.assets(4), rs.PoolLimit(4, rate="1/min"))
    async with rs.Runtime(repo) as rt, anyio.create_task_group() as tg:
        result: list[Any] = []

        async def materialize() -> None:
            result.append(await rt.materialize())

        tg.start_soon(materialize)
        with anyio.fail_after(10):
            while (await rt.storage.get_pool_info("api")).pending_steps < 3:
                await anyio.sleep(0.02)
        waiting = await rt.storage.get_pool_info("api")
        assert waiting.next_token_in_s is not None
        assert waiting.next_token_in_s > 50
        changed_at = time.time()
        await rt.storage.set_pool_limit("api", 4, rate="50/s", burst=3)
        with anyio.fail_after(5):  # not a minute: the waiters re-claim at once
            while not result:
                await anyio.sleep(0.02)
        assert result[0].success
        assert max(starts.at) - changed_at < 1.0
        overridden = await rt.storage.get_pool_info("api")
        await rt.storage.set_pool_limit("api", 4, rate="none")
        lifted = await rt.storage.get_pool_info("api")
        await rt.storage.clear_pool_limit("api")
        declared = await rt.storage.get_pool_info("api")
        with pytest.raises(rs.ConfigError, match="'1 per s' is not a rate"):
            await rt.storage.set_pool_limit("api", 4, rate="1 per s")
    assert (overridden.rate, overridden.rate_source, overridden.burst) == (
        "50/s",
        "override",
        3,
    )
    assert (lifted.rate, lifted.limit_source) == (None, "override")
    assert (declared.rate, declared.rate_source, declared.limit_source) == (
        "1/min",
        "repository",
        "repository",
    )


async def test_runs_why_and_top_say_a_step_waits_for_the_rate(tmp_path: Path) -> None:
    from rivers.dashboard.render import render
    from rivers.dashboard.snapshot import read_snapshot

    starts = Starts()
    repo = _repo(tmp_path, starts.assets(2, hold_s=0.0), rs.PoolLimit(4, rate="1/30s"))
    async with rs.Runtime(repo) as rt:
        run_id = (await rt.submit(rs.RunRequest())).run_id
        with anyio.fail_after(10):
            while (await rt.storage.get_pool_info("api")).pending_steps < 1:
                await anyio.sleep(0.02)
        why = await rt.explain(run_id)
        snapshot = await read_snapshot(rt._roles)
        await rt.cancel(run_id)
    assert "waits for pool api (0/4 slots, rate 1/30s): expected in ~" in why
    assert "rate 1/30s: start 1 from now" in why
    (pool,) = snapshot.pools
    assert pool.rate.startswith("1/30s: next start in ")
    assert pool.rate_tokens is not None
    assert pool.rate_tokens < 1
    console = Console(width=200, record=True, color_system=None, file=io.StringIO())
    console.print(render(snapshot, 200))
    screen = console.export_text()
    assert "4 repository, 1/30s: next start in" in screen
    assert "rate 1/30s: next start in" in screen  # the waiting step's reason


def test_pools_set_rate_and_what_pools_info_shows(tmp_path: Path) -> None:
    env = {**os.environ, "RIVERS_HOME": str(tmp_path / "home")}
    cli = [sys.executable, "-m", "rivers", "--storage", str(tmp_path / "r.db"), "pools"]

    def rivers(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli, *args], env=env, capture_output=True, text=True, timeout=60
        )

    done = rivers("set", "api", "4", "--rate", "100/MIN", "--burst", "5", "--create")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pool api: limit 4 (override), 100/min (override)"
    info = rivers("info", "api")
    assert "rate 100/min (override), burst 5: 5.00 of 5 start(s) allowed now" in (
        info.stdout
    )
    document = json.loads(rivers("info", "api", "--json").stdout)["pool"]
    assert document["rate"] == "100/min"
    assert document["burst"] == 5
    assert document["tokens"] == 5.0
    assert document["next_token_in_s"] == 0.0
    listed = rivers("list")
    assert "api: rate 100/min (override), burst 5" in listed.stdout
    for args, says in [
        (("--rate", "100/fortnight"), "--rate '100/fortnight' is not a rate; use"),
        (("--burst", "2"), "a burst needs a rate; pass --rate too"),
        (("--rate", "1/s", "--burst", "0"), "burst 0 is out of range; use 1..10000"),
        (("--rate", "1/s", "--burst", "two"), "--burst 'two' is not an integer"),
    ]:
        bad = rivers("set", "api", "4", *args)
        assert bad.returncode == 2
        assert bad.stderr.strip().splitlines() == [f"rivers: error: {says}"[:80]] or (
            says in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
        )


async def test_the_rate_tokens_gauge_is_scraped_for_rate_limited_pools_only(
    tmp_path: Path,
) -> None:
    from tests.test_metrics import _scrape_async

    starts = Starts()
    assets = [*starts.assets(2), *Starts().assets(1, pool="plain")]
    repo = _repo(tmp_path, assets, rs.PoolLimit(2, rate="1/min", burst=2))
    async with rs.Runtime(repo, metrics_addr="127.0.0.1:0") as rt:
        assert rt.metrics_url is not None
        before = await _scrape_async(rt.metrics_url)
        assert (await rt.materialize()).success
        after = await _scrape_async(rt.metrics_url)
    assert before[("rivers_pool_rate_tokens", (("pool", "api"),))] == 2.0
    assert 0 <= after[("rivers_pool_rate_tokens", (("pool", "api"),))] < 0.1
    assert ("rivers_pool_rate_tokens", (("pool", "plain"),)) not in after
