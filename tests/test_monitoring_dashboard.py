"""The market-regime dashboard (manifests/monitoring/dashboards/market-regime.json) is a Grafana
dashboard with a row per regime of the example graph's Switch (each with the members' task metric
on that regime's days), and every query is PromQL that promtool accepts over series and labels
Sluice's local graph router exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.gates.graph_traffic import step_metric_names
from controller.gates.metrics_profile import KNATIVE_OTEL
from controller.local.graph_metrics import GraphStepMetrics, StepCall
from controller.local.graph_outcomes import GraphOutcomes
from controller.local.revision_metrics import RevisionMetrics
from controller.outcome_scores import OutcomeAnswer

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "manifests/monitoring/dashboards/market-regime.json"
GRAPH = ROOT / "models/market_regime/overlay/inference-graph.yaml"
#: What Grafana's variables stand for when promtool parses a query.
SAMPLES = {"namespace": "models-local", "graph": "market-regime", "__rate_interval": "1m"}
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def switch_steps() -> list[dict[str, Any]]:
    graph = yaml.safe_load(GRAPH.read_text(encoding="utf-8"))
    (node,) = [n for n in graph["spec"]["nodes"].values() if n["routerType"] == "Switch"]
    steps: list[dict[str, Any]] = node["steps"]
    return steps


def rows(dashboard: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each row's title and the panels under it (the rows are expanded: panels follow them)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    current: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            assert not panel["collapsed"]
            assert panel["panels"] == []
            current = grouped.setdefault(panel["title"], [])
        else:
            current.append(panel)
    return grouped


def expressions(panels: list[dict[str, Any]]) -> list[str]:
    return [t["expr"] for p in panels if p["type"] != "row" for t in p["targets"]]


def substituted(expression: str) -> str:
    return re.sub(r"\$(\w+)", lambda m: SAMPLES[m[1]], expression)


class _OneAnswer:
    """A prediction log with one answer of the calm specialist, right about ``up``."""

    def outcome_answers(self, *args: object, **kwargs: object) -> list[OutcomeAnswer]:
        output = '{"predictions":[{"p_up":0.7}]}'
        return [OutcomeAnswer("market-regime-calm", "r-00001", output, "up", 1.0, "calm")]


def exported() -> dict[str, set[str]]:
    """The series (by name) and their labels that the graph router exports under knative-otel:
    its step series, its outcome series and its own revision series (configuration = the
    graph)."""
    steps = GraphStepMetrics("models-local", "market-regime", KNATIVE_OTEL)
    steps.observe(StepCall("by-regime", "calm", "market-regime-calm", "", "r-00001", 200), 3.0)
    own = RevisionMetrics("models-local", "market-regime", KNATIVE_OTEL)
    own.observe("market-regime-00001", 200, 9.0)
    outcomes = GraphOutcomes("models-local", "market-regime", _OneAnswer(), KNATIVE_OTEL)
    outcomes.set_graph(["market-regime-calm"], "regime")
    outcomes.refresh()
    series: dict[str, set[str]] = {}
    for family in (*steps.collect(), *own.collect(), *outcomes.collect()):
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def test_dashboard_is_grafana_json_with_its_variables(dashboard: dict[str, Any]) -> None:
    """Valid JSON with the fields Grafana needs: a uid, a schema version, a Prometheus
    datasource variable every panel uses, and a graph variable set to market-regime."""
    assert dashboard["uid"]
    assert dashboard["title"]
    assert dashboard["schemaVersion"] >= 36
    assert "knative-otel" in dashboard["description"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["graph"]["current"]["value"] == "market-regime"
    assert not variables["graph"]["multi"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        box = panel["gridPos"]
        assert box["x"] >= 0
        assert box["x"] + box["w"] <= 24
        assert box["h"] > 0
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}"
    # Every $variable a query reads is a dashboard variable or Grafana's own.
    used = {v for e in expressions(dashboard["panels"]) for v in re.findall(r"\$(\w+)", e)}
    assert used <= set(variables) | {"__rate_interval"}
    assert used <= set(SAMPLES)


def test_a_row_per_regime_of_the_switch(
    dashboard: dict[str, Any], switch_steps: list[dict[str, Any]]
) -> None:
    """One row per step of the example graph's Switch, titled with its regime and step, whose
    panels (rate, errors, latency, share) all select that step's calls, and whose task metric
    reads the members' answers about ``up`` on the days whose late regime was the row's; the
    totals show the classifier's share right on ``regime``."""
    grouped = rows(dashboard)
    assert len(grouped) == len(switch_steps) + 1  # the graph's totals on top
    top_title = next(iter(grouped))
    assert top_title.startswith("Graph")
    for step in switch_steps:
        (regime,) = re.findall(r'regime=="(\w+)"', step["condition"])
        panels = grouped[f"Regime {regime}: step {step['name']}"]
        assert [p["title"] for p in panels] == [
            "Requests per member revision", "Error ratio", "Latency",
            "Share of the graph's traffic", "Task metric (share right) per member revision",
        ]  # fmt: skip
        *calls, task = panels
        for expression in expressions([task]):
            assert "sluice_graph_outcome_answers{" in expression
            assert f'outcome="up", segment="{regime}"' in expression
            assert 'result="right"' in expression
        if "serviceName" in step:
            matcher = f'node_name="by-regime", step_name="{step["name"]}"'
        else:  # a node's step: the calls of that node's own steps
            matcher = f'node_name="{step["nodeName"]}"'
        for expression in expressions(calls):
            assert matcher in expression, expression
    (share,) = [p for p in grouped[top_title] if p["title"] == "Traffic share per regime"]
    assert len(share["targets"]) == len(switch_steps)
    (classifier,) = [p for p in grouped[top_title] if p["title"].startswith("Classifier share")]
    (expression,) = expressions([classifier])
    assert 'outcome="regime", result="right"' in expression


def test_every_query_passes_promtool_over_exported_series(
    dashboard: dict[str, Any], tmp_path: Path
) -> None:
    """With sample values for the variables, every panel query and every variable's selector is
    a recording rule `promtool check rules` accepts, reading only series and labels exported."""
    names = step_metric_names(KNATIVE_OTEL)
    series = exported()
    assert {f"{names.requests}", f"{names.latency}_bucket"} <= set(series)
    queries = [substituted(e) for e in expressions(dashboard["panels"])]
    selectors = [
        substituted(v["query"]["query"].removeprefix("label_values(").rpartition(", ")[0])
        for v in dashboard["templating"]["list"]
        if v["type"] == "query"
    ]
    for query in queries + selectors:
        used = _SELECTOR.findall(query)
        assert used, query
        for name, matchers in used:
            assert name in series, name
            assert set(_MATCHER_LABEL.findall(matchers)) <= series[name], query
        for grouping in _GROUPING.findall(query):
            labels = {label.strip() for label in grouping.split(",")}
            assert labels <= set.union(*series.values()), query
    assert any(names.latency in q for q in queries)
    assert any("sluice_graph_outcome_answers" in q for q in queries)
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found on PATH (make setup installs it)", pytrace=False)
    checked = queries + selectors
    rules = [{"record": f"dashboard:query{i}", "expr": q} for i, q in enumerate(checked)]
    (tmp_path / "dashboard.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8"
    )
    result = subprocess.run(
        [promtool, "check", "rules", "dashboard.yaml"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def test_the_platform_kustomization_does_not_ship_it() -> None:
    """The dashboard reads series only the local target's graph router exports (KServe's router
    has none), so the cluster's monitoring kustomization leaves it out; kustomize reads only
    the files it names."""
    kustomization = (ROOT / "manifests/monitoring/kustomization.yaml").read_text(encoding="utf-8")
    assert DASHBOARD.name not in kustomization
