"""Which steps of a run may start, and what a step's end means for the others."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ("PlanState", "StepOutcome")


class StepOutcome(enum.Enum):
    """How a step ended, as the plan sees it."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELED = "canceled"


@dataclass(slots=True)
class PlanState:
    """The dependency state of one run's steps.

    A step is ready once every upstream step *in the run* succeeded (upstream assets
    outside the selection are inputs loaded from the IO manager). When a step fails,
    every step downstream of it is skipped; unrelated steps go on.
    """

    order: list[str]
    upstream: dict[str, tuple[str, ...]]
    downstream: dict[str, list[str]] = field(default_factory=dict)
    waiting_on: dict[str, int] = field(default_factory=dict)
    outcome: dict[str, StepOutcome] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)
    priority: Mapping[str, int] = field(default_factory=dict)
    """Each step's priority (absent: 0): ready steps are returned highest first,
    then in plan order."""

    @classmethod
    def build(
        cls,
        selection: Iterable[str],
        upstream: Mapping[str, Iterable[str]],
        priority: Mapping[str, int] | None = None,
    ) -> PlanState:
        """Return the plan of ``selection`` (in dependency order) over ``upstream``;
        ``priority`` orders the steps that become ready together."""
        order = list(selection)
        selected = set(order)
        inner = {
            step: tuple(u for u in upstream[step] if u in selected) for step in order
        }
        downstream: dict[str, list[str]] = {step: [] for step in order}
        for step, ups in inner.items():
            for up in ups:
                downstream[up].append(step)
        return cls(
            order=order,
            upstream=inner,
            downstream=downstream,
            waiting_on={step: len(ups) for step, ups in inner.items()},
            priority=dict(priority or {}),
        )

    def levels(self) -> list[list[str]]:
        """The steps by depth (longest upstream chain in the run), in plan order.

        Steps of one level never depend on each other: they are the ones that may
        run at once.
        """
        depth: dict[str, int] = {}
        for step in self.order:
            depth[step] = 1 + max((depth[u] for u in self.upstream[step]), default=-1)
        levels: list[list[str]] = [
            [] for _ in range(max(depth.values(), default=-1) + 1)
        ]
        for step in self.order:
            levels[depth[step]].append(step)
        return levels

    def initial(self) -> list[str]:
        """Return the steps ready at the start, highest priority first, then in plan
        order, and mark them started."""
        ready = self._by_priority([s for s in self.order if self.waiting_on[s] == 0])
        self.started.update(ready)
        return ready

    def _by_priority(self, steps: list[str]) -> list[str]:
        if self.priority and len(steps) > 1:
            steps.sort(key=lambda step: -self.priority.get(step, 0))  # stable
        return steps

    def finish(self, step: str, outcome: StepOutcome) -> tuple[list[str], list[str]]:
        """Record how ``step`` ended.

        Returns:
            (steps now ready, marked started, highest priority first; steps
            skipped because of this end).
        """
        assert step in self.started, step
        assert step not in self.outcome, step
        self.outcome[step] = outcome
        if outcome is StepOutcome.SUCCEEDED:
            ready: list[str] = []
            for child in self.downstream[step]:
                self.waiting_on[child] -= 1
                if self.waiting_on[child] == 0 and child not in self.outcome:
                    ready.append(child)
                    self.started.add(child)
            return self._by_priority(ready), []
        return [], self._skip_downstream_of(step)

    def cancel_unstarted(self) -> list[str]:
        """Mark every step that has not started CANCELED; return them."""
        canceled = [
            s for s in self.order if s not in self.started and s not in self.outcome
        ]
        for step in canceled:
            self.outcome[step] = StepOutcome.CANCELED
        return canceled

    def _skip_downstream_of(self, step: str) -> list[str]:
        skipped: list[str] = []
        stack = list(self.downstream[step])
        while stack:
            child = stack.pop()
            if child in self.outcome or child in self.started:
                continue
            self.outcome[child] = StepOutcome.SKIPPED
            skipped.append(child)
            stack.extend(self.downstream[child])
        skipped.sort(key=self.order.index)
        return skipped

    @property
    def done(self) -> bool:
        """Whether every step has an outcome."""
        return len(self.outcome) == len(self.order)

    @property
    def succeeded(self) -> bool:
        """Whether every step succeeded."""
        return self.done and all(
            o is StepOutcome.SUCCEEDED for o in self.outcome.values()
        )
