"""``rs.MaterializeResult``: what ``materialize()`` returns."""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from rivers.storage.records import RunStatus, StepRecord, StepStatus

if TYPE_CHECKING:
    from rivers.io import IOManager

__all__ = ("MaterializeResult",)

_MISSING = object()


@final
class MaterializeResult:
    """The outcome of one materialization.

    A failed step does not raise: ``success`` is False, ``status`` is FAILURE, the
    failing ``StepRecord.error`` holds the message, and ``error`` holds the
    ``rs.StepError`` (its ``__cause__`` is the user's exception).
    """

    __slots__ = ("_io_manager", "_values", "error", "run_id", "status", "step_records")

    def __init__(
        self,
        *,
        run_id: str,
        status: RunStatus,
        step_records: list[StepRecord],
        error: BaseException | None,
        values: dict[str, object],
        io_manager: IOManager,
    ) -> None:
        self.run_id = run_id
        self.status = status
        self.step_records = step_records
        self.error = error
        self._values = values
        self._io_manager = io_manager

    @property
    def success(self) -> bool:
        """Whether every step succeeded."""
        return self.status is RunStatus.SUCCESS

    def output_for(self, name: str) -> object:
        """Return the value the run produced for asset ``name``.

        Raises:
            KeyError: the asset was not materialized successfully by this run.
        """
        value = self._values.get(name, _MISSING)
        if value is not _MISSING:
            return value
        record = next((r for r in self.step_records if r.step_key == name), None)
        if record is None or record.status is not StepStatus.SUCCESS:
            raise KeyError(
                f"asset {name!r} was not materialized by run {self.run_id!r}"
            )
        return self._io_manager.load(name)

    def step_record(self, name: str) -> StepRecord:
        """Return the record of step ``name``."""
        for record in self.step_records:
            if record.step_key == name:
                return record
        raise KeyError(f"run {self.run_id!r} has no step {name!r}")

    def __repr__(self) -> str:
        return f"MaterializeResult(run_id={self.run_id!r}, status={self.status.value})"
