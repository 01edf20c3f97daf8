"""Concurrency and backend configuration: every object API.md §2 names.

Each is a frozen msgspec Struct validated on construction: a bad value raises
``ConfigError`` naming the field, never later.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, final

import msgspec
from msgspec.structs import force_setattr

from rivers._repr import short_repr
from rivers._validate import (
    KUBERNETES_NAMESPACE,
    KUBERNETES_OBJECT_NAME,
    MAX_LIMIT,
    check_asset_name,
    check_int,
    check_name,
    check_pool_name,
    check_tags,
)
from rivers.definitions.durations import (
    MAX_DEQUEUE_INTERVAL_S,
    MAX_LEASE_S,
    MAX_RETRY_DELAY_S,
    MIN_INTERVAL_S,
    MIN_LEASE_S,
    Duration,
    parse_duration,
)
from rivers.errors import ConfigError

if TYPE_CHECKING:
    from rivers.definitions.asset import Asset

__all__ = (
    "Executor",
    "ExecutorConfig",
    "InProcessExecutor",
    "KubernetesExecutor",
    "KubernetesStepOverride",
    "ParallelExecutor",
    "RetryPolicy",
    "RunBackendConfig",
    "RunQueueConfig",
    "TagConcurrencyLimit",
    "usable_cpus",
)


@final
class RetryPolicy(msgspec.Struct, frozen=True):
    """How often a failed step is tried again.

    Args:
        max_retries: retries after the first attempt; pool slots are released
            between attempts. Accepts: an int in 0..1000.
        delay: wait before the first retry. Accepts: a duration from 0s to 7d.
        backoff: factor applied to the delay after each retry (a grown delay is
            capped at 7 days). Accepts: a number in 1..100.
    """

    max_retries: int = 0
    delay: Duration = 0.0
    backoff: float = 1.0

    def __post_init__(self) -> None:
        check_int(self.max_retries, "RetryPolicy.max_retries", minimum=0, maximum=1000)
        force_setattr(
            self,
            "delay",
            parse_duration(self.delay, "RetryPolicy.delay", maximum=MAX_RETRY_DELAY_S),
        )
        if isinstance(self.backoff, bool) or not isinstance(self.backoff, int | float):
            raise ConfigError(
                f"RetryPolicy.backoff must be a number, got {short_repr(self.backoff)}"
            )
        if not 1.0 <= self.backoff <= 100.0:
            raise ConfigError(
                f"RetryPolicy.backoff must be in 1..100, got {short_repr(self.backoff)}"
            )

    def delay_before(self, attempt: int) -> float:
        """Return the seconds to wait before ``attempt`` (2 is the first retry)."""
        assert isinstance(self.delay, float)
        if self.delay == 0:
            return 0.0
        # Grown in logarithms: 100 ** 999 overflows a float.
        growth = max(0, attempt - 2) * math.log(self.backoff)
        if growth >= math.log(MAX_RETRY_DELAY_S / self.delay):
            return MAX_RETRY_DELAY_S
        return self.delay * self.backoff ** max(0, attempt - 2)


@final
class TagConcurrencyLimit(msgspec.Struct, frozen=True):
    """At most ``limit`` in-flight runs per tag key, key and value, or distinct value.

    Args:
        key: the tag key. Accepts: a printable string of 1..256 characters
            without '='.
        value: only runs with ``tags[key] == value`` count (None: any value).
            Accepts: None or a printable string of at most 1024 characters; not
            together with ``per_unique_value=True``.
        limit: the most in-flight runs the limit allows (required). Accepts: an
            int in 0..10,000; 0 holds every matching run.
        per_unique_value: the ceiling applies to each distinct value separately.
            Accepts: True or False; not together with ``value``.
    """

    key: str
    value: str | None = None
    limit: int | None = None
    per_unique_value: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not (
            self.value is None or isinstance(self.value, str)
        ):
            raise ConfigError(
                "TagConcurrencyLimit key and value must be strings, got "
                f"key={short_repr(self.key)}, value={short_repr(self.value)}"
            )
        check_tags(
            {self.key: "" if self.value is None else self.value}, "TagConcurrencyLimit"
        )
        if self.limit is None:
            raise ConfigError(
                f"TagConcurrencyLimit(key={short_repr(self.key)}) needs limit=N (an integer >= 0)"
            )
        check_int(self.limit, "TagConcurrencyLimit.limit", minimum=0, maximum=MAX_LIMIT)
        if not isinstance(self.per_unique_value, bool):
            raise ConfigError(
                "TagConcurrencyLimit.per_unique_value must be True or False"
            )
        if self.value is not None and self.per_unique_value:
            raise ConfigError(
                f"TagConcurrencyLimit(key={short_repr(self.key)}) sets both value= and "
                "per_unique_value=True; use one: a value caps that value, "
                "per_unique_value caps each value"
            )

    def describe(self) -> str:
        """Return a short label such as ``env=prod`` or ``team=*``."""
        if self.value is not None:
            return f"{self.key}={self.value}"
        return f"{self.key}=*" if self.per_unique_value else self.key


@final
class RunQueueConfig(msgspec.Struct, frozen=True):
    """The run queue: how many runs may be in flight, and how often to admit.

    Args:
        max_concurrent_runs: in-flight runs (STARTING, STARTED, CANCELING, in the
            whole storage, ``materialize()`` runs included) at most. Accepts: an
            int in 0..10,000; 0 pauses admission.
        dequeue_interval: how often the coordinator admits queued runs (a local
            submit wakes it sooner). Accepts: a duration from 10ms to 1h.
        tag_concurrency_limits: finer ceilings per tag; a run is admitted only if
            it fits all of them. Accepts: a list or tuple of TagConcurrencyLimit.
    """

    max_concurrent_runs: int = 10
    dequeue_interval: Duration = 1.0
    tag_concurrency_limits: Sequence[TagConcurrencyLimit] = ()

    def __post_init__(self) -> None:
        check_int(
            self.max_concurrent_runs,
            "RunQueueConfig.max_concurrent_runs",
            minimum=0,
            maximum=MAX_LIMIT,
        )
        force_setattr(
            self,
            "dequeue_interval",
            parse_duration(
                self.dequeue_interval,
                "RunQueueConfig.dequeue_interval",
                minimum=MIN_INTERVAL_S,
                maximum=MAX_DEQUEUE_INTERVAL_S,
            ),
        )
        limits: object = self.tag_concurrency_limits  # callers may pass anything
        if isinstance(limits, TagConcurrencyLimit) or not isinstance(
            limits, list | tuple
        ):
            raise ConfigError(
                "RunQueueConfig.tag_concurrency_limits must be a list of "
                "TagConcurrencyLimit"
            )
        for limit in limits:
            if not isinstance(limit, TagConcurrencyLimit):
                raise ConfigError(
                    "RunQueueConfig.tag_concurrency_limits must hold TagConcurrencyLimit "
                    f"objects, got {short_repr(limit)}"
                )
        force_setattr(self, "tag_concurrency_limits", tuple(limits))

    @property
    def dequeue_interval_s(self) -> float:
        """The dequeue interval in seconds."""
        assert isinstance(self.dequeue_interval, float)
        return self.dequeue_interval


@final
class RunBackendConfig(msgspec.Struct, frozen=True):
    """Where runs, events and claims are stored, and how long a lease lasts.

    Args:
        storage: the SQLite file (default ``$RIVERS_HOME/rivers.db``). Accepts:
            None, a path, or a ``sqlite:///relative`` / ``sqlite:////absolute`` URL.
        lease_duration: an unrenewed pool claim is reclaimed after this long;
            live holders renew every third of it. Accepts: a duration from 100ms
            to 1d.
        lease_gc_interval: how often expired claims are looked for (default: a
            quarter of ``lease_duration``, at most 5 s). Accepts: None or a
            duration from 10ms to ``lease_duration``.
    """

    storage: str | None = None
    lease_duration: Duration = 60.0
    lease_gc_interval: Duration | None = None

    def __post_init__(self) -> None:
        if self.storage is not None and (
            not isinstance(self.storage, str | os.PathLike) or not str(self.storage)
        ):
            raise ConfigError(
                f"RunBackendConfig.storage must be a path or sqlite:/// URL, "
                f"got {short_repr(self.storage)}"
            )
        if self.storage is not None:
            force_setattr(self, "storage", os.fspath(self.storage))
        lease = parse_duration(
            self.lease_duration,
            "RunBackendConfig.lease_duration",
            minimum=MIN_LEASE_S,
            maximum=MAX_LEASE_S,
        )
        force_setattr(self, "lease_duration", lease)
        if self.lease_gc_interval is None:
            force_setattr(self, "lease_gc_interval", min(5.0, lease / 4))
        else:
            force_setattr(
                self,
                "lease_gc_interval",
                parse_duration(
                    self.lease_gc_interval,
                    "RunBackendConfig.lease_gc_interval",
                    minimum=MIN_INTERVAL_S,
                    maximum=lease,
                    maximum_name="lease_duration",
                ),
            )

    @property
    def lease_s(self) -> float:
        """The lease duration in seconds."""
        assert isinstance(self.lease_duration, float)
        return self.lease_duration

    @property
    def lease_gc_interval_s(self) -> float:
        """The lease GC interval in seconds."""
        assert isinstance(self.lease_gc_interval, float)
        return self.lease_gc_interval


def usable_cpus() -> int:
    """Return the CPUs this process may run on (container and affinity aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


class ExecutorConfig(msgspec.Struct, frozen=True, tag=True):
    """The base of every executor configuration."""


@final
class InProcessExecutor(ExecutorConfig, frozen=True, tag="in_process"):
    """Steps run one at a time in the calling process."""


@final
class ParallelExecutor(ExecutorConfig, frozen=True, tag="parallel"):
    """Sync steps in a warm pool of worker processes, async steps on the loop.

    Args:
        max_workers: sync steps of one run running at once, each in a worker
            process (default: the CPUs this process may use). Accepts: None or an
            int in 1..1024.
        max_async_concurrent: async steps of one run running at once on the event
            loop (default unbounded). Accepts: None or an int in 1..100,000.
    """

    max_workers: int | None = None
    max_async_concurrent: int | None = None

    def __post_init__(self) -> None:
        if self.max_workers is None:
            force_setattr(self, "max_workers", usable_cpus())
        check_int(
            self.max_workers, "Executor.parallel max_workers", minimum=1, maximum=1024
        )
        if self.max_async_concurrent is not None:
            check_int(
                self.max_async_concurrent,
                "Executor.parallel max_async_concurrent",
                minimum=1,
                maximum=MAX_LIMIT * 10,
            )

    @property
    def workers(self) -> int:
        """``max_workers`` resolved to a number."""
        assert self.max_workers is not None
        return self.max_workers


ImagePullPolicy = Literal["Always", "IfNotPresent", "Never"]
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def _check_pull_policy(value: object, field: str) -> None:
    if value not in (None, *_PULL_POLICIES):
        raise ConfigError(
            f"{field} must be 'Always', 'IfNotPresent' or 'Never', got {short_repr(value)}"
        )


def _check_object_names(value: object, field: str) -> tuple[str, ...] | None:
    """Return Secret or ConfigMap names as a tuple (DNS-1123 subdomains)."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"{field} must be a list of names, got {short_repr(value)}")
    return tuple(
        check_name(name, KUBERNETES_OBJECT_NAME, f"{field}:") for name in value
    )


def _check_resources(value: object, field: str) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping) or not all(
        key in ("requests", "limits")
        and isinstance(amounts, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in amounts.items())
        for key, amounts in value.items()
    ):
        raise ConfigError(
            f"{field} must look like {{'requests': {{'cpu': '500m'}}, 'limits': "
            f"{{'memory': '1Gi'}}}} (strings only), got {short_repr(value)}"
        )


@final
class KubernetesStepOverride(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of one asset's step Jobs that differ from the executor's.

    ``env``, ``labels`` and ``resources`` are merged over the executor's (a
    ``limits`` override keeps the executor's ``requests``, and each quantity is
    replaced one by one); ``env_secrets`` and ``env_config_maps`` are added to the
    executor's; the other fields, when set, replace the executor's value.
    """

    image: str | None = None
    env: dict[str, str] | None = None
    env_secrets: Sequence[str] | None = None
    env_config_maps: Sequence[str] | None = None
    resources: dict[str, dict[str, str]] | None = None
    service_account: str | None = None
    labels: dict[str, str] | None = None
    image_pull_policy: ImagePullPolicy | None = None

    def __post_init__(self) -> None:
        if self.image is not None and (
            not isinstance(self.image, str) or not self.image
        ):
            raise ConfigError("KubernetesStepOverride.image must be a non-empty string")
        check_tags(self.env, "KubernetesStepOverride.env")
        if self.service_account is not None:
            check_name(
                self.service_account,
                KUBERNETES_OBJECT_NAME,
                "KubernetesStepOverride.service_account",
            )
        force_setattr(
            self,
            "env_secrets",
            _check_object_names(self.env_secrets, "KubernetesStepOverride.env_secrets"),
        )
        force_setattr(
            self,
            "env_config_maps",
            _check_object_names(
                self.env_config_maps, "KubernetesStepOverride.env_config_maps"
            ),
        )
        check_tags(self.labels, "KubernetesStepOverride.labels")
        _check_resources(self.resources, "KubernetesStepOverride.resources")
        _check_pull_policy(
            self.image_pull_policy, "KubernetesStepOverride.image_pull_policy"
        )


def _check_overrides(value: object) -> dict[str, KubernetesStepOverride] | None:
    """Return ``step_overrides`` with every entry a ``KubernetesStepOverride``."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(
            "Executor.kubernetes step_overrides must be a dict of asset name to "
            f"overrides, got {short_repr(value)}"
        )
    checked: dict[str, KubernetesStepOverride] = {}
    for name, override in value.items():
        check_asset_name(name, "Executor.kubernetes step_overrides key")
        if isinstance(override, KubernetesStepOverride):
            checked[name] = override
            continue
        if not isinstance(override, Mapping):
            raise ConfigError(
                f"Executor.kubernetes step_overrides[{name!r}] must be a dict such as "
                f"{{'image': ..., 'resources': ...}}, got {short_repr(override)}"
            )
        fields = KubernetesStepOverride.__struct_fields__
        unknown = sorted(str(k) for k in override if k not in fields)
        if unknown:
            raise ConfigError(
                f"Executor.kubernetes step_overrides[{name!r}] has unknown keys "
                f"{', '.join(unknown)}; use {', '.join(fields)}"
            )
        options: dict[str, Any] = dict(override)
        checked[name] = KubernetesStepOverride(**options)
    return checked


@final
class KubernetesExecutor(ExecutorConfig, frozen=True, tag="kubernetes"):
    """Each step is a Kubernetes Job.

    Args:
        max_concurrent_steps: step Jobs of one run existing at once (default
            unbounded); a finished step's Job is deleted before its slot is
            given back. Accepts: None or an int in 1..10,000.
        image: the container image that has rivers and the code location
            (required). Accepts: a non-empty string.
        namespace: where Jobs are created. Accepts: an existing namespace's name
            (a DNS-1123 label: lowercase letters, digits and '-', at most 63).
        kubeconfig: a kubeconfig path (default: in-cluster config inside a pod,
            else ``$KUBECONFIG`` or ``~/.kube/config``). Accepts: None or a path.
        env: extra environment variables of the step containers (rivers sets
            ``RIVERS_HOME`` to this process's unless given here). Values are written
            into the Job as plain text: pass credentials with ``env_secrets``.
            Accepts: None or a dict of str to str.
        env_secrets: Secrets in ``namespace`` whose keys become environment
            variables of the step containers (``envFrom``); the values never
            appear in the Job, only the Secret's name. Accepts: None or a list of
            Kubernetes object names.
        env_config_maps: ConfigMaps whose keys become environment variables, the
            same way. Accepts: None or a list of Kubernetes object names.
        resources: the container ``resources``. Accepts: None or a dict with
            ``requests`` and/or ``limits``, each a dict of str to str.
        service_account: the pods' service account. Accepts: None or a
            Kubernetes object name.
        labels: extra labels on Jobs and pods. Accepts: None or a dict of str to
            str (valid Kubernetes labels).
        image_pull_policy: the container's pull policy. Accepts: None,
            ``"Always"``, ``"IfNotPresent"`` or ``"Never"``.
        ttl_seconds_after_finished: finished Jobs are deleted after this long (a
            backstop: rivers deletes each Job once it has its outcome and logs).
            Accepts: None or an int >= 0.
        step_overrides: per-asset settings (image, env, env_secrets,
            env_config_maps, resources, service_account, labels,
            image_pull_policy) over the executor's.
            Accepts: None or a dict of asset name to a ``KubernetesStepOverride``
            or a dict of its fields.
    """

    max_concurrent_steps: int | None = None
    image: str = ""
    namespace: str = "default"
    kubeconfig: str | None = None
    env: dict[str, str] | None = None
    env_secrets: Sequence[str] | None = None
    env_config_maps: Sequence[str] | None = None
    resources: dict[str, dict[str, str]] | None = None
    service_account: str | None = None
    labels: dict[str, str] | None = None
    image_pull_policy: ImagePullPolicy | None = None
    ttl_seconds_after_finished: int | None = 300
    step_overrides: dict[str, KubernetesStepOverride] | None = None

    def __post_init__(self) -> None:
        if self.max_concurrent_steps is not None:
            check_int(
                self.max_concurrent_steps,
                "Executor.kubernetes max_concurrent_steps",
                minimum=1,
                maximum=MAX_LIMIT,
            )
        if not isinstance(self.image, str) or not self.image:
            raise ConfigError(
                "Executor.kubernetes needs image= (the step container image)"
            )
        check_name(
            self.namespace, KUBERNETES_NAMESPACE, "Executor.kubernetes namespace"
        )
        if self.service_account is not None:
            check_name(
                self.service_account,
                KUBERNETES_OBJECT_NAME,
                "Executor.kubernetes service_account",
            )
        if self.kubeconfig is not None:
            if not isinstance(self.kubeconfig, str | os.PathLike):
                raise ConfigError(
                    "Executor.kubernetes kubeconfig must be a path, "
                    f"got {short_repr(self.kubeconfig)}"
                )
            force_setattr(self, "kubeconfig", os.fspath(self.kubeconfig))
        check_tags(self.env, "Executor.kubernetes env")
        force_setattr(
            self,
            "env_secrets",
            _check_object_names(self.env_secrets, "Executor.kubernetes env_secrets"),
        )
        force_setattr(
            self,
            "env_config_maps",
            _check_object_names(
                self.env_config_maps, "Executor.kubernetes env_config_maps"
            ),
        )
        check_tags(self.labels, "Executor.kubernetes labels")
        _check_resources(self.resources, "Executor.kubernetes resources")
        _check_pull_policy(
            self.image_pull_policy, "Executor.kubernetes image_pull_policy"
        )
        if self.ttl_seconds_after_finished is not None:
            check_int(
                self.ttl_seconds_after_finished,
                "Executor.kubernetes ttl_seconds_after_finished",
                minimum=0,
            )
        force_setattr(self, "step_overrides", _check_overrides(self.step_overrides))

    def override_for(self, step_key: str) -> KubernetesStepOverride | None:
        """Return the overrides of ``step_key``'s Jobs, if any."""
        return (self.step_overrides or {}).get(step_key)

    def job_manifest(
        self,
        asset: Asset[Any, Any],
        *,
        run_id: str = "preview",
        attempt: int = 1,
        tags: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Return the batch/v1 Job this executor creates for one attempt of ``asset``.

        Nothing is sent to a cluster: use it to review the image, command, env,
        resources and labels of a step's pod before pointing rivers at a cluster.

        Raises:
            LaunchFailed: no module-level ``CodeRepository`` holds ``asset``.
        """
        from rivers.executors.kubernetes import code_location, step_job_manifest

        return step_job_manifest(
            self,
            asset,
            run_id=run_id,
            attempt=attempt,
            run_tags=tags or {},
            location=code_location(asset, None),
        )


@final
class Executor:
    """Constructors of executor configurations (``rs.Executor.parallel()``...)."""

    def __init__(self) -> None:
        raise TypeError(
            "Executor is a namespace; use Executor.in_process(), Executor.parallel() "
            "or Executor.kubernetes(...)"
        )

    @staticmethod
    def in_process() -> InProcessExecutor:
        """Run steps one at a time in the calling process."""
        return InProcessExecutor()

    @staticmethod
    def parallel(
        max_workers: int | None = None, max_async_concurrent: int | None = None
    ) -> ParallelExecutor:
        """Run sync steps in worker processes and async steps on the event loop."""
        return ParallelExecutor(
            max_workers=max_workers, max_async_concurrent=max_async_concurrent
        )

    @staticmethod
    def kubernetes(
        max_concurrent_steps: int | None = None,
        *,
        image: str,
        namespace: str = "default",
        kubeconfig: str | None = None,
        env: dict[str, str] | None = None,
        env_secrets: Sequence[str] | None = None,
        env_config_maps: Sequence[str] | None = None,
        resources: dict[str, dict[str, str]] | None = None,
        service_account: str | None = None,
        labels: dict[str, str] | None = None,
        image_pull_policy: ImagePullPolicy | None = None,
        ttl_seconds_after_finished: int | None = 300,
        step_overrides: Mapping[str, KubernetesStepOverride | Mapping[str, Any]]
        | None = None,
    ) -> KubernetesExecutor:
        """Run each step as a Kubernetes Job (see ``KubernetesExecutor``)."""
        return KubernetesExecutor(
            max_concurrent_steps=max_concurrent_steps,
            image=image,
            namespace=namespace,
            kubeconfig=kubeconfig,
            env=env,
            env_secrets=env_secrets,
            env_config_maps=env_config_maps,
            resources=resources,
            service_account=service_account,
            labels=labels,
            image_pull_policy=image_pull_policy,
            ttl_seconds_after_finished=ttl_seconds_after_finished,
            step_overrides=_check_overrides(step_overrides),
        )


def check_pool_limits(pool_limits: object) -> dict[str, int]:
    """Return ``pool_limits`` validated: pool name to a limit in 0..10,000."""
    if pool_limits is None:
        return {}
    if not isinstance(pool_limits, dict):
        raise ConfigError(
            f"pool_limits must be a dict of pool name to limit, got {short_repr(pool_limits)}"
        )
    checked: dict[str, int] = {}
    for name, limit in pool_limits.items():
        check_pool_name(name, "pool_limits key")
        checked[name] = check_int(
            limit, f"pool_limits[{name!r}]", minimum=0, maximum=MAX_LIMIT
        )
    return checked
