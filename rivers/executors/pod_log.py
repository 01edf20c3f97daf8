"""The one format of the records a step pod prints for its launcher to read back.

A pod runs ``python -m rivers.worker``; its stdout is the pod log, which the
Kubernetes launcher reads when the pod ends. Besides whatever the step prints, the
worker writes one record per ``context.log`` line and one for the step's error, each
on its own line: ``LOG_MARKER`` followed by a JSON object. The writer
(``rivers.worker``) and the reader (``_kube_jobs.parse_worker_output``) both go
through this module, so the two sides cannot drift apart.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ("LOG_MARKER", "marked_record", "read_marked_record")

LOG_MARKER = "::rivers::"
"""What starts a line carrying a record rather than the step's own output."""


def marked_record(record: dict[str, Any]) -> str:
    """Return ``record`` as one marked log line (no newline); values JSON cannot
    hold are written as their ``str``."""
    return LOG_MARKER + json.dumps(record, default=str)


def read_marked_record(line: str) -> dict[str, Any] | None:
    """Return the record a marked line carries; None for any other line (the
    step's own output, or a marked line whose JSON is not an object)."""
    if not line.startswith(LOG_MARKER):
        return None
    try:
        record = json.loads(line[len(LOG_MARKER) :])
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
