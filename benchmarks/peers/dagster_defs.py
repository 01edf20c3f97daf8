"""Dagster definitions of the peer workloads (imported by Dagster's subprocesses).

Dagster's multiprocess executor and run launcher rebuild a job in each step or
run process by importing a module-level function, so the jobs are built here from
the environment (``RIVERS_PEER_SIZE``) rather than from arguments. The assets are
the rivers workloads' own builders with Dagster's decorator, so both sides run the
same functions.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from benchmarks.inprocess_dag import build_assets
from benchmarks.parallel_steps import trivial_assets
from benchmarks.pools import pooled_assets

SIZE_ENV = "RIVERS_PEER_SIZE"
WORKERS_ENV = "RIVERS_PEER_WORKERS"


def size() -> int:
    """Return the workload size the measuring process chose."""
    return int(os.environ.get(SIZE_ENV, "1"))


def dag_assets(levels: int, width: int) -> list[Any]:
    """Return the all-to-all DAG as Dagster assets."""
    return build_assets(levels, width, decorate=dg.asset)


def _job(assets: list[Any], max_concurrent: int) -> dg.JobDefinition:
    defs = dg.Definitions(
        assets=assets,
        jobs=[dg.define_asset_job("all", selection=dg.AssetSelection.all())],
        executor=dg.multiprocess_executor.configured(
            {"max_concurrent": max_concurrent}
        ),
    )
    return defs.resolve_job_def("all")


def parallel_job() -> dg.JobDefinition:
    """Workload 3: ``size()`` independent trivial sync assets, 2 worker processes."""
    return _job(trivial_assets(size(), "s", decorate=dg.asset), 2)


def pool_job() -> dg.JobDefinition:
    """Workload 4: ``size()`` async assets sleeping 50 ms in pool "db".

    The executor may run as many step processes as the pool allows, so the pool,
    not the executor, is the limit (as with rivers, whose async steps run on the
    event loop).
    """
    workers = int(os.environ.get(WORKERS_ENV, "4"))
    return _job(pooled_assets(size(), decorate=dg.asset(pool="db")), workers)


@dg.asset
async def one() -> int:
    """Workload 5's one trivial async asset."""
    return 1


queue_defs = dg.Definitions(
    assets=[one], jobs=[dg.define_asset_job("one_job", selection=[one])]
)
"""Workload 5's code location (the daemon and run workers load it)."""
