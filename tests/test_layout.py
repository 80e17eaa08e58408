"""The tree keeps the design: who may import whom, no import circles, and the README's
"where things are" table names only paths that exist.

Read from the source with ``ast`` (nothing is imported), so a violation is reported as the
file and the import line, and a test cannot pass because a module failed to load.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = ("collectors", "normalizer", "sinks", "orderbook", "executor", "api")
APPLICATIONS = ("ops", "replay")
PACKAGES = ("streams", *COMPONENTS, *APPLICATIONS)


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            rel = f.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = f
    return out


MODULES = _modules()


def _imports(mod: str, path: Path, *, top_level_only: bool = False) -> list[tuple[str, int]]:
    """Project modules that ``mod`` imports, with the line; relative imports resolved.
    ``top_level_only``: imports at module level only (those inside functions are
    deliberate late bindings and make no circle)."""
    tree = ast.parse(path.read_text(), str(path))
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    nodes = _module_level(tree) if top_level_only else list(ast.walk(tree))
    found: list[tuple[str, int]] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            found.append((base, node.lineno))
            # `from streams import subjects` imports the module streams.subjects
            found += [(f"{base}.{a.name}", node.lineno) for a in node.names]
    return [(m, line) for m, line in found if m in MODULES]


def _module_level(tree: ast.Module) -> list[ast.AST]:
    """Statements run at import time: the module body, into ``if``/``try`` blocks (so
    ``if TYPE_CHECKING:`` imports count, as they do for a reader) but not into functions."""
    out: list[ast.AST] = []
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        out.append(node)
        todo += [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)]
    return out


def _top(mod: str) -> str:
    return mod.split(".")[0]


def test_the_tree_has_the_packages_it_is_checked_for() -> None:
    # guards the tests below against passing on an empty or renamed tree
    tops = {_top(m) for m in MODULES}
    assert tops == set(PACKAGES), tops
    assert len(MODULES) > 100


def test_streams_imports_no_component_and_no_application() -> None:
    bad = [
        f"{MODULES[m].relative_to(ROOT)}:{line} imports {dep}"
        for m in MODULES
        if _top(m) == "streams"
        for dep, line in _imports(m, MODULES[m])
        if _top(dep) != "streams"
    ]
    assert not bad, "streams/ is the shared contract only:\n" + "\n".join(bad)


def test_no_worker_imports_replay_or_ops() -> None:
    """Replay and ops stand on the components, never under them. The backtest runner is
    a replay client (it drives strategies on the replay clock), not a worker."""
    bad = [
        f"{MODULES[m].relative_to(ROOT)}:{line} imports {dep}"
        for m in MODULES
        if _top(m) in COMPONENTS and not m.startswith("executor.backtest")
        for dep, line in _imports(m, MODULES[m])
        if _top(dep) in APPLICATIONS
    ]
    assert not bad, "\n".join(bad)


def test_components_do_not_import_each_other() -> None:
    """Components meet on subjects; the backtest runner may use the executor's paper
    venue and the normalizer's registry only through its own package."""
    bad = [
        f"{MODULES[m].relative_to(ROOT)}:{line} imports {dep}"
        for m in MODULES
        if _top(m) in COMPONENTS
        for dep, line in _imports(m, MODULES[m])
        if _top(dep) in COMPONENTS and _top(dep) != _top(m)
    ]
    assert not bad, "\n".join(bad)


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for m, path in MODULES.items():
        graph[m] = {
            dep
            for dep, _ in _imports(m, path, top_level_only=True)
            # a package's __init__ handing on its own modules is not a circle
            if dep != m and not (path.name == "__init__.py" and dep.startswith(m + "."))
        }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle() -> None:
    assert _cycles() == []


def _readme_paths() -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index("| where | what |")
    table = text[start : text.index("\n\n", start)]
    paths = []
    for row in table.splitlines()[2:]:
        cell = row.split("|")[1]
        paths += re.findall(r"`([^`]+)`", cell)
    return paths


def test_readme_layout_table_names_only_existing_paths() -> None:
    paths = _readme_paths()
    assert len(paths) >= 10, paths
    missing = []
    for p in paths:
        # `collectors/<venue>.py` stands for every venue's file: at least one must match
        pattern = re.sub(r"<[^>]+>", "*", p)
        if not list(ROOT.glob(pattern.rstrip("/"))):
            missing.append(p)
    assert not missing, f"README lists paths that are gone: {missing}"


@pytest.mark.parametrize("pkg", PACKAGES)
def test_every_package_is_listed_in_the_readme(pkg: str) -> None:
    assert any(p.split("/")[0] == pkg for p in _readme_paths()), pkg
