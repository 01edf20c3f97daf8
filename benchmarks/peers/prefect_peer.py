"""Prefect 3's versions of workloads 1, 3, 4, 5 and 6's import, measured as rivers' are.

Each workload runs in its own interpreter (``python -m
benchmarks.peers.prefect_peer WORKLOAD --size N --repeat R``) under a fresh
``PREFECT_HOME`` with Prefect's default settings except that nothing leaves the
machine (no ``PREFECT_API_URL``, so an ephemeral API server on SQLite; server
analytics off, ``DO_NOT_TRACK=1``, no UI), and prints one JSON line per figure;
the suite starts these with a timeout (``common.run_workloads``).

1. ``dag``: the 20 x 10 all-to-all DAG in one flow, each task submitted with its
   upstream tasks' futures (the default thread-pool task runner), after a first
   run that starts the ephemeral server (reported on its own row).
3. ``parallel``: N submissions of a trivial task on
   ``ProcessPoolTaskRunner(max_workers=2)``. Each flow run starts its own pool, so
   "cold" is the interpreter's first such flow run and "warm" a later one.
4. ``pools``: N async tasks sleeping 50 ms inside
   ``prefect.concurrency.asyncio.concurrency("db", occupy=1)``, the global
   concurrency limit ``db`` created with limit 4 through the client (what
   ``prefect gcl create db --limit 4`` does); and acquire+release round trips of
   the sync ``concurrency("db")`` (each a leased slot on the server).
5. ``queue``: a local ``prefect server start`` (a worker and the runs it starts
   must share one server), a ``process`` work pool, a deployment of
   ``prefect_flows.one`` from this checkout and ``prefect worker start --limit
   10`` polling every second (``PREFECT_WORKER_QUERY_SECONDS=1``; the default is
   10 s); N ``run_deployment(timeout=0)`` calls, runs/s end to end, admission
   latency from SCHEDULED to PENDING (the worker taking the run).
6. ``import``: ``import prefect`` in N fresh interpreters (``-X importtime``).
"""

from __future__ import annotations

import contextlib
import os
import socket
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

SYSTEM = "prefect"
CLAIM_ROUND_TRIPS = 50
QUEUE_CONCURRENCY = 10
WORKER_QUERY_S = 1
START_TIMEOUT_S = 120.0
POOL_NAME = "bench"
ENTRYPOINT = "benchmarks/peers/prefect_flows.py:one"
OFFLINE = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_UI_ENABLED": "false",
}
"""Settings that keep Prefect off the network (and its UI unbuilt)."""


@contextlib.contextmanager
def prefect_home(**settings: str) -> Iterator[Path]:
    """Point ``PREFECT_HOME`` at a fresh directory, with ``OFFLINE`` and ``settings``.

    Prefect reads its settings when first imported, so the workloads import it
    only inside this block.
    """
    with tempfile.TemporaryDirectory(
        prefix="prefect-bench-", ignore_cleanup_errors=True
    ) as home:
        os.environ.pop("PREFECT_API_URL", None)
        os.environ.update(PREFECT_HOME=home, **OFFLINE, **settings)
        yield Path(home)


def measure_dag(levels: int, repeat: int) -> list[Figure]:
    """Workload 1: the DAG in one flow, on the ephemeral server."""
    with prefect_home():
        from benchmarks.peers.prefect_flows import dag_flow

        dag = dag_flow(levels, inprocess_dag.WIDTH)
        first = timed(dag)
        walls = [timed(dag) for _ in range(repeat)]
    suffix, scaled = dag_scaled(levels)
    note = (
        "one flow, each task submitted with its upstream futures (thread-pool task "
        "runner), ephemeral API server on SQLite already up"
    )
    return [
        *dag_figures(SYSTEM, levels, walls, note),
        peer_figure(
            SYSTEM,
            "inprocess_dag",
            "materialize, first flow run (starts the server)" + suffix,
            "s",
            [first],
            note=scaled,
        ),
    ]


def measure_parallel(steps: int, repeat: int) -> list[Figure]:
    """Workload 3: N trivial tasks on the process-pool task runner (2 workers)."""
    with prefect_home():
        from benchmarks.peers.prefect_flows import one, parallel

        one()  # start the ephemeral server, which is not the pool's cost
        cold = [timed(lambda: parallel(steps))]
        warm = [timed(lambda: parallel(steps)) for _ in range(repeat)]
    note = (
        "ProcessPoolTaskRunner(max_workers=2): each flow run starts its 2 processes, "
        "and each of them its own ephemeral API server"
    )
    return parallel_figures(SYSTEM, steps, cold, warm, note)


def measure_pools(steps: int, repeat: int) -> list[Figure]:
    """Workload 4: the limited run (wall / ideal) and acquire+release round trips."""
    with prefect_home():
        from prefect import get_client
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
        from prefect.concurrency.sync import concurrency

        from benchmarks.peers.prefect_flows import POOL, pooled_flow

        with get_client(sync_client=True) as client:
            limit = GlobalConcurrencyLimitCreate(name=POOL, limit=pools.LIMIT)
            client.create_global_concurrency_limit(limit)
        pooled_flow(pools.LIMIT, pools.SLEEP_S)  # one unmeasured run, as rivers'

        def round_trips() -> None:
            for _ in range(CLAIM_ROUND_TRIPS):
                with concurrency(POOL, occupy=1):
                    pass

        walls: list[float] = []
        rates: list[float] = []
        for _ in range(repeat):
            walls.append(timed(lambda: pooled_flow(steps, pools.SLEEP_S)))
            rates.append(CLAIM_ROUND_TRIPS / timed(round_trips))
    note = f"sync concurrency('db') entered and left {CLAIM_ROUND_TRIPS} times"
    return pool_figures(SYSTEM, steps, walls, rates, note)


def measure_queue(runs: int, repeat: int) -> list[Figure]:
    """Workload 5: N deployment runs through a process work pool and its worker."""
    port = _free_port()
    rates: list[float] = []
    waits: list[list[float]] = []
    with prefect_home(PREFECT_WORKER_QUERY_SECONDS=str(WORKER_QUERY_S)) as home:
        os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
        server = _start(
            home / "server.log",
            ["server", "start", "--host", "127.0.0.1", "--port", str(port)],
        )
        worker = None
        try:
            _wait_healthy(port)
            from prefect import flow, get_client
            from prefect.client.schemas.actions import WorkPoolCreate
            from prefect.deployments import run_deployment

            with get_client(sync_client=True) as client:
                client.create_work_pool(WorkPoolCreate(name=POOL_NAME, type="process"))
                source = flow.from_source(source=str(ROOT), entrypoint=ENTRYPOINT)
                source.deploy(
                    name="one",
                    work_pool_name=POOL_NAME,
                    print_next_steps=False,
                    ignore_warnings=True,
                )
                limit = ["--limit", str(QUEUE_CONCURRENCY)]
                worker = _start(
                    home / "worker.log",
                    [
                        "worker",
                        "start",
                        "--pool",
                        POOL_NAME,
                        "--type",
                        "process",
                        *limit,
                    ],
                )
                _wait_worker(client)
                for _ in range(repeat):
                    began = time.perf_counter()
                    ids = [run_deployment("one/one", timeout=0).id for _ in range(runs)]
                    _wait_finished(client, ids)
                    rates.append(runs / (time.perf_counter() - began))
                    waits.append([_admission_s(client, run_id) for run_id in ids])
        finally:
            for process in (worker, server):
                if process is not None:
                    stop_session(process)
    note = (
        f"{runs} runs; process work pool, worker --limit {QUEUE_CONCURRENCY} polling "
        f"every {WORKER_QUERY_S} s (default 10 s; rivers: 50 ms), a process per run"
    )
    return queue_figures(SYSTEM, rates, waits, note)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start(log_path: Path, args: list[str]) -> subprocess.Popen[Any]:
    """Start ``prefect ARGS`` in its own session, logging to ``log_path``."""
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("prefect")), *args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_healthy(port: int) -> None:
    import httpx

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/api/health").is_success:
                return
        time.sleep(POLL_S)
    raise TimeoutError(f"prefect server not up within {START_TIMEOUT_S:g}s")


def _wait_worker(client: Any) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not client.read_workers_for_work_pool(work_pool_name=POOL_NAME):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no prefect worker within {START_TIMEOUT_S:g}s")
        time.sleep(POLL_S)


def _wait_finished(client: Any, ids: list[Any]) -> None:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    only = FlowRunFilter(id=FlowRunFilterId(any_=ids))
    while True:
        found = client.read_flow_runs(flow_run_filter=only, limit=len(ids))
        if len(found) == len(ids) and all(r.state.is_final() for r in found):
            failed = [r.id for r in found if not r.state.is_completed()]
            assert not failed, f"prefect runs failed: {failed}"
            return
        time.sleep(POLL_S)


def _admission_s(client: Any, run_id: Any) -> float:
    """Return the seconds from a run's SCHEDULED state to its first PENDING one."""
    states = client.read_flow_run_states(run_id)
    stamps: dict[str, Any] = {}
    for state in sorted(states, key=lambda s: s.timestamp):
        stamps.setdefault(state.type.value, state.timestamp)
    return float((stamps["PENDING"] - stamps["SCHEDULED"]).total_seconds())


if __name__ == "__main__":
    workload_main("Prefect", sys.modules[__name__])
