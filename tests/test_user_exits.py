"""Any BaseException from user code is that code's failure, never the runtime's.

``sys.exit()``, ``KeyboardInterrupt``, ``GeneratorExit``, a ``CancelledError`` the
step raised itself or a ``BaseException`` subclass, raised by a sync step (in a
thread or a worker process) or an async step (on the loop), fails that step with
the reason; every other step runs and the runtime goes on. The steps that raise
``KeyboardInterrupt`` run in a subprocess: before the fix it stopped the runtime
(and would stop pytest with it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio

import rivers as rs
from rivers._clock import ManualClock
from rivers.actors.triggers import TriggerRunner

_RAISING_STEPS = """
import asyncio
import sys

import rivers as rs


class Custom(BaseException):
    pass


@rs.Asset
def exits() -> int:
    sys.exit(3)


@rs.Asset
def interrupted() -> int:
    raise KeyboardInterrupt


@rs.Asset
def custom() -> int:
    raise Custom("mine")


@rs.Asset
async def async_exits() -> int:
    sys.exit("bye")


@rs.Asset
async def async_interrupted() -> int:
    raise KeyboardInterrupt


@rs.Asset
async def async_generator_exit() -> int:
    raise GeneratorExit


@rs.Asset
async def async_cancelled() -> int:
    raise asyncio.CancelledError


@rs.Asset
def fine() -> int:
    return 1


@rs.Asset
async def after(fine: int) -> int:
    return fine + 1


ASSETS = [
    exits, interrupted, custom, async_exits, async_interrupted,
    async_generator_exit, async_cancelled, fine, after,
]
"""

_EXPECTED_ERRORS = {
    "exits": "SystemExit: sys.exit(3) was called",
    "interrupted": "KeyboardInterrupt",
    "custom": "Custom: mine",
    "async_exits": "SystemExit: sys.exit('bye') was called",
    "async_interrupted": "KeyboardInterrupt",
    "async_generator_exit": "GeneratorExit",
    "async_cancelled": "CancelledError",
}


def test_every_base_exception_fails_only_its_step_under_every_executor(
    tmp_path: Path,
) -> None:
    script = tmp_path / "steps.py"
    script.write_text(
        _RAISING_STEPS
        + textwrap.dedent(
            """
            import json

            repo = rs.CodeRepository(ASSETS)
            for executor in (
                rs.Executor.in_process(),
                rs.Executor.parallel(max_workers=2),
            ):
                result = repo.materialize(executor=executor)
                print(json.dumps({
                    "status": result.status,
                    "steps": {r.step_key: [r.status, r.error] for r in result.step_records},
                    "cause": type(result.error.__cause__).__name__,
                }))
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "RIVERS_HOME": str(tmp_path / "home")},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == 2  # both executors ran to their end
    for result in results:
        assert result["status"] == "FAILURE"
        steps = result["steps"]
        assert steps["fine"] == ["SUCCESS", None]
        assert steps["after"] == ["SUCCESS", None]
        for step, reason in _EXPECTED_ERRORS.items():
            status, error = steps[step]
            assert status == "FAILURE", (step, error)
            assert error.startswith(f"step {step!r} failed: "), error
            # (an exception that cannot be pickled back from a worker is named
            # by a stand-in: "RemoteStepError: Custom: mine")
            assert error.endswith(reason), error
        assert result["cause"] in ("SystemExit", "KeyboardInterrupt", "Custom")


async def test_a_sensor_calling_sys_exit_fails_the_sensor_not_the_runtime() -> None:
    @rs.Asset
    async def work() -> int:
        return 1

    calls: list[int] = []

    @rs.sensor(interval="30s")
    def leaves(context: rs.SensorContext) -> rs.RunRequest:
        calls.append(1)
        if len(calls) == 1:
            sys.exit(4)
        return rs.RunRequest()

    @rs.sensor(interval="30s")
    async def interrupts(context: rs.SensorContext) -> None:
        raise GeneratorExit

    repo = rs.CodeRepository(
        [work],
        sensors=[leaves, interrupts],
        run_queue=rs.RunQueueConfig(dequeue_interval="20ms"),
    )
    clock = ManualClock(1_700_000_000.0)
    async with rs.Runtime(repo, clock=clock) as rt:
        runner = rt.triggers
        assert isinstance(runner, TriggerRunner)
        await runner.tick_now()
        clock.advance(30)
        await runner.tick_now()
        (run,) = await rt.storage.get_runs(tags={"rivers/sensor": "leaves"})
        with anyio.fail_after(20):
            finished = await rt.wait_for(run.run_id)
        events = await rt.storage.get_events(kinds=["TRIGGER_FAILURE"])
    assert finished.status is rs.RunStatus.SUCCESS
    by_trigger = {(e.data["trigger"], e.data["error_type"]) for e in events}
    assert ("leaves", "SystemExit") in by_trigger
    assert ("interrupts", "GeneratorExit") in by_trigger
    (exit_event,) = [e for e in events if e.data["trigger"] == "leaves"]
    assert exit_event.data["error"] == "sys.exit(4) was called"
    assert len(calls) == 2  # evaluated again after its failure, and it submitted


def test_a_daemon_fails_the_step_and_keeps_admitting(tmp_path: Path) -> None:
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(
        _RAISING_STEPS
        + textwrap.dedent(
            """
            repo = rs.CodeRepository(
                ASSETS,
                executor=rs.Executor.parallel(max_workers=2),
                run_queue=rs.RunQueueConfig(max_concurrent_runs=1, dequeue_interval="50ms"),
            )
            """
        )
    )
    env = {**os.environ, "RIVERS_HOME": str(tmp_path / "home")}

    def rivers(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rivers", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    for step in ("exits", "async_interrupted", "fine"):
        done = rivers("submit", "-f", str(pipeline), "--select", step)
        assert done.returncode == 0, done.stderr
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "rivers", "daemon", "-f", str(pipeline)],
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            runs = json.loads(rivers("runs", "list", "--json").stdout)
            if runs and all(r["status"] in ("SUCCESS", "FAILURE") for r in runs):
                break
            assert daemon.poll() is None, log.read_text()
            assert time.monotonic() < deadline, runs
            time.sleep(0.1)
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=30)
    text = log.read_text()
    assert code == 143, text
    assert "Traceback" not in text
    reasons = {tuple(r["selection"]): (r["status"], r["reason"]) for r in runs}
    assert reasons == {
        ("exits",): (
            "FAILURE",
            "step 'exits' failed: SystemExit: sys.exit(3) was called",
        ),
        ("async_interrupted",): (
            "FAILURE",
            "step 'async_interrupted' failed: KeyboardInterrupt",
        ),
        ("fine",): ("SUCCESS", None),
    }
