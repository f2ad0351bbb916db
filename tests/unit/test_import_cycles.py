"""No import cycles in the server: every module under server/registry_server, with the
imports at its top AND those inside functions (a cycle dodged by importing in a body is
still a cycle: the two modules cannot be understood, tested or moved apart).

The graph is read from the source with `ast` (nothing is imported). An edge goes to the
module a statement names: `from .x import y` to `x`, or to `x.y` when that is a module
itself. Cycles are the graph's strongly connected components of more than one module
(or a module importing itself).
"""

from __future__ import annotations

import ast
from pathlib import Path

import registry_server

PACKAGE = "registry_server"
ROOT = Path(registry_server.__file__).parent

# The cycles allowed, by name, until they are removed: each the sorted modules of one
# strongly connected component (relative to registry_server). Allowed exactly as
# listed, so no module can join one unnoticed; any other cycle fails.
ALLOWED_CYCLES: frozenset[tuple[str, ...]] = frozenset()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The server's modules that module `name` (at `path`) imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            # `from pkg import mod` imports the module `pkg.mod`.
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` as far as it is ours
                target = target.rpartition(".")[0]
            if target:
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imported(name, path, known) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """Strongly connected components that are cycles (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[tuple[str, ...]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                out.append(tuple(sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(out)


def short(component: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name.removeprefix(f"{PACKAGE}.") for name in component)


def path_through(graph: dict[str, set[str]], component: tuple[str, ...]) -> str:
    """One cycle inside a component, as `a -> b -> a`, to show where to cut."""
    members = set(component)
    start = component[0]
    trail = [start]
    seen = {start}
    node = start
    while True:
        nxt = sorted(graph[node] & members)
        back = start if start in nxt else None
        step = back or next((n for n in nxt if n not in seen), nxt[0])
        trail.append(step)
        if step in seen:
            trail = trail[trail.index(step) :]
            return " -> ".join(name.removeprefix(f"{PACKAGE}.") for name in trail)
        seen.add(step)
        node = step


def test_the_graph_sees_imports_inside_functions() -> None:
    # cli.py imports the server only inside its commands.
    assert f"{PACKAGE}.api.server" in import_graph()[f"{PACKAGE}.cli"]


def test_cycles_are_found_and_shown() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}, "f": {"d"}}
    assert cycles(graph) == [("a", "b", "c"), ("e",)]
    assert path_through(graph, ("a", "b", "c")) == "a -> b -> c -> a"


def test_no_import_cycles() -> None:
    graph = import_graph()
    found = {short(component): component for component in cycles(graph)}
    new = [
        f"{' <-> '.join(name)}: {path_through(graph, component)}"
        for name, component in found.items()
        if name not in ALLOWED_CYCLES
    ]
    assert not new, "import cycles:\n" + "\n".join(new)


def test_allowed_cycles_still_exist() -> None:
    """An allowed cycle that is gone leaves the list, so it cannot come back unnoticed."""
    found = {short(component) for component in cycles(import_graph())}
    assert not ALLOWED_CYCLES - found, f"no longer cycles: {sorted(ALLOWED_CYCLES - found)}"
