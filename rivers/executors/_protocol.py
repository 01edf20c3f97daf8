"""Messages between the parent and a step worker process (msgpack over a pipe)."""

from __future__ import annotations

import msgspec

__all__ = (
    "STOPPED_PARENT_EXIT",
    "Ready",
    "TaskDone",
    "TaskLog",
    "TaskRequest",
    "decode_reply",
    "decode_request",
)

STOPPED_PARENT_EXIT = 75
"""The exit status of a worker that left because its parent stayed stopped."""


class TaskRequest(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Run one step attempt: its asset and IO manager are cloudpickled bytes."""

    task_id: int
    run_id: str
    step_key: str
    attempt: int
    run_tags: dict[str, str]
    asset: bytes
    asset_digest: str
    io_manager: bytes
    pool_lease: tuple[int, str, int, float] | None = None
    """The step's pool claim: token, pool, slots, lease end (epoch seconds)."""


class Shutdown(msgspec.Struct, frozen=True, tag=True):
    """Exit the worker loop."""


class Ready(msgspec.Struct, frozen=True, tag=True):
    """The worker has started (imported what it needs) and takes requests."""


class TaskLog(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """A line the step wrote through ``context.log``, or to ``stream``."""

    task_id: int
    level: str
    message: str
    stream: str | None = None
    """``"stdout"`` or ``"stderr"`` for output the worker captured."""


class TaskDone(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """The attempt ended; on failure the exception is described (and pickled if it can)."""

    task_id: int
    ok: bool
    duration_s: float
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    exception: bytes | None = None


Request = TaskRequest | Shutdown
Reply = Ready | TaskLog | TaskDone

encode = msgspec.msgpack.Encoder().encode
decode_request = msgspec.msgpack.Decoder(Request).decode
decode_reply = msgspec.msgpack.Decoder(Reply).decode
