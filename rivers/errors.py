"""Every exception rivers raises.

The tree::

    RiversError
    ├── ConfigError                 invalid definitions or configuration
    ├── StorageError                the storage cannot be used
    │   ├── StorageUnavailable      read-only, full, or not a rivers database
    │   │   └── StorageLocked       another process held the write lock too long
    │   ├── StorageCorrupted        damaged while in use, or failing its check at
    │   │                           open: rivers stopped writing to it
    │   └── MigrationError          schema too new, or a migration failed
    ├── NotFoundError (LookupError)
    │   ├── RunNotFound
    │   ├── AssetNotFound
    │   └── ValueNotFound           an asset's value was never stored
    └── ExecutionError
        ├── LeaseLost               a pool claim was reclaimed while its step ran
        ├── StepError               a step raised; ``__cause__`` is the user's exception
        ├── StepTimeout             a step ran past its ``timeout``
        ├── LaunchFailed            a step could not be started
        ├── PoolTooSmall            a step needs more slots than its pool's limit
        ├── WorkerCrashed           the process running a step died
        ├── JobFailed               a step's Kubernetes Job failed (exit code, reason)
        └── KubernetesApiError      the Kubernetes API refused or could not answer

Messages are lowercase, name the thing, and say what to do instead.
"""

from __future__ import annotations

__all__ = (
    "AssetNotFound",
    "ConfigError",
    "ExecutionError",
    "JobFailed",
    "KubernetesApiError",
    "LaunchFailed",
    "LeaseLost",
    "MigrationError",
    "NotFoundError",
    "PoolTooSmall",
    "RiversError",
    "RunNotFound",
    "StepError",
    "StepTimeout",
    "StorageCorrupted",
    "StorageError",
    "StorageLocked",
    "StorageUnavailable",
    "ValueNotFound",
    "WorkerCrashed",
)


class RiversError(Exception):
    """The root of every error rivers raises."""


class ConfigError(RiversError, ValueError):
    """A definition or a configuration value is invalid."""


class StorageError(RiversError):
    """The storage could not be read or written."""


class StorageUnavailable(StorageError):
    """The storage file is locked, read-only, full, or not a rivers database.

    It may be usable later: rivers' actors retry on their next tick.
    """


class StorageLocked(StorageUnavailable):
    """Another process held the storage's write lock longer than writes wait."""


class StorageCorrupted(StorageError):
    """The storage file is damaged (or was truncated, deleted or replaced).

    Never retried: once raised, that open storage refuses every later write and a
    runtime using it stops. ``rivers doctor`` checks the file and says how to
    recover it.
    """


class MigrationError(StorageError):
    """The storage schema cannot be brought to this version of rivers."""


class NotFoundError(RiversError, LookupError):
    """A named thing does not exist."""


class RunNotFound(NotFoundError):
    """No run has the given id."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run with id {run_id!r}")


class AssetNotFound(NotFoundError):
    """No asset has the given name."""

    def __init__(self, name: str, known: tuple[str, ...] = ()) -> None:
        self.name = name
        hint = f"; known assets: {', '.join(known)}" if known else ""
        super().__init__(f"no asset named {name!r}{hint}")


class ValueNotFound(NotFoundError):
    """An asset has no stored value (it was never materialized)."""

    def __init__(self, asset_key: str) -> None:
        self.asset_key = asset_key
        super().__init__(
            f"asset {asset_key!r} has never been materialized, so its value cannot be "
            "loaded; materialize it first or add it to the selection"
        )


class ExecutionError(RiversError):
    """Running a step failed."""


class LeaseLost(ExecutionError):
    """A step's pool claim was reclaimed (its lease expired) or revoked (freed by
    hand) while the step ran: the step was stopped before its slots were handed on."""

    def __init__(
        self, run_id: str, step_key: str, pool: str, *, revoked: bool = False
    ) -> None:
        self.run_id = run_id
        self.step_key = step_key
        self.pool = pool
        self.revoked = revoked
        why = (
            "its claim was revoked by hand (rivers pools free / "
            "storage.free_pool_slots), so the step was stopped"
            if revoked
            else "it was not renewed in time (raise lease_duration if steps block "
            "the event loop)"
        )
        super().__init__(
            f"step {step_key!r} of run {run_id!r} lost its lease on pool {pool!r}; {why}"
        )


class StepError(ExecutionError):
    """A step raised an exception; the user's exception is ``__cause__``."""

    def __init__(self, step_key: str, message: str) -> None:
        self.step_key = step_key
        super().__init__(f"step {step_key!r} failed: {message}")


class StepTimeout(ExecutionError):
    """A step ran longer than its ``timeout``."""

    def __init__(
        self, step_key: str, timeout_s: float, *, returned_after_s: float | None = None
    ) -> None:
        self.step_key = step_key
        self.timeout_s = timeout_s
        self.returned_after_s = returned_after_s
        if returned_after_s is None:
            message = (
                f"step {step_key!r} timed out after {timeout_s:g}s "
                "(raise the asset's timeout= if it needs longer)"
            )
        else:
            message = (
                f"step {step_key!r} timed out after {timeout_s:g}s: it returned after "
                f"{returned_after_s:.3g}s, the event loop being blocked until then (an "
                "async step that blocks the loop cannot be stopped at its deadline; "
                "await instead of blocking, or make it a sync step)"
            )
        super().__init__(message)


class LaunchFailed(ExecutionError):
    """A step could not be started (unpicklable function or value, bad input)."""

    def __init__(self, step_key: str, reason: str) -> None:
        self.step_key = step_key
        self.reason = reason
        super().__init__(f"step {step_key!r} could not be launched: {reason}")


class PoolTooSmall(ExecutionError):
    """A step claims more slots of a pool than the pool's limit: it could never run."""

    def __init__(self, step_key: str, pool: str, slots: int, limit: int) -> None:
        self.step_key = step_key
        self.pool = pool
        self.slots = slots
        self.limit = limit
        super().__init__(
            f"step {step_key!r} needs {slots} slots of pool {pool!r}, whose limit is "
            f"{limit}; lower pool_slots or raise the limit (rivers pools set {pool} "
            f"{slots})"
        )


class WorkerCrashed(ExecutionError):
    """The worker process running a step died."""

    def __init__(self, step_key: str, detail: str) -> None:
        self.step_key = step_key
        self.detail = detail
        super().__init__(f"the worker process running step {step_key!r} died: {detail}")


class JobFailed(ExecutionError):
    """A step's Kubernetes Job failed: its pod exited non-zero or the Job was stopped.

    ``exit_code`` and ``reason`` come from the pod's container (``Error``,
    ``OOMKilled``...) or the Job's ``Failed`` condition (``DeadlineExceeded``...);
    either may be None when the cluster did not report it.
    """

    def __init__(
        self,
        step_key: str,
        *,
        cluster: str,
        namespace: str,
        job: str,
        detail: str,
        exit_code: int | None = None,
        reason: str | None = None,
    ) -> None:
        self.step_key = step_key
        self.cluster = cluster
        self.namespace = namespace
        self.job = job
        self.detail = detail
        self.exit_code = exit_code
        self.reason = reason
        super().__init__(
            f"step {step_key!r} failed in Kubernetes Job {job!r} (namespace "
            f"{namespace!r}, cluster {cluster!r}): {detail}"
        )


class KubernetesApiError(ExecutionError):
    """The Kubernetes API refused a request about a step's Job, or was unreachable.

    ``status`` is the HTTP status (None when the server could not be reached).
    """

    def __init__(
        self,
        step_key: str,
        *,
        cluster: str,
        namespace: str,
        job: str,
        action: str,
        status: int | None,
        detail: str,
    ) -> None:
        self.step_key = step_key
        self.cluster = cluster
        self.namespace = namespace
        self.job = job
        self.action = action
        self.status = status
        self.detail = detail
        super().__init__(
            f"step {step_key!r}: could not {action} Kubernetes Job {job!r} in "
            f"namespace {namespace!r} on cluster {cluster!r}: {detail}"
        )
