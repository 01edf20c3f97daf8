"""The loop of a step worker process: receive a step, run it, reply, repeat.

The worker stores the step's value through the IO manager itself, so values never
cross the pipe. It exits within ``PARENT_POLL_S`` of its parent's death (a watchdog
thread) and when the pipe closes, so no worker outlives the runtime that started it.
It also exits when its parent has been stopped (SIGSTOP, a debugger) for longer
than the runtime's pool lease: by then the parent's claims may have been reclaimed
and given to another process, and the step must not go on using what they guard.
What a step writes to stdout and stderr is sent to the parent as lines
(``_worker_output``), so it never lands on the terminal beside a live display.

Nothing in the ``rivers`` package imports this module: ``python -m`` imports the
package first, and runpy warns when the module it is about to run is already
imported.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from rivers._tracebacks import step_traceback
from rivers._user_code import message_of
from rivers.executors._protocol import (
    STOPPED_PARENT_EXIT,
    Ready,
    Shutdown,
    TaskDone,
    TaskLog,
    TaskRequest,
    decode_request,
    encode,
)
from rivers.executors._worker_output import CapturedOutput

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

__all__ = ("worker_main",)

_ASSET_CACHE_SIZE = 256
PARENT_POLL_S = 0.1
"""How often a worker checks that its parent is alive."""


def _die_with_parent(parent_pid: int, stopped_limit_s: float | None) -> None:
    """Exit the whole worker as soon as ``parent_pid`` is no longer its parent.

    Not ``PR_SET_PDEATHSIG``: Linux sends that signal when the *thread* that
    started the worker ends, and workers are started from anyio's worker threads,
    which end after ten idle seconds; that killed workers in the middle of long
    steps. A daemon thread polls the parent pid instead (it needs the GIL, so a C
    extension holding the GIL delays the exit until it lets go). With
    ``stopped_limit_s`` it also exits once the parent has been stopped that long.
    """

    def watch() -> None:
        stopped_since: float | None = None
        while os.getppid() == parent_pid:
            if stopped_limit_s is not None and _is_stopped(parent_pid):
                now = time.monotonic()
                if stopped_since is None:
                    stopped_since = now
                elif now - stopped_since >= stopped_limit_s:
                    os._exit(STOPPED_PARENT_EXIT)
            else:
                stopped_since = None
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="rivers.worker.watchdog", daemon=True).start()


def _is_stopped(pid: int) -> bool:
    """Whether ``pid`` is stopped (Linux ``/proc``; False where it cannot tell)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rpartition(b")")[2].split(maxsplit=1)[0]
    except (OSError, IndexError):
        return False
    return state in (b"T", b"t")


def worker_main(
    conn: Connection,
    parent_pid: int,
    stopped_limit_s: float | None = None,
    *,
    capture_output: bool = False,
) -> None:
    """Serve step requests on ``conn`` until it closes or a Shutdown arrives.

    With ``capture_output`` what steps write to fds 1 and 2 is sent to the parent.
    """
    if os.getppid() != parent_pid:  # the parent died before the worker started
        return
    _die_with_parent(parent_pid, stopped_limit_s)
    # Ctrl-C and SIGTERM are the parent's to handle, also when they reach the whole
    # process group (a terminal, systemd's control group): it stops or drains its
    # runs and kills this worker if its step must not finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import cloudpickle

    from rivers.context import PoolLease
    from rivers.executors.base import call_step, load_inputs

    sending = threading.Lock()

    def send(reply: Ready | TaskLog | TaskDone) -> None:
        data = encode(reply)
        with sending:
            conn.send_bytes(data)

    output = CapturedOutput(send) if capture_output else None
    try:
        send(Ready())
    except OSError:
        return
    assets: dict[str, Any] = {}
    io_managers: dict[bytes, Any] = {}
    while True:
        try:
            request = decode_request(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if isinstance(request, Shutdown):
            return
        assert isinstance(request, TaskRequest)
        if output is not None:
            output.begin(request.task_id)
        began = time.perf_counter()
        try:
            asset = assets.get(request.asset_digest)
            if asset is None:
                asset = cloudpickle.loads(request.asset)
                if len(assets) >= _ASSET_CACHE_SIZE:
                    assets.clear()
                assets[request.asset_digest] = asset
            io_manager = io_managers.get(request.io_manager)
            if io_manager is None:
                io_manager = pickle.loads(request.io_manager)
                io_managers.clear()
                io_managers[request.io_manager] = io_manager
            task_id = request.task_id

            def emit(body: Any, task_id: int = task_id) -> None:
                send(TaskLog(task_id=task_id, level=body.level, message=body.message))

            value = call_step(
                asset,
                load_inputs(asset, {}, io_manager),
                run_id=request.run_id,
                run_tags=request.run_tags,
                attempt=request.attempt,
                emit=emit,
                pool_lease=None
                if request.pool_lease is None
                else PoolLease.from_wire(request.pool_lease),
                echo=False,  # the parent logs the line; here it would reach stderr
            )
            io_manager.store(asset.name, value)
        except BaseException as exc:  # reported to the parent, never raised here
            reply = _failure(request.task_id, exc, time.perf_counter() - began)
        else:
            reply = TaskDone(
                task_id=request.task_id, ok=True, duration_s=time.perf_counter() - began
            )
        if output is not None:
            output.end()
        try:
            send(reply)
        except (BrokenPipeError, OSError):
            return


def _failure(task_id: int, exc: BaseException, duration_s: float) -> TaskDone:
    exception: bytes | None
    try:
        exception = pickle.dumps(exc)
        pickle.loads(exception)
    except Exception:
        exception = None
    return TaskDone(
        task_id=task_id,
        ok=False,
        duration_s=duration_s,
        error_type=type(exc).__name__,
        error_message=message_of(exc),
        traceback=step_traceback(exc),
        exception=exception,
    )


def _main() -> None:  # pragma: no cover - runs in the worker process
    """``python -m rivers.executors._worker_main FD PARENT_PID [STOPPED_LIMIT_S]``."""
    from multiprocessing.connection import Connection

    fd, parent_pid = int(sys.argv[1]), int(sys.argv[2])
    stopped_limit_s = float(sys.argv[3]) if len(sys.argv) > 3 else None
    extra_path = os.environ.get("RIVERS_WORKER_SYS_PATH", "")
    for entry in reversed([p for p in extra_path.split(os.pathsep) if p]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    worker_main(Connection(fd), parent_pid, stopped_limit_s, capture_output=True)


if __name__ == "__main__":  # pragma: no cover
    _main()
