"""The few Kubernetes API calls the Kubernetes executor makes, with retries and watches.

``KubeApi`` wraps one ``kubernetes_asyncio`` ``ApiClient``. Every call goes out with
``_preload_content=False`` and works on plain JSON dicts: the client's models are
much newer than the servers they talk to, and a dict shows exactly what the server
sent. Failures of any kind become ``ApiCallError`` (HTTP status or None when the
server could not be reached); ``kubernetes.py`` turns those into rivers errors that
name the cluster, namespace and Job.

``kubernetes_asyncio`` and ``aiohttp`` are imported inside the functions that need
them, so ``import rivers`` never imports them.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, final

import anyio
import anyio.to_thread

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = (
    "ApiCallError",
    "KubeApi",
    "WatchCursor",
    "follow",
    "retrying",
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 60.0
RETRY_FIRST_DELAY_S = 0.2
RETRY_MAX_DELAY_S = 5.0
RETRY_BUDGET_S = 60.0
"""Transient failures of one call (or one watch) are retried for this long."""
WATCH_TIMEOUT_S = 300
"""The server ends each watch request after this long; the watch then resumes."""
WATCH_READ_SLACK_S = 30.0
"""A watch connection silent this long past its timeout is treated as dead."""
QUICK_WATCH_END_S = 0.5
"""A watch ending sooner than this is resumed only after a back-off delay, so a
server or proxy that keeps closing watches at once is not hammered."""

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})

Kind = Literal["jobs", "pods"]


class ApiCallError(Exception):
    """A Kubernetes API call failed: an HTTP error status, or no answer at all.

    Args:
        status: the HTTP status, or None when the server could not be reached.
        reason: the ``Status`` reason (``NotFound``, ``Gone``...) or the error type.
        message: the server's message, or the connection error.
    """

    def __init__(self, status: int | None, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        where = f"HTTP {status} {reason}" if status is not None else reason
        super().__init__(f"{where}: {message}")

    @property
    def transient(self) -> bool:
        """True when trying again later may succeed (5xx, 429, no connection)."""
        return self.status is None or self.status in TRANSIENT_STATUSES


@dataclass(slots=True)
class WatchCursor:
    """Where a watch resumes: the last ``resourceVersion`` it saw."""

    resource_version: str | None = None


def _status_error(status: int, body: bytes | dict[str, Any]) -> ApiCallError:
    """Build an ``ApiCallError`` from an error response or an ERROR watch event."""
    data: object = body
    if isinstance(body, bytes):
        try:
            data = json.loads(body)
        except ValueError:
            data = {"message": body.decode("utf-8", "replace").strip()[:500]}
    reason, message = "Error", ""
    if isinstance(data, dict):
        reason = str(data.get("reason") or reason)
        message = str(data.get("message") or "")
    return ApiCallError(status, reason, message or reason)


def _unreachable(exc: BaseException) -> ApiCallError:
    text = str(exc) or type(exc).__name__
    return ApiCallError(None, "unreachable", f"{type(exc).__name__}: {text}")


def _connection_errors() -> tuple[type[BaseException], ...]:
    import aiohttp

    # TimeoutError: aiohttp's client timeouts; OSError: refused, reset, DNS.
    return (aiohttp.ClientError, TimeoutError, OSError)


def _request_timeout(read_s: float) -> object:
    import aiohttp

    return aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT_S, sock_read=read_s)


@final
class KubeApi:
    """One connection to one cluster; close it with ``aclose()``.

    Args:
        api_client: a ``kubernetes_asyncio.client.ApiClient``.
        cluster: how messages name the cluster (its kubeconfig name or URL).
    """

    def __init__(self, api_client: Any, cluster: str) -> None:
        from kubernetes_asyncio import client

        # Any: the generated client's types describe models, but every call here
        # asks for the raw aiohttp response (_preload_content=False).
        self._client: Any = api_client
        self._batch: Any = client.BatchV1Api(api_client)
        self._core: Any = client.CoreV1Api(api_client)
        self.cluster = cluster

    @classmethod
    async def connect(cls, kubeconfig: str | None) -> KubeApi:
        """Connect with ``kubeconfig``, or in-cluster config inside a pod.

        Without a kubeconfig, in-cluster config is used when
        ``KUBERNETES_SERVICE_HOST`` is set, else ``$KUBECONFIG`` or
        ``~/.kube/config``.

        Raises:
            ApiCallError: the configuration cannot be loaded (status None).
        """
        from kubernetes_asyncio import client, config

        try:
            if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                configuration = client.Configuration()
                load_incluster: Any = config.load_incluster_config  # untyped
                load_incluster(client_configuration=configuration)
                return cls(client.ApiClient(configuration=configuration), "in-cluster")
            api_client = await config.new_client_from_config(
                config_file=kubeconfig, persist_config=False
            )
        except Exception as exc:
            where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            raise ApiCallError(
                None,
                "bad configuration",
                f"cannot load the kubeconfig {where!r} ({type(exc).__name__}: {exc})",
            ) from exc
        host = str(api_client.configuration.host)
        name = await anyio.to_thread.run_sync(_cluster_name, kubeconfig)
        return cls(api_client, f"{name} ({host})" if name else host)

    async def aclose(self) -> None:
        """Close the HTTP session."""
        await self._client.close()

    async def _call(
        self, method: Callable[..., Awaitable[Any]], *args: Any, **kw: Any
    ) -> Any:
        """Make one call and return its JSON body (None for an empty one)."""
        body = await self._raw(method, *args, **kw)
        return json.loads(body) if body.strip() else None

    async def _raw(
        self, method: Callable[..., Awaitable[Any]], *args: Any, **kw: Any
    ) -> bytes:
        """Make one call and return its body as bytes.

        Raises:
            ApiCallError: the server is unreachable or answered an error.
        """
        try:
            response = await method(
                *args,
                _preload_content=False,
                _request_timeout=_request_timeout(REQUEST_TIMEOUT_S),
                **kw,
            )
            try:
                body: bytes = await response.read()
            finally:
                response.release()
        except _connection_errors() as exc:
            raise _unreachable(exc) from exc
        if response.status >= 400:
            raise _status_error(response.status, body)
        return body

    async def create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a Job; return it as the server stored it."""
        job: dict[str, Any] = await self._call(
            self._batch.create_namespaced_job, namespace, body
        )
        return job

    async def read_job(self, namespace: str, name: str) -> dict[str, Any]:
        """Return one Job."""
        job: dict[str, Any] = await self._call(
            self._batch.read_namespaced_job, name, namespace
        )
        return job

    async def delete_job(self, namespace: str, name: str, propagation: str) -> None:
        """Delete a Job and, by ``propagation`` (Foreground/Background), its pods."""
        await self._call(
            self._batch.delete_namespaced_job,
            name,
            namespace,
            propagation_policy=propagation,
        )

    async def list(
        self,
        kind: Kind,
        namespace: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> dict[str, Any]:
        """List Jobs or pods; the answer holds ``items`` and a ``resourceVersion``."""
        method = (
            self._batch.list_namespaced_job
            if kind == "jobs"
            else self._core.list_namespaced_pod
        )
        selectors = _selectors(label_selector, field_selector)
        listed: dict[str, Any] = await self._call(method, namespace, **selectors)
        return listed

    async def read_pod_log(
        self, namespace: str, pod: str, container: str, limit_bytes: int
    ) -> bytes:
        """Return the container's log, at most ``limit_bytes`` of it."""
        return await self._raw(
            self._core.read_namespaced_pod_log,
            pod,
            namespace,
            container=container,
            limit_bytes=limit_bytes,
        )

    async def watch(
        self,
        kind: Kind,
        namespace: str,
        cursor: WatchCursor,
        on_event: Callable[[str, dict[str, Any]], bool],
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> bool:
        """Watch from ``cursor`` until ``on_event`` returns True or the server ends.

        ``cursor`` follows every event (bookmarks included), so the caller can
        resume where this watch stopped, however it stopped.

        Returns:
            True when ``on_event`` returned True; False when the stream ended.

        Raises:
            ApiCallError: an error status or ERROR event (410 Gone: re-list),
                or the connection failed.
        """
        method: Any = (
            self._batch.list_namespaced_job
            if kind == "jobs"
            else self._core.list_namespaced_pod
        )
        timeout_s = WATCH_TIMEOUT_S
        try:
            response = await method(
                namespace,
                watch=True,
                allow_watch_bookmarks=True,
                resource_version=cursor.resource_version,
                timeout_seconds=timeout_s,
                _preload_content=False,
                _request_timeout=_request_timeout(timeout_s + WATCH_READ_SLACK_S),
                **_selectors(label_selector, field_selector),
            )
        except _connection_errors() as exc:
            raise _unreachable(exc) from exc
        try:
            if response.status >= 400:
                raise _status_error(response.status, await response.read())
            while True:
                line: bytes = await response.content.readline()
                if not line:
                    return False
                event = json.loads(line)
                kind_of_event = str(event.get("type", ""))
                obj: dict[str, Any] = event.get("object") or {}
                if kind_of_event == "ERROR":
                    raise _status_error(int(obj.get("code") or 500), obj)
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    cursor.resource_version = str(version)
                if kind_of_event == "BOOKMARK":
                    continue
                if on_event(kind_of_event, obj):
                    return True
        except _connection_errors() as exc:
            raise _unreachable(exc) from exc
        except ValueError as exc:  # a torn line: the connection broke mid-event
            raise _unreachable(exc) from exc
        finally:
            response.close()


def _selectors(
    label_selector: str | None, field_selector: str | None
) -> dict[str, str]:
    selectors: dict[str, str] = {}
    if label_selector is not None:
        selectors["label_selector"] = label_selector
    if field_selector is not None:
        selectors["field_selector"] = field_selector
    return selectors


def _cluster_name(kubeconfig: str | None) -> str | None:
    """Return the cluster name of the kubeconfig's current context, if any."""
    from kubernetes_asyncio import config

    try:
        _, active = config.list_kube_config_contexts(kubeconfig)
        context: Any = active
        return str(context["context"]["cluster"])
    except Exception:  # the name is only for messages
        return None


async def retrying(call: Callable[[], Awaitable[T]], *, what: str) -> T:
    """Return ``await call()``, retrying transient failures with backoff.

    Delays start at ``RETRY_FIRST_DELAY_S`` and double up to ``RETRY_MAX_DELAY_S``;
    after ``RETRY_BUDGET_S`` the last error is raised.

    Raises:
        ApiCallError: a permanent failure, or the budget ran out.
    """
    delay = RETRY_FIRST_DELAY_S
    deadline = anyio.current_time() + RETRY_BUDGET_S
    while True:
        try:
            return await call()
        except ApiCallError as exc:
            if not exc.transient or anyio.current_time() + delay > deadline:
                raise
            logger.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
        await anyio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_DELAY_S)


async def follow(
    api: KubeApi,
    kind: Kind,
    namespace: str,
    *,
    on_list: Callable[[list[dict[str, Any]]], bool],
    on_event: Callable[[str, dict[str, Any]], bool],
    label_selector: str | None = None,
    field_selector: str | None = None,
    what: str,
) -> None:
    """List, then watch, until a callback returns True; survive every interruption.

    - A watch the server ends (its ``timeoutSeconds``), or a dropped connection,
      resumes from the last ``resourceVersion`` seen, so no event is lost or
      delivered twice.
    - ``410 Gone`` (that version was compacted away) re-lists: ``on_list`` gets the
      current objects, and watching resumes from the list's version.
    - Transient errors (5xx, 429, no connection) are retried with backoff for up
      to ``RETRY_BUDGET_S`` without progress.

    Raises:
        ApiCallError: a permanent error, or transient ones past the budget.
    """
    cursor = WatchCursor()
    delay = RETRY_FIRST_DELAY_S
    failing_since: float | None = None
    while True:
        try:
            if cursor.resource_version is None:
                listed = await api.list(
                    kind,
                    namespace,
                    label_selector=label_selector,
                    field_selector=field_selector,
                )
                if on_list(list(listed.get("items") or [])):
                    return
                cursor.resource_version = str(listed["metadata"]["resourceVersion"])
            began = anyio.current_time()
            if await api.watch(
                kind,
                namespace,
                cursor,
                on_event,
                label_selector=label_selector,
                field_selector=field_selector,
            ):
                return
            logger.debug(
                "watch of %s ended; resuming from resourceVersion %s",
                what,
                cursor.resource_version,
            )
            failing_since = None
            if anyio.current_time() - began >= QUICK_WATCH_END_S:
                delay = RETRY_FIRST_DELAY_S
                continue
        except ApiCallError as exc:
            if exc.status == 410:
                logger.info("watch of %s: %s; listing again", what, exc)
                cursor.resource_version = None
                continue
            if not exc.transient:
                raise
            now = anyio.current_time()
            failing_since = now if failing_since is None else failing_since
            if now + delay - failing_since > RETRY_BUDGET_S:
                raise
            logger.warning(
                "watch of %s failed (%s); retrying in %.1fs", what, exc, delay
            )
        await anyio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_DELAY_S)
