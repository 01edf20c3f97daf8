"""What ran at once, from recorded intervals, and pool scripts that record them.

Used where a concurrency claim crosses processes: each process appends its steps'
``[start, end]`` wall times to a log, and the test counts the overlap afterwards.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path


def peak_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals in progress at one moment (an end before a start at a tie)."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    peak = current = 0
    for _, delta in points:
        current += delta
        peak = max(peak, current)
    return peak


def pool_script(
    folder: Path,
    name: str,
    storage: Path | str,
    *,
    hold_s: float,
    count: int,
    repository_options: str = "",
) -> Path:
    """Write a script that materializes ``count`` steps of pool ``shared`` (each
    holding ``hold_s``), logging each step's interval to ``folder/name.log``; it
    prints the run's status. ``repository_options``: more ``CodeRepository``
    keyword arguments, as source text."""
    script = folder / f"{name}.py"
    log = folder / f"{name}.log"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, time
            import anyio
            import rivers as rs

            def make(i):
                async def body() -> None:
                    began = time.time()
                    await anyio.sleep({hold_s})
                    with open({str(log)!r}, "a") as f:
                        f.write(json.dumps([began, time.time()]) + "\\n")
                body.__name__ = f"{name}_{{i}}"
                return rs.Asset(body, pool="shared")

            repo = rs.CodeRepository(
                [make(i) for i in range({count})],
                backend=rs.RunBackendConfig(
                    storage={str(storage)!r}, lease_duration="2s", lease_gc_interval="0.2s"
                ),
                {repository_options}
            )
            print(repo.materialize().status.value, flush=True)
            """
        )
    )
    return script


def logged_intervals(folder: Path, *names: str) -> list[tuple[float, float]]:
    """The intervals the scripts ``names`` logged."""
    return [
        (start, end)
        for name in names
        for start, end in map(
            json.loads, (folder / f"{name}.log").read_text().splitlines()
        )
    ]
