"""FilesystemIOManager: atomic, concurrent-safe, confined to its directory."""

from __future__ import annotations

import os
import pickle
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

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


@settings(
    max_examples=300
    * (20 if os.environ.get("RIVERS_HYPOTHESIS_PROFILE") == "long" else 1)
)
@given(key=st.text(max_size=40))
def test_every_key_names_a_file_directly_inside_the_base_dir_or_is_refused(
    key: str,
) -> None:
    base = Path("/srv/values")
    io = rs.FilesystemIOManager(base)
    try:
        path = io.path_for(key)
    except ValueError as exc:
        assert "does not name a file" in str(exc)
        return
    assert path.parent == base
    assert os.path.normpath(path) == str(path)  # no '..' or '.' left to resolve
    assert path.name == f"{key}.pickle"
    assert not path.name.startswith(".")  # never a side file or a hidden one


def test_a_symbolic_link_in_the_base_dir_is_never_unpickled(tmp_path: Path) -> None:
    outside = tmp_path / "outside.pickle"
    outside.write_bytes(pickle.dumps("from outside"))
    io = rs.FilesystemIOManager(tmp_path / "values")
    io.store("other", 1)  # creates the directory
    (tmp_path / "values" / "planted.pickle").symlink_to(outside)
    with pytest.raises(ValueError, match="is a symbolic link"):
        io.load("planted")


def test_a_symbolic_link_planted_as_the_side_file_does_not_redirect_writes(
    tmp_path: Path,
) -> None:
    target = tmp_path / "target"
    target.write_text("untouched")
    io = rs.FilesystemIOManager(tmp_path / "values")
    io.store("other", 1)
    (tmp_path / "values" / ".victim.pickle.next").symlink_to(target)
    with pytest.raises(OSError, match="symbolic links"):
        io.store("victim", "payload")
    assert target.read_text() == "untouched"


def test_the_default_directory_and_a_new_rivers_home_are_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "made" / "home"
    monkeypatch.setenv("RIVERS_HOME", str(home))
    rs.FilesystemIOManager().store("x", 1)
    for directory in (tmp_path / "made", home, home / "storage"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert rs.FilesystemIOManager().load("x") == 1
