"""Wake-ups between the runtimes sharing one PostgreSQL database: LISTEN/NOTIFY.

Each runtime listens on a channel derived from its owner id (``rivers_`` and a
digest: a channel is an identifier of at most 63 bytes), on a connection of its
own in autocommit; a release that concerns another runtime's waiters sends
``NOTIFY`` on that runtime's channel, on whatever host it runs. A wake-up carries
nothing: it tells the receiver to re-read the pools now rather than at its next
safety check. A lost listening connection is made again with backoff, and the
runtime is woken once it is back (a wake-up may have been missed meanwhile).
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    import psycopg
    from anyio.abc import TaskStatus

    from rivers._threads import Lane

__all__ = ("RECONNECT_DELAYS_S", "PgWakes", "channel")

logger = logging.getLogger(__name__)

RECONNECT_DELAYS_S = (0.1, 0.5, 1.0, 2.0, 5.0)
"""Pauses between attempts to make a lost listening connection again (the last
repeats)."""


def channel(owner: str) -> str:
    """The NOTIFY channel of ``owner``'s runtime."""
    return "rivers_" + hashlib.sha256(owner.encode()).hexdigest()[:32]


class PgWakes:
    """Sends wake-ups through the storage's connection and listens on its own."""

    def __init__(self, url: str, lane: Lane, send: Callable[[list[str]], None]) -> None:
        self._url = url
        self._lane = lane
        self._send = send  # runs on the lane's thread

    def send(self, owners: Iterable[str]) -> None:
        """Wake the runtimes of ``owners`` (never blocks, never raises)."""
        channels = [channel(owner) for owner in owners]
        if channels:
            self._lane.post(lambda: self._send(channels))

    async def listen(
        self,
        owner: str,
        on_wake: Callable[[], None],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Call ``on_wake`` for every wake-up sent to ``owner`` until cancelled."""
        import psycopg  # here: only a runtime on PostgreSQL loads it

        name = channel(owner)
        started = False
        failures = 0
        while True:
            try:
                conn: psycopg.AsyncConnection[
                    Any
                ] = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=10
                )
                async with conn:
                    await conn.execute(f'LISTEN "{name}"')
                    if failures:
                        on_wake()  # a wake-up may have come while we were away
                    failures = 0
                    if not started:
                        started = True
                        task_status.started()
                    async for _ in conn.notifies():
                        on_wake()
            except psycopg.OperationalError as exc:
                logger.debug("wake-up connection lost: %s", exc)
            if not started:  # the runtime starts anyway; its safety checks run
                started = True
                task_status.started()
            await anyio.sleep(
                RECONNECT_DELAYS_S[min(failures, len(RECONNECT_DELAYS_S) - 1)]
            )
            failures += 1

    def close(self) -> None:
        """Nothing to close: the listening connections close with their tasks."""


def notify(conn: psycopg.Connection[Any], channels: list[str]) -> None:
    """Send a wake-up on each of ``channels`` (on the storage's connection)."""
    with conn.pipeline():
        for name in channels:
            conn.execute("SELECT pg_notify(%s, '')", (name,))
