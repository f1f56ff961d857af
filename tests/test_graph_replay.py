"""A rarely called graph member judged on a replay of its regime's requests.

``graphTraffic.replay`` names a file of the regime's requests in the GitOps repository; each
analysis sends exactly those rows to the canary's and the primary's tag routes, and the
checks and the judge read the member's own revision series, which then hold them, instead of
the graph's step series (which stay the gate without ``replay``). Without a replay an idle
member is held, never passed (``tests/test_graph_member_gates.py``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML
from support.rollout_values import HEAD, NEW, OLD, canary_target, observation

from controller.analysis_types import LoadPlan, LoadReport, MetricSample, Verdict
from controller.errors import ConfigError
from controller.gates.graph_replay import (
    GraphReplay,
    ReplayPayloads,
    parse_replay_payloads,
    replay_plan,
    replay_result,
)
from controller.gates.graph_traffic import GraphTraffic, judged_graph
from controller.gates.load_test import LoadTestConfig, evaluate_load
from controller.manifests.environment import ReleaseConfig, parse_environment
from controller.ports import RolloutRegistry, Target
from controller.rollout.actions import Analyze
from controller.rollout.analysis import Analyzer
from controller.rollout.gates_config import GatesConfig
from controller.rollout.observe import load_release, observe, read_replay_payloads
from controller.rollout.record import AnalysisRecord
from controller.target_types import TargetObservation
from controller.testing.registry import MemoryRegistry
from controller.testing.release_repository import MemoryReleaseRepository

ROOT = Path(__file__).resolve().parents[1]
BLACK_SWAN_FILE = "loadtests/payloads/market-regime-black-swan.jsonl"
REPLAY = {"payloads": BLACK_SWAN_FILE, "rps": 40, "duration": 5}
BLEND = GraphTraffic.model_validate(
    {"graph": "market-regime", "node": "blend", "step": "blend", "replay": REPLAY}
)
ROWS = ({"p_black_swan": 0.99, "calm_p_up": 0.1}, {"p_black_swan": 0.97, "calm_p_up": 0.4})
PAYLOADS = ReplayPayloads(f"{BLACK_SWAN_FILE}@main", ROWS)


# -- the option ----------------------------------------------------------------------------------


def test_replay_is_typed_under_graph_traffic_and_unset_by_default() -> None:
    assert GraphTraffic(graph="market-regime").replay is None
    assert BLEND.replay == GraphReplay(payloads=BLACK_SWAN_FILE, rps=40, duration_seconds=5)
    bare = GraphReplay.model_validate({"payloads": "replays/blend.json"})
    assert (bare.rps, bare.duration_seconds) == (None, None)


@pytest.mark.parametrize(
    ("replay", "said"),
    [
        ({"payloads": "/etc/passwd.json"}, "relative to the GitOps repository's root"),
        ({"payloads": "../elsewhere/rows.jsonl"}, "without '..'"),
        ({"payloads": "loadtests/payloads/rows.csv"}, "a .jsonl or .json file"),
        ({"payloads": "rows.jsonl", "rps": 0}, "greater than 0"),
        ({"payloads": "rows.jsonl", "duration": 7200}, "less than or equal to 3600"),
        ({"payloads": "rows.jsonl", "users": 3}, "Extra inputs are not permitted"),
        ({}, "payloads"),
    ],
)
def test_a_bad_replay_is_refused_saying_why(replay: dict[str, Any], said: str) -> None:
    with pytest.raises(ValidationError, match=said):
        GraphReplay.model_validate(replay)


def test_every_replay_field_is_documented() -> None:
    properties = GraphReplay.model_json_schema(by_alias=True)["properties"]
    assert set(properties) == {"payloads", "rps", "duration"}
    assert all(spec.get("description") for spec in properties.values())
    traffic = GraphTraffic.model_json_schema(by_alias=True)["properties"]
    assert "replay" in traffic["replay"]["description"]


def _environment(replay: dict[str, Any], load_test: dict[str, Any] | None = None) -> str:
    release = {
        "model": "market-regime-blend",
        "inferenceService": "market-regime-blend",
        "pin": "market-regime-blend.yaml",
        "graphTraffic": {"graph": "market-regime", "replay": replay},
    }
    document = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Environment",
        "name": "staging",
        "storage": {"allowedSchemes": ["s3"]},
        "releases": [release],
        "rollout": {"gates": {"loadTest": load_test or {}}},
    }
    return json.dumps(document)


def test_an_environment_takes_a_release_that_replays() -> None:
    config = parse_environment(_environment(REPLAY), source="sluice.yaml", environment="staging")
    (release,) = config.releases
    assert release.graph_traffic is not None
    assert release.graph_traffic.replay == BLEND.replay


@pytest.mark.parametrize(
    ("replay", "load_test", "said"),
    [
        (
            {"payloads": BLACK_SWAN_FILE, "rps": 5, "duration": 5},
            {},
            "graphTraffic.replay sends at most 25 requests a look (5 rps for 5 s), fewer than "
            "gates.loadTest.minRequests 50: it could never pass; raise replay.rps or "
            "replay.duration",
        ),
        (
            {"payloads": BLACK_SWAN_FILE},
            {"rps": 4, "duration": 10},
            "sends at most 40 requests a look (4 rps for 10 s)",
        ),
        (
            {"payloads": BLACK_SWAN_FILE, "rps": 20},
            {"minRps": 30},
            "is paced at 20 rps, below gates.loadTest.minRps 30: it could never pass",
        ),
    ],
)
def test_a_replay_that_could_never_pass_is_refused_in_one_line(
    replay: dict[str, Any], load_test: dict[str, Any], said: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_environment(
            _environment(replay, load_test), source="sluice.yaml", environment="staging"
        )
    message = str(info.value)
    assert message.startswith("sluice.yaml: release market-regime-blend: graphTraffic.replay")
    assert said in message
    assert "\n" not in message


# -- the file ------------------------------------------------------------------------------------


def test_jsonl_rows_and_v1_bodies_become_rows_in_file_order() -> None:
    text = (
        '{"a": 1, "b": "x"}\n\n{"instances": [{"a": 2, "b": "y"}, {"a": 3, "b": "z", "c": true}]}\n'
    )
    payloads = parse_replay_payloads(text, source="rows.jsonl@main")
    assert payloads == ReplayPayloads(
        "rows.jsonl@main",
        ({"a": 1, "b": "x"}, {"a": 2, "b": "y"}, {"a": 3, "b": "z", "c": True}),
    )


def test_a_json_file_is_an_array_or_one_body() -> None:
    rows = parse_replay_payloads('[{"a": 1}, {"instances": [{"a": 2}]}]', source="r.json@main")
    assert rows.rows == ({"a": 1}, {"a": 2})
    body = parse_replay_payloads('{"instances": [{"a": 1}, {"a": 2}]}', source="r.json@main")
    assert body.rows == ({"a": 1}, {"a": 2})


@pytest.mark.parametrize(
    ("source", "text", "said"),
    [
        ("r.jsonl@main", '{"a": 1}\n{"a": \n', "r.jsonl@main line 2 is not JSON (Expecting value"),
        ("r.jsonl@main", '[{"a": 1}]\n', "r.jsonl@main line 1 is list, not an object"),
        ("r.jsonl@main", "\n\n", "r.jsonl@main holds no rows to replay"),
        ("r.json@main", "[]", "r.json@main holds no rows to replay"),
        ("r.json@main", "{", "r.json@main is not JSON"),
        (
            "r.jsonl@main",
            '{"inputs": [{"name": "a", "data": [1]}]}\n',
            "r.jsonl@main line 1 is a V2 body (inputs), which replay does not read",
        ),
        ("r.jsonl@main", '{"instances": []}\n', "line 1: instances must be a non-empty list"),
        (
            "r.json@main",
            '[{"a": 1}, {"instances": [{"a": 1}, {"a": [1, 2]}]}]',
            "r.json@main entry 2 instance 2: feature 'a' must be a finite number, string or "
            "boolean, not [1, 2]",
        ),
        ("r.jsonl@main", '{"a": NaN}\n', "feature 'a' must be a finite number"),
    ],
)
def test_a_bad_file_is_one_line_naming_it_and_the_fix(source: str, text: str, said: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_replay_payloads(text, source=source)
    message = str(info.value)
    assert said in message
    fixes = ("write JSON objects, each a row of feature values or a V1 body", "write the row's")
    assert any(f"; {fix}" in message for fix in fixes)
    assert "\n" not in message


def _release(replay: dict[str, Any] | None = REPLAY) -> ReleaseConfig:
    graph: dict[str, Any] = {"graph": "market-regime"}
    return ReleaseConfig.model_validate(
        {
            "model": "market-regime-blend",
            "inferenceService": "market-regime-blend",
            "pin": "market-regime-blend.yaml",
            "graphTraffic": graph | ({"replay": replay} if replay else {}),
        }
    )


def test_the_file_is_read_from_git_with_the_configuration() -> None:
    text = (ROOT / BLACK_SWAN_FILE).read_text()
    repository = MemoryReleaseRepository({BLACK_SWAN_FILE: text, "README.md": "x"})
    payloads = read_replay_payloads(_release(), repository)
    assert payloads is not None
    assert payloads.source == f"{BLACK_SWAN_FILE}@main"
    assert len(payloads.rows) == len(text.splitlines())
    assert read_replay_payloads(_release(None), repository) is None


def test_a_file_missing_from_git_is_a_config_error_naming_it_and_the_fix() -> None:
    repository = MemoryReleaseRepository({"README.md": "x"})
    with pytest.raises(ConfigError) as info:
        read_replay_payloads(_release(), repository)
    assert str(info.value) == (
        f"{BLACK_SWAN_FILE} is not on main, but release market-regime-blend replays it "
        "(graphTraffic.replay.payloads, a path from the repository's root); commit the file "
        "of the regime's requests or fix the path"
    )


class NoTarget:
    """A Target that has not applied anything yet."""

    def observe(self, environment: str, inference_service: str) -> TargetObservation:
        return TargetObservation(exists=False)


def test_a_pass_observes_the_replays_rows_from_the_default_branch() -> None:
    """observe: the release's rows, read with its sluice.yaml, reach the analysis."""
    overlay = "manifests/overlays/staging"
    pin = (
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n"
        "  name: market-regime-blend\nspec:\n  predictor:\n    model:\n"
        "      modelFormat: {name: mlflow}\n"
    )
    repository = MemoryReleaseRepository(
        {
            f"{overlay}/sluice.yaml": _environment(REPLAY),
            f"{overlay}/market-regime-blend.yaml": pin,
            BLACK_SWAN_FILE: '{"p_black_swan": 0.99}\n{"p_black_swan": 0.97}\n',
        }
    )
    ref = load_release(repository, "staging", "market-regime-blend")
    obs = observe(ref, repository, MemoryRegistry(), cast(Target, NoTarget()))
    assert obs.graph_traffic is not None
    assert obs.graph_traffic.replay == BLEND.replay
    assert obs.replay == ReplayPayloads(
        f"{BLACK_SWAN_FILE}@main", ({"p_black_swan": 0.99}, {"p_black_swan": 0.97})
    )


# -- the decision --------------------------------------------------------------------------------


def test_a_replaying_member_is_judged_on_its_own_revision_series() -> None:
    """judged_graph: the graph's step series without replay, the revision series with it."""
    calls = GraphTraffic(graph="market-regime", node="by-regime", step="volatile")
    assert judged_graph(calls) is calls
    assert judged_graph(BLEND) is None
    assert judged_graph(None) is None


def test_the_replay_sends_the_files_rows_in_order_at_its_pace() -> None:
    load = LoadTestConfig.model_validate({"users": 2, "duration": 15, "protocol": "v1"})
    plan = replay_plan(load, GraphReplay(payloads="r.jsonl", rps=40, duration_seconds=5),
                       PAYLOADS, url="http://r/_tag/latest", model_name="blend")  # fmt: skip
    assert (plan.payloads, plan.order, plan.rps, plan.duration_seconds) == (ROWS, "cycle", 40, 5)
    assert (plan.url, plan.model_name, plan.users, plan.protocol) == (
        "http://r/_tag/latest", "blend", 2, "v1",
    )  # fmt: skip


def test_the_replay_takes_the_load_tests_pace_and_length_where_it_sets_none() -> None:
    load = LoadTestConfig.model_validate({"rps": 50, "duration": 8})
    plan = replay_plan(
        load, GraphReplay(payloads="r.jsonl"), PAYLOADS, url="http://r", model_name="m"
    )
    assert (plan.rps, plan.duration_seconds, plan.order) == (50, 8, "cycle")


def test_the_load_tests_result_says_it_replayed_the_file() -> None:
    report = LoadReport(
        requests=200, failures=0, duration_seconds=5.0, p50_ms=3, p95_ms=5, p99_ms=8
    )
    result = replay_result(evaluate_load(report, LoadTestConfig()), PAYLOADS)
    assert result.verdict is Verdict.PASS
    assert result.summary == (
        f"locust: replay of 2 rows from {BLACK_SWAN_FILE}@main: 200 requests, 0.0% failed "
        "(max 1%), p99 8 ms, 40 rps"
    )


# -- an analysis ---------------------------------------------------------------------------------


class RecordingLoad:
    """A LoadGenerator that keeps every plan and reports ``requests`` answered, none failed."""

    def __init__(self, requests: int = 200) -> None:
        self.requests = requests
        self.plans: list[LoadPlan] = []
        self._lock = threading.Lock()

    def run(self, plan: LoadPlan) -> LoadReport:
        with self._lock:
            self.plans.append(plan)
        return LoadReport(self.requests, 0, plan.duration_seconds, 3.0, 5.0, 8.0)


class TwoSeriesPrometheus:
    """The member's own revision series and the graph's step series, each with its own
    per-revision counts (none failed, half within 50 ms); keeps every query."""

    def __init__(self, revision_calls: dict[str, int], step_calls: dict[str, int]) -> None:
        self.revision_calls, self.step_calls = revision_calls, step_calls
        self.queries: list[str] = []

    def query(self, promql: str) -> list[MetricSample]:
        self.queries.append(promql)
        calls = self.step_calls if "sluice_graph_step_" in promql else self.revision_calls
        n = next((float(v) for r, v in calls.items() if f'"{r}"' in promql), 0.0)
        if "histogram_quantile" in promql:
            return [MetricSample({}, 40.0)]
        if "_bucket" in promql:
            return [
                MetricSample({"le": "0.05"}, n / 2),
                MetricSample({"le": "0.1"}, n),
                MetricSample({"le": "+Inf"}, n),
            ]
        if '=~"5.."' in promql:
            return [MetricSample({}, 0.0)]
        if "!~" in promql:
            return [MetricSample({}, 100.0 if n else 0.0)]
        return [MetricSample({}, n)]


def _analyse(
    traffic: GraphTraffic,
    prometheus: TwoSeriesPrometheus,
    load: RecordingLoad,
    *,
    replay: ReplayPayloads | None = PAYLOADS,
    load_test: dict[str, Any] | None = None,
) -> list[Any]:
    gates = GatesConfig.model_validate(
        {
            "loadTest": load_test or {"enabled": False},
            "metrics": [
                {"name": "ok", "builtin": "request-success-rate", "min": 99, "minRequests": 50}
            ],
            "judge": {"minSamples": 100, "maxLooks": 1, "spending": "pocock"},
            "scrapeWait": 0,
        }
    )
    obs = dataclasses.replace(
        observation(10, canary_target(10)), graph_traffic=traffic, replay=replay
    )
    analyzer = Analyzer(
        cast(RolloutRegistry, None), cast(Any, prometheus), load, sleep=lambda _: None
    )
    return analyzer.run(
        obs, Analyze(step=10, look=1, record=AnalysisRecord(HEAD, 10)), gates, 1031.5
    )


def test_a_replaying_member_is_replayed_to_both_revisions_and_judged_on_them() -> None:
    """The black-swan member the graph called 40 times (the judge's minSamples is 100) is
    replayed to canary and primary, even with the environment's load test off, and passes on
    the replayed requests its revisions answered; no query reads the graph's step series."""
    prometheus = TwoSeriesPrometheus({NEW: 400, OLD: 400}, {NEW: 40, OLD: 4000})
    load = RecordingLoad()
    locust, check, judge = _analyse(BLEND, prometheus, load)
    assert sorted(plan.url for plan in load.plans) == ["http://r/_tag/latest", "http://r/_tag/prev"]
    assert [
        (plan.payloads, plan.order, plan.rps, plan.duration_seconds) for plan in load.plans
    ] == [(ROWS, "cycle", 40, 5)] * 2
    assert locust.verdict is Verdict.PASS, locust.summary
    assert locust.summary.startswith(f"locust: replay of 2 rows from {BLACK_SWAN_FILE}@main: ")
    assert check.verdict is Verdict.PASS, check.summary
    assert judge.verdict is Verdict.PASS, judge.summary
    assert judge.values["canary_n"] == 400
    assert prometheus.queries
    assert not any("sluice_graph_step_" in q for q in prometheus.queries)
    assert all("kn_serving_invocation_duration_seconds" in q for q in prometheus.queries)


def test_the_same_idle_member_without_replay_is_held_never_passed() -> None:
    """Without replay the same member is judged on the graph's 40 calls: held (inconclusive)
    by minRequests and minSamples, however many requests its own revisions answered."""
    prometheus = TwoSeriesPrometheus({NEW: 400, OLD: 400}, {NEW: 40, OLD: 4000})
    graph_only = BLEND.model_copy(update={"replay": None})
    load = RecordingLoad()
    check, judge = _analyse(graph_only, prometheus, load, replay=None)
    assert load.plans == []  # the environment's load test is off, and nothing replays
    assert check.verdict is Verdict.INCONCLUSIVE, check.summary
    assert judge.verdict is Verdict.INCONCLUSIVE, judge.summary
    assert "fewer than minSamples 100" in judge.summary
    assert all("sluice_graph_step_" in q for q in prometheus.queries)


def test_a_replay_too_small_for_the_judge_is_held_too() -> None:
    """Replay does not lower the bar: 30 replayed requests a revision stay inconclusive."""
    prometheus = TwoSeriesPrometheus({NEW: 30, OLD: 30}, {})
    check, judge = _analyse(BLEND, prometheus, RecordingLoad(), load_test={"minRequests": 10})[1:]
    assert check.verdict is Verdict.INCONCLUSIVE, check.summary
    assert judge.verdict is Verdict.INCONCLUSIVE, judge.summary


def test_a_replay_whose_file_was_not_read_is_an_error_not_a_load_test_of_examples() -> None:
    prometheus = TwoSeriesPrometheus({NEW: 400, OLD: 400}, {})
    load = RecordingLoad()
    locust = _analyse(BLEND, prometheus, load, replay=None)[0]
    assert (locust.verdict, locust.summary) == (Verdict.ERROR, "locust: replay payloads not read")
    assert load.plans == []


# -- the example's file --------------------------------------------------------------------------


def test_the_committed_black_swan_file_is_what_the_generator_writes() -> None:
    """Rerun ``python -m models.market_regime.replay_payloads`` when this fails: the blend's
    inputs or the market changed."""
    from models.market_regime.replay_payloads import DEFAULT_OUT, regime_requests, to_jsonl

    assert DEFAULT_OUT == ROOT / BLACK_SWAN_FILE
    committed = parse_replay_payloads(DEFAULT_OUT.read_text(), source=BLACK_SWAN_FILE)
    generated = parse_replay_payloads(
        to_jsonl(regime_requests("black_swan")), source="generated.jsonl"
    )
    assert len(committed.rows) == len(generated.rows) > 100
    for mine, fresh in zip(committed.rows, generated.rows, strict=True):
        assert mine.keys() == fresh.keys()
        assert list(mine.values()) == pytest.approx(list(fresh.values()), abs=1e-4)


def test_the_readmes_example_releases_read_as_documented() -> None:
    """The README's market-regime releases: calm and volatile on the graph's calls, the blend
    on a replay of the committed black-swan file."""
    readme = (ROOT / "README.md").read_text()
    (block,) = [
        b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.DOTALL) if "replay:" in b
    ]
    document = YAML(typ="safe").load(block) | {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Environment",
        "name": "staging",
        "storage": {"allowedSchemes": ["s3"]},
    }
    config = parse_environment(json.dumps(document), source="sluice.yaml", environment="staging")
    judged = {r.model: judged_graph(r.graph_traffic) for r in config.releases}
    assert judged["market-regime-blend"] is None
    assert judged["market-regime-volatile"] == GraphTraffic(
        graph="market-regime", node="by-regime", step="volatile"
    )
    repository = MemoryReleaseRepository(
        {BLACK_SWAN_FILE: (ROOT / BLACK_SWAN_FILE).read_text(), "README.md": "x"}
    )
    payloads = read_replay_payloads(config.release("market-regime-blend"), repository)
    assert payloads is not None
    assert f"replay of {len(payloads.rows)} rows from {payloads.source}" in readme


class ExampleRows:
    """The registry's input example of every version: one row."""

    def input_rows(self, model: str, version: int, limit: int) -> list[dict[str, object]]:
        return [{"x": 1.0}]


def test_the_environments_own_load_test_is_paced_at_its_rps() -> None:
    """Not a replay: a release judged on its own series gets the environment's load test, at
    gates.loadTest.rps (analyses sent it back to back before, whatever the policy said)."""
    gates = GatesConfig.model_validate(
        {"loadTest": {"users": 4, "rps": 50, "duration": 5}, "metrics": [], "scrapeWait": 0}
    )
    load = RecordingLoad()
    analyzer = Analyzer(
        cast(RolloutRegistry, ExampleRows()),
        cast(Any, TwoSeriesPrometheus({NEW: 400, OLD: 400}, {})),
        load,
        sleep=lambda _: None,
    )
    obs = observation(10, canary_target(10))
    analyzer.run(obs, Analyze(step=10, look=1, record=AnalysisRecord(HEAD, 10)), gates, 1031.5)
    assert [(plan.rps, plan.users, plan.order) for plan in load.plans] == [(50, 4, "random")] * 2
