"""The Job of one step attempt under ``Executor.kubernetes``, as the launcher
creates it: where its pod finds the code, and the manifest.

The manifest itself is ``_kube_jobs.job_manifest``'s; this module supplies what
only the launching process knows: the asset's code location, its ``RIVERS_HOME``,
the run's tags and the step's pool lease (the pod's environment).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rivers.errors import LaunchFailed
from rivers.executors._kube_jobs import (
    CodeLocation,
    JobSpec,
    find_code_location,
    job_manifest,
    job_name,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from rivers.context import PoolLease
    from rivers.definitions.asset import Asset
    from rivers.executors.kubernetes_config import KubernetesExecutor
    from rivers.io import IOManager

__all__ = ("code_location", "step_job_manifest")


def code_location(asset: Asset[Any, Any], io_manager: IOManager | None) -> CodeLocation:
    """Return where a pod finds ``asset`` (its module-level ``CodeRepository``).

    Raises:
        LaunchFailed: no module-level repository holds this asset.
    """
    location = find_code_location(asset, io_manager)
    if location is None:
        raise LaunchFailed(
            asset.name,
            "Executor.kubernetes runs steps in pods that import the code: "
            "define the CodeRepository holding this asset at module level "
            "of an importable module or a file",
        )
    return location


def step_job_manifest(
    config: KubernetesExecutor,
    asset: Asset[Any, Any],
    *,
    run_id: str,
    attempt: int,
    run_tags: Mapping[str, str],
    location: CodeLocation,
    pool_lease: PoolLease | None = None,
) -> dict[str, Any]:
    """Return the batch/v1 Job of one attempt of ``asset``, as ``launch`` creates it."""
    from rivers.storage import rivers_home

    env = {
        "PYTHONUNBUFFERED": "1",
        "RIVERS_HOME": str(rivers_home()),
        "RIVERS_RUN_TAGS": json.dumps(dict(run_tags), sort_keys=True),
    }
    if pool_lease is not None:
        env["RIVERS_POOL_LEASE"] = json.dumps(pool_lease.to_wire())

    spec = JobSpec(
        name=job_name(run_id, asset.name, attempt),
        namespace=config.namespace,
        run_id=run_id,
        step_key=asset.name,
        attempt=attempt,
        location=location,
        env=env,
        timeout_s=asset.timeout_s,
    )
    return job_manifest(spec, config)
