"""Peers: the same workloads written for other orchestrators, to compare against.

``dagster_peer`` holds Dagster's versions of workloads 1, 3, 4 and 5. They run only
when ``import dagster`` works (Dagster is never a dependency of rivers), each in
its own interpreter with a timeout, and print their figures as JSON lines that
the suite reads back.
"""
