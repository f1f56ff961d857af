"""The soak's pure parts over plain data: the decision (soaking, broken, complete), the span a
check is read over, the evidence body a decision becomes and what the production proposal's
evaluation makes of it, the required duration, the ``soak:`` policy as sluice.yaml reads it,
and the checks read through an in-memory Prometheus."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.gitops_repo import manifest_files

from controller.errors import ConfigError
from controller.evidence.evaluate import evaluate
from controller.evidence.policy import PromotionPolicy
from controller.evidence.verify import EvidenceCheck
from controller.local.services import PrometheusService
from controller.manifests.environment import parse_environment
from controller.soak.checks import SoakScope, read_checks
from controller.soak.decide import (
    Broken,
    Complete,
    Reading,
    SeenAlert,
    SoakFacts,
    Soaking,
    check_window_seconds,
    decide,
    evidence_body,
)
from controller.soak.policy import SoakPolicy, required_soak_seconds
from controller.testing import AnsweredMetrics

HOUR = 3600.0
DAY = 24 * HOUR
START = 1_796_000_000.0  # 2026-11-30T00:53:20Z
PASS = Reading("success-rate", "q", 99.9, "pass", "success-rate 99.9% over 86400s (min 99%)")


def _facts(hours: float, **fields: Any) -> SoakFacts:
    return SoakFacts(
        version=7, started_at=START, now=START + hours * HOUR, required_seconds=DAY, **fields
    )


def _evaluated(body: dict[str, Any]) -> Any:
    check = EvidenceCheck(
        "staging", "soak", True, "signed", predicate={"kind": "soak", "soak": body}
    )
    policy = PromotionPolicy.model_validate({"from": ["staging"], "require": {"soak": "24h"}})
    return evaluate(
        policy.model_copy(update={"require": policy.require.model_copy(update={"canary": False})}),
        [check],
        [],
        environment="production",
        version=7,
    )


# -- the decision ----------------------------------------------------------------------------


def test_a_soak_shorter_than_required_goes_on() -> None:
    decision = decide(_facts(6, readings=[PASS]))
    assert decision == Soaking(6 * HOUR, DAY)
    assert decision.line() == "soak 6h/1d"


def test_an_alert_before_the_promotion_does_not_count_and_one_after_breaks_it() -> None:
    before = SeenAlert("SluiceFeatureDrift", START - 60)
    assert isinstance(decide(_facts(6, alerts=[before])), Soaking)
    after = SeenAlert("SluicePredictionDrift", START + 3 * HOUR)
    decision = decide(
        _facts(6, alerts=[before, after, SeenAlert("SluiceFeatureDrift", START + 4 * HOUR)])
    )
    assert decision == Broken(
        START + 3 * HOUR,
        "alert SluicePredictionDrift, SluiceFeatureDrift",
        ("SluicePredictionDrift", "SluiceFeatureDrift"),
    )
    assert decision.line().startswith("soak broken at 2026-11-30T03:53:20Z: alert ")


def test_a_check_past_its_bound_breaks_the_soak_at_once() -> None:
    failed = Reading("success-rate", "q", 97.0, "fail", "success-rate 97% over 5m (min 99%)")
    decision = decide(_facts(2, readings=[failed]))
    assert isinstance(decision, Broken)
    assert decision.at == START + 2 * HOUR
    assert decision.reason == "check success-rate 97% over 5m (min 99%)"


def test_no_data_or_an_unreachable_prometheus_holds_but_never_breaks() -> None:
    held = [
        Reading("success-rate", "q", None, "inconclusive", "success-rate: no data"),
        Reading("latency", "q", None, "error", "latency: Prometheus unreachable"),
    ]
    assert decide(_facts(6, readings=held)) == Soaking(6 * HOUR, DAY)
    past = decide(_facts(25, readings=held, whole_window=True))
    assert past == Soaking(
        25 * HOUR, DAY, ("success-rate: no data", "latency: Prometheus unreachable")
    )
    assert past.line().startswith("soak 1d1h/1d, waiting on success-rate: no data; ")


def test_past_the_duration_only_whole_window_readings_complete_it() -> None:
    assert decide(_facts(25, readings=[PASS])) == Soaking(
        25 * HOUR, DAY, ("the window's readings",)
    )
    assert decide(_facts(25, readings=[PASS], whole_window=True)) == Complete(25 * HOUR)
    assert decide(_facts(24, whole_window=True)).line() == "soak complete: 1d, clean"


_VERDICTS = st.sampled_from(["pass", "fail", "inconclusive", "error"])


@settings(max_examples=100, deadline=None)
@given(
    hours=st.floats(0, 100),
    alert_hours=st.lists(st.floats(-50, 100), max_size=3),
    verdicts=st.lists(_VERDICTS, max_size=4),
    whole=st.booleans(),
)
def test_only_an_alert_or_a_failed_check_breaks_and_only_clean_numbers_complete(
    hours: float, alert_hours: list[float], verdicts: list[str], whole: bool
) -> None:
    readings = [Reading(f"c{i}", "q", None, v, f"c{i}") for i, v in enumerate(verdicts)]  # type: ignore[arg-type]
    alerts = [SeenAlert("A", START + h * HOUR) for h in alert_hours]
    facts = _facts(hours, alerts=alerts, readings=readings, whole_window=whole)
    decision = decide(facts)
    breaks = any(alert.at >= START for alert in alerts) or "fail" in verdicts
    assert isinstance(decision, Broken) == breaks
    clean = hours * HOUR >= DAY and whole and all(v == "pass" for v in verdicts)
    assert isinstance(decision, Complete) == (clean and not breaks)
    if isinstance(decision, Broken):
        assert START <= decision.at <= facts.now or decision.alerts


def test_a_check_is_read_over_its_interval_cut_to_the_soak_then_over_the_whole_window() -> None:
    assert check_window_seconds(_facts(6), 300) == 300
    assert check_window_seconds(_facts(0.01), 300) == 36  # not before the promotion
    assert check_window_seconds(_facts(0), 300) == 1
    assert check_window_seconds(_facts(25), 300) == 25 * 3600
    assert check_window_seconds(_facts(25), math.inf) == 25 * 3600


# -- the evidence a decision becomes, and what production makes of it -------------------------


def test_a_complete_soak_becomes_evidence_the_production_proposal_accepts() -> None:
    facts = _facts(25, readings=[PASS], whole_window=True)
    body = evidence_body(Complete(facts.elapsed), facts)
    assert body == {
        "start": "2026-11-30T00:53:20Z",
        "end": "2026-12-01T01:53:20Z",
        "durationSeconds": 25 * HOUR,
        "queries": [{"name": "success-rate", "query": "q", "value": 99.9, "ok": True}],
        "alerts": [],
    }
    verdict = _evaluated(body)
    assert verdict.complete
    assert verdict.met == ("soak in staging: 1d1h of 24h, clean",)


def test_a_soak_broken_by_an_alert_makes_the_proposal_wait_naming_it() -> None:
    alert = SeenAlert("SluiceFeatureDrift", START + 3 * HOUR)
    facts = _facts(6, alerts=[alert], readings=[PASS])
    decision = decide(facts)
    assert isinstance(decision, Broken)
    body = evidence_body(decision, facts)
    assert body["end"] == "2026-11-30T03:53:20Z"
    assert body["durationSeconds"] == 3 * HOUR
    assert body["alerts"] == ["SluiceFeatureDrift"]
    assert _evaluated(body).lines() == ["soak in staging: 3h with alert SluiceFeatureDrift"]


def test_a_soak_broken_by_a_check_names_it_out_of_bounds() -> None:
    failed = Reading("success-rate", "q", 97.0, "fail", "success-rate 97% (min 99%)")
    facts = _facts(2, readings=[failed])
    decision = decide(facts)
    assert isinstance(decision, Broken)
    body = evidence_body(decision, facts)
    assert body["queries"][0]["ok"] is False
    assert _evaluated(body).lines() == ["soak in staging: 2h with success-rate out of bounds"]


# -- the duration and the policy ---------------------------------------------------------------


def _promotion(soak: str | None, upstream: tuple[str, ...] = ("staging",)) -> PromotionPolicy:
    return PromotionPolicy.model_validate({"from": list(upstream), "require": {"soak": soak}})


def test_the_required_soak_is_the_longest_of_the_environments_that_take_from_here() -> None:
    promotions = [
        None,
        _promotion("24h"),
        _promotion("1d12h", ("staging", "canary-eu")),
        _promotion("90d", ("qa",)),
        _promotion(None),
    ]
    assert required_soak_seconds("staging", promotions) == 36 * 3600
    assert required_soak_seconds("canary-eu", promotions) == 36 * 3600
    assert required_soak_seconds("production", promotions) is None
    assert required_soak_seconds("staging", [_promotion(None)]) is None


CTR = "{name: ctr, outcome: click, kind: rate, direction: higher, margin: 0.005, outcomeDelay: 300}"


def _staging(soak: str, *, kpis: str = f"      - {CTR}\n") -> str:
    """Staging's sluice.yaml with ``kpis`` as rollout.gates.kpis and ``soak`` appended."""
    text = manifest_files()["manifests/overlays/staging/sluice.yaml"]
    assert "\nrollout:\n" in text
    text = text.replace("\nrollout:\n", f"\nrollout:\n  gates:\n    kpis:\n{kpis}", 1)
    return text + soak


SOAK = """\
soak:
  driftAlerts: false
  checks:
    - name: success-rate
      builtin: request-success-rate
      min: 99
      interval: 5m
    - name: burn
      query: sum(rate(errors{service="{{ inference_service }}"}[{{ interval }}]))
      max: 0.5
  kpis:
    - name: ctr
      min: 0.02
"""


def test_sluice_yaml_reads_a_soak_block() -> None:
    config = parse_environment(_staging(SOAK), source="sluice.yaml", environment="staging")
    assert config.soak is not None
    assert not config.soak.drift_alerts
    assert [c.name for c in config.soak.checks] == ["success-rate", "burn"]
    assert config.soak.kpis[0].min == 0.02
    bare = parse_environment(_staging(""), source="sluice.yaml", environment="staging")
    assert bare.soak is None


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            "soak:\n  checks:\n    - {name: rate, builtin: request-success-rate, "
            "maxDecrease: 0.01}\n",
            "maxIncrease and maxDecrease compare with a primary revision, which a soak has not",
        ),
        (
            "soak:\n  checks:\n    - {name: a, query: up, max: 1}\n"
            "    - {name: a, query: up, max: 2}\n",
            "checks a are named twice",
        ),
        ("soak:\n  kpis:\n    - {name: ctr}\n", "kpi ctr: set min, max or both"),
        (
            "soak:\n  kpis:\n    - {name: revenue, min: 1}\n",
            "soak.kpis names 'revenue', which no rollout.gates.kpis check here declares "
            "(declared: ctr)",
        ),
        ("soak:\n  driftAlert: true\n", "driftAlert"),
    ],
)
def test_a_wrong_soak_block_is_one_line_naming_it(block: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_environment(_staging(block), source="sluice.yaml", environment="staging")
    assert message in raised.value.message
    assert "\n" not in raised.value.message
    assert "soak" in raised.value.message


# -- the checks, read ----------------------------------------------------------------------------

SCOPE = SoakScope(
    environment="staging",
    model="fraud-detector",
    namespace="staging",
    configuration="fraud-detector-predictor",
    inference_service="fraud-detector",
    revision="fraud-detector-predictor-00002",
)


def _policy() -> SoakPolicy:
    config = parse_environment(_staging(SOAK), source="sluice.yaml", environment="staging")
    assert config.soak is not None
    return config.soak


def test_checks_are_read_for_the_serving_revision_over_the_span_given() -> None:
    metrics = AnsweredMetrics({"kn_serving": 99.5, "errors{": 0.7, "sluice_kpi": 0.031})
    readings = read_checks(
        metrics, _policy(), SCOPE, lambda interval: int(min(interval, 120)), final=False
    )
    assert [(r.name, r.verdict, r.value) for r in readings] == [
        ("success-rate", "pass", 99.5),
        ("burn", "fail", 0.7),
    ]
    assert 'kn_revision_name="fraud-detector-predictor-00002"' in readings[0].query
    assert "[120s]" in readings[0].query
    assert readings[1].query == 'sum(rate(errors{service="fraud-detector"}[60s]))'
    assert readings[1].summary == "burn 0.7 over 60s (max 0.5): out of bounds"


def test_kpis_are_read_only_over_the_whole_window() -> None:
    metrics = AnsweredMetrics({"kn_serving": 99.5, "errors{": 0.1, "sluice_kpi": 0.015})
    readings = read_checks(metrics, _policy(), SCOPE, lambda interval: 90_000, final=True)
    kpi = readings[-1]
    assert (kpi.name, kpi.verdict, kpi.value) == ("kpi/ctr", "fail", 0.015)
    assert kpi.query == (
        'avg(avg_over_time(sluice_kpi{environment="staging", model="fraud-detector", '
        'kpi="ctr", revision="fraud-detector-predictor-00002"}[90000s]))'
    )


def test_no_data_is_inconclusive_and_an_outage_an_error() -> None:
    metrics = AnsweredMetrics({})
    readings = read_checks(metrics, _policy(), SCOPE, lambda interval: 60, final=False)
    assert [r.verdict for r in readings] == ["inconclusive", "inconclusive"]
    assert readings[0].summary == (
        "success-rate: no data for fraud-detector-predictor-00002 over 60s"
    )
    metrics.outage = True
    readings = read_checks(metrics, _policy(), SCOPE, lambda interval: 60, final=False)
    assert [r.verdict for r in readings] == ["error", "error"]


def test_the_readme_soak_block_is_a_valid_soak_policy() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    block = next(
        b for b in re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL) if b.startswith("soak:")
    )
    config = parse_environment(_staging(block), source="README.md", environment="staging")
    assert config.soak is not None
    assert [c.name for c in config.soak.checks] == ["success-rate", "error-budget-burn"]


# -- against a real Prometheus -----------------------------------------------------------------


@pytest.mark.slow
def test_a_real_prometheus_accepts_every_soak_query(
    prometheus_server: Callable[..., PrometheusService],
) -> None:
    """The builtin, template and KPI queries are PromQL Prometheus runs (no series yet: no
    data, inconclusive, never a refused query), and a template's value is judged."""
    from controller.backends.prometheus import PrometheusSource

    source = PrometheusSource(prometheus_server().url)
    policy = SoakPolicy.model_validate(
        {
            "checks": [
                {"name": "success-rate", "builtin": "request-success-rate", "min": 99},
                {"name": "latency", "builtin": "request-latency", "max": 300},
                {"name": "burn", "query": "sum(vector(0.25))", "max": 0.2},
            ],
            "kpis": [{"name": "ctr", "min": 0.02}],
        }
    )
    readings = read_checks(source, policy, SCOPE, lambda interval: 3600, final=True)
    assert [(r.name, r.verdict) for r in readings] == [
        ("success-rate", "inconclusive"),
        ("latency", "inconclusive"),
        ("burn", "fail"),
        ("kpi/ctr", "inconclusive"),
    ], [r.summary for r in readings]
    assert readings[2].value == 0.25
