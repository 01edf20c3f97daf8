"""The storage contract: every test here runs against every backend in ``BACKENDS``.

As APScheduler 4's ``tests/test_datastores.py``: one fixture parametrised over the
implementations. A backend joins the suite by adding one entry to ``BACKENDS``:
its name and how to make the address of a fresh, empty storage for one test (a
file path, or a URL; a server backend would make a fresh database or schema).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from rivers._clock import SYSTEM_CLOCK, Clock
from rivers.storage import open_backend
from rivers.storage.base import StorageBackend

OpenStore = Callable[..., AbstractAsyncContextManager[StorageBackend]]
"""``open_store(clock=...)``: open the test's storage (again), with that clock."""

BACKENDS: dict[str, Callable[[Path], str]] = {
    "sqlite": lambda folder: str(folder / "contract.db"),
}
"""Backend name -> the address of a fresh storage in a test's temporary folder."""


@pytest.fixture(params=sorted(BACKENDS))
def storage_address(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The address of this test's fresh storage, for each backend in turn."""
    make: Callable[[Path], str] = BACKENDS[request.param]
    return make(tmp_path)


@pytest.fixture
def open_store(storage_address: str) -> OpenStore:
    """Open this test's storage (any number of times), optionally with a clock."""

    def opener(
        clock: Clock = SYSTEM_CLOCK,
    ) -> AbstractAsyncContextManager[StorageBackend]:
        return open_backend(storage_address, clock=clock)

    return opener


@pytest.fixture
async def storage(open_store: OpenStore) -> AsyncIterator[StorageBackend]:
    """This test's storage, opened as its role objects."""
    async with open_store() as opened:
        yield opened
