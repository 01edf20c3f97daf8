"""The asset graph helpers: cycles are found and shown, order respects upstream."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings, strategies as st

from rivers.definitions.graph import find_cycle, topological_order

Graph = dict[str, tuple[str, ...]]


def _assert_real_cycle(cycle: list[str], upstream: Graph) -> None:
    """A cycle starts and ends at one node, and each entry feeds the next."""
    assert len(cycle) >= 2
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1, "a node repeats inside the cycle"
    for feeder, fed in itertools.pairwise(cycle):
        assert feeder in upstream[fed], f"{feeder} does not feed {fed}"


def test_an_acyclic_graph_has_no_cycle() -> None:
    upstream: Graph = {"a": (), "b": ("a",), "c": ("a", "b")}
    assert find_cycle(upstream) is None


def test_an_empty_graph_has_no_cycle_and_an_empty_order() -> None:
    assert find_cycle({}) is None
    assert topological_order({}) == []


def test_a_two_node_cycle_is_reported_in_dependency_direction() -> None:
    upstream: Graph = {"a": ("b",), "b": ("a",)}
    cycle = find_cycle(upstream)
    assert cycle == ["a", "b", "a"]
    _assert_real_cycle(cycle, upstream)


def test_a_self_loop_is_a_cycle_of_one_node() -> None:
    assert find_cycle({"a": ("a",)}) == ["a", "a"]


def test_a_cycle_behind_acyclic_nodes_is_found() -> None:
    upstream: Graph = {
        "root": (),
        "x": ("root", "z"),
        "y": ("x",),
        "z": ("y",),
        "leaf": ("z",),
    }
    cycle = find_cycle(upstream)
    assert cycle is not None
    assert sorted(cycle[:-1]) == ["x", "y", "z"]
    _assert_real_cycle(cycle, upstream)


def test_find_cycle_is_deterministic() -> None:
    upstream: Graph = {"c": ("b",), "b": ("a",), "a": ("c",), "d": ("d",)}
    assert find_cycle(upstream) == find_cycle(dict(reversed(upstream.items())))


def test_names_outside_the_mapping_are_ignored_by_find_cycle() -> None:
    assert find_cycle({"a": ("external",)}) is None


def test_a_very_deep_chain_does_not_hit_the_recursion_limit() -> None:
    depth = 20_000
    upstream: Graph = {f"n{i}": (f"n{i - 1}",) if i else () for i in range(depth)}
    assert find_cycle(upstream) is None
    assert topological_order(upstream) == [f"n{i}" for i in range(depth)]
    upstream["n0"] = (f"n{depth - 1}",)
    cycle = find_cycle(upstream)
    assert cycle is not None
    assert len(cycle) == depth + 1
    _assert_real_cycle(cycle, upstream)


def test_topological_order_keeps_mapping_order_among_independent_nodes() -> None:
    upstream: Graph = {"zeta": (), "alpha": (), "mid": ("zeta",), "beta": ()}
    assert topological_order(upstream) == ["zeta", "alpha", "beta", "mid"]


def test_topological_order_puts_every_node_after_its_upstream() -> None:
    upstream: Graph = {"report": ("orders", "users"), "orders": ("raw",), "users": ()}
    upstream["raw"] = ()
    order = topological_order(upstream)
    assert order.index("raw") < order.index("orders") < order.index("report")
    assert order.index("users") < order.index("report")
    assert sorted(order) == sorted(upstream)


def test_topological_order_of_a_cyclic_graph_raises() -> None:
    with pytest.raises(ValueError, match="cycle"):
        topological_order({"a": ("b",), "b": ("a",)})


def test_duplicate_upstream_entries_are_harmless() -> None:
    assert topological_order({"a": (), "b": ("a", "a")}) == ["a", "b"]


@st.composite
def dags(draw: st.DrawFn) -> Graph:
    """A random DAG: node i may depend only on lower-ranked nodes, in random order."""
    size = draw(st.integers(min_value=1, max_value=14))
    names = draw(st.permutations([f"n{i}" for i in range(size)]))
    upstream: dict[str, tuple[str, ...]] = {}
    for rank, name in enumerate(names):
        deps = draw(st.sets(st.sampled_from(names[:rank]))) if rank else set()
        upstream[name] = tuple(sorted(deps))
    keys = draw(st.permutations(list(upstream)))
    return {key: upstream[key] for key in keys}


def _descendants(upstream: Graph, node: str) -> set[str]:
    downstream: dict[str, set[str]] = {n: set() for n in upstream}
    for child, parents in upstream.items():
        for parent in parents:
            downstream[parent].add(child)
    seen: set[str] = set()
    stack = [node]
    while stack:
        for child in downstream[stack.pop()]:
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


@settings(max_examples=200, deadline=None)
@given(dags())
def test_random_dags_are_ordered_upstream_first_and_have_no_cycle(
    upstream: Graph,
) -> None:
    order = topological_order(upstream)
    assert sorted(order) == sorted(upstream)
    position = {node: index for index, node in enumerate(order)}
    for node, deps in upstream.items():
        for dep in deps:
            assert position[dep] < position[node]
    assert find_cycle(upstream) is None


@settings(max_examples=200, deadline=None)
@given(dags(), st.data())
def test_a_back_edge_makes_find_cycle_return_a_real_cycle(
    upstream: Graph, data: st.DataObject
) -> None:
    sources = [n for n in upstream if _descendants(upstream, n)]
    if not sources:
        # No edges: a self-loop is the only back edge there is.
        node = data.draw(st.sampled_from(sorted(upstream)))
        upstream[node] = (node,)
    else:
        source = data.draw(st.sampled_from(sorted(sources)))
        target = data.draw(st.sampled_from(sorted(_descendants(upstream, source))))
        # ``target`` already depends on ``source``; make ``source`` depend on it.
        upstream[source] = (*upstream[source], target)
    cycle = find_cycle(upstream)
    assert cycle is not None
    _assert_real_cycle(cycle, upstream)
    with pytest.raises(ValueError, match="cycle"):
        topological_order(upstream)
