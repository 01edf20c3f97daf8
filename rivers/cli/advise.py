"""``rivers pools advise NAME``: replay a pool's recorded use at other limits."""

from __future__ import annotations

from collections import defaultdict, deque
from typing import TYPE_CHECKING, Any

from rich.table import Table

from rivers._text import format_seconds, safe
from rivers.cli._storage import existing_storage
from rivers.cli.output import console, print_json
from rivers.core.advisor import Hold, Outcome, advise, saturation
from rivers.materialize import run_sync

if TYPE_CHECKING:
    from collections.abc import Iterable

    from rivers.cli._common import CliState
    from rivers.storage.records import Event

__all__ = ("advise_command", "holds_from_events", "summary")

HISTORY_KINDS = ("STEP_POOL_CLAIMED", "POOL_SLOTS_RELEASED")


def holds_from_events(events: Iterable[Event], pool: str, now_s: float) -> list[Hold]:
    """Pair each claim of ``pool`` with its release: arrival, hold time, slots.

    A claim arrived ``waited_s`` before it was granted; it held until the matching
    ``POOL_SLOTS_RELEASED`` (``held_s``), or until ``now_s`` if it still holds.
    """
    open_claims: dict[tuple[str | None, str | None], deque[tuple[float, int]]] = (
        defaultdict(deque)
    )
    holds: list[Hold] = []
    for event in events:
        if pool not in (event.data.get("pools") or ()):
            continue
        key = (event.run_id, event.step_key)
        at = event.timestamp.timestamp()
        if event.kind == "STEP_POOL_CLAIMED":
            waited = float(event.data.get("waited_s") or 0.0)
            open_claims[key].append((at - waited, int(event.data.get("slots") or 1)))
        elif open_claims[key]:
            arrived, slots = open_claims[key].popleft()
            held = float(event.data.get("held_s") or 0.0)
            holds.append(Hold(f"{key[0]}/{key[1]}#{len(holds)}", arrived, held, slots))
    for key, claims in open_claims.items():
        for arrived, slots in claims:
            holds.append(
                Hold(f"{key[0]}/{key[1]}#{len(holds)}", arrived, now_s - arrived, slots)
            )
    return holds


def summary(pool: str, outcomes: list[Outcome], current: int | None) -> str:
    """One sentence: what changing the pool's limit would have done to its waits."""
    enough = saturation(outcomes)
    if enough is None:
        return f"pool {pool!r} has no recorded use in this window; nothing to replay"
    at = {outcome.limit: outcome for outcome in outcomes}
    if current is None or current not in at:
        shown = (
            "unlimited" if current is None else f"{current} (below a recorded claim)"
        )
        return (
            f"pool {pool!r} is {shown}; {enough.limit} slots would have kept every "
            f"wait at p95 {format_seconds(enough.p95_wait_s)} "
            f"({enough.utilisation:.0%} utilised); above {enough.limit} nothing changes"
        )
    now = at[current]
    if enough.limit > current:
        return (
            f"raising {pool} {current} -> {enough.limit} would have cut p95 wait from "
            f"{format_seconds(now.p95_wait_s)} to {format_seconds(enough.p95_wait_s)}; above "
            f"{enough.limit} nothing changes"
        )
    if enough.limit < current:
        return (
            f"lowering {pool} {current} -> {enough.limit} would have changed no wait "
            f"(utilisation {now.utilisation:.0%} -> {enough.utilisation:.0%})"
        )
    return (
        f"{pool}'s limit {current} is where waits stop changing: p95 wait "
        f"{format_seconds(now.p95_wait_s)}, {now.utilisation:.0%} utilised"
    )


def _document(
    pool: str, current: int | None, since_s: float, outcomes: list[Outcome]
) -> Any:
    return {
        "pool": pool,
        "current_limit": current,
        "since_s": since_s,
        "steps": outcomes[0].steps if outcomes else 0,
        "summary": summary(pool, outcomes, current),
        "limits": [
            {
                "limit": o.limit,
                "p50_wait_s": o.p50_wait_s,
                "p95_wait_s": o.p95_wait_s,
                "max_wait_s": o.max_wait_s,
                "mean_wait_s": o.mean_wait_s,
                "utilisation": o.utilisation,
            }
            for o in outcomes
        ],
    }


def advise_command(state: CliState, pool: str, since_s: float, as_json: bool) -> None:
    """Print, per candidate limit, the waits and utilisation the history would have had."""

    async def read() -> tuple[int | None, list[Hold]]:
        async with existing_storage(state.storage) as storage:
            now_s = storage.clock.time()
            info = await storage.pools.get_pool_info(pool)
            events = await storage.dashboard.get_events_since(
                HISTORY_KINDS, now_s - since_s
            )
            return info.limit, holds_from_events(events, pool, now_s)

    current, holds = run_sync(read)
    outcomes = advise(holds, current)
    if as_json:
        print_json(_document(pool, current, since_s, outcomes))
        return
    out = console()
    if not outcomes:
        out.print(summary(pool, outcomes, current))
        return
    out.print(
        f"pool {safe(pool)}: {len(holds)} step(s) in the last "
        f"{format_seconds(since_s)}, replayed at each limit"
    )
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("LIMIT", "P50 WAIT", "P95 WAIT", "MAX WAIT", "UTILISATION"):
        table.add_column(column, no_wrap=True, justify="right")
    for o in outcomes:
        mark = " (now)" if o.limit == current else ""
        table.add_row(
            f"{o.limit}{mark}",
            format_seconds(o.p50_wait_s),
            format_seconds(o.p95_wait_s),
            format_seconds(o.max_wait_s),
            f"{o.utilisation:.0%}",
        )
    out.print(table)
    out.print(summary(pool, outcomes, current))
