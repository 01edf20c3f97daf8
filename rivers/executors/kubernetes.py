"""``Executor.kubernetes``: each step attempt runs as one batch/v1 Job.

One attempt, as ``KubernetesLauncher.launch`` runs it:

1. Find the code location (the module-level ``CodeRepository`` holding the asset;
   see ``_kube_jobs``) and build the Job: ``backoffLimit: 0`` (retries are the
   asset's ``RetryPolicy``), ``restartPolicy: Never``, ``activeDeadlineSeconds``
   from the step timeout, ``ttlSecondsAfterFinished``, labels naming the run, step
   and attempt. The pod runs ``python -m rivers.worker``, which loads the inputs
   through the repository's IO manager, runs the step and stores its value.
2. Create the Job (transient API errors are retried with backoff), then follow it
   with a list+watch that survives the server ending the watch, dropped
   connections and ``410 Gone``, until its ``Complete`` or ``Failed`` condition.
   A second watch on its pod fails the step early when the container can never
   start (``ImagePullBackOff``, ``InvalidImageName``).
3. Read the pod's exit code, reason and log; each log line becomes a
   ``STEP_LOG`` event; delete the finished Job (Background) so that at most
   ``max_concurrent_steps`` step Jobs of a run exist at once.

Cancellation (run cancel, step timeout, runtime shutdown) and any failure while the
Job runs delete the Job with ``propagationPolicy=Foreground`` and wait, shielded and
bounded by ``DELETE_TIMEOUT_S``, until it is gone: a Foreground delete finishes
only once its pods are gone, so the step's processes are dead when the step's
executor slot and pool slots are released.

This module is the launcher's loop; the Job is built by ``kubernetes_manifest``,
followed and deleted by ``kubernetes_watch``, and its failures are described by
``kubernetes_failures``. ``kubernetes_asyncio`` is imported only when a step is
launched.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, NoReturn, final

import anyio

from rivers.errors import KubernetesApiError, LaunchFailed
from rivers.executors import _kube_api as kube
from rivers.executors._kube_jobs import (
    CONTAINER_NAME,
    CodeLocation,
    PodOutcome,
    job_finished,
    latest_pod,
    parse_worker_output,
    pod_outcome,
)
from rivers.executors.base import LaunchResult, StepRequest
from rivers.executors.gate import StepGate, TagGates
from rivers.executors.kubernetes_failures import api_error, job_failure
from rivers.executors.kubernetes_manifest import code_location, step_job_manifest
from rivers.executors.kubernetes_watch import delete_and_wait, follow_job
from rivers.messages import StepLogged

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rivers.definitions.asset import Asset
    from rivers.executors._kube_api import ApiCallError, KubeApi
    from rivers.executors.kubernetes_config import KubernetesExecutor
    from rivers.io import IOManager

__all__ = (
    "DELETE_TIMEOUT_S",
    "KubernetesLauncher",
    "code_location",
    "step_job_manifest",
)

logger = logging.getLogger(__name__)

DELETE_TIMEOUT_S = 30.0
"""How long a cancelled step waits for its Job and pods to be gone."""
LOG_LIMIT_BYTES = 1 << 20
MAX_LOG_EVENTS = 5000


@final
class KubernetesLauncher:
    """Launches one run's steps as Kubernetes Jobs.

    Steps share one API connection while any runs; the last one to end closes it.

    Args:
        config: the executor configuration.
    """

    def __init__(self, config: KubernetesExecutor) -> None:
        self._config = config
        self._gate = StepGate(config.max_concurrent_steps or math.inf)  # None: no cap
        self._locations: dict[str, CodeLocation] = {}
        self.tag_gates = TagGates([t.rule() for t in config.tag_concurrency_limits])
        self._api: KubeApi | None = None
        self._api_users = 0
        self._api_lock = anyio.Lock()

    async def warm(self, levels: Sequence[Sequence[Asset[Any, Any]]]) -> None:
        """Nothing to start ahead: each step is its own Job."""

    def gate(self, asset: Asset[Any, Any]) -> StepGate:
        """Every step shares the ``max_concurrent_steps`` gate."""
        return self._gate

    async def launch(self, request: StepRequest) -> LaunchResult:
        """Run the attempt as a Job; return once it is done and deleted.

        Raises:
            JobFailed: the pod failed (exit code and reason in the message).
            KubernetesApiError: the API refused a request or was unreachable.
            LaunchFailed: the code location or the kubeconfig cannot be used.
        """
        asset = request.asset
        manifest = step_job_manifest(
            self._config,
            asset,
            run_id=request.run_id,
            attempt=request.attempt,
            run_tags=request.run_tags,
            location=self._location(asset, request.io_manager),
            pool_lease=request.pool_lease,
        )
        name = str(manifest["metadata"]["name"])
        api = await self._open(asset.name)
        try:
            return await self._run_job(api, request, manifest, name)
        finally:
            with anyio.CancelScope(shield=True):
                await self._close()

    async def _run_job(
        self,
        api: KubeApi,
        request: StepRequest,
        manifest: dict[str, Any],
        name: str,
    ) -> LaunchResult:
        try:
            job = await self._create(api, request, manifest, name)
        except KubernetesApiError as exc:
            if exc.status is None or exc.status >= 500:  # it may exist all the same
                await self._stop(api, request, name)
            raise
        except BaseException:  # cancelled while creating: it may exist
            await self._stop(api, request, name)
            raise
        request.on_start(f"job {self._config.namespace}/{name}")
        try:
            finished, stuck = await self._follow(api, request, name)
        except BaseException:
            await self._stop(api, request, name)
            raise
        uid = str((job.get("metadata") or {}).get("uid", ""))
        try:
            if stuck is not None:
                self._fail(api, request, name, stuck, None)
            assert finished is not None
            pod = await self._pod(api, request, name, uid)
            output_error = await self._emit_logs(api, request, pod)
            if job_finished(finished) == "Complete":
                return LaunchResult(value=None, has_value=False)
            outcome = pod_outcome(pod) if pod is not None else None
            self._fail(api, request, name, outcome, output_error, job=finished)
        finally:
            if stuck is not None:
                await self._stop(api, request, name)
            else:
                with anyio.move_on_after(DELETE_TIMEOUT_S, shield=True):
                    await self._delete_finished(api, request, name)

    async def _stop(self, api: KubeApi, request: StepRequest, name: str) -> None:
        """Delete the Job and wait for its pods to be gone: shielded, bounded."""
        with anyio.move_on_after(DELETE_TIMEOUT_S, shield=True) as scope:
            await delete_and_wait(api, self._config.namespace, name)
        if scope.cancelled_caught:
            logger.warning(
                "run %s: Job %s/%s was not gone %.0fs after its deletion",
                request.run_id,
                self._config.namespace,
                name,
                DELETE_TIMEOUT_S,
            )

    # -- connection ------------------------------------------------------------

    async def _open(self, step_key: str) -> KubeApi:
        async with self._api_lock:
            if self._api is None:
                try:
                    self._api = await kube.KubeApi.connect(self._config.kubeconfig)
                except kube.ApiCallError as exc:
                    raise LaunchFailed(step_key, exc.message) from exc
            self._api_users += 1
            return self._api

    async def _close(self) -> None:
        self._api_users -= 1
        if self._api_users == 0 and self._api is not None:
            api, self._api = self._api, None
            await api.aclose()

    # -- building --------------------------------------------------------------

    def _location(self, asset: Asset[Any, Any], io_manager: IOManager) -> CodeLocation:
        location = self._locations.get(asset.name)
        if location is None:
            location = code_location(asset, io_manager)
            self._locations[asset.name] = location
        return location

    # -- API calls -------------------------------------------------------------

    def _api_error(
        self,
        api: KubeApi,
        request: StepRequest,
        name: str,
        action: str,
        exc: ApiCallError,
    ) -> KubernetesApiError:
        return api_error(
            exc,
            step_key=request.asset.name,
            cluster=api.cluster,
            namespace=self._config.namespace,
            job=name,
            action=action,
        )

    async def _create(
        self,
        api: KubeApi,
        request: StepRequest,
        manifest: dict[str, Any],
        name: str,
    ) -> dict[str, Any]:
        namespace = self._config.namespace
        tries = 0

        async def create() -> dict[str, Any]:
            nonlocal tries
            tries += 1
            return await api.create_job(namespace, manifest)

        try:
            return await kube.retrying(create, what=f"creating Job {namespace}/{name}")
        except kube.ApiCallError as exc:
            if exc.status == 409 and tries > 1:
                # An earlier try was created before its answer was lost.
                try:
                    return await kube.retrying(
                        lambda: api.read_job(namespace, name),
                        what=f"reading Job {namespace}/{name}",
                    )
                except kube.ApiCallError as again:
                    raise self._api_error(api, request, name, "read", again) from again
            raise self._api_error(api, request, name, "create", exc) from exc

    async def _follow(
        self, api: KubeApi, request: StepRequest, name: str
    ) -> tuple[dict[str, Any] | None, PodOutcome | None]:
        """Wait for the Job's end, or for its pod to be stuck for good."""
        try:
            return await follow_job(api, self._config.namespace, name)
        except kube.ApiCallError as exc:
            raise self._api_error(api, request, name, "watch", exc) from exc

    async def _pod(
        self, api: KubeApi, request: StepRequest, name: str, uid: str
    ) -> dict[str, Any] | None:
        namespace = self._config.namespace
        selector = f"controller-uid={uid}" if uid else f"job-name={name}"
        try:
            listed = await kube.retrying(
                lambda: api.list("pods", namespace, label_selector=selector),
                what=f"listing the pods of Job {namespace}/{name}",
            )
        except kube.ApiCallError as exc:
            logger.warning(
                "run %s: cannot list the pods of Job %s/%s: %s",
                request.run_id,
                namespace,
                name,
                exc,
            )
            return None
        return latest_pod(list(listed.get("items") or []))

    async def _emit_logs(
        self, api: KubeApi, request: StepRequest, pod: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """Turn the pod's log into STEP_LOG events; return the step's error record."""
        if pod is None:
            return None
        namespace = self._config.namespace
        pod_name = str((pod.get("metadata") or {}).get("name", ""))
        try:
            data = await kube.retrying(
                lambda: api.read_pod_log(
                    namespace, pod_name, CONTAINER_NAME, LOG_LIMIT_BYTES
                ),
                what=f"reading the log of pod {namespace}/{pod_name}",
            )
        except kube.ApiCallError as exc:
            logger.warning(
                "run %s: cannot read the log of pod %s/%s: %s",
                request.run_id,
                namespace,
                pod_name,
                exc,
            )
            return None
        output = parse_worker_output(data.decode("utf-8", "replace"))
        lines = output.lines
        if len(data) >= LOG_LIMIT_BYTES:
            lines.append(("WARNING", f"the log was cut at {LOG_LIMIT_BYTES} bytes"))
        if len(lines) > MAX_LOG_EVENTS:
            dropped = len(lines) - MAX_LOG_EVENTS
            lines = [*lines[:MAX_LOG_EVENTS], ("WARNING", f"{dropped} more lines")]
        for level, message in lines:
            request.emit(
                StepLogged(
                    run_id=request.run_id,
                    step_key=request.asset.name,
                    level=level,
                    message=message,
                )
            )
        return output.error

    def _fail(
        self,
        api: KubeApi,
        request: StepRequest,
        name: str,
        outcome: PodOutcome | None,
        error: dict[str, Any] | None,
        *,
        job: dict[str, Any] | None = None,
    ) -> NoReturn:
        failure, cause = job_failure(
            outcome,
            error,
            step_key=request.asset.name,
            cluster=api.cluster,
            namespace=self._config.namespace,
            name=name,
            job=job,
        )
        raise failure from cause

    async def _delete_finished(
        self, api: KubeApi, request: StepRequest, name: str
    ) -> None:
        """Delete a finished Job (Background: its pods no longer run)."""
        namespace = self._config.namespace
        try:
            await kube.retrying(
                lambda: api.delete_job(namespace, name, "Background"),
                what=f"deleting Job {namespace}/{name}",
            )
        except kube.ApiCallError as exc:
            if exc.status != 404:
                logger.warning(
                    "run %s: cannot delete finished Job %s/%s (its TTL will): %s",
                    request.run_id,
                    namespace,
                    name,
                    exc,
                )
