"""Telling rivers' own errors from bugs when a task group raises several at once."""

from __future__ import annotations

from rivers.errors import RiversError, StorageError

__all__ = (
    "leaves",
    "one_storage_error",
    "raise_one_storage_error",
    "rivers_errors_line",
)


def rivers_errors_line(exc: BaseException) -> str | None:
    """Return one line naming every ``RiversError`` in ``exc`` (each message once).

    ``exc`` may be a ``RiversError`` or a (nested) exception group; None when it
    holds anything else, which is a bug to be raised with its traceback.
    """
    single = one_storage_error(exc)
    if single is not None:
        return str(single)
    found = leaves(exc)
    if not all(isinstance(leaf, RiversError) for leaf in found):
        return None
    return "; ".join(dict.fromkeys(str(leaf) for leaf in found))


def one_storage_error(exc: BaseException) -> StorageError | None:
    """Return the one storage error that stands for ``exc``, if it holds only those.

    One storage fault fails every run and actor writing at that moment, so a task
    group raises it several times over (and the event log's "cannot be written"
    on top). The caller gets one error: the most specific class among them (a
    ``StorageCorrupted`` or ``StorageLocked`` over a plain ``StorageError``), the
    first of those. None when ``exc`` holds anything else.
    """
    found = leaves(exc)
    if not found or not all(isinstance(leaf, StorageError) for leaf in found):
        return None
    best = max(found, key=lambda leaf: len(type(leaf).__mro__))
    assert isinstance(best, StorageError)
    return best


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions ``exc`` holds: itself, or every leaf of a (nested) group."""
    if not isinstance(exc, BaseExceptionGroup):
        return [exc]
    return [leaf for inner in exc.exceptions for leaf in leaves(inner)]


def raise_one_storage_error(group: BaseException) -> None:
    """Raise the one storage error ``group`` stands for, if it holds only those.

    A storage fault fails every run and actor writing at the time; the caller
    gets one ``rs.StorageError``, never an exception group.
    """
    single = one_storage_error(group)
    if single is not None:
        raise single
