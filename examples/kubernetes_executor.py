"""Kubernetes executor: every step of a run is a batch/v1 Job, at most 2 at once.

Run it with ``python examples/kubernetes_executor.py``. Without a cluster it
prints the executor's configuration and the Job it would create for a step, as
an image holding this file at ``IMAGE_FILE`` runs it, and exits. With
``KUBECONFIG=/path/to/kubeconfig`` it runs the pipeline on that cluster: a
``features`` step, then three ``train_*`` steps, never more than 2 step Jobs at
once (``max_concurrent_steps=2``); each pod's log comes back as ``STEP_LOG``
events. The pods run ``python -m rivers.worker``, which imports this file from
the path it has where the run starts: the image (``EXAMPLE_IMAGE``) needs rivers
and this file at that path (``COPY kubernetes_executor.py /app/`` and start the
run from ``/app``, as the preview shows). Code installed in the image as a
package needs no path: the pods import it by module name. These steps pass no
values (``deps=``), so the pods need no shared storage; steps that take upstream
values need ``RIVERS_HOME`` on a volume the pods share. Storage is a throwaway
directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import rivers as rs

KUBECONFIG = os.environ.get("KUBECONFIG")
IMAGE_FILE = "/app/kubernetes_executor.py"
"""Where the example's image holds this file (``COPY kubernetes_executor.py /app/``)."""


def pod() -> str:
    """Where this step runs: the pod's name (Kubernetes sets ``HOSTNAME``) and pid."""
    return f"{os.environ.get('HOSTNAME', '?')} (pid {os.getpid()})"


@rs.Asset
def features(context: rs.StepContext) -> None:
    context.log.info("features built in pod %s", pod())


@rs.Asset(deps=[features], timeout="5m")
def train_small(context: rs.StepContext) -> None:
    context.log.info("small model trained in pod %s", pod())


@rs.Asset(deps=[features], timeout="30m")
def train_large(context: rs.StepContext) -> None:
    context.log.info("large model trained in pod %s", pod())


@rs.Asset(deps=[features], timeout="5m")
def train_baseline(context: rs.StepContext) -> None:
    context.log.info("baseline trained in pod %s", pod())


executor = rs.Executor.kubernetes(
    2,  # at most 2 step Jobs of a run exist at once
    image=os.environ.get("EXAMPLE_IMAGE", "registry.example.com/pipelines:1.2"),
    namespace="default",
    kubeconfig=KUBECONFIG,
    resources={"requests": {"cpu": "250m", "memory": "256Mi"}},
    labels={"team": "ml"},
    step_overrides={  # merged over the executor's settings for this step
        "train_large": {
            "resources": {
                "requests": {"cpu": "2", "memory": "6Gi"},
                "limits": {"memory": "8Gi"},
            }
        }
    },
)

repo = rs.CodeRepository(
    [features, train_small, train_large, train_baseline], executor=executor
)


def peak_overlap(records: Sequence[rs.RunRecord | rs.StepRecord]) -> int:
    """The most records in progress at one moment, from their start and end times."""
    edges = []
    for record in records:
        if record.started_at and record.ended_at:
            edges += [(record.started_at, 1), (record.ended_at, -1)]
    peak = running = 0
    for _, change in sorted(edges):  # at a tie an end (-1) comes before a start
        running += change
        peak = max(peak, running)
    return peak


def dry_run() -> None:
    print("KUBECONFIG is not set: nothing runs. This is what rivers would do.")
    print(
        f"executor: max_concurrent_steps={executor.max_concurrent_steps}, "
        f"image={executor.image}, namespace={executor.namespace}"
    )
    print(
        "the Job of step train_large (its override asks for more CPU and memory), "
        f"as an image holding this file at {IMAGE_FILE} runs it:"
    )
    print(json.dumps(as_in_the_image(executor.job_manifest(train_large)), indent=2))
    print(
        "run it for real: KUBECONFIG=/path/to/kubeconfig "
        "python examples/kubernetes_executor.py"
    )


def as_in_the_image(manifest: dict[str, Any]) -> dict[str, Any]:
    """The Job with this file where the image holds it, not where this checkout is."""
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    args[args.index("--file") + 1] = IMAGE_FILE
    return manifest


async def on_cluster() -> None:
    print(f"running on the cluster of {KUBECONFIG}, namespace {executor.namespace}")
    async with rs.Runtime(repo) as rt:
        result = await rt.materialize()
        logs = await rt.storage.get_events(run_id=result.run_id, kinds=["STEP_LOG"])
    print(f"run {result.run_id}: {result.status.value}")
    for step in result.step_records:
        print(f"  {step.step_key:<15} {step.status.value:<8} {step.worker}")
    for event in logs:
        print(f"  {event.step_key} says: {event.data.get('message')}")
    peak = peak_overlap(result.step_records)
    print(f"peak {peak} step Jobs at once <= max_concurrent_steps 2")
    if not result.success:
        raise SystemExit(f"failed: {result.error}")


def main() -> None:
    if KUBECONFIG is None:
        dry_run()
        return
    # A throwaway RIVERS_HOME: the demo starts empty and leaves nothing behind.
    with tempfile.TemporaryDirectory(prefix="rivers-example-") as home:
        os.environ["RIVERS_HOME"] = home
        asyncio.run(on_cluster())


if __name__ == "__main__":
    main()
