"""Find a ``CodeRepository`` in a Python file or module named on the command line."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rivers.definitions.repository import CodeRepository
from rivers.errors import ConfigError

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ("load_repository",)


def load_repository(
    file: str | None, module: str | None, attribute: str | None
) -> CodeRepository:
    """Import ``file`` or ``module`` and return its repository.

    Without ``attribute`` the module must hold exactly one ``CodeRepository``.

    Raises:
        ConfigError: nothing to load, the import failed, or no single repository.
    """
    if (file is None) == (module is None):
        raise ConfigError("name the code with -f FILE.py or -m MODULE (one of them)")
    loaded = _import_file(file) if file is not None else _import_module(module or "")
    where = file or module
    if attribute is not None:
        value = getattr(loaded, attribute, None)
        if not isinstance(value, CodeRepository):
            raise ConfigError(f"{where} has no CodeRepository named {attribute!r}")
        return value
    found = {
        name: value
        for name, value in vars(loaded).items()
        if isinstance(value, CodeRepository)
    }
    if not found:
        raise ConfigError(
            f"{where} defines no rs.CodeRepository; create one at module level"
        )
    if len(found) > 1:
        raise ConfigError(
            f"{where} defines several repositories ({', '.join(sorted(found))}); "
            "pick one with -a NAME"
        )
    return next(iter(found.values()))


def _import_file(file: str) -> ModuleType:
    path = Path(file).expanduser()
    if not path.is_file():
        raise ConfigError(f"no such file: {file!r}")
    name = f"rivers_user_code_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {file!r}; is it a Python file?")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    parent = str(path.resolve().parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)
    # Workers cannot import a module loaded from a path: ship its functions by value
    # (with the file's real name and line numbers, see rivers.executors._pickling).
    import cloudpickle

    cloudpickle.register_pickle_by_value(module)
    try:
        spec.loader.exec_module(module)
    except ConfigError:
        raise
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(
            f"importing {file!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _import_module(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"importing module {module!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
