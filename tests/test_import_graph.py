"""The import graph of mst/, jobs/ and analysis/, read from the source (AST, nothing imported): no cycles, and
the layering of docs/ARCHITECTURE.md (mst/ knows no Slurm, YAML or pandas; analysis/ never loads torch).

Every import statement counts, also one inside a function: an import moved into a function still ties the two
modules together, so hiding it there does not break a cycle. `from pkg import name` is an edge to the
submodule `pkg.name` when there is one, else to `pkg` itself (its __init__).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mst", "jobs", "analysis")

def module_files(packages=PACKAGES) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py under the packages (a package is its __init__.py)."""
    found = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_names(module: str, path: Path, known: set[str]) -> set[str]:
    """The absolute names `module` imports anywhere in its file (modules of `known` where they are one)."""
    names = set()
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: `from . import x` in a.b.c is a.b; each extra dot goes one level up
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                names.add(sub if sub in known else base)
    return names


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (itself left out)."""
    files = module_files()
    known = set(files)
    return {m: {n for n in imported_names(m, p, known) if n in known and n != m} for m, p in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def test_the_cycle_finder_finds_a_cycle_and_ignores_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_relative_imports_resolve_to_the_submodule_or_the_package(tmp_path):
    source = tmp_path / "stage.py"
    source.write_text("from . import knn\nfrom .. import atomic\nfrom ..run.folder import claim\n"
                      "def late():\n    from .baselines import x\n")
    known = {"mst.eval.knn", "mst.atomic", "mst.run.folder", "mst.eval.baselines"}
    assert imported_names("mst.eval.stage", source, known) == known


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in found)


def third_party(package: str) -> dict[str, set[str]]:
    """module of `package` -> every name it imports (external and project)."""
    files = module_files((package,))
    known = set(module_files())
    return {m: imported_names(m, p, known) for m, p in files.items()}


@pytest.mark.parametrize(("package", "banned"), [
    ("mst", ("yaml", "submitit", "pandas", "jobs", "analysis")),
    ("analysis", ("torch", "mst.models", "mst.train")),
])
def test_layering(package, banned):
    offending = sorted(f"{module} imports {name}" for module, names in third_party(package).items()
                       for name in names for ban in banned if name == ban or name.startswith(ban + "."))
    assert not offending, "; ".join(offending)
