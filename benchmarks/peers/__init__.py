"""Peers: the same workloads written for other orchestrators, to compare against.

``dagster_peer`` and ``prefect_peer`` hold Dagster's and Prefect 3's versions of
workloads 1, 3, 4 and 5 and of workload 6's import time (``dagster_defs`` and
``prefect_flows`` the definitions their subprocesses import; ``common`` what both
share). A peer runs only when it imports (neither is ever a dependency of rivers),
each workload in its own interpreter with a timeout, and prints its figures as JSON
lines that the suite reads back.
"""
