"""The serving part of ``SqliteStorage``: which repository definitions each live
long-lived runtime serves, and the assets of every definition runs were made from."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import msgspec

from rivers.core.ownership import Served
from rivers.storage._rows import decode_list

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Iterable, Sequence

__all__ = ("ServingMethods",)

T = TypeVar("T")

Definition = tuple[str, str, "Sequence[str]"]
"""(repository name, fingerprint, asset names)."""


class ServingMethods:
    """Serving methods shared by the SQLite storage (mixed into ``SqliteStorage``)."""

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # pragma: no cover - provided by SqliteStorage

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # pragma: no cover - provided by SqliteStorage

    async def record_definitions(self, definitions: Iterable[Definition]) -> None:
        """Remember each definition's assets (what explanations name)."""
        rows = [
            (fingerprint, name, msgspec.json.encode(sorted(assets)).decode())
            for name, fingerprint, assets in definitions
        ]
        if rows:
            await self._write(lambda conn: _insert_definitions(conn, rows))

    async def serve(self, owner: str, definitions: Iterable[Definition]) -> None:
        """Record that the runtime ``owner`` serves these definitions.

        The rows go when ``owner`` unregisters or is recovered as dead; until then
        its ``processes`` heartbeat says whether it is alive.
        """
        items = list(definitions)
        rows = [
            (fingerprint, name, msgspec.json.encode(sorted(assets)).decode())
            for name, fingerprint, assets in items
        ]

        def write(conn: sqlite3.Connection) -> None:
            _insert_definitions(conn, rows)
            conn.executemany(
                "INSERT OR IGNORE INTO served (owner, repository, fingerprint) "
                "VALUES (?, ?, ?)",
                [(owner, name, fingerprint) for name, fingerprint, _ in items],
            )

        if items:
            await self._write(write)

    async def get_served(self) -> list[tuple[Served, float | None]]:
        """Return every served definition with its runtime's last heartbeat (or None)."""

        def read(conn: sqlite3.Connection) -> list[tuple[Served, float | None]]:
            rows = conn.execute(
                "SELECT s.owner, s.repository, s.fingerprint, d.assets, p.heartbeat_at "
                "FROM served s LEFT JOIN definitions d ON d.fingerprint = s.fingerprint "
                "LEFT JOIN processes p ON p.owner = s.owner ORDER BY s.owner"
            ).fetchall()
            return [
                (
                    Served(
                        owner=row[0],
                        repository=row[1],
                        fingerprint=row[2],
                        assets=tuple(decode_list(row[3]) or ()),
                    ),
                    row[4],
                )
                for row in rows
            ]

        return await self._call(read)

    async def get_definition_assets(self, fingerprint: str) -> list[str]:
        """Return the assets of a recorded definition (empty if unknown)."""

        def read(conn: sqlite3.Connection) -> list[str]:
            row = conn.execute(
                "SELECT assets FROM definitions WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
            return [] if row is None else list(decode_list(row[0]) or ())

        return await self._call(read)


def _insert_definitions(
    conn: sqlite3.Connection, rows: list[tuple[str, str, str]]
) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO definitions (fingerprint, repository, assets) "
        "VALUES (?, ?, ?)",
        rows,
    )
