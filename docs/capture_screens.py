"""Regenerate the README's screenshots: ``python docs/capture_screens.py``.

- ``docs/images/timeline.svg``: ``rivers runs show`` of a run of
  ``examples/quickstart.py`` (steps and the timeline of where their time went).
- ``docs/images/top.svg``: a frame of ``rivers top`` while a queue, a tag limit and
  a pool hold runs back (runs of the quickstart's assets, slowed down so that the
  frame catches them waiting).

Both are rendered by the same code as the commands, into a recording rich Console.
"""

from __future__ import annotations

import importlib.util
import io
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import anyio
import msgspec
from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"


def _quickstart() -> object:
    spec = importlib.util.spec_from_file_location(
        "quickstart", ROOT / "examples" / "quickstart.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["quickstart"] = module
    spec.loader.exec_module(module)
    return module


async def capture_timeline(home: Path) -> None:
    import rivers as rs
    from rivers.cli.output import run_table, step_table
    from rivers.dashboard.timeline import (
        TIMELINE_EVENT_KINDS,
        build_timeline,
        render_timeline,
    )

    quickstart = _quickstart()
    repo: rs.CodeRepository = quickstart.repo  # type: ignore[attr-defined]
    result = await repo.materialize(tags={"example": "quickstart"})
    async with rs.open_storage(home / "rivers.db") as storage:
        run = await storage.get_run(result.run_id)
        assert run is not None
        steps = await storage.get_step_records(run.run_id)
        events = await storage.get_events(run.run_id, kinds=TIMELINE_EVENT_KINDS)
    width = 110
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(f"$ rivers runs show {run.run_id}")
    console.print(run_table([run]))
    console.print()
    console.print(step_table(steps))
    console.print()
    console.print("[bold]timeline[/]")
    console.print(
        render_timeline(build_timeline(run, events, datetime.now(UTC)), width)
    )
    console.save_svg(str(IMAGES / "timeline.svg"), title="rivers runs show")


async def capture_top(home: Path) -> None:
    import rivers as rs
    from rivers.dashboard.render import render
    from rivers.dashboard.snapshot import read_snapshot

    release = anyio.Event()

    @rs.Asset
    async def orders() -> int:
        await release.wait()
        return 1

    @rs.Asset(pool="warehouse")
    async def revenue_by_customer(orders: int) -> int:
        await release.wait()
        return orders

    @rs.Asset
    def report() -> str:
        raise ValueError("upstream export is empty")

    repo = rs.CodeRepository(
        [orders, revenue_by_customer, report],
        run_queue=rs.RunQueueConfig(
            max_concurrent_runs=4,
            dequeue_interval="50ms",
            tag_concurrency_limits=[
                rs.TagConcurrencyLimit(key="env", value="prod", limit=2),
                rs.TagConcurrencyLimit(key="team", limit=2, per_unique_value=True),
            ],
        ),
        pool_limits={"warehouse": 1},
    )
    backend = rs.RunBackendConfig(storage=str(home / "top.db"))
    async with rs.Runtime(repo, backend=backend) as rt:
        await rt.materialize(["report"], tags={"env": "dev", "team": "web"})
        # Upstream values, so the queued runs below need only the pool step.
        release.set()
        await rt.materialize(["orders"])
        release = anyio.Event()
        requests = [
            ({"env": "prod", "team": "core"}, 5),
            ({"env": "prod", "team": "growth"}, 0),
            ({"env": "dev", "team": "core"}, 0),
            ({"env": "prod", "team": "core"}, 0),
            ({"env": "prod", "team": "growth"}, 0),
        ]
        handles = []
        for number, (tags, priority) in enumerate(requests):
            handles.append(
                await rt.submit(
                    rs.RunRequest(
                        selection=("revenue_by_customer",), tags=tags, priority=priority
                    )
                )
            )
            # One at a time, so each run meets the state the previous one left.
            with anyio.fail_after(10):
                while number < 3 and not await _holds_or_waits(rt.storage, number):  # noqa: ASYNC110 - polls another actor's storage rows
                    await anyio.sleep(0.05)
        await anyio.sleep(1.5)  # let the waits grow to readable ages
        snapshot = await read_snapshot(rt.storage)
        # Cancel the queued runs first: a step arriving at the pool while its
        # slots are handed out is not what this script is here to show.
        for handle in handles[3:]:
            await rt.cancel(handle.run_id)
        release.set()
        for handle in handles:
            await handle.wait()
    width = 132
    console = Console(record=True, width=width, file=io.StringIO())
    console.print("$ rivers top")
    # Show the default location rather than this script's temporary directory.
    snapshot = msgspec.structs.replace(snapshot, storage="~/.rivers/rivers.db")
    console.print(render(snapshot, width))
    console.save_svg(str(IMAGES / "top.svg"), title="rivers top")


async def _holds_or_waits(storage: object, number: int) -> bool:
    """Whether ``number + 1`` steps hold or wait for the warehouse pool."""
    holders = await storage.get_pool_slot_holders("warehouse")  # type: ignore[attr-defined]
    pending = await storage.get_pending_steps("warehouse")  # type: ignore[attr-defined]
    return len(holders) + len(pending) > number


async def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        os.environ["RIVERS_HOME"] = str(home)
        os.environ["RIVERS_NO_PROGRESS"] = "1"
        await capture_timeline(home)
        await capture_top(home)


if __name__ == "__main__":
    anyio.run(main)
