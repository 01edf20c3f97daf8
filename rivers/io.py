"""IO managers: where asset values are stored between steps and runs."""

from __future__ import annotations

import os
import pickle
import secrets
from pathlib import Path
from typing import Protocol, final, runtime_checkable

from rivers.errors import ConfigError, NotFoundError

__all__ = ("FilesystemIOManager", "IOManager", "ValueNotFound")


class ValueNotFound(NotFoundError):
    """An asset has no stored value (it was never materialized)."""

    def __init__(self, asset_key: str) -> None:
        self.asset_key = asset_key
        super().__init__(
            f"asset {asset_key!r} has never been materialized, so its value cannot be "
            "loaded; materialize it first or add it to the selection"
        )


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

    Writes are atomic: the value goes to a temporary file in the same directory,
    which then replaces the old file, so a reader never sees a partial value. Values
    are only ever read from inside ``base_dir``.

    Args:
        base_dir: the directory (default ``$RIVERS_HOME/storage``, created 0700).
    """

    def __init__(self, base_dir: str | os.PathLike[str] | None = None) -> None:
        if base_dir is not None and not isinstance(base_dir, str | os.PathLike):
            raise ConfigError(
                f"FilesystemIOManager base_dir must be a path, got {base_dir!r}"
            )
        self._base_dir = None if base_dir is None else Path(base_dir).expanduser()

    @property
    def base_dir(self) -> Path:
        """The directory holding the values."""
        if self._base_dir is not None:
            return self._base_dir
        from rivers.storage import rivers_home

        return rivers_home() / "storage"

    def path_for(self, asset_key: str) -> Path:
        """Return the file of ``asset_key``, refusing any path outside ``base_dir``."""
        base = self.base_dir.resolve()
        path = (base / f"{asset_key}.pickle").resolve()
        if path.parent != base or not asset_key or asset_key.startswith("."):
            raise ValueError(f"asset key {asset_key!r} does not name a file in {base}")
        return path

    def store(self, asset_key: str, value: object) -> None:
        """Pickle ``value`` atomically to the asset's file."""
        path = self.path_for(asset_key)
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, AttributeError, TypeError):
            import cloudpickle

            data = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def load(self, asset_key: str) -> object:
        """Unpickle the asset's latest value."""
        path = self.path_for(asset_key)
        try:
            with open(path, "rb") as f:
                return pickle.load(f)
        except FileNotFoundError:
            raise ValueNotFound(asset_key) from None

    def __repr__(self) -> str:
        return f"FilesystemIOManager({str(self.base_dir)!r})"
