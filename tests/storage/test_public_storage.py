"""``rt.storage`` and ``rs.open_storage()``: the methods API.md promises, and none of
the runtime's own traffic (claims, admission, hand-overs) nor its role objects."""

from __future__ import annotations

from typing import TYPE_CHECKING

import rivers as rs

if TYPE_CHECKING:
    from pathlib import Path

API_METHODS = frozenset(
    {
        # API.md §4
        "get_all_pool_infos",
        "get_pool_info",
        "get_pool_slot_holders",
        "get_pending_steps",
        "set_pool_limit",
        "clear_pool_limit",
        "free_pool_slots",
        "get_run",
        "get_runs",
        "get_events",
        # API.md §7 (issues 17 and 19)
        "set_default_pool_limit",
        "clear_default_pool_limit",
        "prune",
        # the read paired with set_default_pool_limit
        "get_default_pool_limit",
    }
)
INTERNALS = (
    "claim_pool_slots",
    "release_and_claim_now",
    "admit_runs",
    "create_run",
    "append_events",
    "runs",
    "pools",
    "aclose",
)


def _public(obj: object) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


async def test_open_storage_offers_exactly_the_api_methods(tmp_path: Path) -> None:
    async with rs.open_storage(tmp_path / "rivers.db") as storage:
        assert _public(storage) == API_METHODS
        for name in INTERNALS:
            assert not hasattr(storage, name), name
        assert await storage.get_runs() == []


async def test_a_runtimes_storage_offers_exactly_the_api_methods(
    tmp_path: Path,
) -> None:
    def a() -> int:
        return 1

    backend = rs.RunBackendConfig(storage=str(tmp_path / "rivers.db"))
    async with rs.Runtime(rs.CodeRepository([rs.Asset(a)], backend=backend)) as rt:
        assert _public(rt.storage) == API_METHODS
        assert (await rt.storage.get_pool_info("db")).claimed_slots == 0
