"""What a step Job's failures mean, as rivers errors: pure functions, no I/O.

- ``api_error``: an API call the launcher gave up on (create, read, watch) as a
  ``KubernetesApiError`` with a hint for the status (credentials, RBAC, a missing
  namespace, a name taken, a spec the cluster rejected).
- ``job_failure``: a failed Job as a ``JobFailed`` saying why (its deadline, its
  pod's exit code and reason, or the Job's own condition), and the step's own
  exception rebuilt from the error record the worker printed, to raise it from.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from rivers.errors import JobFailed, KubernetesApiError
from rivers.executors._kube_jobs import describe_outcome, job_failure_reason
from rivers.executors.parallel import _rebuild_exception

if TYPE_CHECKING:
    from rivers.executors._kube_api import ApiCallError
    from rivers.executors._kube_jobs import PodOutcome

__all__ = ("API_ERROR_HINTS", "api_error", "job_failure")

API_ERROR_HINTS = {
    401: "the cluster rejected the credentials; refresh the kubeconfig's token or "
    "certificate",
    403: "permission denied; grant the user or service account RBAC access to jobs "
    "(create, get, list, watch, delete) and pods (list, watch, get log) in this "
    "namespace",
    409: "a Job with this name already exists; delete it (kubectl delete job NAME "
    "-n NAMESPACE) and run again",
    422: "the cluster rejected the Job spec; check image, env, labels, resources "
    "and service_account of Executor.kubernetes",
}
"""What to do about an API status, by status (404 depends on the action)."""


def api_error(
    exc: ApiCallError,
    *,
    step_key: str,
    cluster: str,
    namespace: str,
    job: str,
    action: str,
) -> KubernetesApiError:
    """Return the error of step ``step_key``'s failed ``action`` on Job ``job``."""
    hint = API_ERROR_HINTS.get(exc.status or 0)
    if exc.status is None:
        hint = (
            "the API server did not answer; check that the cluster is up and "
            "reachable at the kubeconfig's server address"
        )
    elif exc.status == 404:
        hint = (
            f"namespace {namespace!r} does not exist; create it or set "
            "Executor.kubernetes(namespace=...)"
            if action == "create"
            else "the Job was deleted while its step ran"
        )
    detail = str(exc) if hint is None else f"{exc}; {hint}"
    return KubernetesApiError(
        step_key,
        cluster=cluster,
        namespace=namespace,
        job=job,
        action=action,
        status=exc.status,
        detail=detail,
    )


def job_failure(
    outcome: PodOutcome | None,
    error: dict[str, Any] | None,
    *,
    step_key: str,
    cluster: str,
    namespace: str,
    name: str,
    job: dict[str, Any] | None = None,
) -> tuple[JobFailed, BaseException | None]:
    """Return why Job ``name`` failed, and the step's exception to raise it from.

    Args:
        outcome: its pod's end (None: no pod was found).
        error: the step's error record from the pod's log (None: none printed).
        step_key: the step.
        cluster: how messages name the cluster.
        namespace: the Job's namespace.
        name: the Job's name.
        job: the finished Job (None: it never finished; its pod was stuck).
    """
    reason, message = job_failure_reason(job or {})
    parts: list[str] = []
    if reason == "DeadlineExceeded":
        deadline = ((job or {}).get("spec") or {}).get("activeDeadlineSeconds")
        parts.append(f"the Job ran past its activeDeadlineSeconds ({deadline}s)")
    if outcome is not None and (outcome.exit_code is not None or job is None):
        parts.append(f"its {describe_outcome(outcome)}")
    if not parts:
        parts.append(f"the Job failed ({reason or 'no reason given'})")
        if message:
            parts[-1] += f": {message}"
    cause: BaseException | None = None
    if error is not None:
        parts.append(f"{error.get('type')}: {error.get('message')}")
        pickled = error.get("exception")
        cause = _rebuild_exception(
            base64.b64decode(pickled) if isinstance(pickled, str) else None,
            str(error.get("type")),
            str(error.get("message")),
            str(error.get("traceback") or ""),
        )
    failure = JobFailed(
        step_key,
        cluster=cluster,
        namespace=namespace,
        job=name,
        detail="; ".join(parts),
        exit_code=outcome.exit_code if outcome is not None else None,
        reason=(outcome.reason if outcome is not None else None) or reason,
    )
    return failure, cause
