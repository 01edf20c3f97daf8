"""Executor.parallel on real worker processes: overlap, crashes, timeouts, cancel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import psutil

import rivers as rs
from rivers.storage import open_backend
from tests._overlap import peak_overlap


def _record_step(log_dir: Path, name: str, seconds: float) -> rs.Asset[Any, Any]:
    """A sync asset that sleeps and records its pid and start/end times."""
    directory = str(log_dir)

    def body() -> int:
        began = time.time()
        time.sleep(seconds)
        with open(os.path.join(directory, f"{name}.json"), "w") as f:
            json.dump({"pid": os.getpid(), "start": began, "end": time.time()}, f)
        return os.getpid()

    body.__name__ = name
    return rs.Asset(body)


def _intervals(log_dir: Path) -> dict[str, dict[str, float]]:
    return {p.stem: json.loads(p.read_text()) for p in log_dir.glob("*.json")}


def _alive(pid: int) -> bool:
    try:
        status: str = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return False
    return status != "zombie"


async def test_max_workers_two_runs_exactly_two_sync_steps_at_once(
    tmp_path: Path,
) -> None:
    assets = [_record_step(tmp_path, f"s{i}", 0.3) for i in range(6)]
    repo = rs.CodeRepository(assets, executor=rs.Executor.parallel(max_workers=2))
    result = await repo.materialize()
    assert result.success, result.error
    records = _intervals(tmp_path)
    assert len(records) == 6
    assert peak_overlap([(r["start"], r["end"]) for r in records.values()]) == 2
    pids = {int(r["pid"]) for r in records.values()}
    assert os.getpid() not in pids
    assert len(pids) == 2  # two warm workers reused for six steps
    assert all(s.worker and s.worker.startswith("pid ") for s in result.step_records)


async def test_max_async_concurrent_three_runs_exactly_three_async_steps() -> None:
    running = 0
    peak = 0

    def make(name: str) -> rs.Asset[Any, Any]:
        async def body() -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await anyio.sleep(0.1)
            running -= 1

        body.__name__ = name
        return rs.Asset(body)

    repo = rs.CodeRepository(
        [make(f"a{i}") for i in range(9)],
        executor=rs.Executor.parallel(max_workers=1, max_async_concurrent=3),
    )
    result = await repo.materialize()
    assert result.success
    assert peak == 3


async def test_a_step_starts_when_its_upstream_ends_not_when_the_level_ends(
    tmp_path: Path,
) -> None:
    slow = _record_step(tmp_path, "slow", 1.0)
    fast = _record_step(tmp_path, "fast", 0.05)
    directory = str(tmp_path)

    @rs.Asset
    def after_fast(fast: int) -> None:
        with open(os.path.join(directory, "after_fast.start"), "w") as f:
            f.write(str(time.time()))

    repo = rs.CodeRepository(
        [slow, fast, after_fast], executor=rs.Executor.parallel(max_workers=2)
    )
    result = await repo.materialize()
    assert result.success, result.error
    started = float((tmp_path / "after_fast.start").read_text())
    assert started < _intervals(tmp_path)["slow"]["end"]


async def test_ready_steps_beyond_max_workers_emit_step_waiting(tmp_path: Path) -> None:
    assets = [_record_step(tmp_path, f"w{i}", 0.1) for i in range(4)]
    repo = rs.CodeRepository(assets, executor=rs.Executor.parallel(max_workers=1))
    result = await repo.materialize()
    async with open_backend() as storage:
        waiting = [
            e
            for e in await storage.events.get_events(run_id=result.run_id)
            if e.kind == "STEP_WAITING"
        ]
    assert [e.data["position"] for e in waiting] == [1, 2, 3]
    assert all(e.data["capacity"] == 1 for e in waiting)


async def test_killed_worker_fails_only_its_step_and_the_pool_heals(
    tmp_path: Path,
) -> None:
    sibling = _record_step(tmp_path, "sibling", 0.5)

    @rs.Asset
    def killed() -> None:
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGKILL)

    repo = rs.CodeRepository(
        [sibling, killed], executor=rs.Executor.parallel(max_workers=2)
    )
    async with rs.Runtime(repo) as rt:
        result = await rt.materialize()
        assert result.status is rs.RunStatus.FAILURE
        assert result.step_record("sibling").status is rs.StepStatus.SUCCESS
        record = result.step_record("killed")
        assert record.status is rs.StepStatus.FAILURE
        assert "died" in (record.error or "")
        assert "SIGKILL" in (record.error or "")
        assert isinstance(result.error, rs.WorkerCrashed)
        again = await rt.materialize(["sibling"])
        assert again.success


async def test_sync_step_timeout_terminates_its_worker(tmp_path: Path) -> None:
    directory = str(tmp_path)

    @rs.Asset(timeout="500ms")
    def hangs() -> None:
        with open(os.path.join(directory, "pid"), "w") as f:
            f.write(str(os.getpid()))
        time.sleep(60)

    repo = rs.CodeRepository([hangs], executor=rs.Executor.parallel(max_workers=1))
    began = time.monotonic()
    result = await repo.materialize()
    assert time.monotonic() - began < 10
    assert result.step_record("hangs").status is rs.StepStatus.FAILURE
    assert "timed out after 0.5s" in (result.step_record("hangs").error or "")
    assert not _alive(int((tmp_path / "pid").read_text()))


async def test_cancel_stops_running_sync_steps_and_leaves_no_processes(
    tmp_path: Path,
) -> None:
    directory = str(tmp_path)

    def make(name: str) -> rs.Asset[Any, Any]:
        def body() -> None:
            with open(os.path.join(directory, f"{name}.pid"), "w") as f:
                f.write(str(os.getpid()))
            time.sleep(60)

        body.__name__ = name
        return rs.Asset(body)

    repo = rs.CodeRepository(
        [make("first"), make("second")], executor=rs.Executor.parallel(max_workers=2)
    )
    async with rs.Runtime(repo) as rt:
        results: list[rs.MaterializeResult] = []
        async with anyio.create_task_group() as tg:

            async def go() -> None:
                results.append(await rt.materialize())

            tg.start_soon(go)
            with anyio.fail_after(15):
                while len(list(tmp_path.glob("*.pid"))) < 2:
                    await anyio.sleep(0.02)
            runs = await rt.storage.get_runs(status=rs.RunStatus.STARTED)
            assert len(runs) == 1
            await rt.cancel(runs[0].run_id)
        pool_pids = rt.worker_pids
    (result,) = results
    assert result.status is rs.RunStatus.CANCELED
    assert {r.status for r in result.step_records} == {rs.StepStatus.CANCELED}
    step_pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
    assert not any(_alive(pid) for pid in step_pids)
    assert not any(_alive(pid) for pid in pool_pids)
    async with open_backend() as storage:
        run = await storage.runs.get_run(result.run_id)
    assert run is not None
    assert run.status is rs.RunStatus.CANCELED


async def test_runtime_exit_stops_every_worker_process(tmp_path: Path) -> None:
    repo = rs.CodeRepository(
        [_record_step(tmp_path, f"p{i}", 0.05) for i in range(4)],
        executor=rs.Executor.parallel(max_workers=2),
    )
    async with rs.Runtime(repo) as rt:
        assert (await rt.materialize()).success
        pids = rt.worker_pids
        assert len(pids) == 2
        assert all(_alive(pid) for pid in pids)
    with anyio.fail_after(5):
        while any(_alive(pid) for pid in pids):
            await anyio.sleep(0.02)


async def test_unpicklable_function_fails_with_a_clear_error() -> None:
    lock = threading.Lock()

    @rs.Asset
    def holds_a_lock() -> int:
        with lock:
            return 1

    result = await rs.CodeRepository(
        [holds_a_lock], executor=rs.Executor.parallel(max_workers=1)
    ).materialize()
    error = result.step_record("holds_a_lock").error or ""
    assert "cannot be pickled for a worker process" in error
    assert isinstance(result.error, rs.LaunchFailed)


async def test_exception_in_a_worker_keeps_type_and_remote_traceback() -> None:
    @rs.Asset
    def raises() -> None:
        raise KeyError("missing-key")

    result = await rs.CodeRepository(
        [raises], executor=rs.Executor.parallel(max_workers=1)
    ).materialize()
    assert isinstance(result.error, rs.StepError)
    cause = result.error.__cause__
    assert isinstance(cause, KeyError)
    assert "missing-key" in str(cause.__cause__)


async def test_logs_from_worker_processes_become_events() -> None:
    @rs.Asset
    def chatty(context: rs.StepContext) -> None:
        context.log.info("from pid %d", os.getpid())

    result = await rs.CodeRepository(
        [chatty], executor=rs.Executor.parallel(max_workers=1)
    ).materialize()
    assert result.success
    async with open_backend() as storage:
        logs = [
            e.data["message"]
            for e in await storage.events.get_events(run_id=result.run_id)
            if e.kind == "STEP_LOG"
        ]
    assert len(logs) == 1
    assert logs[0].startswith("from pid ")
    assert logs[0] != f"from pid {os.getpid()}"


def test_assets_defined_in_a_script_main_run_in_workers(tmp_path: Path) -> None:
    script = tmp_path / "pipeline.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            import rivers as rs

            @rs.Asset
            def base() -> int:
                return os.getpid()

            @rs.Asset
            def derived(base: int) -> tuple[int, int]:
                return (base, os.getpid())

            repo = rs.CodeRepository(
                [base, derived], executor=rs.Executor.parallel(max_workers=2)
            )
            result = repo.materialize()
            assert result.success, result.error
            worker_pid = result.output_for("derived")[1]
            print("OK", worker_pid != os.getpid())
            """
        )
    )
    env = {**os.environ, "RIVERS_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "OK True"


def _ask(worker: Any, asset: rs.Asset[Any, Any], io_manager: rs.IOManager) -> bool:
    """Send ``asset`` to a raw worker; return whether it ran."""
    import pickle

    import cloudpickle

    from rivers.executors._protocol import TaskDone, TaskRequest, decode_reply, encode

    data = cloudpickle.dumps(asset)
    worker.conn.send_bytes(
        encode(
            TaskRequest(
                task_id=1,
                run_id="r",
                step_key=asset.name,
                attempt=1,
                run_tags={},
                asset=data,
                asset_digest=str(hash(data)),
                io_manager=pickle.dumps(io_manager),
            )
        )
    )
    while worker.conn.poll(20):
        reply = decode_reply(worker.conn.recv_bytes())
        if isinstance(reply, TaskDone):
            return reply.ok
    return False


def test_a_worker_outlives_the_thread_that_started_it(tmp_path: Path) -> None:
    # Workers are started from anyio's worker threads, which end when idle; a
    # worker tied to its starting thread (PR_SET_PDEATHSIG) was killed mid-step.
    from rivers.executors.process_pool import _start_worker

    started: list[Any] = []
    may_end = threading.Event()

    def start_then_wait() -> None:
        started.append(_start_worker(None))
        may_end.wait(20)

    starter = threading.Thread(target=start_then_wait)
    starter.start()
    while not started:
        time.sleep(0.001)
    (worker,) = started
    io_manager = rs.FilesystemIOManager(tmp_path)
    try:
        assert _ask(worker, rs.Asset(lambda: 1, name="before"), io_manager)
        may_end.set()  # the worker is fully up: now its starting thread ends
        starter.join()
        assert _ask(worker, rs.Asset(lambda: 2, name="after"), io_manager)
        assert worker.process.poll() is None
    finally:
        worker.process.kill()
        worker.process.wait(5)
        worker.conn.close()


def test_workers_exit_when_their_runtime_process_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        import anyio
        import rivers as rs

        @rs.Asset
        def sleepy() -> None:
            time.sleep(60)

        repo = rs.CodeRepository([sleepy], executor=rs.Executor.parallel(max_workers=1))

        async def main() -> None:
            async with rs.Runtime(repo) as rt:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(rt.materialize)
                    while not rt.worker_pids:
                        await anyio.sleep(0.01)
                    print(rt.worker_pids[0], flush=True)
                    await anyio.sleep(60)

        anyio.run(main)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        env={**os.environ, "RIVERS_HOME": str(tmp_path / "home")},
    )
    try:
        assert parent.stdout is not None
        worker_pid = int(parent.stdout.readline())
        assert _alive(worker_pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert parent.stdout is not None
        parent.stdout.close()
    deadline = time.monotonic() + 5
    while _alive(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(worker_pid)
