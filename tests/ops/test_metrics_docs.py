"""docs/metrics.md and the code name exactly the same metrics."""

from __future__ import annotations

import re

from tests.workers import ROOT

COMPONENTS = ("collectors", "normalizer", "orderbook", "sinks", "streams", "executor")


def code_metrics() -> set[str]:
    """Every metric name the components define."""
    code: set[str] = set()
    for comp in COMPONENTS:
        for f in (ROOT / comp).rglob("*.py"):
            # Counter("name", ...) and executor.metrics.per_account(Counter, "name", ...)
            code |= set(
                re.findall(r'(?:Counter|Gauge|Histogram)[(,]\s*"(jetmarket_\w+)"', f.read_text())
            )
    return code


def test_documented_metrics_exist_and_every_metric_is_documented() -> None:
    code = code_metrics()
    docs = set(
        re.findall(r"^\| `(jetmarket_\w+)`", (ROOT / "docs" / "metrics.md").read_text(), re.M)
    )
    assert code, "no metrics found in the code"
    assert docs == code, {"undocumented": code - docs, "not in code": docs - code}
