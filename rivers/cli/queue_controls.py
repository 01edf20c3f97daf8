"""``rivers queue status|pause|resume|set``: steer a repository's run queue at run time.

The controls are stored per repository name (``core.queue_controls``), like a pool's
override: the daemon leading that repository's queue picks them up within a second,
without a restart, and they survive restarts until reset.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rivers._liveness import live_served
from rivers._text import safe
from rivers._validate import MAX_LIMIT, REPOSITORY_NAME, check_int, check_name
from rivers.cli._help import RiversGroup
from rivers.cli._storage import existing_storage
from rivers.cli.output import console, print_json
from rivers.core.ownership import queue_config_key
from rivers.core.queue import LimitRule, stored_rules
from rivers.core.queue_config import QueueConfig, decode_queue_config
from rivers.core.queue_controls import QueueControls, controls_key, rule_to_stored
from rivers.definitions.configs import TagConcurrencyLimit
from rivers.errors import ConfigError
from rivers.materialize import run_sync
from rivers.storage import open_backend
from rivers.storage.records import IN_FLIGHT_STATUSES, RunStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    from rivers.cli._common import CliState
    from rivers.storage.base import StorageBackend

__all__ = ("app", "parse_tag_limit")

app = typer.Typer(
    cls=RiversGroup,
    rich_markup_mode=None,  # as the rivers group it joins (rivers.cli.app)
    help="Pause, resume and re-limit a repository's run queue while it runs.",
    no_args_is_help=True,
)

RepositoryOption = Annotated[
    str,
    typer.Option(
        "--repository",
        "-r",
        metavar="NAME",
        help="The repository whose queue to steer (CodeRepository(name=...)).",
    ),
]


def parse_tag_limit(text: str) -> LimitRule:
    """Parse ``KEY:LIMIT``, ``KEY=VALUE:LIMIT`` or ``KEY=*:LIMIT`` (each value).

    Raises:
        ConfigError: not of that form, or a bad key, value or limit.
    """
    spec, sep, limit_text = text.rpartition(":")
    if not sep or not spec:
        raise ConfigError(
            f"tag limit {text!r} is not KEY:LIMIT, KEY=VALUE:LIMIT or KEY=*:LIMIT; "
            "for example --tag-limit env=prod:2"
        )
    try:
        limit = int(limit_text)
    except ValueError:
        raise ConfigError(
            f"tag limit {text!r}: {limit_text!r} is not a whole number; use 0..{MAX_LIMIT}"
        ) from None
    key, has_value, value = spec.partition("=")
    each = bool(has_value) and value == "*"
    return TagConcurrencyLimit(
        key=key,
        value=value if has_value and not each else None,
        limit=limit,
        per_unique_value=each,
    ).rule()


async def _write(
    state: CliState, repository: str, change: Callable[[QueueControls], QueueControls]
) -> QueueControls:
    """Apply ``change`` to the stored controls of ``repository``; return them."""
    async with open_backend(state.storage) as storage:
        key = controls_key(repository)
        controls = change(QueueControls.from_stored(await storage.state.get_state(key)))
        await storage.state.put_state(key, controls.to_stored())
        served, config = await _served_queue(storage, repository)
    if served and config is None:
        console().print(
            f"note: repository {safe(repository)!r} has no run_queue: its runs start at "
            "once and these controls do not apply to them"
        )
    return controls


def _describe_rules(rules: tuple[LimitRule, ...]) -> str:
    if not rules:
        return "none"
    return ", ".join(
        f"{safe(rule.ident if rule.value is None else f'{rule.key}={rule.value}')} "
        f"{rule.limit}"
        for rule in rules
    )


@app.command("pause")
def pause(ctx: typer.Context, repository: RepositoryOption = "default") -> None:
    """Stop admitting a repository's runs (queued runs stay QUEUED).

    Running runs go on; nothing is admitted until rivers queue resume.

    Example: rivers queue pause --repository default
    """
    state: CliState = ctx.obj
    name = check_name(repository, REPOSITORY_NAME, "--repository")
    run_sync(lambda: _write(state, name, lambda c: replace(c, paused=True)))
    console().print(
        f"run queue of repository {safe(name)!r} paused: nothing is admitted until "
        f"rivers queue resume --repository {safe(name)}"
    )


@app.command("resume")
def resume(ctx: typer.Context, repository: RepositoryOption = "default") -> None:
    """Admit a paused repository's runs again.

    Example: rivers queue resume --repository default
    """
    state: CliState = ctx.obj
    name = check_name(repository, REPOSITORY_NAME, "--repository")
    run_sync(lambda: _write(state, name, lambda c: replace(c, paused=False)))
    console().print(f"run queue of repository {safe(name)!r} resumed")


@app.command("set", context_settings={"ignore_unknown_options": True})
def set_limits(
    ctx: typer.Context,
    repository: RepositoryOption = "default",
    max_concurrent_runs: Annotated[
        str | None,
        typer.Option(
            "--max-concurrent-runs",
            metavar="N",
            help="Override max_concurrent_runs (0..10000; 0 admits nothing).",
        ),
    ] = None,
    tag_limits: Annotated[
        list[str] | None,
        typer.Option(
            "--tag-limit",
            metavar="SPEC",
            help="Override the tag limits: KEY:LIMIT, KEY=VALUE:LIMIT or KEY=*:LIMIT "
            "(each value); repeat it for several. Replaces every tag limit.",
        ),
    ] = None,
    reset: Annotated[
        bool,
        typer.Option("--reset", help="Remove both overrides: the repository's apply."),
    ] = False,
) -> None:
    """Override a repository's queue limits while it runs.

    The overrides hold until rivers queue set --reset.

    Example: rivers queue set --max-concurrent-runs 4 --tag-limit env=prod:1
    """
    state: CliState = ctx.obj
    name = check_name(repository, REPOSITORY_NAME, "--repository")
    limit = None
    if max_concurrent_runs is not None:
        try:
            limit = int(max_concurrent_runs)
        except ValueError:
            raise ConfigError(
                f"--max-concurrent-runs {max_concurrent_runs!r} is not a whole number; "
                f"use 0..{MAX_LIMIT}"
            ) from None
        check_int(limit, "--max-concurrent-runs", minimum=0, maximum=MAX_LIMIT)
    rules = None if tag_limits is None else tuple(map(parse_tag_limit, tag_limits))
    if not reset and limit is None and rules is None:
        raise ConfigError(
            "rivers queue set needs --max-concurrent-runs N, --tag-limit SPEC or --reset"
        )

    def change(controls: QueueControls) -> QueueControls:
        if reset:
            controls = replace(
                controls, max_concurrent_runs=None, tag_concurrency_limits=None
            )
        if limit is not None:
            controls = replace(controls, max_concurrent_runs=limit)
        if rules is not None:
            controls = replace(controls, tag_concurrency_limits=rules)
        return controls

    stored = run_sync(lambda: _write(state, name, change))
    as_declared = "as the repository declares"
    limit_text = (
        as_declared
        if stored.max_concurrent_runs is None
        else str(stored.max_concurrent_runs)
    )
    rules_text = (
        as_declared
        if stored.tag_concurrency_limits is None
        else _describe_rules(stored.tag_concurrency_limits)
    )
    console().print(
        f"run queue of repository {safe(name)!r}: max_concurrent_runs {limit_text}, "
        f"tag limits {rules_text} (a daemon picks it up within a second)"
    )


async def _served_queue(
    storage: StorageBackend, name: str
) -> tuple[bool, QueueConfig | None]:
    """Whether a live daemon serves ``name``, and the queue settings its leader
    publishes (in force, with their sources; None without a run queue)."""
    served = [s for s in await live_served(storage) if s.repository == name]
    config = None
    for definition in served:
        key = queue_config_key(name, definition.fingerprint)
        stored = decode_queue_config(await storage.state.get_state(key), key)
        if stored is not None and stored.has_queue:
            config = stored
    return bool(served), config


async def _status(storage: StorageBackend, name: str) -> dict[str, Any]:
    controls = QueueControls.from_stored(
        await storage.state.get_state(controls_key(name))
    )
    served, config = await _served_queue(storage, name)
    if config is not None:  # what the leader has in force, with its sources
        max_runs = config.max_concurrent_runs
        max_source: str | None = config.max_concurrent_runs_source
        rules = config.tag_concurrency_limits
        rules_source = config.tag_concurrency_limits_source
    else:  # no daemon with a run queue: only what is stored
        max_runs = controls.max_concurrent_runs
        max_source = None if max_runs is None else "override"
        rules = controls.tag_concurrency_limits or ()
        overridden = controls.tag_concurrency_limits is not None
        rules_source = "override" if overridden else "repository"
    return {
        "repository": name,
        "served": served,
        "run_queue": config is not None,
        "paused": controls.paused,
        "max_concurrent_runs": max_runs,
        "max_concurrent_runs_source": max_source,
        "tag_concurrency_limits": [rule_to_stored(rule) for rule in rules],
        "tag_concurrency_limits_source": rules_source,
        "queued": await storage.runs.count_runs([RunStatus.QUEUED]),
        "in_flight": await storage.runs.count_runs(IN_FLIGHT_STATUSES),
    }


@app.command("status")
def status(
    ctx: typer.Context,
    repository: RepositoryOption = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a repository's queue: paused or not, the limits in force.

    Each limit has its source (the repository, or rivers queue set); queued and
    in-flight runs are counted over the whole storage.

    Example: rivers queue status --repository default
    """
    state: CliState = ctx.obj
    name = check_name(repository, REPOSITORY_NAME, "--repository")

    async def read() -> dict[str, Any]:
        async with existing_storage(state.storage) as storage:
            return await _status(storage, name)

    report = run_sync(read)
    if as_json:
        print_json(report)
        return
    out = console()
    serving = (
        "a daemon serves it"
        if report["served"]
        else f"no daemon serves it (rivers daemon -f FILE for repository {safe(name)!r})"
    )
    out.print(
        f"run queue of repository {safe(name)!r}: "
        f"{'[bold yellow]paused[/]' if report['paused'] else 'admitting'}; {serving}"
    )
    limit = report["max_concurrent_runs"]
    out.print(
        "max_concurrent_runs: "
        + ("unknown until a daemon serves it" if limit is None else f"{limit}")
        + ("" if limit is None else f" ({report['max_concurrent_runs_source']})")
    )
    rules = stored_rules(report)
    out.print(
        f"tag limits: {_describe_rules(rules)} ({report['tag_concurrency_limits_source']})"
    )
    out.print(
        f"in flight: {report['in_flight']}, queued: {report['queued']} (whole storage)"
    )
