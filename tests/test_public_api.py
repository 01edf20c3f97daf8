"""The public surface: ``rivers.__all__`` is true, sorted, and cheap to import."""

from __future__ import annotations
import __future__

import os
import re
import subprocess
import sys
from datetime import UTC, datetime

import msgspec
import pytest

import rivers
import rivers as rs

# The names API.md sections 1-6 promise that exist today.
PROMISED = (
    "Asset",
    "CodeRepository",
    "ConfigError",
    "Event",
    "Executor",
    "MaterializeResult",
    "PendingStep",
    "PoolInfo",
    "PoolLimit",
    "RetryPolicy",
    "RiversError",
    "RunBackendConfig",
    "RunNotFound",
    "RunQueueConfig",
    "RunRecord",
    "RunStatus",
    "Runtime",
    "SlotHolder",
    "StepContext",
    "StepError",
    "StepRecord",
    "StorageError",
    "TagConcurrencyLimit",
    "open_storage",
)

IMPORT_TIME_LIMIT_S = 0.5


def test_every_name_in_all_exists() -> None:
    missing = [name for name in rivers.__all__ if not hasattr(rivers, name)]
    assert missing == []


def test_all_is_a_sorted_tuple_without_duplicates() -> None:
    assert isinstance(rivers.__all__, tuple)
    assert list(rivers.__all__) == sorted(rivers.__all__)
    assert len(set(rivers.__all__)) == len(rivers.__all__)


def test_every_public_attribute_is_in_all() -> None:
    # Submodules and the ``from __future__`` marker are attributes, not exports.
    public = {
        name
        for name, value in vars(rivers).items()
        if not name.startswith("_")
        and not isinstance(value, type(rivers))
        and value is not __future__.annotations
    }
    assert public - set(rivers.__all__) == set()


def _reexported_classes() -> list[type]:
    return [
        value
        for value in (getattr(rivers, name) for name in rivers.__all__)
        if isinstance(value, type)
    ]


def test_reexported_classes_show_the_public_module() -> None:
    # msgspec Structs are the exception rivers/__init__.py documents: msgspec
    # resolves their field annotations in their defining module.
    classes = [c for c in _reexported_classes() if not issubclass(c, msgspec.Struct)]
    assert len(classes) > 20
    wrong = {c.__name__: c.__module__ for c in classes if c.__module__ != "rivers"}
    assert wrong == {}


def test_reexported_structs_round_trip_through_json() -> None:
    # Why Structs keep their module: their annotations must still resolve.
    now = datetime.now(UTC)
    values: list[object] = [
        rs.RunRecord(
            run_id="r",
            status=rs.RunStatus.SUCCESS,
            tags={"k": "v"},
            selection=None,
            priority=0,
            created_at=now,
        ),
        rs.StepRecord(step_key="a", status=rs.StepStatus.FAILURE, started_at=now),
        rs.Event(
            event_id=1,
            kind="STEP_LOG",
            run_id="r",
            step_key="a",
            timestamp=now,
            data={},
        ),
        rs.PoolInfo(
            name="db", limit=None, limit_source=None, claimed_slots=0, pending_steps=0
        ),
        rs.TagConcurrencyLimit("team", limit=1),
    ]
    for value in values:
        encoded = msgspec.json.encode(value)
        assert msgspec.json.decode(encoded, type=type(value)) == value


@pytest.mark.parametrize("name", PROMISED)
def test_a_promised_name_is_importable(name: str) -> None:
    assert name in rivers.__all__
    namespace: dict[str, object] = {}
    exec(f"from rivers import {name}", namespace)
    assert namespace[name] is getattr(rs, name)


def test_the_error_tree_matches_the_contract() -> None:
    assert issubclass(rs.ConfigError, rs.RiversError)
    assert issubclass(rs.StepError, rs.RiversError)
    assert issubclass(rs.RunNotFound, rs.RiversError)
    assert issubclass(rs.RunNotFound, LookupError)
    assert issubclass(rs.StorageError, rs.RiversError)
    assert issubclass(rs.StorageUnavailable, rs.StorageError)
    assert issubclass(rs.MigrationError, rs.StorageError)


def test_run_statuses_are_the_promised_ones() -> None:
    assert [s.value for s in rs.RunStatus] == [
        "QUEUED",
        "STARTING",
        "STARTED",
        "SUCCESS",
        "FAILURE",
        "CANCELING",
        "CANCELED",
    ]


def _clean_env() -> dict[str, str]:
    # Measure rivers, not a coverage tracer started in the child by `scripts/check`.
    return {
        key: value
        for key, value in os.environ.items()
        if key not in ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG")
    }


def test_importing_rivers_is_fast() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import rivers"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=_clean_env(),
    )
    # Lines read "import time: self [us] | cumulative | name"; the top-level
    # "rivers" line's cumulative time covers everything it imported.
    top = re.search(r"^import time:\s+\d+ \|\s+(\d+) \| rivers$", done.stderr, re.M)
    assert top is not None, done.stderr[-2000:]
    seconds = int(top.group(1)) / 1_000_000
    assert seconds < IMPORT_TIME_LIMIT_S
