"""``rivers pools advise``: a recorded workload replayed at its own limit matches what ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio

import rivers as rs
from rivers.storage import open_backend


def _advise(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rivers", "pools", "advise", *args],
        env={**os.environ, "RIVERS_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_replaying_a_recorded_workload_at_its_limit_matches_the_measured_waits(
    rivers_home: Path,
) -> None:
    holds = [0.3, 0.2, 0.2, 0.1, 0.3, 0.1]

    def make(i: int, seconds: float) -> rs.Asset[Any, Any]:
        async def body() -> int:
            await anyio.sleep(seconds)
            return i

        body.__name__ = f"s{i}"
        return rs.Asset(body, name=f"s{i}", pool="db")

    repo = rs.CodeRepository(
        [make(i, s) for i, s in enumerate(holds)], pool_limits={"db": 2}
    )
    async with rs.Runtime(repo) as rt:
        result = await rt.materialize()
        assert result.success
        events = await rt.storage.get_events(run_id=result.run_id)
    measured = sorted(
        e.data["waited_s"] for e in events if e.kind == "STEP_POOL_CLAIMED"
    )
    assert len(measured) == 6
    assert max(measured) > 0.25  # the pool really made steps wait

    done = _advise(rivers_home, "db", "--json")
    assert done.returncode == 0, done.stderr
    advice = json.loads(done.stdout)
    assert advice["current_limit"] == 2
    assert advice["steps"] == 6
    by_limit = {row["limit"]: row for row in advice["limits"]}
    assert sorted(by_limit) == [1, 2, 3, 4, 5, 6]
    # The replay at the limit that ran reproduces the measured waits (the runtime
    # adds a millisecond or so of hand-over per grant).
    replayed = by_limit[2]
    assert abs(replayed["p95_wait_s"] - measured[-1]) < 0.05
    assert abs(replayed["max_wait_s"] - measured[-1]) < 0.05
    assert abs(replayed["p50_wait_s"] - measured[2]) < 0.05
    assert by_limit[6]["max_wait_s"] == 0.0
    assert by_limit[1]["p95_wait_s"] > replayed["p95_wait_s"]
    assert advice["summary"].startswith(
        "raising db 2 -> 6 would have cut p95 wait from "
    )

    text = _advise(rivers_home, "db", "--since", "1h")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "pool db: 6 step(s) in the last 1h00m, replayed at each limit"
    assert any(line.lstrip().startswith("2 (now)") for line in lines)
    assert lines[-1] == advice["summary"]


async def test_a_pool_with_no_history_says_so(rivers_home: Path) -> None:
    async with open_backend(rivers_home / "rivers.db"):
        pass
    done = _advise(rivers_home, "ghost")
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip()
        == "pool 'ghost' has no recorded use in this window; nothing to replay"
    )


def test_a_bad_since_is_one_line(rivers_home: Path) -> None:
    done = _advise(rivers_home, "db", "--since", "yesterday")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert "--since" in done.stderr
