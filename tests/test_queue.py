"""The run queue and tag limits end to end: recorded overlap, order, reasons, daemons."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

import rivers as rs
from rivers.storage import open_backend


class RunTracker:
    """An async asset whose runs record their overlap, tags and start order."""

    def __init__(self, seconds: float = 0.15) -> None:
        self.running: list[dict[str, str]] = []
        self.peak = 0
        self.peak_by: dict[str, int] = {}
        self.started: list[str] = []
        self.seconds = seconds

        @rs.Asset
        async def work(context: rs.StepContext) -> None:
            self.running.append(context.run_tags)
            self.started.append(context.run_tags.get("name", context.run_id))
            self.peak = max(self.peak, len(self.running))
            for key, value in context.run_tags.items():
                label = f"{key}={value}"
                now = sum(1 for tags in self.running if tags.get(key) == value)
                self.peak_by[label] = max(self.peak_by.get(label, 0), now)
            await anyio.sleep(self.seconds)
            self.running.remove(context.run_tags)

        self.asset = work

    def repository(self, **queue: object) -> rs.CodeRepository:
        config = rs.RunQueueConfig(dequeue_interval="20ms", **queue)  # type: ignore[arg-type]
        return rs.CodeRepository([self.asset], run_queue=config)


async def _submit_all(
    rt: rs.Runtime, requests: list[rs.RunRequest]
) -> list[rs.RunRecord]:
    handles = [await rt.submit(request) for request in requests]
    with anyio.fail_after(20):
        return [await handle.wait() for handle in handles]


async def test_max_concurrent_runs_two_with_six_runs_peaks_at_two() -> None:
    tracker = RunTracker()
    async with rs.Runtime(tracker.repository(max_concurrent_runs=2)) as rt:
        records = await _submit_all(rt, [rs.RunRequest() for _ in range(6)])
    assert all(r.status is rs.RunStatus.SUCCESS for r in records)
    assert tracker.peak == 2


async def test_value_limit_caps_only_that_value() -> None:
    tracker = RunTracker()
    limits = [rs.TagConcurrencyLimit(key="env", value="prod", limit=1)]
    repo = tracker.repository(max_concurrent_runs=10, tag_concurrency_limits=limits)
    requests = [rs.RunRequest(tags={"env": "prod"}) for _ in range(3)]
    requests += [rs.RunRequest(tags={"env": "dev"}) for _ in range(3)]
    async with rs.Runtime(repo) as rt:
        await _submit_all(rt, requests)
    assert tracker.peak_by["env=prod"] == 1
    assert tracker.peak_by["env=dev"] == 3


async def test_per_unique_value_lets_teams_overlap_but_not_within_a_team() -> None:
    tracker = RunTracker()
    limits = [rs.TagConcurrencyLimit(key="team", limit=1, per_unique_value=True)]
    repo = tracker.repository(max_concurrent_runs=10, tag_concurrency_limits=limits)
    requests = [rs.RunRequest(tags={"team": t}) for t in ("a", "a", "b", "b")]
    async with rs.Runtime(repo) as rt:
        await _submit_all(rt, requests)
    assert tracker.peak_by == {"team=a": 1, "team=b": 1}
    assert tracker.peak == 2


async def test_key_only_limit_counts_runs_with_any_value() -> None:
    tracker = RunTracker()
    limits = [rs.TagConcurrencyLimit(key="customer", limit=2)]
    repo = tracker.repository(max_concurrent_runs=10, tag_concurrency_limits=limits)
    requests = [rs.RunRequest(tags={"customer": c}) for c in ("x", "y", "z", "w")]
    async with rs.Runtime(repo) as rt:
        await _submit_all(rt, requests)
    assert tracker.peak == 2


async def test_seed_order_a_then_c_then_b() -> None:
    tracker = RunTracker(seconds=0.2)
    limits = [rs.TagConcurrencyLimit(key="team", value="docs", limit=1)]
    repo = tracker.repository(max_concurrent_runs=10, tag_concurrency_limits=limits)
    requests = [
        rs.RunRequest(tags={"team": "docs", "name": "A"}),
        rs.RunRequest(tags={"team": "docs", "name": "B"}),
        rs.RunRequest(tags={"name": "C"}),
    ]
    async with rs.Runtime(repo) as rt:
        await _submit_all(rt, requests)
    assert tracker.started == ["A", "C", "B"]


async def test_higher_priority_is_admitted_first() -> None:
    tracker = RunTracker(seconds=0.05)
    repo = tracker.repository(max_concurrent_runs=0)
    async with rs.Runtime(repo) as rt:
        handles = [
            await rt.submit(rs.RunRequest(tags={"name": n}, priority=p))
            for n, p in (("low", 0), ("high", 9), ("mid", 5))
        ]
        assert await rt.explain(handles[0].run_id) == (
            f"run {handles[0].run_id} is QUEUED, 3rd in the queue: "
            "max_concurrent_runs 0/0 in flight; "
            "expected start unknown (the run queue is paused at limit 0)"
        )
    repo = tracker.repository(max_concurrent_runs=1)
    async with rs.Runtime(repo) as rt:  # the same storage: the runs are still queued
        with anyio.fail_after(10):
            for handle in handles:
                await rt.wait_for(handle.run_id)
    assert tracker.started == ["high", "mid", "low"]


async def test_paused_queue_holds_runs_while_materialize_still_runs() -> None:
    tracker = RunTracker(seconds=0.01)
    async with rs.Runtime(tracker.repository(max_concurrent_runs=0)) as rt:
        handle = await rt.submit(rs.RunRequest(tags={"name": "queued"}))
        result = await rt.materialize(tags={"name": "direct"})
        await anyio.sleep(0.1)
        assert result.success
        assert (await handle.status()) is rs.RunStatus.QUEUED
    assert tracker.started == ["direct"]


async def test_cancel_a_queued_run_never_starts_it() -> None:
    tracker = RunTracker()
    async with rs.Runtime(tracker.repository(max_concurrent_runs=0)) as rt:
        handle = await rt.submit(rs.RunRequest())
        await rt.cancel(handle.run_id)
        record = await handle.wait()
    assert record.status is rs.RunStatus.CANCELED
    assert tracker.started == []
    with pytest.raises(rs.RunNotFound):
        async with rs.Runtime(tracker.repository()) as rt:
            await rt.cancel("no-such-run")


async def test_blocked_runs_carry_their_binding_reason_and_events() -> None:
    tracker = RunTracker(seconds=0.4)
    limits = [rs.TagConcurrencyLimit(key="env", value="prod", limit=1)]
    repo = tracker.repository(max_concurrent_runs=5, tag_concurrency_limits=limits)
    async with rs.Runtime(repo) as rt:
        first = await rt.submit(rs.RunRequest(tags={"env": "prod"}))
        second = await rt.submit(rs.RunRequest(tags={"env": "prod"}))
        with anyio.fail_after(5):
            while (await rt.storage.get_run(second.run_id)).reason is None:  # type: ignore[union-attr]
                await anyio.sleep(0.02)
        why = await rt.explain(second.run_id)
        await first.wait()
        await second.wait()
        events = await rt.storage.get_events(run_id=second.run_id)
    assert why.startswith(
        f"run {second.run_id} is QUEUED, 1st in the queue: tag limit env=prod 1/1; "
        "expected start unknown (0 ahead, 1/1 held; no finished run to learn from"
    )
    blocked = [e for e in events if e.kind == "RUN_BLOCKED"]
    assert len(blocked) == 1  # emitted when the reason changed, not every tick
    assert blocked[0].data["reason"] == "tag limit env=prod 1/1"
    assert [e.kind for e in events].count("RUN_DEQUEUED") == 1


async def test_every_run_held_by_a_tag_limit_is_explained_by_it() -> None:
    # Only the head of a limit's line is reported by the coordinator; explain()
    # still names the limit for the runs behind it, and not for unrelated runs.
    tracker = RunTracker(seconds=0.5)
    limits = [rs.TagConcurrencyLimit(key="team", limit=1, per_unique_value=True)]
    repo = tracker.repository(max_concurrent_runs=5, tag_concurrency_limits=limits)
    async with rs.Runtime(repo) as rt:
        handles = [await rt.submit(rs.RunRequest(tags={"team": "a"})) for _ in range(4)]
        with anyio.fail_after(5):
            while tracker.started == []:
                await anyio.sleep(0.01)
        whys = [await rt.explain(h.run_id) for h in handles[1:]]
        for handle in handles:
            await rt.cancel(handle.run_id)
    assert len(whys) == 3
    for why in whys:
        assert ": tag limit team=a 1/1; expected start unknown" in why, why


async def test_a_run_key_is_submitted_only_once() -> None:
    tracker = RunTracker(seconds=0.01)
    async with rs.Runtime(tracker.repository(max_concurrent_runs=1)) as rt:
        first = await rt.submit(rs.RunRequest(run_key="sensor:s:1"))
        again = await rt.submit(rs.RunRequest(run_key="sensor:s:1"))
        await first.wait()
    assert first.run_id == again.run_id
    assert len(tracker.started) == 1


async def test_without_a_run_queue_submitted_runs_start_at_once() -> None:
    tracker = RunTracker(seconds=0.01)
    repo = rs.CodeRepository([tracker.asset])
    async with rs.Runtime(repo) as rt:
        records = await _submit_all(rt, [rs.RunRequest() for _ in range(3)])
    assert [r.status for r in records] == [rs.RunStatus.SUCCESS] * 3


def _write_pipeline(tmp_path: Path, seconds: float) -> Path:
    path = tmp_path / "pipeline.py"
    path.write_text(
        textwrap.dedent(
            f"""
            import os, time
            import anyio
            import rivers as rs

            LOG = {str(tmp_path / "admitted.log")!r}

            @rs.Asset
            async def job(context: rs.StepContext) -> None:
                with open(LOG, "a") as f:
                    f.write(f"{{context.run_id}} {{os.getpid()}} {{time.time()}}\\n")
                await anyio.sleep({seconds})

            repo = rs.CodeRepository(
                [job],
                run_queue=rs.RunQueueConfig(max_concurrent_runs=1, dequeue_interval="50ms"),
            )
            """
        )
    )
    return path


class Shared:
    """The RIVERS_HOME and storage that the test's processes share: the home's
    default SQLite file, or a fresh PostgreSQL database named by RIVERS_STORAGE."""

    def __init__(self, tmp_path: Path, postgres_url: str | None) -> None:
        self.dir = tmp_path
        self.storage = postgres_url or str(tmp_path / "home" / "rivers.db")
        self.env = {**os.environ, "RIVERS_HOME": str(tmp_path / "home")}
        if postgres_url:
            self.env["RIVERS_STORAGE"] = postgres_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Shared:
    """Where the processes of a cross-process test meet, on each backend."""
    if request.param == "postgres":
        return Shared(tmp_path, request.getfixturevalue("postgres_url"))
    return Shared(tmp_path, None)


def _cli(shared: Shared, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rivers", *args],
        env=shared.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _daemon(shared: Shared, pipeline: Path) -> subprocess.Popen[bytes]:
    with open(shared.dir / "daemon.log", "ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rivers",
                "daemon",
                "-f",
                str(pipeline),
                "--grace",
                "2",
            ],
            env=shared.env,
            stdout=log,
            stderr=log,
        )


async def _statuses(shared: Shared) -> dict[str, rs.RunStatus]:
    async with open_backend(shared.storage) as storage:
        return {r.run_id: r.status for r in await storage.runs.get_runs(limit=None)}


async def test_cross_process_submit_is_admitted_by_a_daemon(
    tmp_path: Path, shared: Shared
) -> None:
    pipeline = _write_pipeline(tmp_path, 0.05)
    for _ in range(3):
        done = _cli(shared, "submit", "-f", str(pipeline))
        assert done.returncode == 0, done.stderr
    daemon = _daemon(shared, pipeline)
    try:
        with anyio.fail_after(30):
            while set((await _statuses(shared)).values()) != {rs.RunStatus.SUCCESS}:
                await anyio.sleep(0.1)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 143  # drained, then 128 + SIGTERM
    assert len(await _statuses(shared)) == 3


async def test_standby_daemon_takes_over_without_double_admission(
    tmp_path: Path, shared: Shared
) -> None:
    pipeline = _write_pipeline(tmp_path, 0.3)
    for _ in range(6):
        assert _cli(shared, "submit", "-f", str(pipeline)).returncode == 0
    first = _daemon(shared, pipeline)
    second = _daemon(shared, pipeline)
    try:
        log = tmp_path / "admitted.log"
        with anyio.fail_after(20):  # a whole first line: the file exists before it
            while not (log.exists() and "\n" in log.read_text()):
                await anyio.sleep(0.05)
        leader_pid = int(log.read_text().split("\n")[0].split()[1])
        leader = first if first.pid == leader_pid else second
        standby = second if leader is first else first
        leader.send_signal(signal.SIGKILL)
        leader.wait()
        with anyio.fail_after(40):
            while True:
                statuses = await _statuses(shared)
                if all(s.is_finished for s in statuses.values()):
                    break
                await anyio.sleep(0.1)
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=20)
    entries = [
        line.split() for line in (tmp_path / "admitted.log").read_text().splitlines()
    ]
    started = [(float(at), run_id) for run_id, _, at in entries]
    run_ids = [run_id for _, run_id in started]
    assert len(run_ids) == len(set(run_ids))  # no run ran twice
    pids = {int(pid) for _, pid, _ in entries}
    assert standby.pid in pids
    assert leader.pid in pids
    statuses = await _statuses(shared)
    killed = [s for s in statuses.values() if s is rs.RunStatus.FAILURE]
    assert len(killed) <= 1  # at most the run the killed leader was running
    assert sum(s is rs.RunStatus.SUCCESS for s in statuses.values()) >= 5
    # max_concurrent_runs=1 held across both daemons: starts never overlap a run
    starts = sorted(at for at, _ in started)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= 0.25 for gap in gaps if gap < 5)


async def test_recovery_marks_a_killed_daemons_runs_failed(
    tmp_path: Path, shared: Shared
) -> None:
    pipeline = _write_pipeline(tmp_path, 60)
    assert _cli(shared, "submit", "-f", str(pipeline)).returncode == 0
    daemon = _daemon(shared, pipeline)
    try:
        with anyio.fail_after(20):
            while rs.RunStatus.STARTED not in (await _statuses(shared)).values():
                await anyio.sleep(0.05)
    finally:
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
    tracker = RunTracker()
    backend = rs.RunBackendConfig(storage=shared.storage)
    async with rs.Runtime(tracker.repository(), backend=backend) as rt:
        (run,) = await rt.storage.get_runs()
    assert run.status is rs.RunStatus.FAILURE
    assert "died" in (run.reason or "")


async def test_tag_limits_hold_across_the_daemons_of_two_repositories(
    tmp_path: Path, shared: Shared
) -> None:
    # Admission counts the runs in flight in the whole storage: two daemons, each
    # admitting its own repository's runs, never run two runs of one team at once.
    log = tmp_path / "ran.log"
    pipelines = {}
    for name in ("alpha", "beta"):
        pipelines[name] = tmp_path / f"{name}.py"
        pipelines[name].write_text(
            textwrap.dedent(
                f"""
                import os, time
                import anyio
                import rivers as rs

                @rs.Asset
                async def {name}_job(context: rs.StepContext) -> None:
                    began = time.time()
                    await anyio.sleep(0.2)
                    team = context.run_tags["team"]
                    with open({str(log)!r}, "a") as f:
                        f.write(f"{{team}} {{os.getpid()}} {{began}} {{time.time()}}\\n")

                repo = rs.CodeRepository(
                    [{name}_job],
                    name={name!r},
                    run_queue=rs.RunQueueConfig(
                        max_concurrent_runs=3,
                        dequeue_interval="50ms",
                        tag_concurrency_limits=[
                            rs.TagConcurrencyLimit(key="team", limit=1, per_unique_value=True)
                        ],
                    ),
                )
                """
            )
        )
    submit = [sys.executable, "-m", "rivers", "submit", "--count", "2"]
    submits = [
        subprocess.Popen(
            [*submit, "-f", str(path), "--tag", f"team={team}"],
            env=shared.env,
            stdout=subprocess.DEVNULL,
        )
        for path in pipelines.values()
        for team in ("a", "b")
    ]
    assert [process.wait(timeout=60) for process in submits] == [0] * 4
    daemons = [_daemon(shared, path) for path in pipelines.values()]
    try:
        with anyio.fail_after(40):
            while True:
                died = [p.returncode for p in daemons if p.poll() is not None]
                assert not died, (tmp_path / "daemon.log").read_text()
                statuses = await _statuses(shared)
                if all(s.is_finished for s in statuses.values()):
                    break
                await anyio.sleep(0.1)
    finally:
        for process in daemons:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
    assert list(statuses.values()) == [rs.RunStatus.SUCCESS] * 8
    entries = [line.split() for line in log.read_text().splitlines()]
    assert {int(pid) for _, pid, _, _ in entries} == {p.pid for p in daemons}
    for team in ("a", "b"):
        spans = sorted((float(s), float(e)) for t, _, s, e in entries if t == team)
        assert len(spans) == 4
        for (_, ended), (started, _) in itertools.pairwise(spans):
            assert started >= ended  # one run of the team at a time, in any daemon
