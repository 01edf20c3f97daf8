"""Dagster's versions of workloads 1, 3, 4 and 5, measured the way rivers' are.

Each workload runs in its own interpreter (``python -m
benchmarks.peers.dagster_peer WORKLOAD --size N --repeat R``) under a fresh
``DAGSTER_HOME`` and prints one JSON line per figure. The suite starts these with a
timeout; ``figures()`` is that side.

1. ``dag``: the 20 x 10 all-to-all DAG with ``dagster.materialize()`` (in-process
   executor) on a DagsterInstance on SQLite (durable events, like rivers), and on
   the default ephemeral instance. ``--size`` is the number of levels.
3. ``parallel``: N independent trivial sync assets, multiprocess executor with
   ``max_concurrent=2``, on a SQLite instance. Dagster starts a process per step
   and keeps no warm pool, so its warm figure is the same kind of run as its cold
   one; steps/s is N / wall.
4. ``pools``: N async assets sleeping 50 ms with ``pool="db"``, the pool's limit
   set to 4 on the instance (``dagster instance concurrency set db 4``), executor
   ``max_concurrent=4``; and claim+release round trips straight through the
   instance's concurrency storage.
5. ``queue``: N runs of a one-asset job submitted to a QueuedRunCoordinator
   (``max_concurrent_runs=10``, ``dequeue_interval_seconds=1``, its minimum)
   with ``dagster-daemon`` dequeuing and the default run launcher; runs/s end to
   end, admission latency from RUN_ENQUEUED to RUN_STARTING (Dagster no longer
   logs RUN_DEQUEUED; the daemon moves a run it admits straight to STARTING).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import inprocess_dag, parallel_steps, pools, run_queue
from benchmarks.figures import Figure, figure_from_json, percentile

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
SYSTEM = "dagster"
POLL_S = 0.2
CLAIM_ROUND_TRIPS = 200

# Full sizes (as rivers runs them) and the default for the queue, whose full
# size would take Dagster about a quarter of an hour at ~1 run/s.
FULL = {
    "dag": inprocess_dag.LEVELS,
    "parallel": parallel_steps.SMALL,
    "pools": pools.STEPS,
    "queue": run_queue.RUNS,
}
DEFAULT_QUEUE_RUNS = 20
QUICK = {"dag": 2, "parallel": 4, "pools": 8, "queue": 3}


def sizes(scale: float, quick: bool, queue_runs: int) -> dict[str, int]:
    """Return each workload's size: the full size times ``scale`` (at least 2)."""
    if quick:
        return dict(QUICK)
    chosen = {name: max(2, round(full * scale)) for name, full in FULL.items()}
    chosen["queue"] = min(chosen["queue"], queue_runs)
    return chosen


# ------------------------------------------------------------- suite side


def figures(
    workloads: dict[str, int], repeat: int, timeout_s: float
) -> tuple[list[Figure], list[str]]:
    """Run each workload in its own interpreter; return figures and problems."""
    found: list[Figure] = []
    problems: list[str] = []
    env = {**os.environ, "PYTHONPATH": _python_path()}
    for name, size in workloads.items():
        command = [sys.executable, "-m", __name__, name, "--size", str(size)]
        command += ["--repeat", str(repeat)]
        print(f"  dagster {name} (size {size}) ...", file=sys.stderr, flush=True)
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                cwd=ROOT,
                env=env,
            )
        except subprocess.TimeoutExpired:
            problems.append(f"dagster {name}: no result within {timeout_s:g}s")
            continue
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        found.extend(figure_from_json(json.loads(line)) for line in lines)
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            problems.append(f"dagster {name} failed: {tail[0]}")
    return found, problems


def _python_path() -> str:
    extra = os.environ.get("PYTHONPATH")
    return str(ROOT) if not extra else f"{ROOT}{os.pathsep}{extra}"


# -------------------------------------------------------- workload side


@contextlib.contextmanager
def dagster_home(config: str = "") -> Iterator[Path]:
    """Point ``DAGSTER_HOME`` at a fresh directory with ``config`` as dagster.yaml."""
    # The daemon may still be writing its logs as the directory goes.
    with tempfile.TemporaryDirectory(
        prefix="dagster-bench-", ignore_cleanup_errors=True
    ) as home:
        text = "telemetry:\n  enabled: false\n" + config
        (Path(home) / "dagster.yaml").write_text(text, encoding="utf-8")
        os.environ["DAGSTER_HOME"] = home
        yield Path(home)


def _figure(metric: str, unit: str, values: list[float], **kw: Any) -> Figure:
    return Figure(
        kw.pop("workload"), metric, unit, values, system=SYSTEM, uvloop=False, **kw
    )


def measure_dag(levels: int, repeat: int) -> list[Figure]:
    """Workload 1 on a SQLite instance and on an ephemeral one."""
    import dagster as dg

    from benchmarks.peers.dagster_defs import dag_assets

    width = inprocess_dag.WIDTH
    steps = levels * width
    assets = dag_assets(levels, width)
    sqlite: list[float] = []
    ephemeral: list[float] = []
    with dagster_home():
        instance = dg.DagsterInstance.get()
        dg.materialize(dag_assets(1, 1), instance=instance)  # warm the machinery
        for _ in range(repeat):
            began = time.perf_counter()
            assert dg.materialize(assets, instance=instance).success
            sqlite.append(time.perf_counter() - began)
            began = time.perf_counter()
            assert dg.materialize(assets).success
            ephemeral.append(time.perf_counter() - began)
    full = levels == inprocess_dag.LEVELS
    scaled = "" if full else f"{steps} of 200 steps ({levels} levels x {width})"
    note = "on a SQLite instance" + (
        f"; {scaled}, normalised per step" if scaled else ""
    )
    per_step = [wall / steps * 1e6 for wall in sqlite]
    suffix = "" if full else f" ({steps} steps)"
    return [
        _figure(
            "materialize, fresh runtime" + suffix,
            "s",
            sqlite,
            workload="inprocess_dag",
            note=note,
        ),
        _figure(
            "per step, fresh runtime",
            "us",
            per_step,
            workload="inprocess_dag",
            note=note,
        ),
        _figure(
            "materialize, ephemeral instance" + suffix,
            "s",
            ephemeral,
            workload="inprocess_dag",
            note=scaled,
        ),
    ]


def measure_parallel(steps: int, repeat: int) -> list[Figure]:
    """Workload 3: N trivial sync steps on the multiprocess executor (2 workers)."""
    import dagster as dg

    from benchmarks.peers import dagster_defs

    os.environ[dagster_defs.SIZE_ENV] = str(steps)
    walls: list[float] = []
    with dagster_home():
        instance = dg.DagsterInstance.get()
        job = dg.reconstructable(dagster_defs.parallel_job)
        for _ in range(repeat):
            began = time.perf_counter()
            with dg.execute_job(job, instance=instance) as result:
                assert result.success
            walls.append(time.perf_counter() - began)
    full = steps == parallel_steps.SMALL
    note = "no warm worker pool: a process per step" + (
        "" if full else f"; {steps} of 64 steps"
    )
    suffix = "" if full else f" ({steps} steps)"
    return [
        _figure(
            "64 sync steps, 2 workers, cold" + suffix,
            "s",
            walls,
            workload="parallel_steps",
            note=note,
        ),
        _figure(
            "64 sync steps, 2 workers, warm" + suffix,
            "s",
            walls,
            workload="parallel_steps",
            note=note,
        ),
        _figure(
            "1,000 sync steps, 2 workers",
            "steps/s",
            [steps / w for w in walls],
            workload="parallel_steps",
            better="higher",
            note=f"{steps} steps / wall of the {steps}-step run",
        ),
    ]


def measure_pools(steps: int, repeat: int) -> list[Figure]:
    """Workload 4: the pooled run (wall / ideal) and claim+release round trips."""
    import dagster as dg

    from benchmarks.peers import dagster_defs

    os.environ[dagster_defs.SIZE_ENV] = str(steps)
    walls: list[float] = []
    rates: list[float] = []
    with dagster_home():
        instance = dg.DagsterInstance.get()
        storage = instance.event_log_storage
        storage.set_concurrency_slots("db", pools.LIMIT)
        job = dg.reconstructable(dagster_defs.pool_job)
        for _ in range(repeat):
            began = time.perf_counter()
            with dg.execute_job(job, instance=instance) as result:
                assert result.success
            walls.append(time.perf_counter() - began)
            began = time.perf_counter()
            for index in range(CLAIM_ROUND_TRIPS):
                status = storage.claim_concurrency_slot("db", "bench", f"s{index}")
                assert status.is_claimed
                storage.free_concurrency_slot_for_step("bench", f"s{index}")
            rates.append(CLAIM_ROUND_TRIPS / (time.perf_counter() - began))
    ideal = pools.ideal_s(steps)
    full = steps == pools.STEPS
    scaled = "" if full else f"{steps} of 40 steps"
    return [
        _figure(
            "40 x 50 ms in a pool of 4, wall" + ("" if full else f" ({steps} steps)"),
            "s",
            walls,
            workload="pools",
            note=scaled,
        ),
        _figure(
            "40 x 50 ms in a pool of 4, wall / ideal",
            "x",
            [wall / ideal for wall in walls],
            workload="pools",
            note=scaled,
        ),
        _figure(
            "claim+release round trips (durable)",
            "/s",
            rates,
            workload="pools",
            better="higher",
            note="claim_concurrency_slot + free_concurrency_slot_for_step",
        ),
    ]


QUEUE_CONFIG = """
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 10
    dequeue_interval_seconds: 1
"""


def measure_queue(runs: int, repeat: int) -> list[Figure]:
    """Workload 5: N one-asset runs through the QueuedRunCoordinator and daemon."""
    import dagster as dg
    from dagster._cli.job import _create_run
    from dagster._cli.workspace.cli_target import (
        get_code_location_from_workspace,
        get_remote_job_from_remote_repo,
        get_remote_repository_from_code_location,
        get_workspace_from_cli_opts,
    )
    from dagster_shared.cli import WorkspaceOpts

    opts = WorkspaceOpts(
        module_name=["benchmarks.peers.dagster_defs"],
        attribute="queue_defs",
        working_directory=str(ROOT),
    )
    rates: list[float] = []
    p50s: list[float] = []
    p99s: list[float] = []
    with dagster_home(QUEUE_CONFIG) as home, open(home / "daemon.log", "w") as log:
        instance = dg.DagsterInstance.get()
        # Its own session: the daemon's code server goes with it at the end.
        daemon = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("dagster-daemon")),
                "run",
                "-m",
                "benchmarks.peers.dagster_defs",
                "-a",
                "queue_defs",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
        try:
            with get_workspace_from_cli_opts(
                instance, version=dg.__version__, workspace_opts=opts
            ) as workspace:
                location = get_code_location_from_workspace(workspace, None)
                repo = get_remote_repository_from_code_location(location, None)
                remote_job = get_remote_job_from_remote_repo(repo, "one_job")
                for _ in range(repeat):
                    began = time.perf_counter()
                    run_ids = []
                    for _ in range(runs):
                        run = _create_run(
                            instance=instance,
                            code_location=location,
                            remote_repo=repo,
                            remote_job=remote_job,
                            run_config={},
                            tags=None,
                            op_selection=None,
                            run_id=None,
                        )
                        instance.submit_run(run.run_id, workspace)
                        run_ids.append(run.run_id)
                    _wait_finished(instance, run_ids)
                    rates.append(runs / (time.perf_counter() - began))
                    waited = [_admission_s(instance, r) for r in run_ids]
                    p50s.append(percentile(waited, 0.5) * 1000)
                    p99s.append(percentile(waited, 0.99) * 1000)
        finally:
            _stop_session(daemon)
    note = f"{runs} runs; dequeue interval 1 s (Dagster's minimum; rivers: 50 ms)"
    return [
        _figure(
            "1,000 one-step runs through the queue",
            "runs/s",
            rates,
            workload="run_queue",
            better="higher",
            note=note,
        ),
        _figure("admission latency p50", "ms", p50s, workload="run_queue", note=note),
        _figure("admission latency p99", "ms", p99s, workload="run_queue", note=note),
    ]


def _wait_finished(instance: Any, run_ids: list[str]) -> None:
    import dagster as dg

    while True:
        records = instance.get_runs(filters=dg.RunsFilter(run_ids=run_ids))
        if len(records) == len(run_ids) and all(r.is_finished for r in records):
            failed = [r.run_id for r in records if not r.is_success]
            assert not failed, f"dagster runs failed: {failed}"
            return
        time.sleep(POLL_S)


def _stop_session(process: subprocess.Popen[Any]) -> None:
    """Stop a process started in its own session, and everything it started."""
    for sig, wait_s in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait_s)
            return


def _admission_s(instance: Any, run_id: str) -> float:
    from dagster._core.events import DagsterEventType as kinds

    logs = instance.all_logs(run_id, of_type={kinds.RUN_ENQUEUED, kinds.RUN_STARTING})
    stamps = {log.dagster_event.event_type: log.timestamp for log in logs}
    return float(stamps[kinds.RUN_STARTING] - stamps[kinds.RUN_ENQUEUED])


MEASURES = {
    "dag": measure_dag,
    "parallel": measure_parallel,
    "pools": measure_pools,
    "queue": measure_queue,
}


def main() -> None:
    """Measure one workload and print its figures as JSON lines."""
    parser = argparse.ArgumentParser(description="one Dagster peer workload")
    parser.add_argument("workload", choices=sorted(MEASURES))
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    for figure in MEASURES[args.workload](args.size, max(1, args.repeat)):
        print(json.dumps(figure.as_json()), flush=True)


if __name__ == "__main__":
    main()
