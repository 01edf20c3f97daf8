"""rivers benchmarks: one suite (``python -m benchmarks``) of the workloads below.

Each module defines its workload in its docstring, exposes ``collect(repeat,
quick)`` returning ``figures.Figure`` objects, and runs alone as
``python -m benchmarks.NAME``; ``peers/`` holds Dagster's and Prefect's versions.
"""

from __future__ import annotations

WORKLOADS = (
    "inprocess_dag",
    "latency",
    "parallel_steps",
    "pools",
    "run_queue",
    "footprint",
    "forecast",
    "advisor",
    "rate_limits",
    "finished_runs",
    "postgres",
)
"""The workload modules, in the order the suite runs them."""
UVLOOP_WORKLOADS = ("inprocess_dag", "pools", "run_queue")
"""The workloads the suite runs again with uvloop off (workload 7)."""
