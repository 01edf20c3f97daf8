"""The ``rivers`` command line."""

from __future__ import annotations

__all__ = ("main",)


def main() -> None:
    """Run the ``rivers`` command."""
    from rivers.cli.app import run

    run()
