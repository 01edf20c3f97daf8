"""A hypothesis state machine drives a real ``rs.Runtime`` on a real SQLite file.

Rules submit runs (tags, priorities, selections, steps told to fail or to fail once
and retry), cancel runs, change and clear pool limits with ``set_pool_limit`` (0
pauses a pool), expire live leases behind the runtime's back, and let time pass.
Every moment a step starts, it checks from inside the step what actually runs at
once against every gate; the invariants also sample the storage after every rule:

- at most ``max_concurrent_runs`` runs run, and every tag limit holds;
- within one run at most ``max_async_concurrent`` steps run;
- the slots of the steps running in a pool never exceed the limit the storage saw
  at that pool's latest grant (a grant is the only thing that adds usage, and each
  one re-checks the limit in its transaction), leaving out steps whose lease was
  reclaimed; every grant the storage makes is itself within the limit;
- no deadlock: at the end the limits are restored and every run finishes, with the
  status its story implies, and nothing stays claimed.

Each example runs its runtime in a blocking portal (an anyio event loop in a
thread) so hypothesis can drive it step by step. ``RIVERS_STATEFUL_EXAMPLES`` and
``RIVERS_STATEFUL_STEPS`` (default 10 and 20) make it run longer.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, Phase, settings, strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

import rivers as rs
from rivers.storage.records import ClaimResult

EXAMPLES = int(os.environ.get("RIVERS_STATEFUL_EXAMPLES", "10"))
STEPS = int(os.environ.get("RIVERS_STATEFUL_STEPS", "20"))

MAX_RUNS = 3
ASYNC_CAP = 2
LEASE_S = 1.5
DRAIN_TIMEOUT_S = 60.0
TAG_LIMITS = (
    rs.TagConcurrencyLimit(key="team", limit=1, per_unique_value=True),
    rs.TagConcurrencyLimit(key="env", value="prod", limit=1),
    rs.TagConcurrencyLimit(key="env", limit=2),
)
DECLARED = {"p1": 2, "p2": 3}
POOLS_OF = {
    "extract": (("p1",), 1),
    "heavy": (("p2",), 2),
    "both": (("p1", "p2"), 1),
    "report": ((), 0),
    "side": ((), 0),
}


@dataclass
class Running:
    tags: dict[str, str]
    pools: tuple[str, ...]
    slots: int


@dataclass
class Observer:
    """What runs right now, seen from inside the steps; and what broke a rule."""

    running: dict[tuple[str, str], Running] = field(default_factory=dict)
    grant_limit: dict[str, int | None] = field(default_factory=dict)
    reclaimed: set[tuple[str, str]] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)
    checks: int = 0
    grants: int = 0

    def enter(self, run_id: str, step: str, tags: dict[str, str]) -> None:
        pools, slots = POOLS_OF[step]
        self.running[(run_id, step)] = Running(dict(tags), pools, slots)
        self.check(f"{step} of {run_id} started")

    def leave(self, run_id: str, step: str) -> None:
        self.running.pop((run_id, step), None)

    def check(self, moment: str) -> None:
        self.checks += 1
        runs = {run_id: r.tags for (run_id, _), r in self.running.items()}
        if len(runs) > MAX_RUNS:
            self.violations.append(f"{moment}: {len(runs)} runs running")
        for limit in TAG_LIMITS:
            buckets: dict[str | None, int] = {}
            for tags in runs.values():
                value = tags.get(limit.key)
                if value is None or (limit.value is not None and value != limit.value):
                    continue
                bucket = value if limit.per_unique_value else None
                buckets[bucket] = buckets.get(bucket, 0) + 1
            for bucket, used in buckets.items():
                if limit.limit is not None and used > limit.limit:
                    self.violations.append(
                        f"{moment}: tag {limit.key}={bucket} has {used} runs"
                    )
        per_run: dict[str, int] = {}
        for run_id, _ in self.running:
            per_run[run_id] = per_run.get(run_id, 0) + 1
        for run_id, steps in per_run.items():
            if steps > ASYNC_CAP:
                self.violations.append(f"{moment}: run {run_id} runs {steps} steps")
        for pool in DECLARED:
            used = sum(
                r.slots
                for key, r in self.running.items()
                if pool in r.pools and key not in self.reclaimed
            )
            bound = self.grant_limit.get(pool)
            if bound is not None and used > bound:
                self.violations.append(
                    f"{moment}: pool {pool} runs {used} slots, limit {bound}"
                )

    def saw_claim(self, result: ClaimResult) -> None:
        for _, run_id, step_key, _, _ in result.reclaimed:
            self.reclaimed.add((run_id, step_key))
        if not result.granted:
            return
        self.grants += 1
        for view in result.views:
            self.grant_limit[view.pool] = view.limit
            if view.limit is not None and view.claimed > view.limit:
                self.violations.append(
                    f"grant in pool {view.pool}: {view.claimed} > {view.limit}"
                )


OBSERVER = Observer()
TOTALS = {"examples": 0, "rules": 0, "runs": 0, "checks": 0, "grants": 0}


async def _body(context: rs.StepContext) -> None:
    step = context.asset_key
    OBSERVER.enter(context.run_id, step, context.run_tags)
    try:
        if context.run_tags.get("fail") == step:
            raise RuntimeError(f"{step} was told to fail")
        if context.run_tags.get("flaky") == step and context.attempt == 1:
            raise RuntimeError(f"{step} fails its first attempt")
        await anyio.sleep(int(context.run_tags.get("ms", "5")) / 1000)
    finally:
        OBSERVER.leave(context.run_id, step)


@rs.Asset(pool="p1", retry_policy=rs.RetryPolicy(max_retries=1))
async def extract(context: rs.StepContext) -> None:
    await _body(context)


@rs.Asset(pool="p2", pool_slots=2, retry_policy=rs.RetryPolicy(max_retries=1))
async def heavy(context: rs.StepContext) -> None:
    await _body(context)


@rs.Asset(pool=["p1", "p2"], deps=["extract"])
async def both(context: rs.StepContext) -> None:
    await _body(context)


@rs.Asset(deps=["heavy", "both"])
async def report(context: rs.StepContext) -> None:
    await _body(context)


@rs.Asset
async def side(context: rs.StepContext) -> None:
    await _body(context)


ASSETS = ("extract", "heavy", "both", "report", "side")
RETRIED = {"extract", "heavy"}  # the assets with a retry policy


@dataclass
class Submitted:
    run_id: str
    selection: tuple[str, ...]
    tags: dict[str, str]
    canceled: bool = False
    lease_expired: bool = False


def _spy(storage: Any, name: str, record: Callable[[Any], None]) -> None:
    """Wrap a storage method so every result is recorded before it is used."""
    original = getattr(storage, name)

    async def spied(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        record(result)
        return result

    setattr(storage, name, spied)


def _spy_now(storage: Any, name: str, record: Callable[[Any], None]) -> None:
    """``_spy`` for a synchronous method that returns None when it wrote nothing."""
    original = getattr(storage, name)

    def spied(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if result is not None:
            record(result)
        return result

    setattr(storage, name, spied)


def _each(record: Callable[[ClaimResult], None]) -> Callable[[Any], None]:
    def record_all(results: list[ClaimResult]) -> None:
        for result in results:
            record(result)

    return record_all


class RuntimeMachine(RuleBasedStateMachine):
    """Random operations against one live runtime; invariants after each."""

    runs = Bundle("runs")

    def __init__(self) -> None:
        super().__init__()
        global OBSERVER
        OBSERVER = Observer()
        self.folder = Path(tempfile.mkdtemp(prefix="rivers-stateful-"))
        self.path = self.folder / "rivers.db"
        self.repo = rs.CodeRepository(
            [extract, heavy, both, report, side],
            run_queue=rs.RunQueueConfig(
                max_concurrent_runs=MAX_RUNS,
                dequeue_interval="20ms",
                tag_concurrency_limits=TAG_LIMITS,
            ),
            pool_limits=DECLARED,
            executor=rs.Executor.parallel(
                max_workers=1, max_async_concurrent=ASYNC_CAP
            ),
            io_manager=rs.FilesystemIOManager(self.folder / "values"),
            backend=rs.RunBackendConfig(
                storage=str(self.path),
                lease_duration=f"{LEASE_S}s",
                lease_gc_interval="0.1s",
            ),
        )
        self.submitted: dict[str, Submitted] = {}
        self.limits: dict[str, int | None] = dict(DECLARED)
        self._portal_cm = start_blocking_portal("asyncio")
        self.portal: BlockingPortal = self._portal_cm.__enter__()
        try:
            runtime = self.portal.call(rs.Runtime, self.repo)  # made on its loop
            self._runtime_cm = self.portal.wrap_async_context_manager(runtime)
            self.rt: rs.Runtime = self._runtime_cm.__enter__()
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        # The pool role the runtime's actors use (not the public rt.storage).
        storage = self.rt._roles.pools
        _spy(storage, "claim_pool_slots", OBSERVER.saw_claim)
        _spy(storage, "release_and_claim", _each(OBSERVER.saw_claim))
        # The hand-over written on the loop when the write lock is free: its grants
        # carry the limit they were checked against like every other grant.
        _spy_now(storage, "release_and_claim_now", _each(OBSERVER.saw_claim))
        _spy(
            storage,
            "reclaim_expired_leases",
            lambda rows: OBSERVER.reclaimed.update((r[1], r[2]) for r in rows),
        )

    # ------------------------------------------------------------------ rules

    @rule(
        target=runs,
        selection=st.lists(st.sampled_from(ASSETS), min_size=1, unique=True),
        team=st.sampled_from(["", "a", "b", "c"]),
        env=st.sampled_from(["", "prod", "dev"]),
        trouble=st.sampled_from(["", "fail", "flaky"]),
        trouble_step=st.sampled_from(ASSETS),
        ms=st.integers(0, 40),
        priority=st.integers(0, 2),
    )
    def submit(
        self,
        selection: list[str],
        team: str,
        env: str,
        trouble: str,
        trouble_step: str,
        ms: int,
        priority: int,
    ) -> str:
        tags = {"ms": str(ms)}
        if team:
            tags["team"] = team
        if env:
            tags["env"] = env
        if trouble:
            tags[trouble] = trouble_step
        request = rs.RunRequest(selection=selection, tags=tags, priority=priority)
        handle = self.portal.call(self.rt.submit, request)
        self.submitted[handle.run_id] = Submitted(handle.run_id, tuple(selection), tags)
        return handle.run_id

    @rule(run_id=runs)
    def cancel(self, run_id: str) -> None:
        self.submitted[run_id].canceled = True
        self.portal.call(self.rt.cancel, run_id)

    @rule(pool=st.sampled_from(sorted(DECLARED)), data=st.data())
    def set_pool_limit(self, pool: str, data: st.DataObject) -> None:
        # p2 holds a 2-slot step, so its limits stay >= 2 (or 0, paused).
        choices = [0, 1, 2, 3] if pool == "p1" else [0, 2, 3, 4]
        limit = data.draw(st.sampled_from(choices))
        self.portal.call(self.rt.storage.set_pool_limit, pool, limit)
        self.limits[pool] = limit

    @rule(pool=st.sampled_from(sorted(DECLARED)))
    def clear_pool_limit(self, pool: str) -> None:
        self.portal.call(self.rt.storage.clear_pool_limit, pool)
        self.limits[pool] = DECLARED[pool]

    @precondition(lambda self: bool(self.submitted))
    @rule(pick=st.integers(0, 1000))
    def expire_a_lease(self, pick: int) -> None:
        """Expire a live claim behind the runtime's back, as a stalled renewal would.

        Which claims are live depends on timing, so the choice is an index drawn
        up front (hypothesis needs the same draws when it replays an example).
        """
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            rows = conn.execute(
                "SELECT DISTINCT run_id, step_key FROM pool_claims "
                "WHERE lease_expires_at > ? ORDER BY run_id, step_key",
                (time.time(),),
            ).fetchall()
            if not rows:
                return
            run_id, step_key = rows[pick % len(rows)]
            conn.execute(
                "UPDATE pool_claims SET lease_expires_at = ? "
                "WHERE run_id = ? AND step_key = ?",
                (time.time() - 1, run_id, step_key),
            )
        finally:
            conn.close()
        self.submitted[run_id].lease_expired = True

    @rule(ms=st.integers(0, 150))
    def let_time_pass(self, ms: int) -> None:
        self.portal.call(anyio.sleep, ms / 1000)

    # ------------------------------------------------------------- invariants

    @invariant()
    def no_step_ever_saw_a_limit_exceeded(self) -> None:
        TOTALS["rules"] += 1  # invariants run after every rule (and once at start)
        assert OBSERVER.violations == []

    @invariant()
    def storage_never_shows_a_limit_exceeded(self) -> None:
        in_flight, pools = self.portal.call(self._sample)
        assert len(in_flight) <= MAX_RUNS, in_flight
        for limit in TAG_LIMITS:
            buckets: dict[str | None, int] = {}
            for tags in in_flight:
                value = tags.get(limit.key)
                if value is None or (limit.value is not None and value != limit.value):
                    continue
                bucket = value if limit.per_unique_value else None
                buckets[bucket] = buckets.get(bucket, 0) + 1
            assert all(used <= (limit.limit or 0) for used in buckets.values()), (
                limit,
                buckets,
            )
        for info in pools:
            bound = OBSERVER.grant_limit.get(info.name, info.limit)
            if bound is not None:
                assert info.claimed_slots <= bound, (info, bound)

    async def _sample(self) -> tuple[list[dict[str, str]], list[rs.PoolInfo]]:
        storage = self.rt._roles
        return (
            await storage.queue.get_in_flight_tags(),
            await storage.pools.get_all_pool_infos(),
        )

    # --------------------------------------------------------------- the end

    def teardown(self) -> None:
        try:
            self._drain_and_check()
            TOTALS["examples"] += 1
            TOTALS["runs"] += len(self.submitted)
            TOTALS["checks"] += OBSERVER.checks
            TOTALS["grants"] += OBSERVER.grants
        finally:
            try:
                self._runtime_cm.__exit__(None, None, None)
            finally:
                self._portal_cm.__exit__(None, None, None)
                shutil.rmtree(self.folder, ignore_errors=True)

    def _drain_and_check(self) -> None:
        for pool in DECLARED:  # unpause: with finite steps, everything must finish
            self.portal.call(self.rt.storage.clear_pool_limit, pool)
        records = self.portal.call(self._wait_for_everything)
        assert OBSERVER.violations == []
        for run_id, record in records.items():
            self._check_outcome(self.submitted[run_id], record)
        infos = self.portal.call(self.rt.storage.get_all_pool_infos)
        assert all(i.claimed_slots == 0 and i.pending_steps == 0 for i in infos), infos
        assert OBSERVER.running == {}

    async def _wait_for_everything(self) -> dict[str, rs.RunRecord]:
        records: dict[str, rs.RunRecord] = {}
        with anyio.fail_after(DRAIN_TIMEOUT_S):  # a deadlock fails here
            for run_id in self.submitted:
                records[run_id] = await self.rt.wait_for(run_id)
        return records

    def _check_outcome(self, run: Submitted, record: rs.RunRecord) -> None:
        """The status each run's story implies (a cancel may come too late)."""
        status, reason = record.status, record.reason or ""
        expanded = set(run.selection)  # deps= only: a selection runs only itself
        flaky = run.tags.get("flaky")
        told_to_fail = run.tags.get("fail") in expanded or (
            flaky in expanded and flaky not in RETRIED
        )
        if status is rs.RunStatus.CANCELED:
            assert run.canceled, record
        elif status is rs.RunStatus.FAILURE:
            assert told_to_fail or run.lease_expired or run.canceled, record
            if not told_to_fail and not run.canceled:
                assert "lease" in reason.lower(), record
        else:
            assert status is rs.RunStatus.SUCCESS, record
            assert not told_to_fail, record


RuntimeMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    # No shrinking: timing decides much of what an example does, so shrinking a
    # failure mostly replays it for minutes; the failing steps are printed as is.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)


@pytest.mark.timeout(600)
def test_the_runtime_keeps_every_limit_under_random_operations(
    record_figure: Callable[[str], None],
) -> None:
    began = time.monotonic()
    RuntimeMachine.TestCase("runTest").runTest()
    assert TOTALS["checks"] > 0
    assert TOTALS["grants"] > 0
    record_figure(
        f"stateful: {TOTALS['examples']} examples, {TOTALS['rules']} rule steps, "
        f"{TOTALS['runs']} runs, {TOTALS['checks']} in-step limit checks, "
        f"{TOTALS['grants']} pool grants checked, {time.monotonic() - began:.1f}s"
    )
