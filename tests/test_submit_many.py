"""Batch submission (issue 23): ``rt.submit_many`` and ``rivers submit --count`` write
many QUEUED runs in one transaction, all or nothing, and they run as ``submit``'s do."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

import rivers as rs
from rivers.storage import open_backend
from rivers.submission import queued_run, write_queued


def _repo(tmp_path: Path, **options: object) -> rs.CodeRepository:
    @rs.Asset
    def raw() -> int:
        return 1

    @rs.Asset
    def report(raw: int) -> int:
        return raw + 1

    return rs.CodeRepository(
        [raw, report],
        backend=rs.RunBackendConfig(storage=str(tmp_path / "rivers.db")),
        **options,  # type: ignore[arg-type]
    )


async def test_submit_many_queues_every_run_and_the_queue_runs_them(
    tmp_path: Path,
) -> None:
    repo = _repo(tmp_path, run_queue=rs.RunQueueConfig(max_concurrent_runs=2))
    async with rs.Runtime(repo) as rt:
        handles = await rt.submit_many(
            [rs.RunRequest(tags={"n": str(i)}, priority=i % 3) for i in range(12)]
            + [rs.RunRequest(selection=["raw"])]
        )
        with anyio.fail_after(30):
            finished = [await handle.wait() for handle in handles]
        events = await rt.storage.get_events(kinds=["RUN_ENQUEUED"])
    assert [run.status for run in finished] == [rs.RunStatus.SUCCESS] * 13
    assert [run.tags.get("n") for run in finished] == [*map(str, range(12)), None]
    assert finished[-1].selection == ["raw"]
    assert len({handle.run_id for handle in handles}) == 13
    assert {event.run_id for event in events} == {h.run_id for h in handles}


async def test_without_a_run_queue_the_runs_start_at_once(tmp_path: Path) -> None:
    async with rs.Runtime(_repo(tmp_path)) as rt:
        handles = await rt.submit_many([rs.RunRequest() for _ in range(4)])
        with anyio.fail_after(30):
            finished = [await handle.wait() for handle in handles]
    assert {run.status for run in finished} == {rs.RunStatus.SUCCESS}


async def test_run_keys_name_earlier_runs_in_the_batch_and_before_it(
    tmp_path: Path,
) -> None:
    repo = _repo(tmp_path, run_queue=rs.RunQueueConfig(max_concurrent_runs=0))
    async with rs.Runtime(repo) as rt:
        before = await rt.submit(rs.RunRequest(run_key="daily-1"))
        handles = await rt.submit_many(
            [
                rs.RunRequest(run_key="daily-1"),
                rs.RunRequest(run_key="daily-2"),
                rs.RunRequest(run_key="daily-2"),
                rs.RunRequest(),
            ]
        )
        runs = await rt.storage.get_runs(limit=None)
    assert handles[0].run_id == before.run_id
    assert handles[1].run_id == handles[2].run_id != before.run_id
    assert len(runs) == 3  # daily-1, daily-2 and the keyless one
    assert {run.status for run in runs} == {rs.RunStatus.QUEUED}


async def test_the_cli_and_the_runtime_write_queued_runs_the_same_way(
    tmp_path: Path,
) -> None:
    """``write_queued`` is the one writer of submitted runs: a key naming a stored
    run, or one earlier in the batch, gives that run's id instead of a new run."""
    repo = _repo(tmp_path)
    keyed = [rs.RunRequest(run_key="k"), rs.RunRequest(run_key="k"), rs.RunRequest()]
    async with open_backend(tmp_path / "rivers.db") as storage:
        first = await write_queued(
            storage.runs, [queued_run(repo, request) for request in keyed]
        )
        again = await write_queued(storage.runs, [queued_run(repo, keyed[0])])
        runs = await storage.runs.get_runs(limit=None)
    assert (first[0], first[2]) == (None, None)
    written = {run.run_key: run.run_id for run in runs}
    assert first[1] == again[0] == written["k"]
    assert len(runs) == 2


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ("not a request", rs.ConfigError, "submit takes rs.RunRequest values"),
        (rs.RunRequest(selection=["nope"]), rs.AssetNotFound, "nope"),
    ],
)
async def test_one_bad_request_writes_none_of_them(
    tmp_path: Path, bad: object, error: type[Exception], message: str
) -> None:
    repo = _repo(tmp_path, run_queue=rs.RunQueueConfig(max_concurrent_runs=0))
    async with rs.Runtime(repo) as rt:
        with pytest.raises(error, match=message):
            await rt.submit_many([rs.RunRequest(), bad, rs.RunRequest()])  # type: ignore[list-item]
        assert await rt.storage.get_runs(limit=None) == []


def test_rivers_submit_count_queues_that_many_runs(tmp_path: Path) -> None:
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(
        textwrap.dedent(
            """
            import rivers as rs

            @rs.Asset
            def raw() -> int:
                return 1

            repo = rs.CodeRepository([raw], run_queue=rs.RunQueueConfig())
            """
        )
    )
    env = {**os.environ, "RIVERS_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-m", "rivers", "submit", "-f", str(pipeline), "--count", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("submitted 5 runs (QUEUED), ")
    listed = subprocess.run(
        [sys.executable, "-m", "rivers", "runs", "list", "--status", "QUEUED"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.stdout.count("QUEUED") == 5
    bad = subprocess.run(
        [sys.executable, "-m", "rivers", "submit", "-f", str(pipeline), "--count", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1
