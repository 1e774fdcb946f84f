"""The package's import graph has no cycle, lazy imports included, and its layers point one way.

Every `import ttscale...` / `from ttscale... import ...` anywhere in a file counts — at top level, inside a
function, under TYPE_CHECKING — because a lazy import that closes a loop is still a loop a reader must untangle.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ttscale"

# Layers, lowest first: a subpackage may import only from layers at or below its own rank.
# data <- inference <- {train, search} <- eval; serve sits beside eval and imports downward. The executor
# (distributed) imports no subpackage, only the top-level config: it sits at the bottom so every
# model-running stage (generate, label, search) can call it.
RANK = {"(base)": -1, "distributed": 0, "data": 0, "inference": 1, "train": 2, "search": 2, "eval": 3, "serve": 3,
        "(app)": 4}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module a dotted name refers to: itself, or its longest known prefix (`pkg.mod.func` -> `pkg.mod`)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(mod: str, path: Path, known: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                pkg = pkg[:len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            # `from pkg import sub` imports the submodule when one exists
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for n in names:
            target = resolve(n, known) if n.startswith("ttscale") else None
            if target and target != mod:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports_of(m, p, known) for m, p in known.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One cycle (as a node list, first node repeated at the end) or None; iterative DFS with colours."""
    colour = {n: 0 for n in g}
    for start in sorted(g):
        if colour[start]:
            continue
        stack = [(start, iter(sorted(g[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(nxt, 2) == 1:
                return path[path.index(nxt):] + [nxt]
            elif colour.get(nxt) == 0:
                colour[nxt] = 1
                stack.append((nxt, iter(sorted(g[nxt]))))
                path.append(nxt)
    return None


# Top-level modules: the base every layer may use (config, errors) and the application that drives the stages
# (cli, `ttscale demo`, the Python API), which sits above every layer.
APP = {"ttscale.cli", "ttscale.__main__", "ttscale.demo_cmd", "ttscale.demo_queue", "ttscale.api"}


def subpackage(mod: str) -> str:
    parts = mod.split(".")
    if len(parts) > 2:
        return parts[1]
    return "(app)" if mod in APP else "(base)"


def package_graph(g: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for mod, targets in g.items():
        src = subpackage(mod)
        out.setdefault(src, set())
        for t in targets:
            dst = subpackage(t)
            out.setdefault(dst, set())
            if dst != src:
                out[src].add(dst)
    return out


def test_no_file_level_cycle():
    assert find_cycle(graph()) is None, f"import cycle: {' -> '.join(find_cycle(graph()))}"


def test_no_subpackage_cycle():
    cyc = find_cycle(package_graph(graph()))
    assert cyc is None, f"subpackage import cycle: {' -> '.join(cyc)}"


def test_layers_point_one_way():
    bad = []
    for mod, targets in graph().items():
        src = subpackage(mod)
        for t in targets:
            dst = subpackage(t)
            if src in RANK and dst in RANK and src != dst and RANK[dst] >= RANK[src]:
                bad.append(f"{mod} -> {t}")
    assert not bad, "imports that point up or across the layers:\n" + "\n".join(sorted(bad))


def test_the_checker_sees_a_lazy_cycle(tmp_path):
    """The detector itself: a cycle closed only by an import inside a function is found."""
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(g) == ["a", "b", "c", "a"]
    src = "def f():\n    from ttscale.search.types import Candidate\n"
    p = tmp_path / "x.py"
    p.write_text(src)
    assert imports_of("ttscale.data.x", p, modules()) == {"ttscale.search.types"}
