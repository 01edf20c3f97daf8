"""EventWriter: batches events into storage and fans them out to subscribers.

Producers call ``emit`` (sync, never blocks, safe from the event loop thread) and,
where they can wait, ``await backpressure()``. The writer takes everything pending,
writes it in one transaction, then hands the stored events (with their ids) to each
subscriber. So the log costs one transaction per batch, not per event. A small batch
lingers ``LINGER_S`` (2 ms) to gather more events, unless someone waits in
``flush()``: durability is never delayed for a caller that asks for it.

Events are never dropped: the pending list is bounded by backpressure on the
producers that can wait (``HIGH_WATER``), not by discarding. A subscriber that falls
behind by more than its buffer is marked lagging and catches up from storage.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, final

import anyio
import msgspec

from rivers.errors import StorageError, StorageLocked, StorageUnavailable
from rivers.storage.records import Event

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import TaskStatus
    from anyio.streams.memory import MemoryObjectSendStream

    from rivers._clock import Clock
    from rivers.messages import EventBody
    from rivers.storage.base import EventStore
    from rivers.storage.records import RunChange

__all__ = ("EventWriter", "EventWriterStatistics")

logger = logging.getLogger(__name__)

HIGH_WATER = 20_000
LINGER_S = 0.002
LINGER_BATCH = 512
SUBSCRIBER_BUFFER = 10_000
RETRY_DELAYS_S = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class EventWriterStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """What an event writer has written so far."""

    batches: int
    """Transactions that wrote events."""
    events: int
    write_seconds: float
    """Wall time spent in those transactions, retries included."""


@final
class _Subscriber:
    __slots__ = ("lagging", "send")

    def __init__(self, send: MemoryObjectSendStream[Event]) -> None:
        self.send = send
        self.lagging = False


@final
class _Change:
    __slots__ = ("applied", "change", "done", "events", "written")

    def __init__(self, change: RunChange) -> None:
        self.change = change
        self.done = anyio.Event()
        self.written = False
        self.applied = False
        self.events: list[Event] = []


@final
class EventWriter:
    """The one writer of the event log of a runtime."""

    def __init__(self, storage: EventStore, clock: Clock) -> None:
        self._storage = storage
        self._clock = clock
        self._pending: list[tuple[EventBody, float]] = []
        self._changes: list[_Change] = []
        self._wake = anyio.Event()
        self._drained = anyio.Event()
        self._emitted = 0
        self._written = 0
        self._flush_waiters: list[tuple[int, anyio.Event]] = []
        self._subscribers: list[_Subscriber] = []
        self._closing = False
        self._failure: BaseException | None = None
        self._flush_requested = anyio.Event()
        self._batches = 0
        self._write_seconds = 0.0

    def statistics(self) -> EventWriterStatistics:
        """Return how many batches and events were written, and the time it took."""
        return EventWriterStatistics(
            batches=self._batches,
            events=self._written,
            write_seconds=self._write_seconds,
        )

    def emit(self, body: EventBody) -> None:
        """Queue ``body`` for writing, stamped with the current time."""
        if self._failure is not None:
            raise StorageError(f"the event log cannot be written: {self._failure}")
        self._pending.append((body, self._clock.time()))
        self._emitted += 1
        if not self._wake.is_set():
            self._wake.set()

    async def change_run(self, change: RunChange) -> tuple[bool, list[Event]]:
        """Write a run's status change with every event emitted before it, in the
        next batch (one transaction for the changes of every run waiting, and no
        linger); return whether it applied and its event as stored (published)."""
        if self._failure is not None or self._drained.is_set():
            raise StorageError(f"the event log cannot be written: {self._failure}")
        waiter = _Change(change)
        self._changes.append(waiter)
        self._flush_requested.set()
        self._wake.set()
        await waiter.done.wait()
        if not waiter.written:
            reason = self._failure or "the event writer stopped"
            raise StorageError(f"the event log cannot be written: {reason}")
        return waiter.applied, waiter.events

    async def backpressure(self) -> None:
        """Wait while more than ``HIGH_WATER`` events are pending."""
        while len(self._pending) > HIGH_WATER and self._failure is None:
            await self._wait_written(self._emitted - HIGH_WATER // 2)

    async def flush(self) -> None:
        """Wait until every event emitted so far is in storage."""
        await self._wait_written(self._emitted)

    async def _wait_written(self, target: int) -> None:
        if self._written >= target:
            return
        if self._failure is not None:
            raise StorageError(f"the event log cannot be written: {self._failure}")
        done = anyio.Event()
        self._flush_waiters.append((target, done))
        self._flush_requested.set()
        await done.wait()
        if self._written < target and self._failure is not None:
            raise StorageError(f"the event log cannot be written: {self._failure}")

    def publish(self, events: list[Event]) -> None:
        """Hand already-stored ``events`` to every subscriber."""
        for subscriber in self._subscribers:
            if subscriber.lagging:
                continue
            for event in events:
                try:
                    subscriber.send.send_nowait(event)
                except anyio.WouldBlock:
                    subscriber.lagging = True
                    break
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    break

    async def subscribe(self) -> AsyncIterator[Event]:
        """Yield every event stored from now on, in order, until the writer stops."""
        send, receive = anyio.create_memory_object_stream[Event](SUBSCRIBER_BUFFER)
        subscriber = _Subscriber(send)
        self._subscribers.append(subscriber)
        last_id: int | None = None
        try:
            async with receive:
                while True:
                    try:
                        event = await receive.receive()
                    except anyio.EndOfStream:
                        return
                    if last_id is not None and event.event_id <= last_id:
                        continue
                    last_id = event.event_id
                    yield event
                    if (
                        subscriber.lagging
                        and receive.statistics().current_buffer_used == 0
                    ):
                        # Catch up from storage, then resume live delivery.
                        subscriber.lagging = False
                        for stored in await self._storage.get_events(after=last_id):
                            last_id = stored.event_id
                            yield stored
        finally:
            self._subscribers.remove(subscriber)
            send.close()

    async def run(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Write batches until ``aclose()``; everything emitted before it is written."""
        task_status.started()
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                if len(self._pending) < LINGER_BATCH and not self._urgent():
                    # Let a small batch grow for a moment: one transaction then
                    # carries the events of many steps. A flush skips the wait.
                    with anyio.move_on_after(LINGER_S):
                        await self._flush_requested.wait()
                self._flush_requested = anyio.Event()
                if self._pending or self._changes:
                    # What is emitted during this write waits for the next batch,
                    # which lingers too (unless a change or a flush is waiting): a
                    # steady stream of steps makes one transaction per LINGER_S,
                    # not one per write's duration.
                    batch, self._pending = self._pending, []
                    changes, self._changes = self._changes, []
                    started = time.perf_counter()
                    try:
                        events, applied = await self._write(batch, changes)
                    except BaseException:
                        self._changes[:0] = changes  # told below: not written
                        raise
                    self._write_seconds += time.perf_counter() - started
                    self._batches += 1
                    self._written += len(batch)
                    self.publish(events)
                    self._release_changes(changes, applied, events[len(batch) :])
                    self._release_waiters()
                if self._closing and not self._pending and not self._changes:
                    return
        except Exception as exc:
            self._failure = exc
            self._release_waiters(everyone=True)
            raise
        except BaseException:
            self._release_waiters(everyone=True)
            raise
        finally:
            for subscriber in self._subscribers:
                subscriber.send.close()
            self._drained.set()
            for waiter in self._changes:
                waiter.done.set()  # not written: change_run raises

    async def _write(
        self, batch: list[tuple[EventBody, float]], changes: list[_Change]
    ) -> tuple[list[Event], list[bool]]:
        runs = [waiter.change for waiter in changes]
        for delay in (*RETRY_DELAYS_S, math.inf):
            try:
                return await self._storage.write_batch(batch, runs)
            except StorageLocked:
                raise  # the storage already waited WRITE_PATIENCE_S for the lock
            except StorageUnavailable as exc:
                if delay == math.inf:
                    raise
                logger.warning(
                    "event log write failed, retrying in %ss: %s", delay, exc
                )
                await anyio.sleep(delay)
        raise AssertionError("unreachable")

    def _urgent(self) -> bool:
        return self._closing or bool(self._flush_waiters) or bool(self._changes)

    @staticmethod
    def _release_changes(
        changes: list[_Change], applied: list[bool], logged: list[Event]
    ) -> None:
        """Tell each change's waiter its outcome (``logged``: the events of the
        changes that applied and carry one, in order)."""
        events = iter(logged)
        for waiter, ok in zip(changes, applied, strict=True):
            waiter.written = True
            waiter.applied = ok
            if ok and waiter.change.event is not None:
                waiter.events = [next(events)]
            waiter.done.set()

    def _release_waiters(self, *, everyone: bool = False) -> None:
        keep: list[tuple[int, anyio.Event]] = []
        for target, done in self._flush_waiters:
            if everyone or self._written >= target:
                done.set()
            else:
                keep.append((target, done))
        self._flush_waiters = keep

    async def aclose(self) -> None:
        """Write what is pending, then stop the writer loop."""
        self._closing = True
        self._wake.set()
        self._flush_requested.set()
        await self._drained.wait()
