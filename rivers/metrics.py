"""Prometheus metrics: a scrape endpoint a runtime serves at ``/metrics``.

``MetricsServer`` is an actor of the runtime that owns two things:
- counters and histograms fed by the runtime's own event stream (runs and steps
  finished, step durations, pool waits, admission waits, lease expirations): what
  *this* process did, so a sum over daemons is the whole;
- gauges read from storage at each scrape (pool limits, claimed slots, waiting steps
  and the oldest wait, rate tokens, the run queue and its tag buckets): the state of the whole
  storage, the same from every daemon sharing it (use ``max`` across instances).

It serves the Prometheus text format through the standard client library
(``prometheus_client``) on its own small HTTP/1.1 listener on the event loop, so a
scrape never takes a thread and never blocks a run. Metric names follow the
Prometheus conventions: a ``rivers_`` prefix, base units in the name, ``_total`` on
counters.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, final

import anyio

from rivers._repr import short_repr
from rivers.errors import ConfigError, RiversError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from anyio.abc import SocketStream, TaskStatus
    from prometheus_client.metrics_core import Metric

    from rivers.actors.events import EventWriter
    from rivers.dashboard.snapshot import DashboardSnapshot
    from rivers.storage.base import StorageBackend
    from rivers.storage.records import Event

__all__ = ("MetricsServer", "parse_metrics_addr")

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 10.0
MAX_REQUEST_BYTES = 16_384
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS_S = (
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.5,
    1.0,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)
_ADDR = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]{1,45})\]|(?P<host>[A-Za-z0-9.-]{1,253})):(?P<port>\d{1,5})",
    re.ASCII,
)


def parse_metrics_addr(addr: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:9464`` for IPv6); port 0 picks a free one.

    Raises:
        ConfigError: not of that form, or the port is above 65535.
    """
    match = _ADDR.fullmatch(addr) if isinstance(addr, str) else None
    port = int(match.group("port")) if match else -1
    if match is None or port > 65535:
        raise ConfigError(
            f"metrics_addr must be HOST:PORT such as '127.0.0.1:9464' or '[::1]:9464', "
            f"got {short_repr(addr)}"
        )
    return match.group("v6") or match.group("host"), port


@final
class _StorageGauges:
    """A collector yielding the gauges of the latest storage snapshot."""

    def __init__(self, events: EventWriter) -> None:
        self.snapshot: DashboardSnapshot | None = None
        self._events = events

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily

        writes = self._events.statistics()
        summary = SummaryMetricFamily(
            "rivers_storage_event_write_seconds",
            "Time to write one batch of events to storage (this process)",
            count_value=writes.batches,
            sum_value=writes.write_seconds,
        )
        yield summary
        snapshot = self.snapshot
        if snapshot is None:
            return
        now = snapshot.taken_at
        labels = ["pool"]
        limit = GaugeMetricFamily(
            "rivers_pool_limit_slots",
            "Slots a pool allows (absent for an unlimited pool)",
            labels=labels,
        )
        claimed = GaugeMetricFamily(
            "rivers_pool_claimed_slots", "Slots claimed by live holders", labels=labels
        )
        pending = GaugeMetricFamily(
            "rivers_pool_pending_steps", "Steps waiting for slots", labels=labels
        )
        oldest = GaugeMetricFamily(
            "rivers_pool_oldest_wait_seconds",
            "How long the longest-waiting step of a pool has waited (0 when none)",
            labels=labels,
        )
        tokens = GaugeMetricFamily(
            "rivers_pool_rate_tokens",
            "Starts a rate-limited pool's token bucket allows now (fractional: the "
            "next is on its way; absent for a pool without a rate)",
            labels=labels,
        )
        for pool in snapshot.pools:
            if pool.limit is not None:
                limit.add_metric([pool.name], pool.limit)
            if pool.rate_tokens is not None:
                tokens.add_metric([pool.name], pool.rate_tokens)
            claimed.add_metric([pool.name], pool.claimed)
            pending.add_metric([pool.name], pool.pending)
            waited = (
                (now - pool.oldest_pending_at).total_seconds()
                if pool.oldest_pending_at is not None
                else 0.0
            )
            oldest.add_metric([pool.name], max(waited, 0.0))
        yield from (limit, claimed, pending, oldest, tokens)
        queue = snapshot.queue
        yield GaugeMetricFamily(
            "rivers_queue_queued_runs",
            "Runs waiting in the run queue",
            value=queue.queued,
        )
        yield GaugeMetricFamily(
            "rivers_queue_in_flight_runs",
            "Runs STARTING, STARTED or CANCELING in the storage",
            value=queue.in_flight,
        )
        if queue.max_concurrent_runs is not None:
            yield GaugeMetricFamily(
                "rivers_queue_max_concurrent_runs",
                "The run queue's limit on runs in flight",
                value=queue.max_concurrent_runs,
            )
        waited = (
            (now - queue.oldest_queued_at).total_seconds()
            if queue.oldest_queued_at is not None
            else 0.0
        )
        yield GaugeMetricFamily(
            "rivers_queue_oldest_wait_seconds",
            "How long the oldest queued run has waited (0 when none)",
            value=max(waited, 0.0),
        )
        tag_limit = GaugeMetricFamily(
            "rivers_queue_tag_limit_runs",
            "In-flight runs a tag concurrency limit allows per bucket",
            labels=["limit"],
        )
        tag_used = GaugeMetricFamily(
            "rivers_queue_tag_bucket_runs",
            "In-flight runs in one bucket of a tag concurrency limit",
            labels=["limit", "bucket"],
        )
        for rule in snapshot.tag_limits:
            tag_limit.add_metric([rule.label], rule.limit)
            for bucket in rule.buckets:
                tag_used.add_metric([rule.label, bucket.label], bucket.used)
        yield tag_limit
        yield tag_used


@final
class MetricsServer:
    """Serves ``/metrics`` for one runtime until cancelled.

    Args:
        storage: read at each scrape for the storage-wide gauges.
        events: the runtime's event writer; its stream feeds the counters.
        host, port: where to listen (port 0: a free port, see ``port`` once started).
    """

    def __init__(
        self, *, storage: StorageBackend, events: EventWriter, host: str, port: int
    ) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Histogram
        except ImportError:  # pragma: no cover - a declared dependency
            raise ConfigError(
                "metrics need prometheus-client: pip install prometheus-client"
            ) from None
        self._storage = storage
        self._events = events
        self.host = host
        self.port = port
        self.registry = CollectorRegistry(auto_describe=True)
        self._gauges = _StorageGauges(events)
        # Held while an event is counted and while a scrape reads the storage, so
        # a scrape never shows a run finished in a counter but in flight in storage.
        self._scrape_lock = anyio.Lock()
        self.registry.register(self._gauges)
        r = self.registry
        self._runs = Counter(
            "rivers_runs_finished",
            "Runs this process finished, by status",
            ["status"],
            registry=r,
        )
        self._steps = Counter(
            "rivers_steps_finished",
            "Step attempts this process finished, by status",
            ["status"],
            registry=r,
        )
        self._lease_expired = Counter(
            "rivers_lease_expirations",
            "Claims reclaimed because their holder stopped renewing",
            ["pool"],
            registry=r,
        )
        self._step_duration = Histogram(
            "rivers_step_duration_seconds",
            "Duration of a step attempt, by status",
            ["status"],
            buckets=DURATION_BUCKETS_S,
            registry=r,
        )
        self._pool_wait = Histogram(
            "rivers_pool_wait_seconds",
            "How long a step waited for its slots, per pool",
            ["pool"],
            buckets=DURATION_BUCKETS_S,
            registry=r,
        )
        self._admission_wait = Histogram(
            "rivers_run_admission_wait_seconds",
            "How long a run waited in the queue before it was admitted",
            buckets=DURATION_BUCKETS_S,
            registry=r,
        )

    @property
    def url(self) -> str:
        """Where the metrics are served."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def run(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen, follow the event stream, serve scrapes; started once the port is bound."""
        from anyio.abc import SocketAttribute

        try:
            listener = await anyio.create_tcp_listener(
                local_host=self.host, local_port=self.port, reuse_port=False
            )
        except OSError as exc:
            raise RiversError(
                f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror or exc}; "
                "choose another --metrics-addr"
            ) from None
        async with listener, anyio.create_task_group() as tg:
            self.port = int(listener.extra(SocketAttribute.local_port))
            tg.start_soon(self._follow_events, name="rivers.metrics.events")
            task_status.started()
            logger.info("serving metrics at %s", self.url)
            await listener.serve(self._serve, task_group=tg)

    async def _follow_events(self) -> None:
        async for event in self._events.subscribe():
            async with self._scrape_lock:
                self.observe(event)

    def observe(self, event: Event) -> None:
        """Count one event of this runtime."""
        kind, data = event.kind, event.data
        if kind in ("RUN_SUCCESS", "RUN_FAILURE", "RUN_CANCELED"):
            self._runs.labels(kind.removeprefix("RUN_")).inc()
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_CANCELED"):
            status = kind.removeprefix("STEP_")
            self._steps.labels(status).inc()
            duration = data.get("duration_s")
            if isinstance(duration, int | float):
                self._step_duration.labels(status).observe(duration)
        elif kind == "STEP_POOL_CLAIMED":
            waited = data.get("waited_s")
            if isinstance(waited, int | float):
                for pool in data.get("pools") or ():
                    self._pool_wait.labels(str(pool)).observe(waited)
        elif kind == "RUN_DEQUEUED":
            waited = data.get("waited_s")
            if isinstance(waited, int | float):
                self._admission_wait.observe(waited)
        elif kind == "LEASE_EXPIRED":
            self._lease_expired.labels(str(data.get("pool"))).inc()

    async def render(self) -> bytes:
        """Read the storage gauges and return the whole exposition text."""
        from prometheus_client import generate_latest

        from rivers.dashboard.snapshot import read_snapshot

        async with self._scrape_lock:
            self._gauges.snapshot = await read_snapshot(
                self._storage,
                max_in_flight=0,
                max_queued=0,
                max_finished=0,
                max_events=0,
            )
            return bytes(generate_latest(self.registry))

    async def _serve(self, stream: SocketStream) -> None:
        async with stream:
            request = b""
            with anyio.move_on_after(REQUEST_TIMEOUT_S):
                try:
                    while (
                        b"\r\n\r\n" not in request and len(request) < MAX_REQUEST_BYTES
                    ):
                        request += await stream.receive(4096)
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    return
            parts = request.split(b"\r\n", 1)[0].split()
            if len(parts) < 2 or parts[0] not in (b"GET", b"HEAD"):
                await self._reply(stream, 405, b"only GET /metrics is served\n")
                return
            if parts[1].split(b"?", 1)[0] != b"/metrics":
                await self._reply(stream, 404, b"metrics are at /metrics\n")
                return
            try:
                body = await self.render()
            except RiversError as exc:
                await self._reply(stream, 503, f"{exc}\n".encode())
                return
            await self._reply(stream, 200, body, head=parts[0] == b"HEAD")

    @staticmethod
    async def _reply(
        stream: SocketStream, status: int, body: bytes, *, head: bool = False
    ) -> None:
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}.get(
            status, "Service Unavailable"
        )
        header = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {CONTENT_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        try:
            await stream.send(header if head else header + body)
        except (anyio.BrokenResourceError, OSError):
            return
