"""Worker threads that outlive an event loop, and lanes: one thread per connection.

A hop to a thread is the hot path of a sync step and of every storage call. anyio's
``to_thread.run_sync`` costs 35-45 µs a round trip here (a capacity limiter, a
worker per loop, ``from_thread`` tokens); this module's costs 13-24 µs (19 µs on a
lane): a job is one ``SimpleQueue.put`` and its result one
``call_soon_threadsafe`` (figures: docs/architecture.md, "Storage roles"). Threads are
process-wide, so a cold ``materialize()`` (a new event loop) reuses the threads of
the last one instead of starting new ones.

- ``run_sync(fn)`` runs ``fn`` on a pooled worker and awaits its result. Without
  ``abandon_on_cancel`` a cancelled caller still waits for ``fn`` to return (it may
  hold a lock or a half-written file); with it the caller leaves at once and the
  thread's result, when it comes, is dropped.
- ``call_from_thread(loop, fn, *args)`` runs ``fn`` on ``loop`` from a worker and
  returns its result; ``RuntimeError`` once that loop is closed or stopped (a run
  that abandoned the thread is gone).
- ``Lane`` holds one worker for one SQLite connection (a connection may only be
  used on the thread that opened it) until ``close``.

At most ``MAX_WORKERS`` run jobs at once (later ones wait in the queue, like
anyio's default limiter of 40); a lane always gets its own thread. A worker idle for
``IDLE_EXIT_S`` exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeVar, final

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("Lane", "call_from_thread", "run_sync")

T = TypeVar("T")

MAX_WORKERS: Final = 40
IDLE_EXIT_S: Final = 30.0
LOOP_CHECK_S: Final = 0.5  # how often a thread waiting on a loop checks it still runs

_Job = tuple["Callable[[], Any]", asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


@final
class _Pool:
    """The process's worker threads, fed by one queue."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0  # threads alive, lanes included
        self._idle = 0  # threads waiting for a job
        self._lanes = 0  # threads held by a lane

    def submit(self, job: _Job, *, force: bool = False) -> None:
        """Queue ``job``; start a worker when none is idle (always if ``force``)."""
        with self._lock:
            start = self._idle == 0 and (
                force or self._workers - self._lanes < MAX_WORKERS
            )
            if start:
                self._workers += 1
            else:
                self._idle -= 1  # that worker is spoken for
        self._jobs.put(job)
        if start:
            threading.Thread(
                target=self._work, name="rivers-worker", daemon=True
            ).start()

    def lane_held(self, held: bool) -> None:
        with self._lock:
            self._lanes += 1 if held else -1

    def _work(self) -> None:
        while True:
            try:
                fn, loop, future = self._jobs.get(timeout=IDLE_EXIT_S)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:
                        self._idle -= 1
                        self._workers -= 1
                        return
                continue  # a job was promised to this thread: it is on its way
            _run_job(fn, loop, future)
            with self._lock:
                self._idle += 1


def _run_job(
    fn: Callable[[], Any], loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]
) -> None:
    try:
        result = fn()
    except BaseException as exc:  # delivered to the caller, whatever it is
        _deliver(loop, future, None, exc)
    else:
        _deliver(loop, future, result, None)


def _deliver(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: object,
    exc: BaseException | None,
) -> None:
    with contextlib.suppress(RuntimeError):  # closed: the caller abandoned the job
        loop.call_soon_threadsafe(_settle, future, result, exc)


def _settle(
    future: asyncio.Future[Any], result: object, exc: BaseException | None
) -> None:
    if future.done():  # the caller was cancelled and left
        return
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)


_POOL = _Pool()


def _drop_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: never logged as unhandled


async def run_sync(fn: Callable[[], T], *, abandon_on_cancel: bool = False) -> T:
    """Run ``fn`` on a worker thread (with this task's context variables)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    _POOL.submit((partial(contextvars.copy_context().run, fn), loop, future))
    if abandon_on_cancel:
        return await future
    with anyio.CancelScope(shield=True):
        result = await future
    return result


def call_from_thread(
    loop: asyncio.AbstractEventLoop, fn: Callable[..., T], *args: Any
) -> T:
    """From a worker thread, run ``fn(*args)`` on ``loop`` and return its result.

    Raises:
        RuntimeError: ``loop`` is closed or no longer running.
    """
    done = threading.Event()
    outcome: list[Any] = []

    def call() -> None:
        try:
            outcome.append((True, fn(*args)))
        except BaseException as exc:
            outcome.append((False, exc))
        finally:
            done.set()

    loop.call_soon_threadsafe(call)  # RuntimeError when the loop is closed
    while not done.wait(LOOP_CHECK_S):
        if loop.is_closed() or not loop.is_running():
            raise RuntimeError("the event loop stopped before it ran the call")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


@final
class Lane:
    """One worker thread held for one connection: every call runs on it, in order."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        loop = asyncio.get_running_loop()
        _POOL.lane_held(True)
        _POOL.submit((self._serve, loop, loop.create_future()), force=True)

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the lane's thread; a cancelled caller waits for it."""
        if self._closed:
            raise RuntimeError("the lane is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((fn, loop, future, False))
        with anyio.CancelScope(shield=True):
            result = await future
        return result

    def post(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the lane's thread after the calls before it, without
        waiting for it; what it returns or raises is dropped."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        future.add_done_callback(_drop_outcome)
        self._calls.put((fn, loop, future, False))

    async def close(self, last: Callable[[], object]) -> None:
        """Run ``last`` on the lane's thread, then give the thread back."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        self._calls.put((last, loop, future, True))
        with anyio.CancelScope(shield=True):
            await future

    def _serve(self) -> None:
        try:
            last = False
            while not last:
                fn, loop, future, last = self._calls.get()
                _run_job(fn, loop, future)
        finally:
            _POOL.lane_held(False)
