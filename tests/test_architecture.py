"""The import structure of ``rivers`` keeps the shape docs/architecture.md describes.

Read with the ``ast`` module (nothing is imported), over every import statement of every
module under ``rivers/``: module-level ones, those inside functions and methods, and
those under ``if TYPE_CHECKING:``.

Granularity: a *node* is one subpackage (``rivers.actors``, ``rivers.cli``,
``rivers.core``, ``rivers.dashboard``, ``rivers.definitions``, ``rivers.executors``,
``rivers.storage``) or one top-level module (``rivers.runtime``, ``rivers.io``,
``rivers._ids``, ...), each module of ``rivers/`` being its own node; ``rivers`` itself
(``rivers/__init__.py``) is a node too. Modules inside one subpackage may import each
other freely; the rules are about the edges between nodes.

1. No import cycle between nodes. An import under ``if TYPE_CHECKING:`` does not count:
   it exists only for mypy, never runs, and cannot make an import order fail. A
   function-local import does count: it runs (later) and couples the two nodes just as
   a module-level one does, it is only hidden from the import order.
2. No private name crosses nodes. A dotted path such as ``rivers.storage._rows`` or
   ``rivers.definitions.configs._K8S_NAME`` is private from its first ``_`` component
   on; the component's owner is the node of the path before it (``rivers.storage``,
   ``rivers.definitions``), and only modules of that node may import it. The private
   top-level modules (``rivers._ids``, ``rivers._clock``, ...) are owned by the whole
   package and shared by design, but a private name *inside* one of them is owned by
   that module alone. TYPE_CHECKING imports count here: they couple the names too.
3. No module over ``MAX_LINES`` lines, except the modules in ``OVERSIZED``, which are
   being split now: each may not grow past its recorded size, and an entry must be
   removed once its module fits (the list only shrinks).
4. ``rivers.core`` has no effects: everything it imports at run time, followed
   transitively through ``rivers``, stays inside a small set of pure nodes and never
   reaches storage, actors, executors, the runtime, or a library doing I/O (anyio,
   asyncio, sqlite3, threads, processes, sockets, Kubernetes, rich).
5. No actor imports another actor's class. An actor is a class of ``rivers.actors``
   with an ``async def run`` (its loop); a module of ``rivers.actors`` holds another
   actor only through an inbox or a Protocol of ``rivers.actors.ports``. The two
   modules whose job is to make actors (``ACTOR_MAKERS``) are the exception, for
   the class they make. The runtime and the run desk, outside ``rivers.actors``,
   put the actors together.
6. No actor imports a concrete storage: ``rivers.actors`` imports from
   ``rivers.storage`` only the role Protocols and records (``STORAGE_FOR_ACTORS``).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rivers"

MAX_LINES = 450

# Modules other branches are splitting right now, each capped at its size when the
# list was made. Lower a cap when a module shrinks; delete the entry once it fits.
OVERSIZED: dict[str, int] = {}

# Import edges between nodes that make today's cycles, ignored until they are removed:
# (importer node, imported node). The list only shrinks.
KNOWN_CYCLE_EDGES: frozenset[tuple[str, str]] = frozenset({})
# Private names imported across nodes today: "importer module -> imported path".
KNOWN_PRIVATE_IMPORTS: frozenset[str] = frozenset()

# The nodes rivers.core may reach at run time: pure data, errors and reprs.
CORE_MAY_IMPORT = frozenset(
    {"rivers.core", "rivers.messages", "rivers.errors", "rivers._ids", "rivers._repr"}
)
# Libraries doing I/O or owning threads, processes or an event loop.
EFFECTFUL_LIBRARIES = frozenset(
    {
        "anyio",
        "asyncio",
        "boto3",
        "concurrent",
        "kubernetes_asyncio",
        "multiprocessing",
        "os",
        "rich",
        "shutil",
        "signal",
        "socket",
        "sqlite3",
        "subprocess",
        "threading",
        "typer",
        "upath",
    }
)


@dataclass(frozen=True)
class Import:
    """One imported module or name, as the importing module names it."""

    importer: str  # dotted module name, e.g. "rivers.actors.pools"
    target: str  # dotted path of what is imported: a module, or module.name
    module: str  # the module the import loads (target, or target minus the name)
    line: int
    type_checking: bool

    def where(self) -> str:
        return f"{self.importer}:{self.line}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES: dict[str, Path] = {
    _module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))
}
PACKAGES = frozenset(
    name for name, path in MODULES.items() if path.name == "__init__.py"
)


def node_of(module: str) -> str:
    """The node a ``rivers`` module belongs to (see the module docstring)."""
    parts = module.split(".")
    if len(parts) == 1:
        return module
    top = ".".join(parts[:2])
    return top


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve_from(importer: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if importer not in PACKAGES:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports_of(importer: str, tree: ast.AST) -> Iterator[Import]:
    def visit(node: ast.AST, type_checking: bool) -> Iterator[Import]:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from visit(child, True)
            for child in node.orelse:
                yield from visit(child, type_checking)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(
                    importer, alias.name, alias.name, node.lineno, type_checking
                )
        elif isinstance(node, ast.ImportFrom):
            module = _resolve_from(importer, node)
            for alias in node.names:
                target = f"{module}.{alias.name}"
                loads = target if target in MODULES else module
                yield Import(importer, target, loads, node.lineno, type_checking)
        for inner in ast.iter_child_nodes(node):
            yield from visit(inner, type_checking)

    yield from visit(tree, False)


IMPORTS: list[Import] = [
    imp
    for name, path in MODULES.items()
    for imp in _imports_of(name, ast.parse(path.read_text(), str(path)))
]


def _rivers(name: str) -> bool:
    return name == "rivers" or name.startswith("rivers.")


def _edges(*, with_type_checking: bool) -> dict[str, dict[str, list[Import]]]:
    """node -> node it imports -> the imports making that edge."""
    edges: dict[str, dict[str, list[Import]]] = {}
    for imp in IMPORTS:
        if not _rivers(imp.module) or (imp.type_checking and not with_type_checking):
            continue
        src, dst = node_of(imp.importer), node_of(imp.module)
        if src != dst:
            edges.setdefault(src, {}).setdefault(dst, []).append(imp)
    return edges


def _cycles(edges: dict[str, dict[str, list[Import]]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted({*edges, *(w for ws in edges.values() for w in ws)}):
        if v not in index:
            connect(v)
    return found


def test_no_import_cycle_between_nodes() -> None:
    edges = _edges(with_type_checking=False)
    for src, dst in KNOWN_CYCLE_EDGES:
        edges.get(src, {}).pop(dst, None)
    report = []
    for component in _cycles(edges):
        inside = set(component)
        lines = [
            f"  {src} -> {dst}: {', '.join(sorted({imp.where() for imp in imps}))}"
            for src in component
            for dst, imps in sorted(edges.get(src, {}).items())
            if dst in inside
        ]
        report.append(f"cycle {' / '.join(component)}:\n" + "\n".join(lines))
    assert report == [], "import cycles between nodes:\n" + "\n".join(report)


def test_the_known_cycle_edges_still_exist() -> None:
    edges = _edges(with_type_checking=False)
    gone = sorted(
        edge for edge in KNOWN_CYCLE_EDGES if edge[1] not in edges.get(edge[0], {})
    )
    assert gone == [], f"remove these from KNOWN_CYCLE_EDGES, they are gone: {gone}"


def _private_owner(path: str) -> str | None:
    """The node owning the first private component of ``path``, or None if public.

    ``rivers._ids`` is owned by ``rivers`` (everyone); ``rivers._ids._x`` by
    ``rivers._ids``; ``rivers.storage._rows`` by ``rivers.storage``.
    """
    parts = path.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if part.startswith("_") and not part.startswith("__"):
            prefix = ".".join(parts[:i])
            if prefix == "rivers":
                continue
            return node_of(prefix)
    return None


def _private_crossings() -> dict[str, str]:
    """``"importer -> path"`` of each private name crossing nodes -> its place."""
    return {
        f"{imp.importer} -> {imp.target}": f"{imp.where()} (private to {owner})"
        for imp in IMPORTS
        if _rivers(imp.target)
        and (owner := _private_owner(imp.target)) is not None
        and node_of(imp.importer) != owner
    }


def test_no_private_name_is_imported_across_nodes() -> None:
    crossing = _private_crossings()
    new = sorted(
        f"{key}: {where}"
        for key, where in crossing.items()
        if key not in KNOWN_PRIVATE_IMPORTS
    )
    assert new == [], "private names imported across nodes:\n" + "\n".join(new)
    gone = sorted(KNOWN_PRIVATE_IMPORTS - set(crossing))
    assert gone == [], f"remove these from KNOWN_PRIVATE_IMPORTS, they are gone: {gone}"


def _length(relative: str) -> int:
    return len((ROOT / relative).read_text().splitlines())


def test_no_module_is_over_the_line_limit() -> None:
    too_long = [
        f"{path.relative_to(ROOT)}: {n} lines"
        for path in MODULES.values()
        if (n := _length(str(path.relative_to(ROOT)))) > MAX_LINES
        and str(path.relative_to(ROOT)) not in OVERSIZED
    ]
    assert too_long == [], f"modules over {MAX_LINES} lines (split them):\n" + (
        "\n".join(too_long)
    )


def test_the_oversized_allow_list_only_shrinks() -> None:
    grown = [
        f"{relative}: {_length(relative)} lines, capped at {cap}"
        for relative, cap in OVERSIZED.items()
        if (ROOT / relative).exists() and _length(relative) > cap
    ]
    assert grown == [], "allow-listed modules grew past their cap:\n" + "\n".join(grown)
    stale = [
        relative
        for relative in OVERSIZED
        if not (ROOT / relative).exists() or _length(relative) <= MAX_LINES
    ]
    assert stale == [], (
        f"these now fit in {MAX_LINES} lines (or are gone): remove them from"
        f" OVERSIZED in {Path(__file__).name}: {stale}"
    )


def _core_effects(imports: list[Import]) -> list[str]:
    """Each chain of run-time imports leading from rivers.core to an effect."""
    by_module: dict[str, list[Import]] = {}
    for imp in imports:
        if not imp.type_checking:
            by_module.setdefault(imp.importer, []).append(imp)
    seen: set[str] = set()
    todo = [(name, [name]) for name in MODULES if node_of(name) == "rivers.core"]
    bad: list[str] = []
    while todo:
        module, chain = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for imp in by_module.get(module, []):
            step = [*chain, f"{imp.target} ({imp.where()})"]
            if _rivers(imp.module):
                if node_of(imp.module) not in CORE_MAY_IMPORT:
                    bad.append(" -> ".join(step))
                elif imp.module in MODULES:
                    todo.append((imp.module, step))
            elif imp.module.split(".")[0] in EFFECTFUL_LIBRARIES:
                bad.append(" -> ".join(step))
    return sorted(bad)


def test_core_imports_nothing_with_effects() -> None:
    bad = _core_effects(IMPORTS)
    assert bad == [], "rivers.core reaches effects:\n" + "\n".join(bad)


def test_the_core_rule_sees_effects_directly_and_through_a_pure_node() -> None:
    def imp(importer: str, target: str) -> Import:
        return Import(importer, target, target, 1, type_checking=False)

    # Reported once, by the first chain that reaches rivers.core.queue (directly,
    # or through a core module importing it).
    (effect,) = _core_effects([*IMPORTS, imp("rivers.core.queue", "anyio")])
    assert effect.endswith("rivers.core.queue:1)")
    assert "-> anyio (rivers.core.queue:1)" in effect
    (chain,) = _core_effects([*IMPORTS, imp("rivers.errors", "rivers.storage.sqlite")])
    assert chain.endswith("-> rivers.storage.sqlite (rivers.errors:1)")
    typing_only = Import("rivers.core.queue", "anyio", "anyio", 1, type_checking=True)
    assert _core_effects([*IMPORTS, typing_only]) == []


def test_the_scan_sees_the_imports_it_claims_to() -> None:
    """The rules above are only as good as the scan: check it finds the known kinds."""
    assert "rivers.core.queue" in MODULES
    assert node_of("rivers.storage.sqlite") == "rivers.storage"
    assert node_of("rivers.runtime") == "rivers.runtime"
    kinds = {(imp.type_checking, imp.importer) for imp in IMPORTS}
    assert any(tc for tc, _ in kinds), "no TYPE_CHECKING import was seen"
    tree = ast.parse("def f():\n    from rivers.storage import sqlite\n")
    (local,) = _imports_of("rivers.core.x", tree)
    assert local.module == "rivers.storage.sqlite"
    assert not local.type_checking
    assert sys.version_info >= (3, 11)


# The modules of rivers.actors that make another actor, and the actor each makes.
ACTOR_MAKERS: frozenset[tuple[str, str]] = frozenset(
    {
        ("rivers.actors.coordinators", "rivers.actors.queue.QueueCoordinator"),
        ("rivers.actors.run_builder", "rivers.actors.run_executor.RunExecutor"),
    }
)
# What rivers.actors may import from rivers.storage: role Protocols and records.
STORAGE_FOR_ACTORS = frozenset(
    {"rivers.storage", "rivers.storage.base", "rivers.storage.records"}
)


def _actor_classes() -> set[str]:
    """``module.Class`` of every actor: a rivers.actors class with ``async def run``
    (Protocols excluded: they describe an actor, they are none)."""
    found = set()
    for name, path in MODULES.items():
        if node_of(name) != "rivers.actors":
            continue
        for node in ast.parse(path.read_text()).body:
            if (
                isinstance(node, ast.ClassDef)
                and not any(
                    isinstance(base, ast.Name) and base.id == "Protocol"
                    for base in node.bases
                )
                and any(
                    isinstance(item, ast.AsyncFunctionDef) and item.name == "run"
                    for item in node.body
                )
            ):
                found.add(f"{name}.{node.name}")
    return found


def _actor_crossings(imports: list[Import]) -> list[str]:
    actors = _actor_classes()
    return sorted(
        f"{imp.where()} imports {imp.target}"
        for imp in imports
        if node_of(imp.importer) == "rivers.actors"
        and imp.target in actors
        and imp.module != imp.importer
        and (imp.importer, imp.target) not in ACTOR_MAKERS
    )


def test_no_actor_imports_another_actors_class() -> None:
    crossing = _actor_crossings(IMPORTS)
    assert crossing == [], (
        "actors holding another actor's class (take its inbox or a Protocol of"
        " rivers.actors.ports instead):\n" + "\n".join(crossing)
    )


def test_the_actor_rule_sees_the_actors_and_a_crossing() -> None:
    actors = _actor_classes()
    assert {
        "rivers.actors.events.EventWriter",
        "rivers.actors.pools.PoolManager",
        "rivers.actors.queue.QueueCoordinator",
        "rivers.actors.run_supervisor.RunSupervisor",
        "rivers.actors.run_executor.RunExecutor",
        "rivers.actors.leases.LeaseGC",
        "rivers.actors.liveness.ProcessMonitor",
        "rivers.actors.triggers.TriggerRunner",
    } <= actors
    assert "rivers.actors.ports.RunDriver" not in actors
    typing_only = Import(
        "rivers.actors.step_attempt",
        "rivers.actors.pools.PoolManager",
        "rivers.actors.pools",
        1,
        type_checking=True,
    )
    (crossing,) = _actor_crossings([*IMPORTS, typing_only])
    assert crossing.endswith("imports rivers.actors.pools.PoolManager")


def test_no_actor_imports_a_concrete_storage() -> None:
    concrete = sorted(
        f"{imp.where()} imports {imp.target}"
        for imp in IMPORTS
        if node_of(imp.importer) == "rivers.actors"
        and node_of(imp.module) == "rivers.storage"
        and imp.module not in STORAGE_FOR_ACTORS
    )
    assert concrete == [], "actors importing a concrete storage:\n" + "\n".join(
        concrete
    )
