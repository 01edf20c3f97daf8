"""``Executor.kubernetes``'s configuration, checked on construction: names, resources.

A bad value raises ``ConfigError`` naming the field when the config is built, never
when a Job is created. ``KubernetesExecutor.job_manifest`` previews the Job of one
step without a cluster.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, final

import msgspec
from msgspec.structs import force_setattr

from rivers._repr import short_repr
from rivers._validate import (
    MAX_LIMIT,
    NameRule,
    check_asset_name,
    check_int,
    check_name,
    check_tags,
)
from rivers.definitions.configs import TagConcurrencyLimit, check_tag_limits
from rivers.definitions.executor_configs import ExecutorConfig
from rivers.errors import ConfigError

if TYPE_CHECKING:
    from rivers.definitions.asset import Asset

__all__ = (
    "KUBERNETES_NAMESPACE",
    "KUBERNETES_OBJECT_NAME",
    "ImagePullPolicy",
    "KubernetesExecutor",
    "KubernetesStepOverride",
    "check_overrides",
)

KUBERNETES_OBJECT_NAME = NameRule(
    "Kubernetes object name",
    re.compile(r"[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?"),
    253,
    "use lowercase letters, digits, '-' and '.', at most 253 characters",
)
"""Secrets, ConfigMaps and service accounts: a DNS-1123 subdomain."""
KUBERNETES_NAMESPACE = NameRule(
    "Kubernetes namespace",
    re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"),
    63,
    "use lowercase letters, digits and '-', at most 63 characters",
)
"""A DNS-1123 label."""


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


def check_overrides(value: object) -> dict[str, KubernetesStepOverride] | None:
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
        tag_concurrency_limits: ceilings on the step Jobs of one run existing at
            once by asset tag, as for ``Executor.parallel``. Accepts: a list of
            TagConcurrencyLimit with limits >= 1.
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
    tag_concurrency_limits: Sequence[TagConcurrencyLimit] = ()

    def __post_init__(self) -> None:
        force_setattr(
            self,
            "tag_concurrency_limits",
            check_tag_limits(
                self.tag_concurrency_limits,
                "Executor.kubernetes tag_concurrency_limits",
                minimum=1,
            ),
        )
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
        force_setattr(self, "step_overrides", check_overrides(self.step_overrides))

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
