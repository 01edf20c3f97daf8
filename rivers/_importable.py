"""Whether a worker process, with this process's ``sys.path``, imports a module itself.

``Asset.__reduce__`` asks it to choose between pickling an asset by reference (the
worker imports the module and runs its own code) and by value (cloudpickle sends the
function).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import cloudpickle

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec
    from types import ModuleType

__all__ = ("importable_by_reference",)


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
