"""``rs.Executor``: the one place a user picks an executor configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

from rivers.definitions.executor_configs import InProcessExecutor, ParallelExecutor
from rivers.executors.kubernetes_config import (
    ImagePullPolicy,
    KubernetesExecutor,
    KubernetesStepOverride,
    check_overrides,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from rivers.definitions.configs import TagConcurrencyLimit

__all__ = ("Executor",)


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
        max_workers: int | None = None,
        max_async_concurrent: int | None = None,
        tag_concurrency_limits: Sequence[TagConcurrencyLimit] = (),
    ) -> ParallelExecutor:
        """Run sync steps in worker processes and async steps on the event loop."""
        return ParallelExecutor(
            max_workers=max_workers,
            max_async_concurrent=max_async_concurrent,
            tag_concurrency_limits=tag_concurrency_limits,
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
        tag_concurrency_limits: Sequence[TagConcurrencyLimit] = (),
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
            step_overrides=check_overrides(step_overrides),
            tag_concurrency_limits=tag_concurrency_limits,
        )
