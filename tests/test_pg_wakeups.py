"""Wake-ups between processes on PostgreSQL: LISTEN/NOTIFY, not the safety polls.

Functional tests of the wake paths: each makes the poll that would otherwise find
the change (a pool waiter's ``POLL_INTERVAL_S``, a queue's ``dequeue_interval``)
30 s long in the process that must react, and asserts it reacted within a few
seconds, so only a wake-up can have told it. Both fail when the wake-up is not
sent (a no-op ``PgWakes.send``; the queue trigger dropped) or not listened to.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import rivers as rs
from rivers.storage import open_backend
from rivers.storage.base import StorageBackend

pytestmark = pytest.mark.postgres

LONG_POLL_S = 30.0
"""The safety poll of the process that must be woken: far beyond the test."""
WOKEN_WITHIN_S = 5.0
"""A wake-up arrives within milliseconds; this bounds it with slack for load."""

WAITER = """
import sys, time
import rivers as rs
import rivers.actors.pools

# No safety re-check within the test: the step gets its slot only if woken.
rivers.actors.pools.POLL_INTERVAL_S = {poll_s!r}

@rs.Asset(pool="gpu")
def waiter() -> None:
    with open({started!r}, "w") as f:
        f.write(repr(time.time()))

repo = rs.CodeRepository(
    [waiter],
    pool_limits={{"gpu": 1}},
    backend=rs.RunBackendConfig(storage={storage!r}),
)
print(repo.materialize().status.value, flush=True)
"""


async def test_a_release_in_one_process_wakes_a_waiter_in_another(
    tmp_path: Path, postgres_url: str, record_figure: Callable[[str], None]
) -> None:
    """Functional test of the pool wake path on PostgreSQL: this process holds the
    only slot of pool gpu, a runtime in another process waits for it with its
    safety poll at 30 s, and the release here must start its step within 5 s,
    through NOTIFY on its channel and its LISTEN connection."""
    holding = anyio.Event()
    release = anyio.Event()

    @rs.Asset(pool="gpu")
    async def holder() -> None:
        holding.set()
        await release.wait()

    started = tmp_path / "started"
    script = tmp_path / "waiter.py"
    script.write_text(
        textwrap.dedent(WAITER).format(
            poll_s=LONG_POLL_S, started=str(started), storage=postgres_url
        )
    )
    repo = rs.CodeRepository(
        [holder],
        pool_limits={"gpu": 1},
        backend=rs.RunBackendConfig(storage=postgres_url),
    )
    waiter: subprocess.Popen[str] | None = None
    woken_after, status = -1.0, ""
    async with rs.Runtime(repo) as rt, anyio.create_task_group() as tg:
        results: list[rs.MaterializeResult] = []

        async def hold() -> None:
            results.append(await rt.materialize())

        tg.start_soon(hold)
        try:
            with anyio.fail_after(10):
                await holding.wait()
            waiter = subprocess.Popen(
                [sys.executable, str(script)],
                env={**os.environ, "RIVERS_HOME": str(tmp_path / "home")},
                stdout=subprocess.PIPE,
                text=True,
            )
            with anyio.fail_after(30):
                while (await rt.storage.get_pool_info("gpu")).pending_steps < 1:
                    await anyio.sleep(0.02)
            await anyio.sleep(0.5)  # the waiter's first look at the pools is behind it
            released_at = time.time()
            release.set()
            with anyio.move_on_after(WOKEN_WITHIN_S + 5):
                while not started.exists() or not started.read_text():
                    await anyio.sleep(0.02)
            if started.exists():
                woken_after = float(started.read_text()) - released_at
                status, _ = await anyio.to_thread.run_sync(waiter.communicate, None, 30)
        finally:
            release.set()
            if waiter is not None and waiter.poll() is None:
                waiter.kill()
                waiter.communicate()
    assert started.exists(), (
        f"the waiting process's step did not start within {WOKEN_WITHIN_S + 5:g}s "
        "of the release: no wake-up reached it"
    )
    assert results[0].success
    assert status.strip() == "SUCCESS"
    assert 0 <= woken_after < WOKEN_WITHIN_S
    record_figure(
        f"postgres: a release to the start of a waiter in another process: "
        f"{woken_after:.3f} s (its safety poll {LONG_POLL_S:g} s)"
    )


async def _run(storage: StorageBackend, run_id: str) -> rs.RunRecord:
    run = await storage.runs.get_run(run_id)
    assert run is not None
    return run


PIPELINE = """
import rivers as rs

@rs.Asset
def job() -> None:
    pass

repo = rs.CodeRepository(
    [job], run_queue=rs.RunQueueConfig(dequeue_interval="{dequeue_s}s")
)
"""


async def test_a_run_queued_by_one_process_is_admitted_by_a_daemon_in_another(
    tmp_path: Path, postgres_url: str, record_figure: Callable[[str], None]
) -> None:
    """Functional test of the queue wake path on PostgreSQL: a daemon whose
    dequeue interval is 30 s admits a run that ``rivers submit`` queued within
    5 s, woken by the NOTIFY of the runs table's trigger."""
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(textwrap.dedent(PIPELINE).format(dequeue_s=LONG_POLL_S))
    env = {
        **os.environ,
        "RIVERS_HOME": str(tmp_path / "home"),
        "RIVERS_STORAGE": postgres_url,
    }
    log = tmp_path / "daemon.log"
    async with open_backend(postgres_url) as storage:  # the schema, before both
        with log.open("wb") as out:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "rivers", "daemon", "-f", str(pipeline)],
                env=env,
                stdout=out,
                stderr=out,
            )
        try:
            with anyio.fail_after(30):
                while "serving repository" not in log.read_text():
                    assert daemon.poll() is None, log.read_text()
                    await anyio.sleep(0.05)
            await anyio.sleep(1.0)  # its first admission pass is behind it
            submitted = await anyio.run_process(
                [sys.executable, "-m", "rivers", "submit", "-f", str(pipeline)],
                env=env,
                check=False,
            )
            assert submitted.returncode == 0, submitted.stderr.decode()
            run_id = submitted.stdout.decode().split()[2]
            run = await _run(storage, run_id)
            with anyio.move_on_after(WOKEN_WITHIN_S + 5):
                while run.started_at is None:
                    await anyio.sleep(0.05)
                    run = await _run(storage, run_id)
            assert run.started_at is not None, (
                f"run {run_id} still {run.status.value} "
                f"{(time.time() - run.created_at.timestamp()):.1f}s after it was "
                "queued: no wake-up reached the daemon"
            )
            with anyio.fail_after(20):
                while not run.status.is_finished:
                    await anyio.sleep(0.05)
                    run = await _run(storage, run_id)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
    assert run.status is rs.RunStatus.SUCCESS, run.reason
    assert run.started_at is not None
    admitted_after = (run.started_at - run.created_at).total_seconds()
    assert 0 <= admitted_after < WOKEN_WITHIN_S
    record_figure(
        f"postgres: a run queued by another process to its start by a daemon: "
        f"{admitted_after:.3f} s (its dequeue interval {LONG_POLL_S:g} s)"
    )
