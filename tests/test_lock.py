"""The dev lock (requirements/dev.lock) agrees with pyproject.toml and is what is installed.

`make dev-env` installs with the lock as constraints; `make lock` re-resolves it. These
tests fail when someone widens or adds a dependency in pyproject.toml without
re-locking, or when the environment running the suite is not the locked one.
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "dev.lock"


def _locked() -> dict[str, tuple[Version, Requirement]]:
    """Every pin of the lock that applies on this platform, by canonical name."""
    pins: dict[str, tuple[Version, Requirement]] = {}
    for raw in LOCK.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"{line!r} in {LOCK.name} is not an exact pin"
        if req.marker is None or req.marker.evaluate():
            pins[canonicalize_name(req.name)] = (Version(spec.version), req)
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        lines.extend(extra)
    return [Requirement(line) for line in lines]


def test_every_declared_dependency_is_locked_within_its_range() -> None:
    pins = _locked()
    for req in _declared():
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        if name == "rivers":
            continue  # an extra that names another extra of rivers itself
        assert name in pins, (
            f"{req.name} is in pyproject.toml but not locked: run `make lock`"
        )
        version, _ = pins[name]
        assert req.specifier.contains(version, prereleases=True), (
            f"{req.name}=={version} in {LOCK.name} is outside pyproject's {req.specifier}: "
            "run `make lock`"
        )


def test_the_running_environment_is_the_locked_one() -> None:
    if sys.prefix == sys.base_prefix:
        # Outside a virtualenv the suite runs with whatever the machine has; the
        # README's `make test` and `.ci/run` always use .venv-dev.
        pytest.skip(
            "not in a virtualenv: the installed versions are not compared with the lock"
        )
    wrong = []
    for name, (version, _) in _locked().items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            continue  # an extra this environment does not install
        if installed != version:
            wrong.append(f"{name} {installed} (locked {version})")
    assert not wrong, "installed versions differ from the lock: " + ", ".join(wrong)


def test_the_dev_tools_are_pinned_in_the_lock() -> None:
    # The tools `make check` runs must come from the lock, never from a hand install.
    pins = _locked()
    for tool in ("ruff", "mypy", "pytest", "hypothesis", "coverage", "pytest-timeout"):
        assert tool in pins, f"{tool} is not in {LOCK.name}"
