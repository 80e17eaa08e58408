"""Sections of BENCHMARKS.md: one heading-prose-table shape for every benchmark's rows."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass


def table(title: str, prose: str, columns: str, align: str) -> list[str]:
    """A report section: heading, prose, then a table's header row and its alignment row
    (``align``: one letter per column, l = text, r = figure)."""
    rule = "|".join("---:" if a == "r" else "---" for a in align)
    return ["", f"## {title}", "", *prose.splitlines(), "", columns, f"|{rule}|"]


@dataclass(frozen=True)
class Results:
    """The section of a benchmark that reports named results: ``columns`` is the header
    row, ``row`` the format of one result's row (``{name}`` its name, the other fields its
    figures: ``{p99:.2f}``); the name column is text, the others figures."""

    title: str
    prose: str
    columns: str
    row: str

    def lines(self, res: dict[str, dict[str, float]]) -> list[str]:
        align = "l" + "r" * (self.columns.count("|") - 2)
        rows = [self.row.format(name=name, **r) for name, r in res.items()]
        return [*table(self.title, self.prose, self.columns, align), *rows, ""]

    def main(self, measure: Callable[[int], dict[str, dict[str, float]]], size: int) -> None:
        """The benchmark from the command line: sized by its first argument (else
        ``size``), its section printed."""
        n = int(sys.argv[1]) if len(sys.argv) > 1 else size
        print("\n".join(self.lines(measure(n))))
