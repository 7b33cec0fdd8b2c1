"""The chart's Grafana dashboard and alert rules use only metrics the operator exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from bgjobs_operator import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "bgjobs" / "files" / "dashboards" / "bgjobs.json"
RULES = ROOT / "charts" / "bgjobs" / "templates" / "prometheusrule.yaml"
METRIC = re.compile(r"\bbgjobs_[a-z_]+")
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def exported() -> set[str]:
    """Every series name the operator's registry serves (histograms with their series),
    the scrape-time collectors included."""
    registry = CollectorRegistry()
    registry.register(metrics.JobsCollector(lambda: [{"spec": {}, "status": {}}]))
    job = ((("ns", "q"), True),)
    queue = [{"metadata": {"namespace": "ns", "name": "q"}, "spec": {}}]
    registry.register(metrics.QueuesCollector(lambda: job, lambda: queue))
    names = set(re.findall(r"^(bgjobs_[a-z_]+)", generate_latest(registry).decode(), re.M))
    for family in metrics.REGISTRY.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + s for s in HISTOGRAM_SERIES)
    return names


def test_the_dashboard_uses_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used, "the dashboard queries bgjobs metrics"
    assert used <= exported(), used - exported()
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("phase", "duration", "retries", "dead letters", "queues"):
        assert topic in titles


def test_the_alert_rules_use_only_exported_metrics() -> None:
    used = set(METRIC.findall(RULES.read_text()))
    assert used <= exported(), used - exported()
