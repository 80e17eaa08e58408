"""The Grafana dashboard and the Prometheus alert rules use only metrics the code defines,
and the alerts the operators rely on are all there."""

from __future__ import annotations

import json
import re

import yaml

from tests.ops.test_metrics_docs import code_metrics
from tests.workers import ROOT

# prometheus-client exposes a histogram as <name>_bucket/_sum/_count
_SUFFIX = re.compile(r"_(bucket|sum|count)$")
_NAME = re.compile(r"\bjetmarket_\w+")


def _used(exprs: list[str]) -> set[str]:
    out: set[str] = set()
    for e in exprs:
        out |= {_SUFFIX.sub("", n) for n in _NAME.findall(e)}
    return out


def _rules() -> list[dict]:
    doc = yaml.safe_load((ROOT / "infra" / "prometheus" / "alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def _dashboard_exprs() -> list[str]:
    dash = json.loads((ROOT / "infra" / "grafana" / "jetmarket.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_alert_rules_use_only_metrics_in_the_code() -> None:
    rules = _rules()
    assert all({"alert", "expr"} <= r.keys() for r in rules)
    used = _used([r["expr"] for r in rules])
    missing = used - code_metrics()
    assert used and not missing, f"alert rules use metrics the code lacks: {sorted(missing)}"


def test_dashboard_uses_only_metrics_in_the_code() -> None:
    exprs = _dashboard_exprs()
    used = _used(exprs)
    missing = used - code_metrics()
    assert used and not missing, f"dashboard uses metrics the code lacks: {sorted(missing)}"


def test_the_alerts_operators_need_exist() -> None:
    names = {r["alert"] for r in _rules()}
    need = {
        "JetmarketFeedStale",
        "JetmarketNormalizerLagGrowing",
        "JetmarketSinkLagGrowing",
        "JetmarketDlqGrowing",
        "JetmarketBookGaps",
        "JetmarketSinkFailing",
        "JetmarketWorkerDown",
        "JetmarketExecutorRejects",
    }
    assert need <= names, need - names


def test_a_misspelt_metric_would_be_caught() -> None:
    assert _used(["rate(jetmarket_sink_rowz_total[1m])"]) - code_metrics() == {
        "jetmarket_sink_rowz_total"
    }
