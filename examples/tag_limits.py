"""Tag concurrency limits: each team gets its own ceiling, and nobody blocks anyone.

Run it with ``python examples/tag_limits.py`` (about 2 seconds). Runs carry a
``team`` tag. Every team may have 2 runs in flight, except team b, which may have 1.
Team a and team b each submit 4 runs, then team c submits one: it starts at once,
because a run held back by a tag limit never holds back the runs behind it.
Storage is a throwaway directory.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Sequence

import rivers as rs


@rs.Asset
async def train_model(context: rs.StepContext) -> None:
    context.log.info("training for team %s", context.run_tags["team"])
    await asyncio.sleep(0.5)  # stands in for real work


LIMITS = {"a": 2, "b": 1, "c": 2}

repo = rs.CodeRepository(
    [train_model],
    run_queue=rs.RunQueueConfig(
        max_concurrent_runs=10,
        dequeue_interval="100ms",
        tag_concurrency_limits=[
            # At most 2 in-flight runs per distinct team...
            rs.TagConcurrencyLimit(key="team", limit=2, per_unique_value=True),
            # ...and team b, whose cluster is smaller, at most 1.
            rs.TagConcurrencyLimit(key="team", value="b", limit=1),
        ],
    ),
)


def peak_overlap(records: Sequence[rs.RunRecord | rs.StepRecord]) -> int:
    """The most records in progress at one moment, from their start and end times."""
    edges = []
    for record in records:
        if record.started_at and record.ended_at:
            edges += [(record.started_at, 1), (record.ended_at, -1)]
    peak = running = 0
    for _, change in sorted(edges):  # at a tie an end (-1) comes before a start
        running += change
        peak = max(peak, running)
    return peak


async def teams() -> None:
    async with rs.Runtime(repo) as rt:
        handles: dict[str, list[rs.RunHandle]] = {team: [] for team in LIMITS}
        for team in ["a", "b"] * 4 + ["c"]:
            handles[team].append(await rt.submit(rs.RunRequest(tags={"team": team})))
        await asyncio.sleep(0.25)  # the coordinator admits what the limits allow
        print("while the burst runs:")
        for label, handle in [
            ("team a, 3rd run", handles["a"][2]),
            ("team b, 2nd run", handles["b"][1]),
            ("team c, 1st run", handles["c"][0]),
        ]:
            print(f"  {label}: {await rt.explain(handle.run_id)}")
        records = {
            team: [await handle.wait() for handle in team_handles]
            for team, team_handles in handles.items()
        }

    for team, runs in records.items():
        print(
            f"team {team}: {len(runs)} run(s), "
            f"peak {peak_overlap(runs)} in flight <= limit {LIMITS[team]}"
        )
    (c_run,) = records["c"]
    assert c_run.started_at is not None
    waited = (c_run.started_at - c_run.created_at).total_seconds()
    print(f"team c waited {waited:.2f} s although 8 runs were submitted before it")
    statuses = {r.status.value for runs in records.values() for r in runs}
    print(f"all runs: {', '.join(sorted(statuses))}")


def main() -> None:
    # A throwaway RIVERS_HOME: the demo starts empty and leaves nothing behind.
    with tempfile.TemporaryDirectory(prefix="rivers-example-") as home:
        os.environ["RIVERS_HOME"] = home
        asyncio.run(teams())


if __name__ == "__main__":
    main()
