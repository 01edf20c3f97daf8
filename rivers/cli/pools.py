"""``rivers pools list|info|set|reset|set-default|reset-default|free|advise``:
inspect and steer concurrency pools."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from rivers._repr import short_repr
from rivers._suggest import did_you_mean
from rivers._text import format_seconds, safe
from rivers._validate import MAX_LIMIT, check_pool_name
from rivers.actors.limit_windows import stored_schedules
from rivers.cli._help import RiversGroup
from rivers.cli._storage import existing_storage, resolve_run_id
from rivers.cli.output import console, print_json
from rivers.cli.pool_text import limit_text, rate_text, window_text, windows_document
from rivers.core.rates import MAX_BURST, check_rate_override
from rivers.errors import ConfigError, NotFoundError
from rivers.materialize import run_sync
from rivers.storage import open_backend

if TYPE_CHECKING:
    from rivers.cli._common import CliState
    from rivers.core.limit_windows import LimitSchedule
    from rivers.storage.records import PendingStep, PoolInfo, SlotHolder

__all__ = ("app", "bar")

app = typer.Typer(
    cls=RiversGroup,
    rich_markup_mode=None,  # as the rivers group it joins (rivers.cli.app)
    help="Inspect and steer concurrency pools.",
    no_args_is_help=True,
)

BAR_WIDTH = 12


def bar(used: int, limit: int | None, width: int = BAR_WIDTH) -> str:
    """Return a text bar such as ``[######......] 6/12`` (``∞`` when unlimited)."""
    if limit is None:
        return f"{used}/∞"
    filled = width if limit == 0 else min(width, round(width * used / limit))
    style = "red" if limit == 0 or used >= limit else "green"
    return f"[{style}]{'#' * filled}[/]{'.' * (width - filled)} {used}/{limit}"


def _parse_limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(
            f"pool limit {text!r} is not an integer; use a whole number in 0..{MAX_LIMIT}"
        ) from None
    if not 0 <= value <= MAX_LIMIT:
        raise ConfigError(f"pool limit {value} is out of range; use 0..{MAX_LIMIT}")
    return value


def _parse_burst(text: str) -> int:
    """Return ``--burst`` as an int (its range is checked with the rate)."""
    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            f"--burst {short_repr(text)} is not an integer; use a whole number in "
            f"1..{MAX_BURST}"
        ) from None


@app.command("list")
def list_pools(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List every pool: limit and source, claimed slots, pending steps, oldest wait.

    Example: rivers pools list
    """
    state: CliState = ctx.obj

    async def read() -> tuple[
        list[tuple[PoolInfo, list[PendingStep]]], dict[str, LimitSchedule], int | None
    ]:
        async with existing_storage(state.storage) as storage:
            infos = await storage.pools.get_all_pool_infos()
            windows = await stored_schedules(storage.state)
            default = await storage.pools.get_default_pool_limit()
            return (
                [
                    (info, await storage.pools.get_pending_steps(info.name))
                    for info in infos
                ],
                windows,
                default,
            )

    rows, windows, default = run_sync(read)
    if as_json:
        print_json([info for info, _ in rows])
        return
    now = datetime.now(UTC)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("POOL", "LIMIT", "CLAIMED", "PENDING", "OLDEST WAIT"):
        table.add_column(column, no_wrap=True)
    for info, pending in rows:
        oldest = min((p.enqueued_at for p in pending), default=None)
        table.add_row(
            safe(info.name),
            limit_text(info),
            bar(info.claimed_slots, info.limit),
            str(info.pending_steps),
            "-" if oldest is None else format_seconds((now - oldest).total_seconds()),
        )
    console().print(
        table
        if rows
        else "no pools yet: pools appear once a repository naming them runs"
    )
    if default is not None:
        console().print(
            f"default limit {default} (rivers pools set-default) for every pool "
            "with no override and no declared limit"
        )
    for info, _ in rows:
        if info.name in windows:
            text = window_text(windows[info.name], info, now.timestamp())
            console().print(f"{safe(info.name)}: {text}")
        rate = rate_text(info)
        if rate is not None:
            console().print(f"{safe(info.name)}: {rate}")


@app.command("info")
def pool_info(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The pool name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a pool's holders (with lease expiry) and its waiting steps in line order.

    Example: rivers pools info warehouse
    """
    state: CliState = ctx.obj
    check_pool_name(name)

    async def read() -> tuple[
        PoolInfo, list[SlotHolder], list[PendingStep], LimitSchedule | None
    ]:
        async with existing_storage(state.storage) as storage:
            windows = await stored_schedules(storage.state)
            return (
                await storage.pools.get_pool_info(name),
                await storage.pools.get_pool_slot_holders(name),
                await storage.pools.get_pending_steps(name),
                windows.get(name),
            )

    info, holders, pending, schedule = run_sync(read)
    now = datetime.now(UTC)
    if as_json:
        document: dict[str, Any] = {
            "pool": info,
            "holders": holders,
            "pending": pending,
        }
        if schedule is not None:
            document["windows"] = windows_document(schedule, now.timestamp())
        print_json(document)
        return
    out = console()
    out.print(
        f"pool {safe(info.name)}: limit {limit_text(info)}, claimed "
        f"{bar(info.claimed_slots, info.limit)}, {info.pending_steps} pending"
    )
    if schedule is not None:
        out.print(window_text(schedule, info, now.timestamp()))
    rate = rate_text(info)
    if rate is not None:
        out.print(rate)
    holder_table = Table(title="holders", box=None, header_style="bold", pad_edge=False)
    for column in ("RUN", "STEP", "SLOTS", "HELD FOR", "LEASE EXPIRES IN"):
        holder_table.add_column(column, no_wrap=True)
    for holder in holders:
        holder_table.add_row(
            safe(holder.run_id),
            safe(holder.step_key),
            str(holder.slots),
            format_seconds((now - holder.claimed_at).total_seconds()),
            format_seconds((holder.lease_expires_at - now).total_seconds()),
        )
    pending_table = Table(
        title="waiting", box=None, header_style="bold", pad_edge=False
    )
    for column in ("#", "RUN", "STEP", "SLOTS", "PRIORITY", "WAITING FOR"):
        pending_table.add_column(column, no_wrap=True)
    for position, step in enumerate(pending, start=1):
        pending_table.add_row(
            str(position),
            safe(step.run_id),
            safe(step.step_key),
            str(step.slots),
            str(step.priority),
            format_seconds((now - step.enqueued_at).total_seconds()),
        )
    out.print(holder_table if holders else "no holders")
    out.print(pending_table if pending else "no waiting steps")


@app.command("set", context_settings={"ignore_unknown_options": True})
def set_limit(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The pool name.")],
    limit: Annotated[
        str,
        typer.Argument(metavar="LIMIT", help="Slots, 0..10000 (0 pauses the pool)."),
    ],
    create: Annotated[
        bool,
        typer.Option(
            "--create",
            help="Set it even though no repository that ran here names this pool "
            "(and create the storage if needed).",
        ),
    ] = False,
    rate: Annotated[
        str | None,
        typer.Option(
            "--rate",
            metavar="RATE",
            help="Also limit starts per period, across every process: COUNT/PERIOD "
            "such as 100/min, 5/s, 1/30s ('none' lifts a declared rate).",
        ),
    ] = None,
    burst: Annotated[
        str | None,
        typer.Option(
            "--burst",
            metavar="N",
            help="With --rate: how many steps may start at once after a quiet "
            "spell (default 1: starts evenly spaced).",
        ),
    ] = None,
) -> None:
    """Override a pool's limit (and rate); running runtimes pick it up at once.

    The pool must be one a repository that ran in this storage names (or one set
    before); a new name needs --create, so a typo is not a new pool. Without
    --rate the declared rate, if any, applies.

    Example: rivers pools set api 4 --rate 100/min
    """
    state: CliState = ctx.obj
    check_pool_name(name)
    value = _parse_limit(limit)
    burst_value = None if burst is None else _parse_burst(burst)
    check_rate_override(rate, burst_value, "--rate")

    async def write() -> PoolInfo:
        if create:
            async with open_backend(state.storage) as storage:
                await storage.pools.set_pool_limit(
                    name, value, rate=rate, burst=burst_value
                )
                return await storage.pools.get_pool_info(name)
        async with existing_storage(state.storage, write=True) as storage:
            known = [info.name for info in await storage.pools.get_all_pool_infos()]
            if name not in known:
                raise NotFoundError(
                    f"no pool named {name!r} in storage {storage.describe!r}"
                    f"{did_you_mean(name, known)}: no repository that ran here "
                    "names it; pass --create to set a limit for a new pool"
                )
            await storage.pools.set_pool_limit(
                name, value, rate=rate, burst=burst_value
            )
            return await storage.pools.get_pool_info(name)

    info = run_sync(write)
    console().print(f"pool {safe(name)}: limit {limit_text(info)}")


@app.command("reset")
def reset_limit(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The pool name.")],
) -> None:
    """Remove a pool's override: its declared limit (or none) applies again.

    Example: rivers pools reset warehouse
    """
    state: CliState = ctx.obj
    check_pool_name(name)

    async def write() -> PoolInfo:
        async with existing_storage(state.storage, write=True) as storage:
            await storage.pools.clear_pool_limit(name)
            return await storage.pools.get_pool_info(name)

    info = run_sync(write)
    console().print(f"pool {safe(name)}: limit {limit_text(info)}")


@app.command("set-default", context_settings={"ignore_unknown_options": True})
def set_default_limit(
    ctx: typer.Context,
    limit: Annotated[
        str,
        typer.Argument(metavar="LIMIT", help="Slots, 0..10000 (0 pauses such pools)."),
    ],
) -> None:
    """Set the limit of every pool nobody configured.

    That is every pool with no override and no declared limit, in the whole
    storage; running runtimes pick it up at once. It wins over a repository's
    default_pool_limit; rivers pools reset-default removes it.

    Example: rivers pools set-default 4
    """
    state: CliState = ctx.obj
    value = _parse_limit(limit)

    async def write() -> None:
        async with open_backend(state.storage) as storage:
            await storage.pools.set_default_pool_limit(value)

    run_sync(write)
    console().print(f"default pool limit: {value}")


@app.command("reset-default")
def reset_default_limit(ctx: typer.Context) -> None:
    """Remove the stored default pool limit.

    Repositories' own default_pool_limit apply again.

    Example: rivers pools reset-default
    """
    state: CliState = ctx.obj

    async def write() -> None:
        async with existing_storage(state.storage, write=True) as storage:
            await storage.pools.clear_default_pool_limit()

    run_sync(write)
    console().print("default pool limit: none stored")


@app.command("free")
def free_slots(
    ctx: typer.Context,
    run_id: Annotated[
        str,
        typer.Argument(
            metavar="RUN",
            help="The run whose claims to free: its id, or a unique prefix or suffix.",
        ),
    ],
    step: Annotated[
        str | None, typer.Argument(metavar="STEP", help="Only this step.")
    ] = None,
) -> None:
    """Free the slots a run (or one of its steps) holds; a live holder is stopped first.

    A running holder's step is stopped (it fails with LeaseLost) before its slots go
    to the next waiter; if its process does not answer, they come back when its
    lease runs out.

    Example: rivers pools free 3522d4007 heavy_query
    """
    state: CliState = ctx.obj

    async def write() -> tuple[str, int]:
        async with existing_storage(state.storage, write=True) as storage:
            full_id = await resolve_run_id(storage, run_id)
            return full_id, await storage.pools.free_pool_slots(full_id, step)

    full_id, freed = run_sync(write)
    target = safe(full_id) if step is None else f"{safe(full_id)} step {safe(step)}"
    console().print(f"freed {freed} slot(s) held by {target}")


@app.command("advise")
def advise_limit(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The pool name.")],
    since: Annotated[
        str,
        typer.Option(
            "--since", metavar="DURATION", help="How far back to replay: 24h, 90m."
        ),
    ] = "24h",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Replay the pool's recorded arrivals and hold times at other limits.

    Prints, per limit, the p50/p95 wait and utilisation the same steps would have
    had, and where raising the limit stops helping.

    Example: rivers pools advise warehouse --since 24h
    """
    from rivers._durations import parse_duration
    from rivers.cli.advise import advise_command

    state: CliState = ctx.obj
    check_pool_name(name)
    since_s = parse_duration(since, "--since", allow_zero=False)
    advise_command(state, name, since_s, as_json)
