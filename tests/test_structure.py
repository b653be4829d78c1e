"""The house's import rules, read from the source with `ast` (nothing is imported): no module
imports another that imports it back (directly or round a loop, top-level or inside a function),
and the packages below `benchmark` never import it (datasets <- baselines <- fusion_models <-
benchmark is one-way)."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("datasets", "baselines", "fusion_models", "benchmark")
LAYER = {p: i for i, p in enumerate(PACKAGES)}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports (a package's face __init__ resolved to its modules)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` names a module; `from mod import name` names mod
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def _graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]
    modules = {_module_name(p) for p in files}
    # a package's __init__ that only re-exports is a face, not a room: importing the package
    # is importing what it hands on, which the rule below checks at those modules
    return {_module_name(p): _imports(p, modules) for p in files}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_no_import_cycle():
    graph = _graph()
    # package faces: `import datasets` runs datasets/__init__.py, which imports its modules;
    # a module importing its own package's face is the package importing itself, not a loop
    for n, deps in graph.items():
        graph[n] = {d for d in deps if not n.startswith(d + ".")}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_lower_packages_never_import_higher_ones():
    bad = [(n, d) for n, deps in _graph().items() for d in deps if LAYER[d.split(".")[0]] > LAYER[n.split(".")[0]]]
    assert bad == [], bad
