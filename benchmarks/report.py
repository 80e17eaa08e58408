"""Sections of BENCHMARKS.md: one heading-prose-table shape for every benchmark's rows."""

from __future__ import annotations


def table(title: str, prose: str, columns: str, align: str) -> list[str]:
    """A report section: heading, prose, then a table's header row and its alignment row
    (``align``: one letter per column, l = text, r = figure)."""
    rule = "|".join("---:" if a == "r" else "---" for a in align)
    return ["", f"## {title}", "", *prose.splitlines(), "", columns, f"|{rule}|"]
