"""Owner-only directories, for everything rivers creates under ``$RIVERS_HOME``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ("make_private_dirs",)


def make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each owner-only (0700).

    ``Path.mkdir(parents=True, mode=...)`` gives the parents the default mode, so
    a ``$RIVERS_HOME`` first made that way would be readable by everyone.
    """
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)
