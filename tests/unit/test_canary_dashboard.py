"""The Grafana dashboard (canary/dashboard.json): provisioning JSON with a fixed uid and no import inputs,
and every query names only metrics that the system exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import canary.metrics  # noqa: F401  (registers the metrics below)
import decoy.archiver  # noqa: F401
import models.metrics  # noqa: F401
import rendezvous.metrics  # noqa: F401
import scorestream.metrics  # noqa: F401

DASHBOARD = Path(__file__).resolve().parents[2] / "canary" / "dashboard.json"
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
            "gauge": ("",), "summary": ("_count", "_sum", "_created")}


def exported() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        names |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
    return names


def queries(node) -> list[str]:
    if isinstance(node, dict):
        return ([node["expr"]] if isinstance(node.get("expr"), str) else []) + [q for v in node.values()
                                                                              for q in queries(v)]
    if isinstance(node, list):
        return [q for v in node for q in queries(v)]
    return []


def metric_names(expr: str) -> set[str]:
    """Identifiers in a PromQL expression that are metric names: not in {label matchers}, not functions,
    not label lists of by/ignoring, not $variables."""
    bare = re.sub(r"\{[^}]*\}", "", expr)                                # label matchers
    bare = re.sub(r"\b(by|without|ignoring|on|group_left|group_right)\s*\([^)]*\)", "", bare)
    bare = re.sub(r"\[[^\]]*\]", "", bare)                               # ranges
    return {m.group(1) for m in re.finditer(r"(?<![\w$])([a-zA-Z_:][\w:]*)\b(?!\s*\()", bare)} - {
        "by", "without", "ignoring", "on", "group_left", "group_right", "and", "or", "unless", "bool"}


def test_dashboard_is_provisioning_json_with_a_fixed_uid():
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "scorestream-canary"
    assert "__inputs" not in doc and "__requires" not in doc
    assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"])


def test_every_query_names_a_metric_the_system_exports():
    known = exported()
    exprs = queries(json.loads(DASHBOARD.read_text()))
    assert len(exprs) >= 10
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= known, f"{expr!r} names {sorted(names - known)}, not exported by the system"


def test_the_metric_name_reader_is_not_fooled():
    assert metric_names('sum by (model) (rate(a_total{rule!~"x|y"}[5m])) / ignoring(model) group_left b') == {
        "a_total", "b"}
    assert metric_names("histogram_quantile(0.5, sum by (le) (rate(h_bucket[$__rate_interval])))") == {"h_bucket"}
