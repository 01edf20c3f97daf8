"""``python -m rivers.worker``: run one step attempt in this process and exit.

This is what a step pod of ``Executor.kubernetes`` runs::

    python -m rivers.worker --module M [--file F] [--attribute A] \\
        --asset NAME --run-id RUN --attempt N

1. Load the code location: import module ``M``; when ``M`` cannot be imported by
   name (a script, a file loaded with ``rivers -f``) load the file ``F`` under
   that name instead, with its folder on ``sys.path``.
2. Take the ``CodeRepository`` at attribute ``A`` (without ``-a``: the one
   repository of the module that holds asset ``NAME``).
3. Load the step's inputs through that repository's IO manager, run the step,
   store its value through the same IO manager.

Environment: ``RIVERS_HOME`` (the default IO manager's base) and
``RIVERS_RUN_TAGS`` (the run's tags as a JSON object).

Output: ``context.log`` lines and, on failure, the error are printed to stdout as
marked records (``rivers.executors.pod_log``) for the launcher to read back from
the pod log; the traceback also goes to stderr. Exit status: 0 the value was
stored, 1 the step raised (any exception: ``KeyboardInterrupt`` too), 2 the code,
asset or inputs could not be loaded, ``N`` the step called ``sys.exit(N)``.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import importlib.util
import inspect
import json
import os
import pickle
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rivers._tracebacks import step_traceback
from rivers._user_code import message_of
from rivers.executors.pod_log import marked_record

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType

    from rivers.context import PoolLease
    from rivers.definitions.repository import CodeRepository
    from rivers.messages import EventBody

__all__ = ("main",)

EXIT_STEP_FAILED = 1
EXIT_BAD_INVOCATION = 2


class _CannotLoad(Exception):
    """The code location, asset or inputs cannot be loaded (exit status 2)."""


def _emit_record(record: dict[str, Any]) -> None:
    sys.stdout.write(marked_record(record) + "\n")
    sys.stdout.flush()


def _emit_log(body: EventBody) -> None:
    level = getattr(body, "level", "INFO")
    _emit_record({"level": level, "message": getattr(body, "message", str(body))})


def _report(exc: BaseException, message: str | None = None) -> None:
    text = step_traceback(exc)
    sys.stderr.write(text)
    sys.stderr.flush()
    pickled: str | None
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
        pickled = base64.b64encode(data).decode()
    except Exception:
        pickled = None
    _emit_record(
        {
            "error": {
                "type": type(exc).__name__,
                "message": message if message is not None else message_of(exc),
                "traceback": text,
                "exception": pickled,
            }
        }
    )


def _missing(exc: ModuleNotFoundError, module: str) -> bool:
    """True when ``exc`` says ``module`` itself (or a parent package) is absent."""
    name = exc.name or ""
    return module == name or module.startswith(name + ".")


def _import_file(file: str, name: str) -> ModuleType:
    path = Path(file)
    if not path.is_file():
        raise _CannotLoad(f"no such file: {file!r}")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise _CannotLoad(f"cannot import {file!r}; is it a Python file?")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    parent = str(path.resolve().parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise _CannotLoad(
            f"importing {file!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def load_location(module: str, file: str | None) -> ModuleType:
    """Import the code location: by module name, else from its file.

    A script's ``__main__`` is loaded as ``__rivers_main__``, so its
    ``if __name__ == "__main__":`` block does not run again.

    Raises:
        _CannotLoad: neither the module nor the file can be found.
    """
    if module != "__main__":
        try:
            return importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if not _missing(exc, module) or file is None:
                raise _CannotLoad(
                    f"cannot import module {module!r} ({exc}); put the code in the "
                    "image or on PYTHONPATH (Executor.kubernetes env=)"
                ) from exc
        except Exception as exc:
            raise _CannotLoad(
                f"importing module {module!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
    if file is None:
        raise _CannotLoad(f"module {module!r} has no file to load")
    return _import_file(file, "__rivers_main__" if module == "__main__" else module)


def find_repository(
    loaded: ModuleType, attribute: str | None, asset: str
) -> CodeRepository:
    """Return the repository at ``attribute``, or the one holding ``asset``.

    Raises:
        _CannotLoad: no such repository, or it lacks the asset.
    """
    from rivers.definitions.repository import CodeRepository

    where = loaded.__name__
    if attribute is not None:
        value = getattr(loaded, attribute, None)
        if not isinstance(value, CodeRepository):
            raise _CannotLoad(f"{where} has no CodeRepository named {attribute!r}")
        if asset not in value.assets:
            raise _CannotLoad(
                f"the CodeRepository {where}.{attribute} has no asset named {asset!r}"
            )
        return value
    found = [
        value
        for value in vars(loaded).values()
        if isinstance(value, CodeRepository) and asset in value.assets
    ]
    if not found:
        raise _CannotLoad(f"{where} has no CodeRepository holding asset {asset!r}")
    return found[0]


def run_step(
    repository: CodeRepository,
    asset_name: str,
    run_id: str,
    attempt: int,
    run_tags: dict[str, str],
    pool_lease: PoolLease | None = None,
) -> None:
    """Load the inputs, run the step, store its value."""
    import anyio

    from rivers.executors.base import call_step, load_inputs

    asset = repository.assets[asset_name]
    io_manager = repository.io_manager
    try:
        inputs = load_inputs(asset, {}, io_manager)
    except Exception as exc:
        raise _CannotLoad(
            f"cannot load the inputs of {asset_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    value = call_step(
        asset,
        inputs,
        run_id=run_id,
        run_tags=run_tags,
        attempt=attempt,
        emit=_emit_log,
        pool_lease=pool_lease,
    )
    if asset.is_async:
        value = anyio.run(_awaited, value)
    io_manager.store(asset_name, value)


async def _awaited(result: object) -> object:
    """The value of an async step: its result, awaited if it is awaitable."""
    return await result if inspect.isawaitable(result) else result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rivers.worker", description="Run one rivers step and exit."
    )
    parser.add_argument("--module", required=True, help="the code location's module")
    parser.add_argument(
        "--file", help="its file, used when the module isn't importable"
    )
    parser.add_argument("--attribute", help="the CodeRepository's attribute name")
    parser.add_argument("--asset", required=True, help="the asset to materialize")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--attempt", type=int, default=1)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the step named by ``argv``; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        tags = json.loads(os.environ.get("RIVERS_RUN_TAGS") or "{}")
        run_tags = {str(k): str(v) for k, v in dict(tags).items()}
        from rivers.context import PoolLease

        lease = os.environ.get("RIVERS_POOL_LEASE")
        pool_lease = None if not lease else PoolLease.from_wire(json.loads(lease))
        loaded = load_location(args.module, args.file)
        repository = find_repository(loaded, args.attribute, args.asset)
        run_step(
            repository, args.asset, args.run_id, args.attempt, run_tags, pool_lease
        )
    except _CannotLoad as exc:
        _report(exc, f"rivers.worker: {exc}")
        return EXIT_BAD_INVOCATION
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_STEP_FAILED
        if code == 0:
            code = EXIT_STEP_FAILED  # exiting early stores no value
        _report(exc)
        return code
    except BaseException as exc:
        # KeyboardInterrupt, GeneratorExit...: the step failed; report it like any
        # other exception rather than dying with a traceback and no error record.
        _report(exc)
        return EXIT_STEP_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
