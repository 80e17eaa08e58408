"""api/ is a component: it imports streams/ (and itself) only, never another component or
application (tests/test_layout.py keeps the rest of the tree; the README's layout table,
which that test reads, is the lead's to extend with api/)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OTHERS = ("collectors", "normalizer", "sinks", "orderbook", "executor", "ops", "replay", "tests")


def test_api_imports_only_streams() -> None:
    bad = []
    files = sorted((ROOT / "api").rglob("*.py"))
    assert len(files) >= 5
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            bad += [f"{f.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                    if n.split(".")[0] in OTHERS]  # fmt: skip
    assert not bad, bad
