"""The loop of a step worker process: receive a step, run it, reply, repeat.

The worker stores the step's value through the IO manager itself, so values never
cross the pipe. It exits within ``PARENT_POLL_S`` of its parent's death (a watchdog
thread) and when the pipe closes, so no worker outlives the runtime that started it.
It also exits when its parent has been stopped (SIGSTOP, a debugger) for longer
than the runtime's pool lease: by then the parent's claims may have been reclaimed
and given to another process, and the step must not go on using what they guard.
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
from rivers.executors._protocol import (
    Ready,
    Shutdown,
    TaskDone,
    TaskLog,
    TaskRequest,
    decode_request,
    encode,
)

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

__all__ = ("worker_main",)

_ASSET_CACHE_SIZE = 256
PARENT_POLL_S = 0.1
"""How often a worker checks that its parent is alive."""
STOPPED_PARENT_EXIT = 75
"""The exit status of a worker that left because its parent stayed stopped."""


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
    conn: Connection, parent_pid: int, stopped_limit_s: float | None = None
) -> None:
    """Serve step requests on ``conn`` until it closes or a Shutdown arrives."""
    if os.getppid() != parent_pid:  # the parent died before the worker started
        return
    _die_with_parent(parent_pid, stopped_limit_s)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    import cloudpickle

    from rivers.context import StepContext, StepLog
    from rivers.executors.base import load_inputs

    try:
        conn.send_bytes(encode(Ready()))
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
            inputs = load_inputs(asset, {}, io_manager)
            if asset.takes_context:
                task_id = request.task_id

                def emit(body: Any, task_id: int = task_id) -> None:
                    conn.send_bytes(
                        encode(
                            TaskLog(
                                task_id=task_id, level=body.level, message=body.message
                            )
                        )
                    )

                inputs["context"] = StepContext(
                    run_id=request.run_id,
                    asset_key=asset.name,
                    run_tags=request.run_tags,
                    attempt=request.attempt,
                    log=StepLog(request.run_id, asset.name, emit),
                )
            value = asset.fn(**inputs)
            io_manager.store(asset.name, value)
        except BaseException as exc:  # reported to the parent, never raised here
            reply = _failure(request.task_id, exc, time.perf_counter() - began)
        else:
            reply = TaskDone(
                task_id=request.task_id, ok=True, duration_s=time.perf_counter() - began
            )
        try:
            conn.send_bytes(encode(reply))
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
        error_message=str(exc),
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
    worker_main(Connection(fd), parent_pid, stopped_limit_s)


if __name__ == "__main__":  # pragma: no cover
    _main()
