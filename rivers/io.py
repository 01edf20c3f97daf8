"""IO managers: where asset values are stored between steps and runs."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import pickle
import re
import sys
from pathlib import Path
from typing import Protocol, final, runtime_checkable

from rivers._files import make_private_dirs
from rivers._repr import short_repr
from rivers.errors import ConfigError, ValueNotFound

__all__ = ("FilesystemIOManager", "IOManager", "ValueNotFound")

_SAFE_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$")
_RENAME_EXCHANGE = 2
_SLACK_BYTES = 1 << 16
_AT_FDCWD = -100


def _load_renameat2() -> object | None:
    if sys.platform != "linux":  # pragma: no cover
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):  # pragma: no cover - old glibc
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _load_renameat2()


def _exchange(side: bytes, path: bytes) -> bool:
    """Atomically swap ``side`` and ``path``; False when the swap is unavailable."""
    if _RENAMEAT2 is None:  # pragma: no cover
        return False
    result = _RENAMEAT2(  # type: ignore[operator]
        _AT_FDCWD, side, _AT_FDCWD, path, _RENAME_EXCHANGE
    )
    # ENOENT: no asset file yet (first write); EINVAL/ENOSYS: unsupported.
    return bool(result == 0)


def _lock_side_file(side: bytes) -> int:
    """Open and lock the side file; retry if another writer swapped it meanwhile."""
    while True:
        try:
            # O_NOFOLLOW: a link planted as the side file cannot redirect the write.
            fd = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except FileNotFoundError:
            make_private_dirs(Path(os.fsdecode(side)).parent)
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            current = os.stat(side).st_ino
        except FileNotFoundError:
            current = -1
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)  # our inode became the asset file: open the new side file


def pickle_value(value: object) -> bytes:
    """Pickle ``value``; cloudpickle only for what pickle cannot (lambdas, local classes)."""
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        import cloudpickle

        return bytes(cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def check_asset_key(asset_key: str, where: object) -> None:
    """Refuse a key that is not a plain file name (no separators, no leading dot)."""
    if not _SAFE_KEY.fullmatch(asset_key):
        raise ValueError(f"asset key {asset_key!r} does not name a file in {where}")


@runtime_checkable
class IOManager(Protocol):
    """Stores and loads asset values. Methods may run in worker threads or processes."""

    def store(self, asset_key: str, value: object) -> None:
        """Store ``value`` as the latest value of ``asset_key``."""
        ...

    def load(self, asset_key: str) -> object:
        """Return the latest stored value of ``asset_key``.

        Raises:
            ValueNotFound: nothing was stored for it.
        """
        ...


@final
class FilesystemIOManager:
    """Pickles each asset's latest value to a file under ``base_dir``.

    Writes are atomic: the value goes to a side file in the same directory, which
    then takes the asset file's place in one rename, so a reader never sees a
    partial value; concurrent writers of one asset take turns (``flock``). Values
    are only ever read from inside ``base_dir``.

    Args:
        base_dir: the directory (default ``$RIVERS_HOME/storage``, created 0700).
    """

    def __init__(self, base_dir: str | os.PathLike[str] | None = None) -> None:
        if base_dir is not None and not isinstance(base_dir, str | os.PathLike):
            raise ConfigError(
                f"FilesystemIOManager base_dir must be a path, got {short_repr(base_dir)}"
            )
        self._base_dir = None if base_dir is None else Path(base_dir).expanduser()
        # (RIVERS_HOME when base_dir follows it, asset key) -> (file, side file).
        self._files: dict[tuple[str | None, str], tuple[bytes, bytes]] = {}

    @property
    def base_dir(self) -> Path:
        """The directory holding the values."""
        if self._base_dir is not None:
            return self._base_dir
        from rivers.storage import rivers_home

        return rivers_home() / "storage"

    def path_for(self, asset_key: str) -> Path:
        """Return the file of ``asset_key``, refusing any path outside ``base_dir``."""
        check_asset_key(asset_key, self.base_dir)
        return self.base_dir / f"{asset_key}.pickle"

    def _files_of(self, asset_key: str) -> tuple[bytes, bytes]:
        """Return the asset's file and side file, worked out once per key and home."""
        home = None if self._base_dir is not None else os.environ.get("RIVERS_HOME")
        files = self._files.get((home, asset_key))
        if files is None:
            path = self.path_for(asset_key)
            side = path.with_name(f".{path.name}.next")
            files = (os.fsencode(path), os.fsencode(side))
            self._files[(home, asset_key)] = files
        return files

    def store(self, asset_key: str, value: object) -> None:
        """Pickle ``value`` atomically to the asset's file.

        The value is written to a side file, which then takes the asset file's place
        in one atomic rename, so readers see the old value or the new one, never a
        mix. On Linux the two files are exchanged (``renameat2``), so the side file
        is reused by the next write instead of a new file being created each time.
        """
        path, side = self._files_of(asset_key)
        data = pickle_value(value)
        fd = _lock_side_file(side)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            # A pickle ends at its STOP opcode, so bytes left over from a longer
            # old value are never read; trim only when they waste real space.
            if os.fstat(fd).st_size > len(data) + _SLACK_BYTES:
                os.ftruncate(fd, len(data))
            if not _exchange(side, path):
                os.replace(side, path)
        finally:
            os.close(fd)

    def load(self, asset_key: str) -> object:
        """Unpickle the asset's latest value.

        Raises:
            ValueNotFound: nothing was stored for it.
            ValueError: the key names no file in ``base_dir``, or its file is a
                symbolic link.
        """
        path = self.path_for(asset_key)
        try:
            # O_NOFOLLOW: a symbolic link in base_dir never makes rivers unpickle a
            # file outside it.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise ValueNotFound(asset_key) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ValueError(
                    f"{str(path)!r} is a symbolic link; rivers only loads values "
                    f"from regular files in {str(self.base_dir)!r}"
                ) from None
            raise
        with open(fd, "rb") as f:
            return pickle.load(f)

    def __repr__(self) -> str:
        return f"FilesystemIOManager({str(self.base_dir)!r})"
