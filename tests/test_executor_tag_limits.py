"""Tag limits inside one run (issue 21 §5): ``Executor.parallel(tag_concurrency_limits=)``
over asset tags, with what ran at once recorded."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import rivers as rs


class Overlap:
    """Async assets that record, per label, how many of them run at once."""

    def __init__(self) -> None:
        self.running: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.intervals: dict[str, tuple[float, float]] = {}

    def asset(
        self, name: str, labels: tuple[str, ...], tags: dict[str, str], seconds: float
    ) -> rs.Asset[Any, Any]:
        async def body() -> None:
            began = time.monotonic()
            for label in labels:
                self.running[label] = self.running.get(label, 0) + 1
                self.peak[label] = max(self.peak.get(label, 0), self.running[label])
            try:
                await anyio.sleep(seconds)
            finally:
                for label in labels:
                    self.running[label] -= 1
                self.intervals[name] = (began, time.monotonic())

        body.__name__ = name
        return rs.Asset(body, tags=tags)


def _limit(
    key: str, value: str | None = None, **options: Any
) -> rs.TagConcurrencyLimit:
    return rs.TagConcurrencyLimit(key=key, value=value, **options)


async def test_a_tag_limit_caps_the_tagged_steps_of_a_run_and_no_others() -> None:
    overlap = Overlap()
    redshift = {"database": "redshift"}
    assets = [
        overlap.asset(f"q{i}", ("redshift", "all"), redshift, 0.1) for i in range(6)
    ]
    assets += [overlap.asset(f"free{i}", ("free", "all"), {}, 0.1) for i in range(4)]
    executor = rs.Executor.parallel(
        tag_concurrency_limits=[_limit("database", "redshift", limit=2)]
    )
    result = await rs.CodeRepository(assets, executor=executor).materialize()
    assert result.success
    assert overlap.peak["redshift"] == 2
    assert overlap.peak["free"] == 4  # untagged steps are not held back
    assert overlap.peak["all"] >= 5


async def test_per_unique_value_caps_each_value_on_its_own() -> None:
    overlap = Overlap()
    assets = [
        overlap.asset(f"{team}{i}", (team, "teams"), {"team": team}, 0.1)
        for team in ("a", "b")
        for i in range(3)
    ]
    executor = rs.Executor.parallel(
        tag_concurrency_limits=[_limit("team", per_unique_value=True, limit=1)]
    )
    assert (await rs.CodeRepository(assets, executor=executor).materialize()).success
    assert (overlap.peak["a"], overlap.peak["b"]) == (1, 1)
    assert overlap.peak["teams"] == 2


async def test_a_step_waiting_on_a_tag_limit_holds_no_executor_slot() -> None:
    overlap = Overlap()
    tagged = {"database": "redshift"}
    first = overlap.asset("first", ("tagged",), tagged, 0.3)
    second = overlap.asset("second", ("tagged",), tagged, 0.3)
    other = overlap.asset("other", ("other",), {}, 0.1)
    executor = rs.Executor.parallel(
        max_async_concurrent=2,
        tag_concurrency_limits=[_limit("database", "redshift", limit=1)],
    )
    repo = rs.CodeRepository([first, second, other], executor=executor)
    assert (await repo.materialize()).success
    assert overlap.peak["tagged"] == 1
    # "other" started at once, beside the tagged step holding the tag: the tagged
    # step waiting for the tag did not take the second executor slot.
    first_tagged_end = min(overlap.intervals[n][1] for n in ("first", "second"))
    assert overlap.intervals["other"][0] < first_tagged_end - 0.15


def test_sync_steps_in_worker_processes_respect_the_limit(tmp_path: Path) -> None:
    log = tmp_path / "intervals.log"

    def make(i: int) -> rs.Asset[Any, Any]:
        def body() -> None:
            began = time.time()
            time.sleep(0.2)
            with log.open("a") as f:
                f.write(json.dumps([began, time.time()]) + "\n")

        body.__name__ = f"sync{i}"
        return rs.Asset(body, tags={"api": "slow"})

    executor = rs.Executor.parallel(
        max_workers=2, tag_concurrency_limits=[_limit("api", limit=1)]
    )
    result = rs.CodeRepository(
        [make(i) for i in range(3)], executor=executor
    ).materialize()
    assert result.success
    intervals = sorted(json.loads(line) for line in log.read_text().splitlines())
    assert len(intervals) == 3
    for (_, ended), (began, _) in itertools.pairwise(intervals):
        assert began >= ended - 0.01  # one at a time, across worker processes


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ([_limit("db", limit=0)], "a limit of 0 on 'db' would never run"),
        (_limit("db", limit=1), "must be a list of TagConcurrencyLimit"),
        (["db"], "must hold TagConcurrencyLimit objects"),
    ],
)
def test_bad_executor_tag_limits_are_named(limits: Any, message: str) -> None:
    with pytest.raises(rs.ConfigError, match=message):
        rs.Executor.parallel(tag_concurrency_limits=limits)
    with pytest.raises(rs.ConfigError, match=message):
        rs.Executor.kubernetes(image="img:1", tag_concurrency_limits=limits)


async def test_two_limits_on_one_tag_are_one_gate_at_the_lower_limit() -> None:
    overlap = Overlap()
    assets = [overlap.asset(f"q{i}", ("db",), {"db": "x"}, 0.05) for i in range(4)]
    executor = rs.Executor.parallel(
        tag_concurrency_limits=[_limit("db", limit=3), _limit("db", limit=1)]
    )
    with anyio.fail_after(10):  # one gate held twice would never start a step
        result = await rs.CodeRepository(assets, executor=executor).materialize()
    assert result.success
    assert overlap.peak["db"] == 1
