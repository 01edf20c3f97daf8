"""Following a step's Job through the Kubernetes API: until it ends, its pod is
stuck for good, or it is gone after a deletion.

Each wait is a list+watch (``_kube_api.follow``) that survives the server ending
the watch, dropped connections and ``410 Gone``. ``follow_job`` watches the Job
and its pods at once: the Job's ``Complete`` or ``Failed`` condition ends it, and
so does a pod whose container can never start (``ImagePullBackOff``,
``InvalidImageName``), so such a step fails early rather than at its deadline.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio

from rivers.executors import _kube_api as kube
from rivers.executors._kube_jobs import job_finished, pod_waiting_problem

if TYPE_CHECKING:
    from rivers.executors._kube_api import KubeApi
    from rivers.executors._kube_jobs import PodOutcome

__all__ = ("delete_and_wait", "follow_job")

logger = logging.getLogger(__name__)


async def follow_job(
    api: KubeApi, namespace: str, name: str
) -> tuple[dict[str, Any] | None, PodOutcome | None]:
    """Wait for Job ``name``'s end, or for its pod to be stuck for good.

    Return the finished Job (None when stuck) and the stuck pod's outcome (None
    when finished).

    Raises:
        ApiCallError: neither happened: the Job was deleted, or the API failed.
    """
    finished: dict[str, Any] | None = None
    stuck: PodOutcome | None = None
    errors: list[kube.ApiCallError] = []

    def on_job(kind: str, job: dict[str, Any]) -> bool:
        nonlocal finished
        if kind == "DELETED":
            raise kube.ApiCallError(404, "NotFound", f"Job {name!r} was deleted")
        if job_finished(job) is not None:
            finished = job
            return True
        return False

    def on_jobs(items: list[dict[str, Any]]) -> bool:
        if not items:
            raise kube.ApiCallError(404, "NotFound", f"Job {name!r} is gone")
        return on_job("LISTED", items[0])

    def on_pod(kind: str, pod: dict[str, Any]) -> bool:
        nonlocal stuck
        if kind != "DELETED":
            stuck = pod_waiting_problem(pod)
        return stuck is not None

    def on_pods(items: list[dict[str, Any]]) -> bool:
        return any(on_pod("LISTED", pod) for pod in items)

    async with anyio.create_task_group() as tg:

        async def follow_the_job() -> None:
            try:
                await kube.follow(
                    api,
                    "jobs",
                    namespace,
                    field_selector=f"metadata.name={name}",
                    on_list=on_jobs,
                    on_event=on_job,
                    what=f"Job {namespace}/{name}",
                )
            except kube.ApiCallError as exc:
                errors.append(exc)
            tg.cancel_scope.cancel()

        async def follow_pods() -> None:
            try:
                await kube.follow(
                    api,
                    "pods",
                    namespace,
                    label_selector=f"job-name={name}",
                    on_list=on_pods,
                    on_event=on_pod,
                    what=f"pods of Job {namespace}/{name}",
                )
            except kube.ApiCallError as exc:
                errors.append(exc)
            tg.cancel_scope.cancel()

        tg.start_soon(follow_the_job, name=f"rivers.k8s.job[{name}]")
        tg.start_soon(follow_pods, name=f"rivers.k8s.pods[{name}]")
    if errors and finished is None and stuck is None:
        raise errors[0]
    return finished, stuck


async def delete_and_wait(api: KubeApi, namespace: str, name: str) -> None:
    """Delete Job ``name`` (Foreground) and wait until it and its pods are gone.

    A failure is logged, not raised (a Job already gone is no failure).
    """
    try:
        await kube.retrying(
            lambda: api.delete_job(namespace, name, "Foreground"),
            what=f"deleting Job {namespace}/{name}",
        )
        await kube.follow(
            api,
            "jobs",
            namespace,
            field_selector=f"metadata.name={name}",
            on_list=lambda items: not items,
            on_event=lambda kind, _job: kind == "DELETED",
            what=f"deletion of Job {namespace}/{name}",
        )
    except kube.ApiCallError as exc:
        if exc.status != 404:
            logger.warning("cannot delete Job %s/%s: %s", namespace, name, exc)
