"""The EventWriter batches a steady stream of events: one transaction per linger."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import anyio.lowlevel

from rivers._clock import SYSTEM_CLOCK
from rivers.actors import events as events_module
from rivers.actors.events import EventWriter
from rivers.messages import StepWaiting
from rivers.storage import open_backend

STREAM_S = 0.1
EVERY_S = 0.0001  # an event every 100 µs: faster than one small write takes


async def test_a_steady_stream_is_written_once_per_linger_not_once_per_write(
    tmp_path: Path,
) -> None:
    async with open_backend(tmp_path / "rivers.db") as storage:
        writer = EventWriter(storage.events, SYSTEM_CLOCK)
        async with anyio.create_task_group() as tg:
            await tg.start(writer.run)
            began = time.monotonic()
            emitted = 0
            while time.monotonic() - began < STREAM_S:
                if time.monotonic() - began >= emitted * EVERY_S:
                    writer.emit(
                        StepWaiting(
                            run_id="r", step_key=f"s{emitted}", position=0, capacity=1
                        )
                    )
                    emitted += 1
                await anyio.lowlevel.checkpoint()
            await writer.flush()
            stats = writer.statistics()
            elapsed = time.monotonic() - began
            await writer.aclose()
        stored = await storage.events.get_events(run_id="r")
    assert stats.events == emitted == len(stored)
    # A write takes far less than the linger, so writing again as soon as one ends
    # made a transaction per event or two; each batch now gathers LINGER_S of them.
    most = elapsed / events_module.LINGER_S + 2
    assert stats.batches <= most, (stats.batches, emitted)
