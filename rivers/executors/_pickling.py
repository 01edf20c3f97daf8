"""How a step's asset and IO manager travel to a worker process.

Functions a worker can import go by reference (cloudpickle's default; an asset names its
module attribute, see ``Asset.__reduce__`` and ``rivers._importable``), so the worker
runs the module's own code. Functions cloudpickle must send by value (defined in
``__main__``, in a file loaded with ``-f``, or in a notebook) keep their real file name:
cloudpickle 3.1 replaces it with ``<dynamic-code>``, which hid the user's file from
tracebacks, debuggers and coverage. Line numbers travel with the code either way.
"""

from __future__ import annotations

import io
import pickle
import types
from collections import ChainMap
from typing import TYPE_CHECKING, Any, ClassVar

import cloudpickle

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("dumps",)

_DYNAMIC_FILE = "<dynamic-code>"
_BASE_TABLE: Any = cloudpickle.Pickler.dispatch_table
_reduce_code: Callable[[types.CodeType], tuple[Any, tuple[Any, ...]]] = _BASE_TABLE[
    types.CodeType
]


def _code_with_its_file(code: types.CodeType) -> tuple[Any, tuple[Any, ...]]:
    constructor, args = _reduce_code(code)
    return constructor, tuple(
        code.co_filename if isinstance(arg, str) and arg == _DYNAMIC_FILE else arg
        for arg in args
    )


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle is untyped
    dispatch_table: ClassVar[ChainMap[Any, Any]] = ChainMap(
        {types.CodeType: _code_with_its_file}, _BASE_TABLE
    )


def dumps(value: object) -> bytes:
    """Pickle ``value`` for a worker process of this machine."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()
