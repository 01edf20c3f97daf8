"""Dagster's versions of workloads 1, 3, 4, 5 and 6's import, measured as rivers' are.

Each workload runs in its own interpreter (``python -m
benchmarks.peers.dagster_peer WORKLOAD --size N --repeat R``) under a fresh
``DAGSTER_HOME`` and prints one JSON line per figure; the suite starts these with a
timeout (``common.run_workloads``).

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
   instance's concurrency storage. With ``RIVERS_BENCH_POSTGRES`` (an admin URL)
   and ``dagster-postgres`` installed, the round trips are measured on a
   PostgreSQL instance too (a fresh database, dropped after), beside rivers'
   ``benchmarks.postgres``.
5. ``queue``: N runs of a one-asset job submitted to a QueuedRunCoordinator
   (``max_concurrent_runs=10``, ``dequeue_interval_seconds=1``, its minimum)
   with ``dagster-daemon`` dequeuing and the default run launcher; runs/s end to
   end, admission latency from RUN_ENQUEUED to RUN_STARTING (Dagster no longer
   logs RUN_DEQUEUED; the daemon moves a run it admits straight to STARTING).
6. ``import``: ``import dagster`` in N fresh interpreters (``-X importtime``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import inprocess_dag, pools
from benchmarks.peers.common import (
    POLL_S,
    ROOT,
    dag_figures,
    dag_scaled,
    parallel_figures,
    peer_figure,
    pool_figures,
    queue_figures,
    stop_session,
    timed,
    workload_main,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from benchmarks.figures import Figure

SYSTEM = "dagster"
CLAIM_ROUND_TRIPS = 200


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


def measure_dag(levels: int, repeat: int) -> list[Figure]:
    """Workload 1 on a SQLite instance and on an ephemeral one."""
    import dagster as dg

    from benchmarks.peers.dagster_defs import dag_assets

    assets = dag_assets(levels, inprocess_dag.WIDTH)
    sqlite: list[float] = []
    ephemeral: list[float] = []
    with dagster_home():
        instance = dg.DagsterInstance.get()
        dg.materialize(dag_assets(1, 1), instance=instance)  # warm the machinery
        for _ in range(repeat):
            sqlite.append(timed(lambda: _ok(dg.materialize(assets, instance=instance))))
            ephemeral.append(timed(lambda: _ok(dg.materialize(assets))))
    suffix, scaled = dag_scaled(levels)
    return [
        *dag_figures(SYSTEM, levels, sqlite, "on a SQLite instance"),
        peer_figure(
            SYSTEM,
            "inprocess_dag",
            "materialize, ephemeral instance" + suffix,
            "s",
            ephemeral,
            note=scaled,
        ),
    ]


def _ok(result: Any) -> None:
    assert result.success


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
            walls.append(timed(lambda: _execute(dg, job, instance)))
    note = "no warm worker pool: a process per step"
    return parallel_figures(SYSTEM, steps, walls, walls, note)


def _execute(dg: Any, job: Any, instance: Any) -> None:
    with dg.execute_job(job, instance=instance) as result:
        _ok(result)


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
            walls.append(timed(lambda: _execute(dg, job, instance)))
            spent = timed(lambda: _claim_round_trips(storage, CLAIM_ROUND_TRIPS))
            rates.append(CLAIM_ROUND_TRIPS / spent)
    note = "claim_concurrency_slot + free_concurrency_slot_for_step"
    figures = pool_figures(SYSTEM, steps, walls, rates, note)
    admin = os.environ.get("RIVERS_BENCH_POSTGRES")
    if admin:
        on_postgres = _postgres_rates(dg, admin, repeat)
        figures.append(
            peer_figure(
                SYSTEM,
                "pools",
                "claim+release round trips (durable), PostgreSQL",
                "/s",
                on_postgres,
                better="higher",
                note=note,
            )
        )
    return figures


def _postgres_rates(dg: Any, admin: str, repeat: int) -> list[float]:
    """Claim+release round trips per second on a PostgreSQL instance."""
    import uuid

    import psycopg

    name = f"bench_dagster_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = admin.rsplit("/", 1)[0] + "/" + name
    rates: list[float] = []
    try:
        config = f"storage:\n  postgres:\n    postgres_url: {url}\n"
        with dagster_home(config):
            instance = dg.DagsterInstance.get()
            storage = instance.event_log_storage
            storage.set_concurrency_slots("db", pools.LIMIT)
            for _ in range(repeat):
                spent = timed(lambda: _claim_round_trips(storage, CLAIM_ROUND_TRIPS))
                rates.append(CLAIM_ROUND_TRIPS / spent)
            instance.dispose()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return rates


def _claim_round_trips(storage: Any, count: int) -> None:
    for index in range(count):
        assert storage.claim_concurrency_slot("db", "bench", f"s{index}").is_claimed
        storage.free_concurrency_slot_for_step("bench", f"s{index}")


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
    waits: list[list[float]] = []
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
                    waits.append([_admission_s(instance, r) for r in run_ids])
        finally:
            stop_session(daemon)
    note = f"{runs} runs; dequeue interval 1 s (Dagster's minimum; rivers: 50 ms)"
    return queue_figures(SYSTEM, rates, waits, note)


def _wait_finished(instance: Any, run_ids: list[str]) -> None:
    import dagster as dg

    while True:
        records = instance.get_runs(filters=dg.RunsFilter(run_ids=run_ids))
        if len(records) == len(run_ids) and all(r.is_finished for r in records):
            failed = [r.run_id for r in records if not r.is_success]
            assert not failed, f"dagster runs failed: {failed}"
            return
        time.sleep(POLL_S)


def _admission_s(instance: Any, run_id: str) -> float:
    from dagster._core.events import DagsterEventType as kinds

    logs = instance.all_logs(run_id, of_type={kinds.RUN_ENQUEUED, kinds.RUN_STARTING})
    stamps = {log.dagster_event.event_type: log.timestamp for log in logs}
    return float(stamps[kinds.RUN_STARTING] - stamps[kinds.RUN_ENQUEUED])


if __name__ == "__main__":
    workload_main("Dagster", sys.modules[__name__])
