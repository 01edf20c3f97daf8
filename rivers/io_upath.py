"""An IO manager for any fsspec filesystem: object stores (S3, GCS, Azure) and paths.

Values are pickled to ``{base}/{asset}.pickle``. On an object store one PUT replaces
the object whole, so a reader sees the old value or the new one, never a part; on a
local filesystem the value is written to a side file that then takes the asset file's
place in one rename. Concurrent writers of one asset: the last write wins, whole.

The filesystem libraries (universal-pathlib, fsspec and the protocol's own package,
such as s3fs) are imported on first use, so ``import rivers`` never pays for them.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any, final

from rivers._repr import short_repr
from rivers.errors import ConfigError
from rivers.io import ValueNotFound, check_asset_key, pickle_value

if TYPE_CHECKING:
    from upath import UPath

__all__ = ("UPathIOManager",)

_LOCAL_PROTOCOLS = frozenset({"", "file", "local"})
_INSTALL_HINTS = {
    "s3": "pip install 'rivers[s3]'",
    "s3a": "pip install 'rivers[s3]'",
    "gs": "pip install 'rivers[upath]' gcsfs",
    "gcs": "pip install 'rivers[upath]' gcsfs",
    "az": "pip install 'rivers[upath]' adlfs",
    "abfs": "pip install 'rivers[upath]' adlfs",
}


@final
class UPathIOManager:
    """Pickles each asset's latest value into any fsspec filesystem.

    ``rs.UPathIOManager("s3://bucket/prefix")`` keeps values in S3, so step pods on
    a Kubernetes cluster and daemons on other hosts read what another wrote.

    Args:
        base: where values live: a URL (``s3://bucket/prefix``, ``gs://bucket``,
            ``az://container/dir``, ``file:///srv/values``, ``memory://x``) or a local
            path.
        storage_options: passed to the filesystem, e.g. ``endpoint_url=`` or
            ``anon=True`` for S3; credentials otherwise come from the environment as
            for any fsspec user (``AWS_ACCESS_KEY_ID``, instance roles, ...).

    Raises:
        ConfigError: ``base`` is not a non-empty string.
    """

    def __init__(self, base: str | os.PathLike[str], **storage_options: Any) -> None:
        if isinstance(base, os.PathLike):
            base = os.fspath(base)
        if not isinstance(base, str) or not base.strip() or not base.isprintable():
            raise ConfigError(
                f"UPathIOManager base must be a URL such as 's3://bucket/prefix' or a "
                f"path, got {short_repr(base)}"
            )
        self._base = base.rstrip("/") or "/"
        self._storage_options = dict(storage_options)
        self._root: UPath | None = None

    @property
    def base(self) -> str:
        """The URL or path values are stored under."""
        return self._base

    def __getstate__(self) -> dict[str, Any]:
        # Sent to worker processes: the filesystem object (its connections, its
        # event loop thread) is made again on the other side.
        return {"base": self._base, "storage_options": self._storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._base = state["base"]
        self._storage_options = state["storage_options"]
        self._root = None

    def _root_path(self) -> UPath:
        if self._root is None:
            try:
                from upath import UPath
            except ImportError:
                raise ConfigError(
                    "UPathIOManager needs universal-pathlib: pip install 'rivers[upath]' "
                    "(or 'rivers[s3]' for s3:// URLs)"
                ) from None
            try:
                self._root = UPath(self._base, **self._storage_options)
                self._root.fs  # noqa: B018 - makes the filesystem: a missing package fails here
            except ImportError as exc:
                protocol = self._base.split("://", 1)[0] if "://" in self._base else ""
                hint = _INSTALL_HINTS.get(protocol, "install its fsspec implementation")
                raise ConfigError(
                    f"UPathIOManager({self._base!r}) cannot open that filesystem ({exc}); "
                    f"{hint}"
                ) from None
            except ValueError as exc:  # an unknown protocol
                raise ConfigError(f"UPathIOManager({self._base!r}): {exc}") from None
        return self._root

    def path_for(self, asset_key: str) -> UPath:
        """Return where ``asset_key``'s value is stored, refusing keys that are not names."""
        check_asset_key(asset_key, self._base)
        return self._root_path() / f"{asset_key}.pickle"

    def store(self, asset_key: str, value: object) -> None:
        """Pickle ``value`` to the asset's object (one PUT) or file (write, then rename)."""
        path = self.path_for(asset_key)
        data = pickle_value(value)
        fs = path.fs
        target = path.path
        if path.protocol in _LOCAL_PROTOCOLS:
            parent = path.parent.path
            fs.makedirs(parent, exist_ok=True)
            side = f"{parent}/.{path.name}.{uuid.uuid4().hex}.next"
            fs.pipe_file(side, data)
            try:
                os.replace(side, target)
            except BaseException:
                fs.rm_file(side)
                raise
        else:
            fs.pipe_file(target, data)

    def load(self, asset_key: str) -> object:
        """Unpickle the asset's latest value.

        Raises:
            ValueNotFound: nothing was stored for it.
        """
        import pickle

        path = self.path_for(asset_key)
        try:
            data = path.fs.cat_file(path.path)
        except FileNotFoundError:
            raise ValueNotFound(asset_key) from None
        return pickle.loads(data)

    def __repr__(self) -> str:
        return f"UPathIOManager({self._base!r})"
