"""Cold start: ``import rivers`` and ``rivers --help`` load only what they use.

Each test starts a fresh interpreter and reads ``sys.modules`` after the import or
the help: a module that is not there cost nothing. How long they take is measured by
``benchmarks/footprint.py`` (docs/performance.md), never asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import typer

import rivers
from rivers.cli._help import WHOLE_SENTENCE, LazyRiversGroup
from rivers.cli.app import app

# Libraries doing I/O, owning threads, processes or an event loop, or drawing: the
# runtime, storage, executors and dashboard need them, declaring assets does not.
HEAVY_LIBRARIES = (
    "aiohttp",
    "aiosqlite",
    "anyio",
    "asyncio",
    "cloudpickle",
    "concurrent",
    "fsspec",
    "kubernetes_asyncio",
    "multiprocessing",
    "prometheus_client",
    "psutil",
    "rich",
    "sqlite3",
    "ssl",
    "upath",
    "uvloop",
)
CLI_LIBRARIES = ("click", "shellingham", "typer")
# rivers' own modules behind the lazy names of rivers/__init__.py.
RUNTIME_MODULES = (
    "rivers.actors",
    "rivers.context",
    "rivers.dashboard",
    "rivers.executors",
    "rivers.io",
    "rivers.io_upath",
    "rivers.materialize",
    "rivers.metrics",
    "rivers.run_handle",
    "rivers.runtime",
    "rivers.storage",
)
# The modules of the command groups and `rivers top` (and what only they import).
SUBCOMMAND_MODULES = (
    "rivers.cli._storage",
    "rivers.cli.doctor",
    "rivers.cli.loading",
    "rivers.cli.output",
    "rivers.cli.pools",
    "rivers.cli.queue",
    "rivers.cli.queue_controls",
    "rivers.cli.runs",
    "rivers.cli.top",
    "rivers.cli.triggers",
)

_REPORT = "import json, sys; print(json.dumps(sorted(sys.modules)))"


def _loaded(code: str) -> set[str]:
    """Run ``code`` in a fresh interpreter; return the modules it had imported."""
    env = {
        key: value
        for key, value in os.environ.items()
        # Measure rivers, not a coverage tracer started in the child by scripts/check.
        if key not in ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG")
    }
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{_REPORT}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def _present(loaded: set[str], names: tuple[str, ...]) -> list[str]:
    """Return the ``names`` that are loaded, themselves or any submodule of them."""
    return [n for n in names if any(m == n or m.startswith(f"{n}.") for m in loaded)]


def test_import_rivers_loads_the_definitions_only() -> None:
    loaded = _loaded("import rivers")
    assert "rivers.definitions.asset" in loaded
    assert _present(loaded, HEAVY_LIBRARIES + CLI_LIBRARIES) == []
    assert _present(loaded, (*RUNTIME_MODULES, "rivers.cli")) == []


def test_a_lazy_name_loads_its_module_on_first_use() -> None:
    # The check above would pass on a broken probe; this one shows it sees imports.
    loaded = _loaded("import rivers\nrivers.Runtime")
    assert _present(loaded, ("anyio", "rivers.runtime", "rivers.storage")) == [
        "anyio",
        "rivers.runtime",
        "rivers.storage",
    ]


def test_rivers_help_loads_no_subcommand() -> None:
    code = (
        "import contextlib, io, sys\n"
        "sys.argv = ['rivers', '--help']\n"
        "from rivers.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main()"
    )
    loaded = _loaded(code)
    assert "rivers.cli.app" in loaded
    assert _present(loaded, HEAVY_LIBRARIES) == []
    assert _present(loaded, RUNTIME_MODULES + SUBCOMMAND_MODULES) == []


def test_every_public_name_resolves_in_a_fresh_interpreter() -> None:
    code = (
        "import rivers\n"
        "missing = [n for n in rivers.__all__ if n not in dir(rivers)]\n"
        "assert missing == [], missing\n"
        "namespace = {}\n"
        "exec('from rivers import *', namespace)\n"
        "unresolved = [n for n in rivers.__all__ if namespace.get(n) is None]\n"
        "assert unresolved == [], unresolved"
    )
    assert "rivers.runtime" in _loaded(code)  # the star import loaded the lazy names


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Runtiem'"):
        _ = rivers.Runtiem  # type: ignore[attr-defined]


def test_a_lazy_command_lists_the_help_its_module_has() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, LazyRiversGroup)
    assert group.lazy_commands
    context = typer.Context(group)
    for name, lazy in group.lazy_commands.items():
        command = group.get_command(context, name)
        assert command is not None, name
        assert command.name == name
        assert command.get_short_help_str(WHOLE_SENTENCE) == lazy.short_help, name
