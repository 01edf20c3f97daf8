"""A step worker leaves when its runtime stays stopped longer than the pool lease.

By then the runtime's pool claims may have been reclaimed and granted to another
process, so the step must stop using what they guard. Real processes: a runtime in
a child process runs a 30 s pooled step on a worker process; the test stops the
runtime with SIGSTOP and watches the worker go.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from rivers.storage import open_backend

LEASE_S = 1.0

RUNTIME = textwrap.dedent(
    """
    import sys, time
    import anyio
    import rivers as rs

    STARTED = STARTED_PATH

    @rs.Asset(pool="db")
    def long_step() -> int:
        open(STARTED, "w").close()  # running on its worker now
        time.sleep(30)
        return 1

    repo = rs.CodeRepository(
        [long_step],
        pool_limits={"db": 1},
        executor=rs.Executor.parallel(max_workers=1),
        backend=rs.RunBackendConfig(storage=sys.argv[1], lease_duration="1s"),
    )

    async def main() -> None:
        async with rs.Runtime(repo) as rt, anyio.create_task_group() as tg:
            async def report() -> None:
                while not rt.worker_pids:
                    await anyio.sleep(0.05)
                print("WORKER", rt.worker_pids[0], flush=True)

            tg.start_soon(report)
            result = await rt.materialize()
            print("RESULT", result.status.value, result.error, flush=True)

    anyio.run(main)
    """
)


def _gone(pid: int) -> bool:
    try:
        status: str = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return True
    return bool(status == psutil.STATUS_ZOMBIE)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_worker_leaves_once_its_runtime_is_stopped_longer_than_the_lease(
    tmp_path: Path,
) -> None:
    script = tmp_path / "runtime.py"
    started = tmp_path / "started"
    script.write_text(RUNTIME.replace("STARTED_PATH", repr(str(started))))
    runtime = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "db.sqlite")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "RIVERS_HOME": str(tmp_path / "home")},
    )
    assert runtime.stdout is not None
    try:
        line = runtime.stdout.readline()
        assert line.startswith("WORKER "), line
        worker = int(line.split()[1])
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert started.exists(), "the step never started"
        assert not _gone(worker)
        runtime.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        while not _gone(worker) and time.monotonic() - stopped_at < 10:
            time.sleep(0.05)
        waited = time.monotonic() - stopped_at
        # It waited out the lease (not a moment's stop), then left (generous bound).
        assert LEASE_S * 0.8 <= waited < LEASE_S + 3, waited
        runtime.send_signal(signal.SIGCONT)
        out, _ = runtime.communicate(timeout=60)
    finally:
        runtime.send_signal(signal.SIGCONT)
        runtime.kill()
        runtime.communicate()
    (result,) = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert result.startswith("RESULT FAILURE"), result
    assert "SIGSTOP" in result or "lease" in result, result
    # Nothing is left held: no slot of the pool, no waiting step, no worker.
    infos = anyio.run(_pool_infos, tmp_path / "db.sqlite")
    assert [(i.name, i.claimed_slots, i.pending_steps) for i in infos] == [("db", 0, 0)]
    assert _gone(worker)


async def _pool_infos(path: Path) -> list[Any]:
    async with open_backend(path) as storage:
        return list(await storage.pools.get_all_pool_infos())
