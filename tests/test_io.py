"""FilesystemIOManager: atomic, concurrent-safe, confined to its directory."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

import rivers as rs


def test_values_round_trip_and_shorter_values_replace_longer_ones(
    tmp_path: Path,
) -> None:
    io = rs.FilesystemIOManager(tmp_path / "values")
    io.store("x", list(range(10_000)))
    io.store("x", [1, 2])
    assert io.load("x") == [1, 2]
    io.store("x", "a" * 200_000)
    io.store("x", "b")
    assert io.load("x") == "b"
    assert os.path.getsize(tmp_path / "values" / "x.pickle") < 70_000  # trimmed


def test_values_are_private_files(tmp_path: Path) -> None:
    io = rs.FilesystemIOManager(tmp_path / "values")
    io.store("secret", {"token": "t"})
    mode = stat.S_IMODE((tmp_path / "values" / "secret.pickle").stat().st_mode)
    assert mode & 0o077 == 0
    assert stat.S_IMODE((tmp_path / "values").stat().st_mode) & 0o077 == 0


def test_concurrent_writers_never_expose_a_torn_value(tmp_path: Path) -> None:
    io = rs.FilesystemIOManager(tmp_path / "values")
    errors: list[BaseException] = []

    def hammer(k: int) -> None:
        try:
            for i in range(200):
                io.store("shared", [k] * (i % 70 + 1))
                value = io.load("shared")
                assert isinstance(value, list)
                assert len(set(value)) == 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_never_materialized_value_names_the_asset(tmp_path: Path) -> None:
    io = rs.FilesystemIOManager(tmp_path)
    with pytest.raises(rs.ValueNotFound, match="'orders' has never been materialized"):
        io.load("orders")


@pytest.mark.parametrize("key", ["../escape", "/etc/passwd", "", ".hidden", "a/b"])
def test_keys_outside_the_directory_are_refused(tmp_path: Path, key: str) -> None:
    io = rs.FilesystemIOManager(tmp_path)
    with pytest.raises(ValueError, match="does not name a file"):
        io.load(key)
    with pytest.raises(ValueError, match="does not name a file"):
        io.store(key, 1)
