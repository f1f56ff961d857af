"""`sluice status`'s graph section, from plain values: the example market-regime graph walked
into its members, the step calls Prometheus would count turned into shares per regime, the
members joined with their releases' rows, and the section a user reads (table, notes, JSON).
The target, the GitOps repository and Prometheus are in-memory stand-ins; the command against
a real local runtime is tests/test_status_graphs_local.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from ruamel.yaml import YAML

from controller.analysis_types import MetricSample
from controller.commands.status_graphs import graph_sections
from controller.errors import MetricsUnavailable, RemoteUnavailable
from controller.gates.metrics_profile import KNATIVE_OPENCENSUS, KNATIVE_OTEL
from controller.status.graph_page import graph_sections_html
from controller.status.graph_view import (
    MemberPlace,
    graph_members,
    graph_notes,
    graph_section,
    graph_table,
    router_state,
    share_text,
    step_calls,
    step_calls_query,
    traffic_shares,
)
from controller.target_types import TargetObservation
from controller.testing.release_repository import MemoryReleaseRepository

EXAMPLE = Path(__file__).resolve().parents[1] / "models/market_regime/overlay/inference-graph.yaml"
CLASSIFIER, CALM, VOLATILE, BLEND = (
    f"market-regime-{m}" for m in ("classifier", "calm", "volatile", "blend")
)


def example() -> dict[str, Any]:
    """The committed example graph, in the namespace the local overlay puts it."""
    document: dict[str, Any] = YAML(typ="safe").load(EXAMPLE.read_text())
    document["metadata"]["namespace"] = "models-local"
    return document


def samples(calls: dict[tuple[str, str, str], float]) -> list[MetricSample]:
    """What ``sum by (node_name, step_name, service_name)`` answers."""
    return [
        MetricSample({"node_name": n, "step_name": s, "service_name": svc}, value)
        for (n, s, svc), value in calls.items()
    ]


#: 200 requests in the window: 120 calm, 60 volatile, 20 black swans (the Ensemble of the
#: classifier and both specialists, then the blend).
CALLS = {
    ("root", "classify", CLASSIFIER): 200.0,
    ("by-regime", "calm", CALM): 120.0,
    ("by-regime", "volatile", VOLATILE): 60.0,
    ("blend-inputs", "classifier", CLASSIFIER): 20.0,
    ("blend-inputs", "calm", CALM): 20.0,
    ("blend-inputs", "volatile", VOLATILE): 20.0,
    ("blend", "blend", BLEND): 20.0,
}


def row(model: str, **fields: Any) -> dict[str, Any]:
    """A release's status row, as ``sluice status --json`` prints it."""
    return {"environment": "local", "model": model, "version": 1, "serving": "v1"} | fields


ROWS = {
    CALM: row(CALM, version=3, serving="v2", canaryPercent=10, phase="analysing"),
    VOLATILE: row(VOLATILE, version=4, serving="v4", phase="promoted"),
}


def test_the_walk_lists_each_member_where_it_sits_and_under_which_regime() -> None:
    """Recursively through nodeName steps, in step order; a member of two places is listed
    at each; the Ensemble's members and the blend after it serve the black-swan regime."""
    black_swan = ("by-regime", "black-swan")
    assert graph_members(example()) == [
        MemberPlace(CLASSIFIER, "root", "classify", None),
        MemberPlace(CALM, "by-regime", "calm", ("by-regime", "calm")),
        MemberPlace(VOLATILE, "by-regime", "volatile", ("by-regime", "volatile")),
        MemberPlace(CLASSIFIER, "blend-inputs", "classifier", black_swan),
        MemberPlace(CALM, "blend-inputs", "calm", black_swan),
        MemberPlace(VOLATILE, "blend-inputs", "volatile", black_swan),
        MemberPlace(BLEND, "blend", "blend", black_swan),
    ]
    assert [m.at for m in graph_members(example())][-1] == "blend/blend"


def test_an_unnamed_step_is_its_index_and_a_cycle_or_missing_node_ends_the_walk() -> None:
    graph = {
        "spec": {
            "nodes": {
                "root": {
                    "routerType": "Splitter",
                    "steps": [
                        {"serviceName": "a", "weight": 50},
                        {"nodeName": "loop", "weight": 30},
                        {"nodeName": "absent", "weight": 20},
                    ],
                },
                "loop": {"routerType": "Sequence", "steps": [{"nodeName": "root"}]},
            }
        }
    }
    assert graph_members(graph) == [MemberPlace("a", "root", "0")]


def test_the_query_counts_the_graphs_step_calls_under_the_environments_profile() -> None:
    assert step_calls_query("market-regime", "models-local", KNATIVE_OTEL) == (
        "sum by (node_name, step_name, service_name) (increase("
        'sluice_graph_step_duration_seconds_count{k8s_namespace_name="models-local", '
        'graph_name="market-regime"}[5m]))'
    )
    opencensus = step_calls_query("g", "ns", KNATIVE_OPENCENSUS)
    assert "increase(sluice_graph_step_request_count{" in opencensus
    assert f'{KNATIVE_OPENCENSUS.namespace_label}="ns"' in opencensus


def test_shares_per_member_and_per_regime_are_of_the_requests_that_entered_the_root() -> None:
    """The Sequence's requests are its first step's calls; the Switch's black-swan branch
    counts the blend Sequence's, whose first step is the Ensemble (each of its members is
    called once per request)."""
    shares = traffic_shares(example(), step_calls(samples(CALLS)))
    assert shares.requests == 200
    assert shares.share("by-regime", "calm") == pytest.approx(0.6)
    assert shares.share("by-regime", "volatile") == pytest.approx(0.3)
    assert shares.share("by-regime", "black-swan") == pytest.approx(0.1)
    assert shares.share("blend-inputs", "volatile") == pytest.approx(0.1)
    assert shares.share("blend", "blend") == pytest.approx(0.1)
    assert shares.share("root", "classify") == 1.0


def test_no_requests_and_nan_samples_leave_every_share_unknown() -> None:
    nan = samples({("root", "classify", CLASSIFIER): float("nan")})
    shares = traffic_shares(example(), step_calls(nan))
    assert shares.requests == 0
    assert shares.share("by-regime", "calm") is None
    assert [share_text(s) for s in (None, 0.0, 0.045, 0.61, 1.0)] == [
        "-",
        "0%",
        "4.5%",
        "61%",
        "100%",
    ]


def test_a_measured_share_a_hair_under_ten_percent_reads_as_ten() -> None:
    """A 4-worker suite saw the status table print "10.0%" for a branch sent exactly a tenth
    of the calls: Prometheus's ratio came back as 0.0999..., formatted with the decimal kept
    for shares under 10 %. The rounded value decides now, so 9.99 % and 10.01 % read alike."""
    assert [share_text(s) for s in (0.09999999, 0.1, 0.10001, 0.0994, 0.0996)] == [
        "10%",
        "10%",
        "10%",
        "9.9%",
        "10%",
    ]


def test_a_node_two_steps_name_has_no_share_for_either() -> None:
    """Its calls cannot say which step sent them."""
    graph = {
        "spec": {
            "nodes": {
                "root": {
                    "routerType": "Switch",
                    "steps": [
                        {"name": "a", "nodeName": "shared", "condition": "x"},
                        {"name": "b", "nodeName": "shared", "condition": "y"},
                    ],
                },
                "shared": {"routerType": "Sequence", "steps": [{"serviceName": "m"}]},
            }
        }
    }
    shares = traffic_shares(graph, {("shared", "0", "m"): 10.0})
    assert shares.calls["root", "a"] is None
    assert shares.requests is None
    assert shares.share("shared", "0") is None


def render(section: dict[str, Any]) -> tuple[dict[str, list[str]], list[str], str]:
    """The table's rows by ``at`` (cells in column order), the notes and the whole text."""
    console = Console(record=True, width=160)
    console.print(graph_table(section))
    text = console.export_text()
    cells = {}
    for line in text.splitlines():
        parts = [c.strip() for c in line.strip("│┃").split("│")]
        if len(parts) == 7:
            cells[parts[1]] = parts
    return cells, graph_notes(section), text


def test_the_section_joins_members_with_their_releases_and_shows_shares_per_regime() -> None:
    section = graph_section(
        example(), environment="local", releases=ROWS, calls=step_calls(samples(CALLS))
    )
    cells, notes, text = render(section)
    assert "InferenceGraph market-regime in local: 200 requests routed in the last 5m" in text
    assert cells["by-regime/calm"] == [
        CALM, "by-regime/calm", "calm", "v2", "v3 10%", "analysing", "60%"
    ]  # fmt: skip
    assert cells["blend-inputs/volatile"] == [
        VOLATILE, "blend-inputs/volatile", "black-swan", "v4", "-", "promoted", "10%"
    ]  # fmt: skip
    assert cells["root/classify"] == [CLASSIFIER, "root/classify", "-", "-", "-", "-", "100%"]
    assert notes == [
        "regimes: by-regime/calm 60%, by-regime/volatile 30%, by-regime/black-swan 10%",
        f"{BLEND}, {CLASSIFIER}: no release of local serves them (its sluice.yaml): no version "
        "or phase",
    ]
    member = section["members"][4]
    assert member["regime"] == {"node": "by-regime", "step": "black-swan"}
    assert (member["model"], member["version"], member["phase"]) == (CALM, 3, "analysing")
    assert (member["calls"], member["share"]) == (20.0, pytest.approx(0.1))
    assert [r["step"] for r in section["regimes"]] == ["calm", "volatile", "black-swan"]


def test_without_traffic_every_share_is_a_dash_and_a_note_says_why() -> None:
    unknown = graph_section(
        example(), environment="local", releases=ROWS, calls=None, traffic_note="no Prometheus"
    )
    cells, notes, text = render(unknown)
    assert "- requests routed" in text
    assert {c[-1] for c in cells.values()} == {"-"}
    assert notes[0] == "no Prometheus"
    quiet = graph_section(example(), environment="local", releases=ROWS, calls={})
    cells, notes, _ = render(quiet)
    assert {c[-1] for c in cells.values()} == {"-"}
    assert notes[0].startswith("no step calls counted in the last 5m (only the local target's")


SLUICE_YAML = f"""apiVersion: sluice.dev/v1alpha1
kind: Environment
name: local
storage: {{allowedSchemes: [file]}}
releases:
  - {{model: {CALM}, inferenceService: {CALM}, pin: calm.yaml}}
  - {{model: volatile-v, inferenceService: {VOLATILE}, pin: volatile.yaml}}
"""


class Runtime:
    """A target that runs the example graph in ``local``."""

    def __init__(self, failure: str = "") -> None:
        self.failure = failure

    def observe(self, environment: str, inference_service: str) -> TargetObservation:
        return TargetObservation(exists=False)

    def inference_graphs(self, environment: str) -> list[dict[str, Any]]:
        if self.failure:
            raise RemoteUnavailable(self.failure)
        return [example()] if environment == "local" else []


class Cluster:
    """A target that cannot list graphs."""

    def observe(self, environment: str, inference_service: str) -> TargetObservation:
        return TargetObservation(exists=False)


class Prometheus:
    """Answers the step query with :data:`CALLS`, or fails as an unreachable one does."""

    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.queries: list[str] = []

    def query(self, promql: str) -> list[MetricSample]:
        self.queries.append(promql)
        if self.down:
            raise MetricsUnavailable("Prometheus at http://prometheus.test is unreachable")
        return samples(CALLS)


@pytest.fixture
def workspace() -> MemoryReleaseRepository:
    repo = MemoryReleaseRepository({"manifests/overlays/local/sluice.yaml": SLUICE_YAML})
    repo.sync()
    return repo


def test_sections_join_members_by_inference_service_through_the_environment(
    workspace: MemoryReleaseRepository,
) -> None:
    """A member is the release whose inferenceService it names (its model may be named
    otherwise); the query names the graph, its namespace and the profile's series."""
    rows = [ROWS[CALM], row("volatile-v", serving="v7", phase="promoted")]
    prometheus = Prometheus()
    sections, notes = graph_sections(Runtime(), prometheus, workspace, rows, None)
    assert notes == []
    (section,) = sections
    by_place = {m["at"]: m for m in section["members"]}
    assert by_place["by-regime/volatile"]["serving"] == "v7"
    assert by_place["by-regime/volatile"]["model"] == "volatile-v"
    assert by_place["by-regime/calm"]["share"] == pytest.approx(0.6)
    assert prometheus.queries == [step_calls_query("market-regime", "models-local", KNATIVE_OTEL)]


def test_a_missing_or_failing_prometheus_leaves_dashes_and_says_why(
    workspace: MemoryReleaseRepository,
) -> None:
    rows = list(ROWS.values())
    (section,), _ = graph_sections(Runtime(), None, workspace, rows, "local")
    assert section["requests"] is None
    assert section["notes"][0] == "no Prometheus configured (SLUICE_PROMETHEUS_URL): shares are -"
    (section,), _ = graph_sections(Runtime(), Prometheus(down=True), workspace, rows, "local")
    assert {m["share"] for m in section["members"]} == {None}
    assert section["notes"][0] == (
        "shares are -: Prometheus at http://prometheus.test is unreachable"
    )


def test_a_target_that_cannot_list_graphs_or_answer_is_a_note_not_a_failure(
    workspace: MemoryReleaseRepository,
) -> None:
    rows = list(ROWS.values())
    assert graph_sections(Cluster(), None, workspace, rows, None, kind="kubernetes") == (
        [],
        ["graphs: not shown: the kubernetes target does not list InferenceGraphs"],
    )
    down = Runtime("the local target is not running; start it with `sluice local up`")
    rows_elsewhere = [*rows, row("x", environment="staging")]
    assert graph_sections(down, None, workspace, rows_elsewhere, None) == (
        [],
        [
            "graphs of local, staging: the local target is not running; start it with "
            "`sluice local up`"
        ],
    )


def test_the_router_state_is_read_from_the_status_kserve_wrote() -> None:
    """No status yet (a member without an endpoint) is Pending; then the Ready condition says,
    but a stopped graph is Stopped whatever Ready says."""

    def state(status: dict[str, Any] | None) -> dict[str, Any]:
        return router_state(example() | ({"status": status} if status is not None else {}))

    assert state(None) == {
        "phase": "Pending", "ready": None, "reason": None, "message": None, "url": None
    }  # fmt: skip
    ready = {"conditions": [{"type": "Ready", "status": "True"}], "url": "http://g.example"}
    assert state(ready) == {
        "phase": "Ready", "ready": "True", "reason": None, "message": None,
        "url": "http://g.example",
    }  # fmt: skip
    failing = {"type": "Ready", "status": "False", "reason": "RevisionFailed", "message": "OOM"}
    assert state({"conditions": [failing]})["phase"] == "NotReady"
    assert state({"conditions": [failing]})["message"] == "OOM"
    stopped = [{"type": "Stopped", "status": "True"}, failing | {"reason": "Stopped"}]
    assert state({"conditions": stopped})["phase"] == "Stopped"
    assert graph_section(example(), environment="local", releases={}, calls=None)["router"] == (
        state(None)
    )


def test_the_page_lays_out_a_section_per_regime_and_escapes_what_git_names() -> None:
    """Rows per Switch step after the members no Switch chooses, the regime named once over its
    members; a name from Git cannot inject markup; a regime with no member is a row of -."""
    graph = example()
    graph["metadata"]["name"] = "<b>regime</b>"
    steps = graph["spec"]["nodes"]["by-regime"]["steps"]
    steps.append({"name": "<i>outage</i>", "serviceUrl": "http://x", "condition": "x"})
    section = graph_section(
        graph, environment="local", releases=ROWS, calls=step_calls(samples(CALLS))
    )
    page = graph_sections_html([section], ["graphs of staging: <unreachable>"])
    for markup in ("<b>", "<i>", "<unreachable>"):
        assert markup not in page
    assert "InferenceGraph &lt;b&gt;regime&lt;/b&gt; in local" in page
    assert 'data-router="Pending"' in page
    assert "200 requests routed in the last 5m" in page
    order = [page.index(f'data-at="{at}"') for at in ("root/classify", "by-regime/calm")]
    assert order == sorted(order)
    assert page.count('<td class="regime" rowspan="4"') == 1  # black-swan over its 4 members
    assert f'<a href="#local-{CALM}" title="release {CALM}">{CALM}</a>' in page
    assert '<span class="canary">v3 10%</span>' in page
    assert 'data-regime="&lt;i&gt;outage&lt;/i&gt;"' in page
    assert page.endswith('<p class="graph-notes">graphs of staging: &lt;unreachable&gt;</p>')
    assert graph_sections_html([], []) == ""
