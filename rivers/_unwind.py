"""Unwinding a runtime's exit stack, and what its caller sees of the errors.

The runtime's one task group wraps whatever its tasks raise in an exception group.
At the runtime's boundary the caller gets their own exception back when it is the
only one, one ``rs.StorageError`` when a storage fault failed several tasks at once
(``raise_one_storage_error``), and the group otherwise (a bug, every traceback kept).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rivers._error_groups import leaves, raise_one_storage_error

if TYPE_CHECKING:
    from contextlib import AsyncExitStack
    from types import TracebackType

__all__ = ("unwind", "unwind_failed_start")


async def unwind_failed_start(stack: AsyncExitStack, exc: BaseException) -> None:
    """Unwind what a start that raised ``exc`` had set up; the caller raises ``exc``
    then. Raises ``exc`` itself, or what stands for the errors met unwinding."""
    try:
        await stack.__aexit__(type(exc), exc, exc.__traceback__)
    except BaseExceptionGroup as group:
        if leaves(group) == [exc]:
            raise exc from None
        raise_one_storage_error(group)
        raise


async def unwind(
    stack: AsyncExitStack,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> bool | None:
    """Unwind the stack at the end of the runtime's block; return whether ``exc``
    (what the block raised, if anything) is suppressed."""
    try:
        suppress = await stack.__aexit__(exc_type, exc, tb)
    except BaseExceptionGroup as group:
        # The task group wraps what the block raised; give the user their own
        # exception back when it is the only one.
        if exc is not None and leaves(group) == [exc]:
            raise exc.with_traceback(tb) from exc.__cause__
        raise_one_storage_error(group)
        raise
    if not suppress and isinstance(exc, BaseExceptionGroup):
        raise_one_storage_error(exc)
    return suppress
