"""The storage contract: every test here runs against every backend in ``BACKENDS``.

As APScheduler 4's ``tests/test_datastores.py``: one fixture parametrised over the
implementations. A backend joins the suite by adding one entry to ``BACKENDS``:
its name and how to make the address of a fresh, empty storage for one test (a
file in the test's temporary folder, or the URL of a fresh database). A server
backend asks for its server's fixture only there, so a run that leaves it out
(``-k sqlite``, ``-m "not postgres"``) needs no server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest

from rivers._clock import SYSTEM_CLOCK, Clock
from rivers.storage import open_backend
from rivers.storage.base import StorageBackend

OpenStore = Callable[..., AbstractAsyncContextManager[StorageBackend]]
"""``open_store(clock=...)``: open the test's storage (again), with that clock."""

BACKENDS: dict[str, Callable[[pytest.FixtureRequest], str]] = {
    "sqlite": lambda request: str(request.getfixturevalue("tmp_path") / "contract.db"),
    "postgres": lambda request: request.getfixturevalue("postgres_url"),
}
"""Backend name -> the address of a fresh storage, made with the test's fixtures."""

SERVER_MARKS = {"postgres": pytest.mark.postgres}
"""The mark of each backend that needs a server, so ``-m`` can select its tests."""


@pytest.fixture(
    params=[
        pytest.param(name, marks=SERVER_MARKS.get(name, ()))
        for name in sorted(BACKENDS)
    ]
)
def storage_address(request: pytest.FixtureRequest) -> str:
    """The address of this test's fresh storage, for each backend in turn."""
    return BACKENDS[request.param](request)


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
