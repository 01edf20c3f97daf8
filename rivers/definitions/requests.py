"""``rs.RunRequest``: a run to submit through the queue."""

from __future__ import annotations

from collections.abc import Sequence
from typing import final

import msgspec
from msgspec.structs import force_setattr

from rivers._validate import (
    check_asset_name,
    check_int,
    check_run_key,
    check_tags,
)
from rivers.errors import ConfigError

__all__ = ("RunRequest",)


@final
class RunRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A run to submit: which assets, its tags, its queue priority, a dedup key.

    Args:
        selection: asset names, a list or tuple (None: every asset of the
            repository); stored as a tuple.
        tags: run tags (the unit of tag concurrency limits).
        priority: higher is admitted first.
        run_key: a key already used (by that sensor or schedule) is not submitted
            again; a printable string of 1..512 characters (no control characters).
    """

    selection: Sequence[str] | None = None
    tags: dict[str, str] | None = None
    priority: int = 0
    run_key: str | None = None

    def __post_init__(self) -> None:
        if self.selection is not None:
            items: object = self.selection
            if isinstance(items, str) or not isinstance(items, list | tuple):
                raise ConfigError("RunRequest.selection must be a list of asset names")
            force_setattr(
                self,
                "selection",
                tuple(check_asset_name(n, "RunRequest.selection entry") for n in items),
            )
        force_setattr(self, "tags", check_tags(self.tags, "RunRequest.tags"))
        check_int(
            self.priority, "RunRequest.priority", minimum=-(2**31), maximum=2**31 - 1
        )
        if self.run_key is not None:
            check_run_key(self.run_key, "RunRequest.run_key")
