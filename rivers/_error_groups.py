"""Telling rivers' own errors from bugs when a task group raises several at once."""

from __future__ import annotations

from rivers.errors import RiversError

__all__ = ("leaves", "rivers_errors_line")


def rivers_errors_line(exc: BaseException) -> str | None:
    """Return one line naming every ``RiversError`` in ``exc`` (each message once).

    ``exc`` may be a ``RiversError`` or a (nested) exception group; None when it
    holds anything else, which is a bug to be raised with its traceback.
    """
    found = leaves(exc)
    if not all(isinstance(leaf, RiversError) for leaf in found):
        return None
    return "; ".join(dict.fromkeys(str(leaf) for leaf in found))


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions ``exc`` holds: itself, or every leaf of a (nested) group."""
    if not isinstance(exc, BaseExceptionGroup):
        return [exc]
    return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
