"""``RunHandle``: what ``rt.submit`` returns: a submitted run's id, and a way to wait
for its end."""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from rivers.errors import RunNotFound

if TYPE_CHECKING:
    from rivers.runtime import Runtime
    from rivers.storage.records import RunRecord, RunStatus

__all__ = ("RunHandle",)


@final
class RunHandle:
    """A submitted run: its id, and a way to wait for its end."""

    __slots__ = ("_runtime", "run_id")

    def __init__(self, runtime: Runtime, run_id: str) -> None:
        self._runtime = runtime
        self.run_id = run_id

    async def wait(self) -> RunRecord:
        """Wait until the run has finished (SUCCESS, FAILURE or CANCELED)."""
        return await self._runtime.wait_for(self.run_id)

    async def status(self) -> RunStatus:
        """Return the run's current status."""
        record = await self._runtime.storage.get_run(self.run_id)
        if record is None:
            raise RunNotFound(self.run_id)
        return record.status

    def __repr__(self) -> str:
        return f"RunHandle({self.run_id!r})"
