"""A graph's outcome series, end to end: ``sluice_graph_outcome_answers`` on the graph router's
``/metrics``.

The example market-regime graph (its overlay annotated ``sluice.dev/outcome-segment: regime``)
runs on a real local graph router whose members are stand-in model servers behind real local
routers (:mod:`support.graph_members`); the member routers and the graph router share one
SQLite prediction log. Market days go through the graph under their own ``X-Request-Id`` (the
router propagates it, as ``sluice local up --propagate-header X-Request-Id`` sets), their
``regime`` and ``up`` arrive late, and the router's background refresh turns them into gauges
per member revision, outcome and regime, read by a scrape.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from support.graph_members import Member, deploy, members

from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.gates.metrics_profile import KNATIVE_OPENCENSUS, KNATIVE_OTEL
from controller.local.graph_outcomes import OUTCOME_ANSWERS, SEGMENT_ANNOTATION, GraphOutcomes
from controller.local.graph_plane import GraphPlane
from controller.local.graph_router import GraphRouter
from controller.local.processes import free_port
from controller.outcome_scores import OutcomeAnswer, OutcomeKey, Tally

GRAPH = "market-regime"
CLASSIFIER, CALM, VOLATILE, BLEND = (
    f"market-regime-{m}" for m in ("classifier", "calm", "volatile", "blend")
)
EXAMPLE = Path(__file__).resolve().parents[1] / "models/market_regime/overlay/inference-graph.yaml"
#: Each specialist's answer: calm says up, volatile down, the blend up.
ANSWERS = {
    name.replace("-", "_"): {"predictions": [{"p_up": p}]}
    for name, p in ((CALM, 0.7), (VOLATILE, 0.4), (BLEND, 0.55))
}
#: (request id, the classifier's regime, the day's real regime, did the next day rise)
DAYS = [
    ("d1", "calm", "calm", 1.0),  # classifier right; calm (p_up .7) right
    ("d2", "volatile", "volatile", 1.0),  # classifier right; volatile (p_up .4) wrong
    ("d3", "calm", "volatile", 0.0),  # classifier wrong; calm wrong, on a volatile day
    ("d4", "black_swan", "black_swan", 1.0),  # the blend (.55) and calm right, volatile wrong
    ("d5", "calm", "calm", 1.0),  # no outcome arrives: counted nowhere
]


@pytest.fixture
def log(tmp_path: Path) -> Iterator[SqlitePredictionLog]:
    with SqlitePredictionLog(tmp_path / "predictions.sqlite", flush_interval=0.01) as started:
        yield started


@pytest.fixture
def team(log: SqlitePredictionLog) -> Iterator[dict[str, Member]]:
    with members(CLASSIFIER, CALM, VOLATILE, BLEND, sink=log, **ANSWERS) as started:
        yield started


def example() -> dict[str, Any]:
    obj = YAML(typ="safe").load(EXAMPLE.read_text())
    obj["metadata"]["namespace"] = "models-local"
    return dict(obj)


def graph_router(log: SqlitePredictionLog | None, **kwargs: Any) -> GraphRouter:
    return GraphRouter(
        graph=GRAPH, namespace="models-local", metrics_profile=KNATIVE_OTEL,
        propagate_headers=("Authorization", "X-Request-Id"), prediction_log=log,
        outcome_refresh=0.05, **kwargs,
    )  # fmt: skip


def ask(router: GraphRouter, team: dict[str, Member], request_id: str, regime: str) -> None:
    """One market day through the graph: the classifier (a stand-in) calls it ``regime``."""
    team[CLASSIFIER].server.answer = {
        "predictions": [{"regime": regime, "p_calm": 0.5, "p_volatile": 0.3, "ret_1": 0.01}]
    }
    connection = http.client.HTTPConnection("127.0.0.1", router.port, timeout=10)
    body = json.dumps({"instances": [{"ret_1": 0.01, "vol_5": 0.2}]})
    connection.request("POST", "/", body, {"X-Request-Id": request_id})
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 200


def outcome_samples(router: GraphRouter) -> dict[tuple[str, ...], float]:
    """The outcome gauges a scrape reads, by (service, revision, outcome, segment, result)."""
    with urllib.request.urlopen(f"{router.url}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    samples = {}
    for family in _families(text):
        if family.name != OUTCOME_ANSWERS:
            continue
        for sample in family.samples:
            labels = sample.labels
            assert labels["k8s_namespace_name"] == "models-local"
            assert labels["graph_name"] == GRAPH
            key = (
                labels["service_name"], labels["kn_revision_name"], labels["outcome"],
                labels["segment"], labels["result"],
            )  # fmt: skip
            samples[key] = sample.value
    return samples


def _families(text: str) -> Any:
    from prometheus_client.parser import text_string_to_metric_families

    return text_string_to_metric_families(text)


def wait_for(router: GraphRouter, expected: dict[tuple[str, ...], float]) -> None:
    deadline = time.monotonic() + 10
    seen = outcome_samples(router)
    while seen != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = outcome_samples(router)
    assert seen == expected


def revision(name: str) -> str:
    return f"{name}-predictor-00001"


def test_each_member_revisions_answers_right_and_wrong_per_outcome_and_regime(
    log: SqlitePredictionLog, team: dict[str, Member]
) -> None:
    obj = example()
    assert obj["metadata"]["annotations"][SEGMENT_ANNOTATION] == "regime"
    with graph_router(log) as router:
        deploy(router, obj, team)
        for request_id, said, _, _ in DAYS:
            ask(router, team, request_id, said)
        assert log.flush()
        assert outcome_samples(router) == {}  # no outcome yet
        # The ups arrive first; the regimes (the segment) a day later.
        log.record_outcomes([(rid, "up", up) for rid, _, _, up in DAYS[:4]])
        clf, calm, volatile, blend = (revision(n) for n in (CLASSIFIER, CALM, VOLATILE, BLEND))
        wait_for(router, {
            (CALM, calm, "up", "", "right"): 2, (CALM, calm, "up", "", "wrong"): 1,
            (VOLATILE, volatile, "up", "", "right"): 0, (VOLATILE, volatile, "up", "", "wrong"): 2,
            (BLEND, blend, "up", "", "right"): 1, (BLEND, blend, "up", "", "wrong"): 0,
        })  # fmt: skip
        log.record_outcomes([(rid, "regime", real) for rid, _, real, _ in DAYS[:4]])
        wait_for(router, {
            (CLASSIFIER, clf, "regime", "calm", "right"): 1,
            (CLASSIFIER, clf, "regime", "calm", "wrong"): 0,
            (CLASSIFIER, clf, "regime", "volatile", "right"): 1,
            (CLASSIFIER, clf, "regime", "volatile", "wrong"): 1,
            (CLASSIFIER, clf, "regime", "black_swan", "right"): 1,
            (CLASSIFIER, clf, "regime", "black_swan", "wrong"): 0,
            (CALM, calm, "up", "calm", "right"): 1, (CALM, calm, "up", "calm", "wrong"): 0,
            (CALM, calm, "up", "volatile", "right"): 0, (CALM, calm, "up", "volatile", "wrong"): 1,
            (CALM, calm, "up", "black_swan", "right"): 1,
            (CALM, calm, "up", "black_swan", "wrong"): 0,
            (VOLATILE, volatile, "up", "volatile", "right"): 0,
            (VOLATILE, volatile, "up", "volatile", "wrong"): 1,
            (VOLATILE, volatile, "up", "black_swan", "right"): 0,
            (VOLATILE, volatile, "up", "black_swan", "wrong"): 1,
            (BLEND, blend, "up", "black_swan", "right"): 1,
            (BLEND, blend, "up", "black_swan", "wrong"): 0,
        })  # fmt: skip
        # Under another profile the same counts carry its label names.
        router.set_metrics_profile(KNATIVE_OPENCENSUS)
        with urllib.request.urlopen(f"{router.url}/metrics", timeout=5) as response:  # noqa: S310
            text = response.read().decode()
        (line,) = [
            line for line in text.splitlines()
            if line.startswith(OUTCOME_ANSWERS) and 'segment="black_swan"' in line
            and f'service_name="{BLEND}"' in line and 'result="right"' in line
        ]  # fmt: skip
        assert 'namespace_name="models-local"' in line
        assert f'revision_name="{blend}"' in line
        assert line.endswith(" 1.0")
        outcomes = router.outcomes
        assert outcomes is not None
    assert not outcomes.refresher.running  # stopped with the router


def test_without_the_annotation_the_segment_is_empty(
    log: SqlitePredictionLog, team: dict[str, Member]
) -> None:
    obj = example()
    del obj["metadata"]["annotations"]
    with graph_router(log) as router:
        deploy(router, obj, team)
        ask(router, team, "d1", "calm")
        assert log.flush()
        log.record_outcomes([("d1", "up", 0.0), ("d1", "regime", "calm")])
        clf, calm = revision(CLASSIFIER), revision(CALM)
        wait_for(router, {
            (CLASSIFIER, clf, "regime", "", "right"): 1,
            (CLASSIFIER, clf, "regime", "", "wrong"): 0,
            (CALM, calm, "up", "", "right"): 0, (CALM, calm, "up", "", "wrong"): 1,
        })  # fmt: skip


def test_a_router_without_a_log_exports_no_outcome_series(
    log: SqlitePredictionLog, team: dict[str, Member]
) -> None:
    with graph_router(None) as router:
        deploy(router, example(), team)
        ask(router, team, "d1", "calm")
        assert log.flush()
        log.record_outcomes([("d1", "up", 1.0)])
        time.sleep(0.2)
        assert router.outcomes is None
        assert outcome_samples(router) == {}


class CountedReader:
    """A log that answers ``answers`` (or fails, once ``failing``) and counts its reads."""

    def __init__(self, answers: list[OutcomeAnswer]) -> None:
        self.answers, self.failing, self.reads = answers, False, 0
        self.asked: list[tuple[tuple[str, ...], float, str | None]] = []

    def outcome_answers(
        self, models: Any, since: float, *, segment: str | None = None, limit: int = 0
    ) -> list[OutcomeAnswer]:
        self.reads += 1
        self.asked.append((tuple(models), since, segment))
        if self.failing:
            raise OSError("disk gone")
        return self.answers


def test_a_scrape_exports_the_cached_values_and_never_reads_the_log() -> None:
    """Only a refresh reads the log (the members over the window, by the segment named); a
    collect reads nothing, and a failed refresh keeps the last values."""
    reader = CountedReader(
        [OutcomeAnswer(CALM, "c-1", '{"predictions":[{"p_up":0.9}]}', "up", 1.0)]
    )
    outcomes = GraphOutcomes("ns", GRAPH, reader, KNATIVE_OTEL, window=100.0, clock=lambda: 1000.0)
    outcomes.refresh()
    assert reader.reads == 0  # no graph deployed yet: no members, nothing to read
    outcomes.set_graph([CLASSIFIER, CALM, CLASSIFIER], "regime")
    outcomes.refresh()
    assert reader.asked == [((CLASSIFIER, CALM), 900.0, "regime")]
    for _ in range(3):
        (family,) = outcomes.collect()
        assert [s.value for s in family.samples] == [1, 0]
    assert reader.reads == 1
    reader.failing = True
    with pytest.raises(OSError, match="disk gone"):
        outcomes.refresh()
    assert outcomes.counts() == {OutcomeKey(CALM, "c-1", "up", ""): Tally(right=1)}
    outcomes.set_graph([CALM], "Not An Outcome")  # ignored, and logged
    reader.failing = False
    outcomes.refresh()
    assert reader.asked[-1] == ((CALM,), 900.0, None)


def test_the_refresh_thread_survives_a_failing_log_and_stops_with_the_router(
    team: dict[str, Member],
) -> None:
    reader = CountedReader([])
    reader.failing = True
    with graph_router(reader) as router:  # type: ignore[arg-type]
        deploy(router, example(), team)
        deadline = time.monotonic() + 5
        while reader.reads < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert reader.reads >= 3  # it went on reading after the first failure
        assert outcome_samples(router) == {}
    reads = reader.reads
    time.sleep(0.2)
    assert reader.reads == reads


def test_the_graph_plane_gives_each_router_the_runtimes_log(
    log: SqlitePredictionLog, team: dict[str, Member]
) -> None:
    """Where the runtime makes graph routers, they read the runtime's prediction log: the
    segment and the members come from the deployed graph."""
    ports: dict[str, int] = {}
    plane = GraphPlane(lambda key: ports.setdefault(key, free_port()), prediction_log=log)
    try:
        plane.apply(example())
        plane.reconcile([m.obj() for m in team.values()])
        router = plane.graphs[GRAPH].router
        assert router.deployment is not None
        outcomes = router.outcomes
        assert outcomes is not None
        assert outcomes._reader is log
        assert outcomes._segment == "regime"
        assert set(outcomes._members) == {CLASSIFIER, CALM, VOLATILE, BLEND}
    finally:
        plane.shutdown()
    assert not outcomes.refresher.running
