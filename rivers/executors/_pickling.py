"""How a step's asset and IO manager travel to a worker process.

Functions a worker can import go by reference (cloudpickle's default; an asset names
its module attribute, see ``Asset.__reduce__``), so the worker runs the module's own
code. Functions cloudpickle must send by value (defined in ``__main__``, in a file
loaded with ``-f``, or in a notebook) keep their real file name: cloudpickle 3.1
replaces it with ``<dynamic-code>``, which hid the user's file from tracebacks,
debuggers and coverage. Line numbers travel with the code either way.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import types
from collections import ChainMap
from typing import TYPE_CHECKING, Any, ClassVar

import cloudpickle

if TYPE_CHECKING:
    from collections.abc import Callable
    from importlib.machinery import ModuleSpec
    from types import ModuleType

__all__ = ("dumps", "importable_by_reference")

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


def importable_by_reference(module: ModuleType) -> bool:
    """Whether a worker, with this process's ``sys.path``, imports ``module`` itself.

    True when the import system finds the module (not ``__main__``) by its name at
    the very file it was loaded from, and cloudpickle was not told to send it (or
    a parent package) by value. Modules loaded from a path under another name
    (``rivers materialize -f``, pytest's importlib mode) are not.
    """
    name = module.__name__
    origin = getattr(module, "__file__", None)
    if name == "__main__" or not isinstance(origin, str):
        return False
    registered = cloudpickle.list_registry_pickle_by_value()
    parts = name.split(".")
    if any(".".join(parts[:n]) in registered for n in range(1, len(parts) + 1)):
        return False
    spec = None
    path: list[str] | None = None
    for n in range(1, len(parts) + 1):
        spec = _find_spec(".".join(parts[:n]), path)
        if spec is None:
            return False
        path = list(spec.submodule_search_locations or [])
    found = None if spec is None else spec.origin
    try:
        return found is not None and os.path.samefile(found, origin)
    except OSError:
        return False


def _find_spec(name: str, path: list[str] | None) -> ModuleSpec | None:
    """What ``import name`` would find, ignoring ``sys.modules``."""
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            spec: ModuleSpec | None = find(name, path)
        except Exception:
            return None
        if spec is not None:
            return spec
    return None
