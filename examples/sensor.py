"""A sensor feeding the run queue: every file dropped in an inbox becomes a run.

Run it with ``python examples/sensor.py`` (about 2 seconds). The sensor
``new_files`` looks at the inbox every 200 ms and asks for one run per new file
(``run_key`` = the file name, so no file is ingested twice; the cursor remembers
the last file seen). Its runs go through the run queue like any other, 2 at a
time here. The runtime runs until every dropped file is ingested, at most 10
seconds. Storage and the inbox live in a throwaway directory.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import rivers as rs

FILES = 5


def inbox() -> Path:
    """Where files arrive: ``$RIVERS_HOME/inbox`` here, a bucket or an SFTP drop in real life."""
    return Path(os.environ.get("RIVERS_HOME", "~/.rivers")).expanduser() / "inbox"


@rs.Asset
async def ingest(context: rs.StepContext) -> int:
    path = inbox() / context.run_tags["file"]
    rows = len(path.read_text().splitlines())
    await asyncio.sleep(0.2)  # stands in for loading the rows somewhere
    context.log.info("ingested %d rows from %s", rows, path.name)
    return rows


@rs.sensor(interval="200ms", selection=[ingest])
def new_files(context: rs.SensorContext) -> list[rs.RunRequest]:
    """One run per file newer than the cursor, oldest first."""
    names = sorted(path.name for path in inbox().glob("*.csv"))
    new = [name for name in names if context.cursor is None or name > context.cursor]
    if new:
        context.update_cursor(new[-1])
    return [rs.RunRequest(run_key=name, tags={"file": name}) for name in new]


repo = rs.CodeRepository(
    [ingest],
    sensors=[new_files],
    run_queue=rs.RunQueueConfig(max_concurrent_runs=2, dequeue_interval="100ms"),
)


async def watch_inbox() -> None:
    inbox().mkdir(parents=True, exist_ok=True)
    print(f"sensor new_files watches {inbox()} every 200 ms")
    async with rs.Runtime(repo) as rt:
        for n in range(1, FILES + 1):  # files arrive faster than they are ingested
            rows = "\n".join(f"{n},{i},{i * n}" for i in range(n * 10))
            (inbox() / f"orders-{n:03}.csv").write_text(rows + "\n")
            await asyncio.sleep(0.05)
        async with asyncio.timeout(10):  # run the runtime until all are ingested
            while True:
                runs = await rt.storage.get_runs(tags={"rivers/sensor": "new_files"})
                if len(runs) == FILES and all(r.status.is_finished for r in runs):
                    break
                await asyncio.sleep(0.1)
        logs = await rt.storage.get_events(kinds=["STEP_LOG"])

    print(f"the sensor submitted {len(runs)} runs through the queue:")
    messages = {event.run_id: event.data.get("message") for event in logs}
    for run in sorted(runs, key=lambda r: r.tags["file"]):
        assert run.started_at is not None
        queued = (run.started_at - run.created_at).total_seconds()
        print(
            f"  {run.tags['file']}  {run.status.value}  queued {queued:.2f} s  "
            f"{messages.get(run.run_id)}"
        )
    print(f"{len({r.tags['file'] for r in runs})} files, {len(runs)} runs: none twice")


def main() -> None:
    # A throwaway RIVERS_HOME: the demo starts empty and leaves nothing behind.
    with tempfile.TemporaryDirectory(prefix="rivers-example-") as home:
        os.environ["RIVERS_HOME"] = home
        asyncio.run(watch_inbox())


if __name__ == "__main__":
    main()
