"""What a step Job looks like, and how to read what its pod said: no I/O here.

- ``job_name``: a DNS-1123 name of at most 63 characters, unique per run, step and
  attempt (a digest of the three), readable (a slug of the step).
- ``find_code_location``: where the pod finds the asset. The pod runs
  ``python -m rivers.worker --module M [--file F] --attribute A --asset NAME``:
  it imports module ``M`` (falling back to the file ``F`` when ``M`` cannot be
  imported by name, as for a script or a file loaded with ``rivers -f``), takes
  the ``CodeRepository`` at attribute ``A`` and runs asset ``NAME`` with that
  repository's IO manager. The launcher finds ``M`` and ``A`` by looking for the
  module-level repository that holds this very asset object.
- The worker's structured output: marked lines (``pod_log``) carry a record (a
  ``context.log`` line, or the step's error); any other line is plain output.

Only Job and pod fields that Kubernetes 1.20 knows are used.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rivers.executors.pod_log import read_marked_record

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from rivers.definitions.asset import Asset
    from rivers.executors.kubernetes_config import KubernetesExecutor
    from rivers.io import IOManager

__all__ = (
    "CONTAINER_NAME",
    "LABEL_ATTEMPT",
    "LABEL_MANAGED_BY",
    "LABEL_RUN",
    "LABEL_STEP",
    "CodeLocation",
    "JobSpec",
    "PodOutcome",
    "WorkerOutput",
    "describe_outcome",
    "find_code_location",
    "job_failure_reason",
    "job_finished",
    "job_manifest",
    "job_name",
    "label_value",
    "latest_pod",
    "parse_worker_output",
    "pod_outcome",
    "pod_waiting_problem",
)

CONTAINER_NAME = "step"
LABEL_RUN = "rivers/run-id"
LABEL_STEP = "rivers/step-key"
LABEL_ATTEMPT = "rivers/attempt"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
ACTIVE_DEADLINE_SLACK_S = 10
"""The Job's own deadline trails the step timeout: rivers' timeout acts first, the
Job's ``activeDeadlineSeconds`` is the backstop if the launching process is gone."""
MAX_NAME_LENGTH = 63
FATAL_WAITING_REASONS = frozenset(
    {"ErrImageNeverPull", "InvalidImageName", "ImagePullBackOff"}
)
"""A container waiting for one of these will not start without outside help."""

_NOT_DNS = re.compile(r"[^a-z0-9]+")
_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


def job_name(run_id: str, step_key: str, attempt: int) -> str:
    """Return the Job name of one attempt: ``rivers-<run>-<step>-<attempt>-<digest>``."""
    digest = hashlib.blake2b(
        f"{run_id}\0{step_key}\0{attempt}".encode(), digest_size=4
    ).hexdigest()
    run = _NOT_DNS.sub("", run_id.lower())[-8:] or "run"
    tail = f"-{attempt}-{digest}"
    room = MAX_NAME_LENGTH - len("rivers-") - len(run) - 1 - len(tail)
    slug = _NOT_DNS.sub("-", step_key.lower()).strip("-")[: max(room, 0)].strip("-")
    return f"rivers-{run}-{slug or 'step'}{tail}"[:MAX_NAME_LENGTH]


def label_value(value: str) -> str:
    """Return ``value`` if it is a valid label value, else a valid stand-in for it."""
    if _LABEL_VALUE.fullmatch(value):
        return value
    digest = hashlib.blake2b(value.encode(), digest_size=4).hexdigest()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[:50].strip("-_.")
    return f"{slug}-{digest}" if slug else digest


@dataclass(slots=True, frozen=True)
class CodeLocation:
    """Where the worker finds the repository holding an asset."""

    module: str
    file: str | None
    attribute: str

    def args(self) -> list[str]:
        """Return the worker's command-line arguments naming this location."""
        args = ["--module", self.module, "--attribute", self.attribute]
        if self.file is not None:
            args += ["--file", self.file]
        return args


def find_code_location(
    asset: Asset[Any, Any], io_manager: IOManager | None
) -> CodeLocation | None:
    """Find the module-level ``CodeRepository`` holding ``asset`` (this very object).

    Looks in the asset function's module, then ``__main__``, then every loaded
    module. A repository using ``io_manager`` wins over one that does not.
    """
    from rivers.definitions.repository import CodeRepository

    first = [sys.modules.get(asset.fn.__module__), sys.modules.get("__main__")]
    fallback: CodeLocation | None = None
    for module in [*first, *list(sys.modules.values())]:
        if module is None:
            continue
        try:
            attributes = list(vars(module).items())
        except TypeError:  # pragma: no cover - not a real module
            continue
        for attribute, value in attributes:
            if not isinstance(value, CodeRepository):
                continue
            if value.assets.get(asset.name) is not asset:
                continue
            file = getattr(module, "__file__", None)
            location = CodeLocation(
                module=module.__name__,
                file=str(file) if isinstance(file, str) else None,
                attribute=attribute,
            )
            if value.io_manager is io_manager:
                return location
            fallback = fallback or location
    return fallback


@dataclass(slots=True, frozen=True)
class JobSpec:
    """Everything that decides one step Job's manifest."""

    name: str
    namespace: str
    run_id: str
    step_key: str
    attempt: int
    location: CodeLocation
    env: Mapping[str, str]
    timeout_s: float | None
    labels: Mapping[str, str] = field(default_factory=dict)


def _merged_resources(
    base: Mapping[str, Mapping[str, str]] | None,
    override: Mapping[str, Mapping[str, str]] | None,
) -> dict[str, dict[str, str]] | None:
    """Merge a step's ``requests``/``limits`` over the executor's, quantity by quantity."""
    if not override:
        return None if base is None else {k: dict(v) for k, v in base.items()}
    merged = {k: dict(v) for k, v in (base or {}).items()}
    for section, quantities in override.items():
        merged.setdefault(section, {}).update(quantities)
    return merged


def _added(base: Sequence[str] | None, more: Sequence[str] | None) -> list[str]:
    """The executor's names, then a step's, each once."""
    return list(dict.fromkeys((*(base or ()), *(more or ()))))


def job_manifest(spec: JobSpec, config: KubernetesExecutor) -> dict[str, Any]:
    """Return the batch/v1 Job for ``spec`` under ``config`` and its step overrides."""
    override = config.override_for(spec.step_key)
    image = (override and override.image) or config.image
    pull_policy = (override and override.image_pull_policy) or config.image_pull_policy
    resources = _merged_resources(config.resources, override and override.resources)
    account = (override and override.service_account) or config.service_account
    labels = {
        **(config.labels or {}),
        **((override and override.labels) or {}),
        **spec.labels,
        LABEL_MANAGED_BY: "rivers",
        LABEL_RUN: label_value(spec.run_id),
        LABEL_STEP: label_value(spec.step_key),
        LABEL_ATTEMPT: str(spec.attempt),
    }
    env = {
        **spec.env,
        **(config.env or {}),
        **((override and override.env) or {}),
    }
    secrets = _added(config.env_secrets, override and override.env_secrets)
    config_maps = _added(config.env_config_maps, override and override.env_config_maps)
    annotations = {
        LABEL_RUN: spec.run_id,
        LABEL_STEP: spec.step_key,
        LABEL_ATTEMPT: str(spec.attempt),
    }
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "command": ["python", "-m", "rivers.worker"],
        "args": [
            *spec.location.args(),
            "--asset",
            spec.step_key,
            "--run-id",
            spec.run_id,
            "--attempt",
            str(spec.attempt),
        ],
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
    }
    env_from = [
        *({"configMapRef": {"name": name}} for name in config_maps),
        *({"secretRef": {"name": name}} for name in secrets),
    ]
    if env_from:
        # Later sources win, and ``env`` wins over all: Secrets over ConfigMaps.
        container["envFrom"] = env_from
    if pull_policy is not None:
        container["imagePullPolicy"] = pull_policy
    if resources:
        container["resources"] = {k: dict(v) for k, v in resources.items()}
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if account is not None:
        pod_spec["serviceAccountName"] = account
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,  # retries belong to the asset's RetryPolicy
        "template": {
            "metadata": {"labels": labels, "annotations": annotations},
            "spec": pod_spec,
        },
    }
    if config.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = config.ttl_seconds_after_finished
    if spec.timeout_s is not None:
        job_spec["activeDeadlineSeconds"] = (
            math.ceil(spec.timeout_s) + ACTIVE_DEADLINE_SLACK_S
        )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": job_spec,
    }


def job_finished(job: Mapping[str, Any]) -> str | None:
    """Return ``Complete`` or ``Failed`` once the Job has that condition, else None."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and (
            condition.get("status") == "True"
        ):
            return str(condition["type"])
    return None


def job_failure_reason(job: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Return the reason and message of the Job's ``Failed`` condition."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return condition.get("reason"), condition.get("message")
    return None, None


@dataclass(slots=True, frozen=True)
class PodOutcome:
    """How a step pod's container ended, as far as the cluster says."""

    pod: str
    exit_code: int | None
    reason: str | None
    message: str | None


def _container_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER_NAME:
            return status  # type: ignore[no-any-return]  # JSON from the server
    return {}


def pod_outcome(pod: Mapping[str, Any]) -> PodOutcome:
    """Return the exit code and reason of the pod's step container."""
    status = _container_status(pod)
    terminated = (status.get("state") or {}).get("terminated") or (
        (status.get("lastState") or {}).get("terminated") or {}
    )
    code = terminated.get("exitCode")
    pod_status = pod.get("status") or {}
    return PodOutcome(
        pod=str((pod.get("metadata") or {}).get("name", "?")),
        exit_code=int(code) if code is not None else None,
        reason=terminated.get("reason") or pod_status.get("reason"),
        message=terminated.get("message") or pod_status.get("message"),
    )


def pod_waiting_problem(pod: Mapping[str, Any]) -> PodOutcome | None:
    """Return why the pod's container cannot start, if it is stuck for good."""
    waiting = (_container_status(pod).get("state") or {}).get("waiting") or {}
    reason = waiting.get("reason")
    if reason not in FATAL_WAITING_REASONS:
        return None
    return PodOutcome(
        pod=str((pod.get("metadata") or {}).get("name", "?")),
        exit_code=None,
        reason=str(reason),
        message=waiting.get("message"),
    )


def latest_pod(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Return the most recently created pod (a Job with backoffLimit 0 has one)."""
    if not pods:
        return None
    return max(
        pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp", ""))
    )


@dataclass(slots=True)
class WorkerOutput:
    """A step pod's log, split into log lines and the step's error, if any."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    """(level, message) for each line."""
    error: dict[str, Any] | None = None
    """``type``, ``message``, ``traceback`` and maybe ``exception`` (base64 pickle)."""


def parse_worker_output(text: str) -> WorkerOutput:
    """Split a worker's log into its lines and its error record."""
    output = WorkerOutput()
    for line in text.splitlines():
        record = read_marked_record(line)
        if record is not None and isinstance(record.get("error"), dict):
            output.error = record["error"]
            _drop_traceback(output.lines, str(output.error.get("traceback", "")))
            continue
        if record is not None and "message" in record:
            output.lines.append(
                (str(record.get("level", "INFO")), str(record["message"]))
            )
            continue
        if line.strip():
            output.lines.append(("INFO", line))
    return output


def _drop_traceback(lines: list[tuple[str, str]], traceback: str) -> None:
    """Drop the traceback the worker printed just before its error record."""
    printed = [line for line in traceback.splitlines() if line.strip()]
    if printed and [m for _, m in lines[-len(printed) :]] == printed:
        del lines[-len(printed) :]


def describe_outcome(outcome: PodOutcome) -> str:
    """Describe how the pod ended: ``pod 'p' exited with code 3 (Error)``."""
    if outcome.exit_code is None:
        text = f"pod {outcome.pod!r} did not run to an exit code"
        if outcome.reason:
            text += f" ({outcome.reason})"
    else:
        text = f"pod {outcome.pod!r} exited with code {outcome.exit_code}"
        if outcome.reason:
            text += f" ({outcome.reason})"
    if outcome.message:
        text += f": {outcome.message.strip()}"
    return text
