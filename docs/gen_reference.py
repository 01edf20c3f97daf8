"""Generate docs/reference/concurrency.md from the code's Struct fields and docstrings.

Run ``python docs/gen_reference.py`` after changing a concurrency parameter; the
test ``tests/test_docs.py`` fails when the page is stale or a parameter has no
documentation (no ``Accepts:`` clause in its class's ``Args:`` section).
"""

from __future__ import annotations

import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

import rivers as rs
from rivers.definitions.executor_configs import InProcessExecutor, ParallelExecutor
from rivers.executors.kubernetes_config import KubernetesExecutor

PAGE = Path(__file__).parent / "reference" / "concurrency.md"
CONTROL_FLOW = Path(__file__).parent / "control-flow.md"

EVENT_GATES = {
    "RUN_ENQUEUED": ("run queue", "a run was written QUEUED"),
    "RUN_BLOCKED": ("run queue / tag limits", "a queued run's binding reason changed"),
    "RUN_DEQUEUED": ("run queue", "the coordinator admitted the run"),
    "RUN_STARTED": ("run", "the run began executing steps"),
    "RUN_SUCCESS": ("run", "every step succeeded"),
    "RUN_FAILURE": ("run", "a step failed, or the process running it died"),
    "RUN_CANCELING": ("run", "a cancel was requested"),
    "RUN_CANCELED": ("run", "the run was canceled"),
    "STEP_WAITING": ("executor", "a ready step waits for an executor slot"),
    "STEP_POOL_BLOCKED": ("pool", "a step waits for pool slots"),
    "STEP_POOL_CLAIMED": ("pool", "a step claimed its slots in every pool"),
    "STEP_STARTED": (
        "executor",
        "an attempt began (worker pid, thread, pod); `startup_s`: "
        "its wait for a worker process to start, not part of its duration",
    ),
    "STEP_SUCCESS": ("step", "the attempt returned and its value was stored"),
    "STEP_FAILURE": (
        "step",
        "the step failed for good; `traceback` starts at the user's "
        "function, `duration_s` is how long the last attempt ran",
    ),
    "STEP_RETRY": ("step", "an attempt failed; slots released; retry after a delay"),
    "STEP_SKIPPED": ("step", "an upstream step did not succeed"),
    "STEP_CANCELED": ("step", "the run was canceled"),
    "STEP_LOG": (
        "step",
        "a line written through context.log, or printed by a step in a worker process (`stream`: stdout, stderr)",
    ),
    "POOL_SLOTS_RELEASED": ("pool", "a step gave its slots back"),
    "LEASE_EXPIRED": ("pool leases", "an unrenewed claim was reclaimed"),
    "TRIGGER_FAILURE": (
        "triggers",
        "a sensor or schedule raised; it keeps its schedule",
    ),
}
BAD_VALUE = "`ConfigError` at construction, naming the field"


@dataclass(frozen=True)
class Param:
    """One documented parameter."""

    name: str
    type: str
    default: str
    accepts: str
    meaning: str


def parse_args(doc: str) -> dict[str, tuple[str, str]]:
    """Return name -> (meaning, accepts) from a google-style ``Args:`` section."""
    section = doc.split("Args:", 1)[1] if "Args:" in doc else ""
    section = re.split(r"\n\s*(Raises|Returns|Yields):", section)[0]
    entries: dict[str, str] = {}
    current: str | None = None
    for line in section.splitlines():
        match = re.match(r"^ {4}(\*{0,2}\w+): (.*)$", line)  # getdoc dedents
        if match:
            current = match.group(1)
            entries[current] = match.group(2).strip()
        elif current is not None and line.strip():
            entries[current] += " " + line.strip()
    parsed = {}
    for name, text in entries.items():
        meaning, _, accepts = text.partition("Accepts:")
        parsed[name] = (meaning.strip(), accepts.strip().rstrip("."))
    return parsed


def _type_name(annotation: Any) -> str:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    text = text.replace("typing.", "").replace("collections.abc.", "")
    text = re.sub(r"<class '([\w.]+)'>", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    text = re.sub(r"rivers\.[\w.]+\.(\w+)", r"\1", text)
    return text.replace("float | int | str | timedelta", "duration")


def _default(value: Any) -> str:
    if value is msgspec.NODEFAULT or value is inspect.Parameter.empty:
        return "required"
    return f"`{value!r}`"


def struct_params(
    cls: type[msgspec.Struct], *, defaults: dict[str, str] | None = None
) -> list[Param]:
    """Return the documented parameters of a config Struct."""
    docs = parse_args(inspect.getdoc(cls) or "")
    params = []
    for field in msgspec.structs.fields(cls):
        meaning, accepts = docs.get(field.name, ("", ""))
        default = (defaults or {}).get(field.name) or _default(
            field.default
            if field.default_factory is msgspec.NODEFAULT
            else field.default_factory()
        )
        params.append(
            Param(field.name, _type_name(field.type), default, accepts, meaning)
        )
    return params


ASSET_CONCURRENCY = (
    "pool",
    "pool_slots",
    "priority",
    "tags",
    "retry_policy",
    "timeout",
)


def asset_params() -> list[Param]:
    """Return the documented concurrency arguments of ``@rs.Asset``."""
    docs = parse_args(inspect.getdoc(rs.Asset) or "")
    signature = inspect.signature(rs.Asset._define)
    params = []
    for name in ASSET_CONCURRENCY:
        parameter = signature.parameters[name]
        meaning, accepts = docs.get(name, ("", ""))
        params.append(
            Param(
                name,
                _type_name(parameter.annotation),
                _default(parameter.default),
                accepts,
                meaning,
            )
        )
    return params


SECTIONS: list[tuple[str, str, list[Param]]] = [
    (
        "RunQueueConfig",
        '`rs.RunQueueConfig(max_concurrent_runs=10, dequeue_interval="1s", '
        "tag_concurrency_limits=())` — the run queue of a repository "
        "(`CodeRepository(run_queue=...)`).",
        struct_params(rs.RunQueueConfig),
    ),
    (
        "TagConcurrencyLimit",
        "`rs.TagConcurrencyLimit(key, value=None, limit=..., per_unique_value=False)` "
        "— a ceiling on in-flight runs carrying a tag.",
        struct_params(rs.TagConcurrencyLimit),
    ),
    (
        "PoolLimit",
        '`rs.PoolLimit(slots, rate=None, windows=None, timezone="UTC")` — a pool\'s '
        "limit that changes with the time of day (`CodeRepository(pool_limits={name: "
        "rs.PoolLimit(...)})`; a plain int is `PoolLimit(slots)`).",
        struct_params(rs.PoolLimit),
    ),
    (
        "RunBackendConfig",
        '`rs.RunBackendConfig(storage=None, lease_duration="60s", '
        "lease_gc_interval=None)` — storage and pool leases.",
        struct_params(
            rs.RunBackendConfig, defaults={"lease_duration": "`60.0` (seconds)"}
        ),
    ),
    (
        "Executor.parallel",
        "`rs.Executor.parallel(max_workers=None, max_async_concurrent=None)` — the "
        "default executor.",
        struct_params(ParallelExecutor),
    ),
    (
        "Executor.kubernetes",
        "`rs.Executor.kubernetes(max_concurrent_steps=None, *, image, ...)` — each "
        "step a Kubernetes Job.",
        struct_params(KubernetesExecutor),
    ),
    (
        "Executor.in_process",
        "`rs.Executor.in_process()` — steps one at a time in the calling process; no "
        "parameters.",
        struct_params(InProcessExecutor),
    ),
    (
        "RetryPolicy",
        "`rs.RetryPolicy(max_retries=0, delay=0, backoff=1.0)` — pool slots are "
        "released between attempts.",
        struct_params(rs.RetryPolicy),
    ),
    (
        "@rs.Asset concurrency arguments",
        "The arguments of `@rs.Asset(...)` that take part in concurrency control.",
        asset_params(),
    ),
]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "—"


def render() -> str:
    """Return the whole reference page."""
    lines = [
        "# Concurrency & Queue API reference",
        "",
        "<!-- Generated by docs/gen_reference.py from the code; do not edit by hand. -->",
        "",
        "Every parameter below is validated when the object is constructed: a bad "
        "value raises `rs.ConfigError` whose message names the field and the fix, "
        "never later. Durations accept seconds (int or float), a `datetime.timedelta`, "
        'or a string such as `"250ms"`, `"2s"`, `"5m"`, `"1h"`, `"1d"`, '
        "within the range its row states (never NaN or infinite; see "
        "[reliability](../reliability.md#limits-on-input) for every bound).",
        "",
        "See also: [the concurrency guide](../concurrency.md) and "
        "[the control flow](../control-flow.md).",
        "",
    ]
    for title, intro, params in SECTIONS:
        lines += [f"## {title}", "", intro, ""]
        if not params:
            continue
        lines += [
            "| Name | Type | Default | Accepted values | On a bad value | Meaning |",
            "|---|---|---|---|---|---|",
        ]
        for p in params:
            lines.append(
                f"| `{p.name}` | `{_cell(p.type)}` | {_cell(p.default)} | "
                f"{_cell(p.accepts)} | {BAD_VALUE} | {_cell(p.meaning)} |"
            )
        lines.append("")
    return "\n".join(lines)


def event_rows() -> list[tuple[str, str, list[str], str]]:
    """Return (kind, gate, fields, meaning) for every event in rivers.messages."""
    import rivers.messages as messages

    rows = []
    for name in sorted(messages.__all__):
        obj = getattr(messages, name)
        if not (isinstance(obj, type) and issubclass(obj, messages.EventBody)):
            continue
        if obj is messages.EventBody:
            continue
        kind = obj.__struct_config__.tag
        assert isinstance(kind, str)
        gate, meaning = EVENT_GATES.get(kind, ("", ""))
        fields = [f.name for f in msgspec.structs.fields(obj) if f.name != "run_id"]
        rows.append((kind, gate, fields, meaning))
    return sorted(rows)


def render_events() -> str:
    """Return the events table."""
    lines = ["| Kind | Gate | Data fields | When |", "|---|---|---|---|"]
    for kind, gate, fields, meaning in event_rows():
        shown = ", ".join(f"`{f}`" for f in fields) or "—"
        lines.append(f"| `{kind}` | {gate or '—'} | {shown} | {meaning or '—'} |")
    return "\n".join(lines)


def control_flow_page() -> str:
    """Return control-flow.md with a fresh events table between its markers."""
    text = CONTROL_FLOW.read_text()
    head, _, rest = text.partition("<!-- events:start -->")
    _, _, tail = rest.partition("<!-- events:end -->")
    return f"{head}<!-- events:start -->\n{render_events()}\n<!-- events:end -->{tail}"


def undocumented() -> list[str]:
    """Return ``Section.param`` for every parameter without an ``Accepts:`` clause."""
    missing = [
        f"{title}.{p.name}"
        for title, _, params in SECTIONS
        for p in params
        if not p.accepts
    ]
    missing += [f"event {kind}" for kind, gate, _, _ in event_rows() if not gate]
    return missing


if __name__ == "__main__":
    missing = undocumented()
    if missing:
        sys.exit(f"undocumented parameters: {', '.join(missing)}")
    PAGE.write_text(render() + "\n")
    CONTROL_FLOW.write_text(control_flow_page())
    print(f"wrote {PAGE} and {CONTROL_FLOW}")
