"""Concurrency pool: a database that takes 2 connections, shared by every run.

Run it with ``python examples/database_pool.py`` (about 2 seconds). Three shops
load their data at the same time; each run has three steps that use the
database (``rebuild_index`` needs two connections: ``pool_slots=2``). The pool
``database`` has 2 slots, so across all runs no more than 2 connections are ever
open: the fake database below counts them and would refuse a third. Halfway
through, the storage shows who holds the slots and who waits. Storage is a
throwaway directory.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import rivers as rs


class Database:
    """A stand-in for a database with ``max_connections``; it counts what it sees."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self.open = 0
        self.peak = 0

    @asynccontextmanager
    async def connect(self, connections: int = 1) -> AsyncIterator[None]:
        self.open += connections
        self.peak = max(self.peak, self.open)
        try:
            if self.open > self.max_connections:
                raise RuntimeError("FATAL: sorry, too many clients already")
            await asyncio.sleep(0.25)  # stands in for the query
            yield
        finally:
            self.open -= connections


DB = Database(max_connections=2)


@rs.Asset(pool="database")
async def load_orders(context: rs.StepContext) -> None:
    async with DB.connect():
        context.log.info("loaded orders of %s", context.run_tags["shop"])


@rs.Asset(pool="database")
async def load_customers(context: rs.StepContext) -> None:
    async with DB.connect():
        context.log.info("loaded customers of %s", context.run_tags["shop"])


@rs.Asset(pool="database", pool_slots=2, deps=[load_orders, load_customers])
async def rebuild_index() -> None:
    async with DB.connect(connections=2):  # a parallel index build: 2 connections
        pass


repo = rs.CodeRepository(
    [load_orders, load_customers, rebuild_index],
    pool_limits={"database": DB.max_connections},
)


async def nightly_load() -> None:
    async with rs.Runtime(repo) as rt:
        handles = [
            await rt.submit(rs.RunRequest(tags={"shop": shop}))
            for shop in ["berlin", "lisbon", "osaka"]
        ]
        await asyncio.sleep(0.1)  # a look at the pool while the runs compete for it
        info = await rt.storage.get_pool_info("database")
        print(
            f"pool {info.name}: limit {info.limit} (from the {info.limit_source}), "
            f"{info.claimed_slots} slots claimed, {info.pending_steps} steps waiting"
        )
        for holder in await rt.storage.get_pool_slot_holders("database"):
            lease = (holder.lease_expires_at - datetime.now(UTC)).total_seconds()
            print(
                f"  held by run {holder.run_id} step {holder.step_key}: "
                f"{holder.slots} slot(s), lease expires in {lease:.0f} s unless renewed"
            )
        records = [await handle.wait() for handle in handles]

    statuses = ", ".join(sorted({r.status.value for r in records}))
    print(f"{len(records)} runs, {3 * len(records)} steps on the database: {statuses}")
    print(f"peak {DB.peak} open connections <= pool limit {DB.max_connections}")


def main() -> None:
    # A throwaway RIVERS_HOME: the demo starts empty and leaves nothing behind.
    with tempfile.TemporaryDirectory(prefix="rivers-example-") as home:
        os.environ["RIVERS_HOME"] = home
        asyncio.run(nightly_load())


if __name__ == "__main__":
    main()
