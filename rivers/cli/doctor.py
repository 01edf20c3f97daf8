"""``rivers doctor``: check the storage file and say how to recover a damaged one."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from rivers.cli._common import printable
from rivers.storage import resolve_storage_path
from rivers.storage.doctor import diagnose, recovery_steps

if TYPE_CHECKING:
    from rivers.cli._common import CliState

__all__ = ("doctor_command",)


def doctor_command(state: CliState) -> int:
    """Print what ``integrity_check`` found; return 0 (whole) or 1 (damaged)."""
    diagnosis = diagnose(resolve_storage_path(state.storage))
    where = printable(str(diagnosis.path))
    if diagnosis.ok:
        typer.echo(
            f"storage {where}: ok (PRAGMA integrity_check, {diagnosis.pages} pages, "
            f"{diagnosis.seconds:.2f}s)"
        )
        return 0
    typer.echo(f"storage {where} is damaged; PRAGMA integrity_check found:")
    for problem in diagnosis.problems:
        typer.echo(f"  {printable(problem)}")
    typer.echo(
        "Stop every rivers process using it, then copy what it still holds into a "
        "new file and check that:"
    )
    for step in recovery_steps(diagnosis):
        typer.echo(f"  {printable(step)}")
    typer.echo(
        f"Then move {where} aside and put {where}.recovered in its place (or pass "
        "--storage). Runs in flight when it broke are marked FAILURE on recovery."
    )
    return 1
