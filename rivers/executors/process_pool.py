"""WorkerPool: warm step worker processes shared by every run of a runtime.

Each worker is a separate ``python -m rivers.executors._worker_main`` process talking
over its own socket pair, so the parent controls each one: a step that times out or
is cancelled has its worker killed (and only that one), a worker that dies fails only
the step it was running, and later steps get a fresh worker. Workers are started on
demand, or ahead of a run's steps (``warm``), and kept warm between steps and runs;
they never import the user's ``__main__`` (functions travel by cloudpickle) and they
die with their parent. A worker says ``Ready`` once it has started; the time a step
waits for that is its start-up, reported apart from the step's own run time.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, final

import anyio
import anyio.to_thread

from rivers.executors._protocol import (
    STOPPED_PARENT_EXIT,
    Ready,
    Shutdown,
    TaskDone,
    TaskLog,
    TaskRequest,
    decode_reply,
    encode,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("WorkerDied", "WorkerPool", "describe_exit")

logger = logging.getLogger(__name__)

REAP_TIMEOUT_S = 5.0
SHUTDOWN_TIMEOUT_S = 2.0


class WorkerDied(Exception):
    """The worker process ended while running a step."""

    def __init__(self, pid: int, detail: str) -> None:
        self.pid = pid
        self.detail = detail
        super().__init__(f"worker pid {pid} {detail}")


def describe_exit(returncode: int | None) -> str:
    """Describe a process's end: ``killed by signal 9 (SIGKILL)`` or ``exited with code 3``."""
    if returncode is None:
        return "stopped responding"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"was killed by signal {-returncode} ({name})"
    if returncode == STOPPED_PARENT_EXIT:
        return (
            "left because this runtime was stopped (SIGSTOP) for longer than its "
            "pool lease, so its claims may have gone to another process"
        )
    return f"exited with code {returncode}"


@final
class _Worker:
    __slots__ = ("conn", "process", "ready")

    def __init__(self, process: subprocess.Popen[bytes], conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.ready = False

    @property
    def pid(self) -> int:
        return self.process.pid


@final
class WorkerPool:
    """Starts, reuses, kills and replaces step worker processes.

    Args:
        stopped_parent_limit_s: a worker exits once this process has been stopped
            (SIGSTOP) this long; the runtime passes its pool lease duration.
    """

    def __init__(self, stopped_parent_limit_s: float | None = None) -> None:
        self._stopped_parent_limit_s = stopped_parent_limit_s
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._task_ids = itertools.count(1)
        self._closed = False

    @property
    def pids(self) -> list[int]:
        """The pids of every live worker (idle and busy)."""
        return [w.pid for w in (*self._idle, *self._busy)]

    def next_task_id(self) -> int:
        """Return a fresh task id."""
        return next(self._task_ids)

    async def warm(self, count: int) -> None:
        """Start workers until ``count`` are idle; they start while the caller goes on.

        Only the processes are launched here (milliseconds each); their start-up
        (importing Python and rivers) runs in them, alongside the caller's work.
        """
        for _ in range(count - len(self._idle)):
            with anyio.CancelScope(shield=True):  # a started worker is never lost
                worker = await anyio.to_thread.run_sync(
                    _start_worker, self._stopped_parent_limit_s
                )
                if self._closed:
                    await self._kill(worker)
                    return
            self._idle.insert(0, worker)  # ready workers (at the end) go first

    async def run(
        self,
        request: TaskRequest,
        *,
        on_start: Callable[[int, float], None],
        on_log: Callable[[TaskLog], None],
    ) -> TaskDone:
        """Run one step attempt on a worker and return its reply.

        ``on_start(pid, startup_s)`` is called once the worker runs the step, with
        the seconds the step waited for the worker to start (0 for a warm one).
        Cancellation kills the worker running it (a thread or process cannot be
        interrupted otherwise) and the worker is replaced later.

        Raises:
            WorkerDied: the worker ended before replying.
        """
        asked = time.monotonic()
        worker = await self._checkout()
        healthy = False
        try:
            startup_s = 0.0
            if not worker.ready:
                await self._wait_ready(worker)
                startup_s = time.monotonic() - asked
            worker.conn.send_bytes(encode(request))
            on_start(worker.pid, startup_s)
            while True:
                await anyio.wait_readable(worker.conn.fileno())
                reply = decode_reply(worker.conn.recv_bytes())
                if isinstance(reply, TaskLog):
                    on_log(reply)
                    continue
                if isinstance(reply, Ready):
                    continue
                healthy = True
                return reply
        except (EOFError, OSError) as exc:
            returncode = await self._reap(worker)
            raise WorkerDied(worker.pid, describe_exit(returncode)) from exc
        finally:
            self._busy.discard(worker)
            if healthy and not self._closed:
                self._idle.append(worker)
            else:
                with anyio.CancelScope(shield=True):
                    await self._kill(worker)

    async def _wait_ready(self, worker: _Worker) -> None:
        await anyio.wait_readable(worker.conn.fileno())
        reply = decode_reply(worker.conn.recv_bytes())
        if not isinstance(reply, Ready):
            raise OSError(f"worker pid {worker.pid} sent {reply!r} before Ready")
        worker.ready = True

    async def _checkout(self) -> _Worker:
        if self._closed:
            raise RuntimeError("the worker pool is closed")
        while self._idle:
            worker = self._idle.pop()
            if worker.process.poll() is None:
                self._busy.add(worker)
                return worker
            await self._kill(worker)
        worker = await anyio.to_thread.run_sync(
            _start_worker, self._stopped_parent_limit_s
        )
        self._busy.add(worker)
        return worker

    async def _reap(self, worker: _Worker) -> int | None:
        try:
            return await anyio.to_thread.run_sync(worker.process.wait, REAP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return None

    async def _kill(self, worker: _Worker) -> None:
        if worker.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
            await self._reap(worker)
        worker.conn.close()

    async def aclose(self) -> None:
        """Stop every worker: idle ones are asked to exit, then anything left is killed."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            workers, self._idle = self._idle, []
            for worker in workers:
                with contextlib.suppress(OSError):
                    worker.conn.send_bytes(encode(Shutdown()))

            def wait_all() -> None:
                for worker in workers:
                    try:
                        worker.process.wait(SHUTDOWN_TIMEOUT_S)
                    except subprocess.TimeoutExpired:
                        worker.process.kill()
                        worker.process.wait(REAP_TIMEOUT_S)

            await anyio.to_thread.run_sync(wait_all)
            for worker in workers:
                worker.conn.close()
            for worker in list(self._busy):
                await self._kill(worker)


def _start_worker(stopped_parent_limit_s: float | None) -> _Worker:
    parent, child = socket.socketpair()
    env = dict(os.environ)
    env["RIVERS_WORKER_SYS_PATH"] = os.pathsep.join(p for p in sys.path if p)
    try:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rivers.executors._worker_main",
                str(child.fileno()),
                str(os.getpid()),
                *(
                    ()
                    if stopped_parent_limit_s is None
                    else (repr(stopped_parent_limit_s),)
                ),
            ],
            pass_fds=(child.fileno(),),
            env=env,
            stdin=subprocess.DEVNULL,
        )
    finally:
        child.close()
    return _Worker(process, Connection(parent.detach()))
