"""Workload 10 — rate limits: a pool's rate held under 4 competing processes, over 60 s.

Workload: 4 OS processes (``sys.executable``), started together, each materializing
450 independent async assets of 10 ms in pool ``api`` (``rs.PoolLimit(4,
rate="20/s", burst=B)``) on one SQLite file in a temporary directory, so all four
take tokens from the one bucket in that storage; every step appends its wall start
time to its process's log. Each process keeps at most 4 of its steps in the pool's
line at once (an executor tag limit): the line is first come, first served, so the
four processes interleave in it rather than one run queuing wholly ahead. The
window opens when the last process logged its first start (all four compete from
then on) and lasts 60 s; each process has more steps than it can start in it
(20/s over ~75 s, a quarter each), and all four are still running when it closes,
then stopped (SIGTERM). Reported: the starts in the window per second (nominal
20/s), that as a percent of the rate, and the most starts in any 1 s sliding
window of it (the bucket allows at most 20 + B - 1). With B = 2 a
saturated pool should hold its rate (the target: within 1 %); with B = 1 starts are
spaced evenly, each at least 1/20 s after the one before, so each start also loses
the ~1 ms a woken waiter takes to claim (about 98 %).
One window per burst whatever ``--repeat`` says: a window is itself 1,200 starts
over 60 s, and five would add ten minutes to the suite.
``--quick``: a 2 s window, 30 steps per process.

Run: ``python -m benchmarks.rate_limits [--repeat 5] [--quick]``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from bisect import bisect_left
from pathlib import Path

from benchmarks.figures import Figure, module_main

PROCESSES = 4
SLOTS = 4
RATE = "20/s"
PER_SECOND = 20
HOLD_S = 0.01
IN_LINE = 4
WINDOW_S, STEPS = 60.0, 450
QUICK = (2.0, 30)
BURSTS = (2, 1)
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0

# One process: ``python -c PROCESS storage log steps burst``.
PROCESS = f"""
import sys, time
import anyio
import rivers as rs

storage, log, steps, burst = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def make(index):
    async def body() -> None:
        began = time.time()
        with open(log, "a") as out:
            out.write(repr(began) + "\\n")
        await anyio.sleep({HOLD_S})

    body.__name__ = f"call_{{index}}"
    return rs.Asset(body, pool="api", tags={{"api": "call"}})

# At most IN_LINE steps of this run in the pool's line (or running) at once: the
# line is first come, first served across processes, so the four interleave in it
# instead of one process's whole run queuing ahead of the others'.
in_line = rs.TagConcurrencyLimit(key="api", limit={IN_LINE})
repo = rs.CodeRepository(
    [make(index) for index in range(steps)],
    pool_limits={{"api": rs.PoolLimit({SLOTS}, rate={RATE!r}, burst=burst)}},
    executor=rs.Executor.parallel(tag_concurrency_limits=[in_line]),
    backend=rs.RunBackendConfig(storage=storage),
)
repo.materialize()
"""


def most_in_any_window(times: list[float], window_s: float) -> int:
    """The most of ``times`` that fall in any half-open window of ``window_s``."""
    at = sorted(times)
    return max(
        (bisect_left(at, start + window_s) - i for i, start in enumerate(at)),
        default=0,
    )


def _starts(log: Path) -> list[float]:
    if not log.exists():
        return []
    return [float(line) for line in log.read_text().splitlines() if line]


def _failure(process: subprocess.Popen[str], log: Path) -> RuntimeError:
    error = log.with_suffix(".err").read_text()[-2000:]
    return RuntimeError(
        f"process {log.stem} exited ({process.returncode}) before the window "
        f"closed: {len(_starts(log))} steps started\n{error}"
    )


def _stop(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()  # rivers cancels the run and releases its claims
    for process in processes:
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure(folder: Path, burst: int, window_s: float, steps: int) -> list[float]:
    """Run the processes once; return the starts in the window (epoch seconds)."""
    storage = folder / "shared.db"
    logs = [folder / f"process_{index}.log" for index in range(PROCESSES)]
    processes: list[subprocess.Popen[str]] = []
    try:
        for log in logs:
            with open(log.with_suffix(".err"), "w") as errors:
                processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-c",
                            PROCESS,
                            str(storage),
                            str(log),
                            str(steps),
                            str(burst),
                        ],
                        cwd=folder,
                        stdout=subprocess.DEVNULL,
                        stderr=errors,
                        text=True,
                    )
                )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(log.exists() and log.stat().st_size for log in logs):
            for process, log in zip(processes, logs, strict=True):
                if process.poll() is not None:
                    raise _failure(process, log)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the processes did not start in {START_TIMEOUT_S}s")
            time.sleep(0.02)
        opened = max(_starts(log)[0] for log in logs)
        closes = opened + window_s
        time.sleep(max(0.0, closes + 0.3 - time.time()))
        for process, log in zip(processes, logs, strict=True):
            if process.poll() is not None:  # it ran out of steps: too few
                raise _failure(process, log)
    finally:
        _stop(processes)
    starts = sorted(start for log in logs for start in _starts(log))
    return [start for start in starts if opened <= start < closes]


def collect(repeat: int, quick: bool) -> list[Figure]:
    """Return the achieved rate, its percent of the nominal one, and the 1 s peak,
    for each burst."""
    window_s, steps = QUICK if quick else (WINDOW_S, STEPS)
    figures: list[Figure] = []
    for burst in BURSTS:
        rates: list[float] = []
        peaks: list[float] = []
        for _ in range(min(repeat, 1)):
            with tempfile.TemporaryDirectory(prefix="rivers-rates-") as folder:
                starts = measure(Path(folder), burst, window_s, steps)
            rates.append(len(starts) / window_s)
            peaks.append(float(most_in_any_window(starts, 1.0)))
        name = f"{PROCESSES} processes, {RATE} burst {burst}"
        figures += [
            Figure(
                "rate_limits",
                f"{name}: starts/s over {window_s:g} s (nominal {PER_SECOND}/s)",
                "/s",
                rates,
                better="higher",
            ),
            Figure(
                "rate_limits",
                f"{name}: achieved / nominal rate",
                "%",
                [100 * rate / PER_SECOND for rate in rates],
                better="higher",
            ),
            Figure(
                "rate_limits",
                f"{name}: most starts in any 1 s (bound {PER_SECOND + burst - 1})",
                "starts",
                peaks,
            ),
        ]
    return figures


if __name__ == "__main__":
    module_main(collect, __doc__)
