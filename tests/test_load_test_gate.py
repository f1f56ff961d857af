"""The load-test gate: thresholds, too-few-requests, the summary line and the PR section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.analysis_types import LoadReport, Verdict
from controller.gates.load_test import LoadTestConfig, evaluate_load, render_load_report_markdown


def report(**changes: Any) -> LoadReport:
    """A healthy 15-second run: 1,204 requests at 80 rps, p99 38 ms."""
    values: dict[str, Any] = {
        "requests": 1204,
        "failures": 0,
        "duration_seconds": 15.05,
        "p50_ms": 12.0,
        "p95_ms": 30.0,
        "p99_ms": 38.0,
    }
    return LoadReport(**(values | changes))


def test_healthy_run_passes_with_a_readable_summary() -> None:
    """A run within every threshold passes, and the summary reads as one line of numbers."""
    result = evaluate_load(report(), LoadTestConfig(max_p99_ms=500))
    assert result.gate == "locust"
    assert result.verdict is Verdict.PASS
    assert result.summary == (
        "locust: 1,204 requests, 0.0% failed (max 1%), p99 38 ms (max 500 ms), 80 rps"
    )
    assert result.values["requests"] == 1204
    assert result.values["p99_ms"] == 38.0


def test_failure_ratio_above_the_maximum_fails() -> None:
    """13 failures in 1,204 requests (1.1%) break a 1% budget, and the summary says so."""
    result = evaluate_load(report(failures=13), LoadTestConfig())
    assert result.verdict is Verdict.FAIL
    assert result.summary.endswith(": 1.1% failed, above 1%")


def test_failure_ratio_at_the_maximum_passes() -> None:
    """The maximum is allowed: 12 failures in 1,200 requests is exactly 1%."""
    result = evaluate_load(report(requests=1200, failures=12), LoadTestConfig())
    assert result.verdict is Verdict.PASS


def test_each_broken_threshold_is_named() -> None:
    """A slow p95 and a low throughput both fail the gate, each named in the summary."""
    config = LoadTestConfig.model_validate({"maxP95Ms": 25, "minRps": 100})
    result = evaluate_load(report(), config)
    assert result.verdict is Verdict.FAIL
    assert result.summary == (
        "locust: 1,204 requests, 0.0% failed (max 1%), p95 30 ms (max 25 ms), p99 38 ms, "
        "80 rps (min 100): p95 30 ms above 25 ms; 80 rps below 100"
    )


def test_too_few_requests_are_inconclusive_even_when_all_failed() -> None:
    """Below minRequests nothing is judged: 20 failed requests hold the rollout, not fail it."""
    result = evaluate_load(report(requests=20, failures=20), LoadTestConfig())
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.summary == (
        "locust: 20 requests, fewer than the 50 needed to judge; 100.0% failed (max 1%)"
    )


def test_latency_threshold_without_latencies_is_inconclusive() -> None:
    """A p99 limit with no response times measured cannot pass."""
    result = evaluate_load(report(p95_ms=None, p99_ms=None), LoadTestConfig(max_p99_ms=100))
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "no latencies measured for p99" in result.summary


@given(
    requests=st.integers(0, 49),
    failures=st.integers(0, 49),
    seconds=st.floats(0.1, 100),
)
def test_below_min_requests_never_passes_or_fails(
    requests: int, failures: int, seconds: float
) -> None:
    """Whatever was measured, fewer than minRequests requests is inconclusive."""
    measured = LoadReport(requests, min(failures, requests), seconds, 1.0, 2.0, 3.0)
    assert evaluate_load(measured, LoadTestConfig()).verdict is Verdict.INCONCLUSIVE


def test_config_reads_camel_case_and_python_names() -> None:
    """The documented camelCase keys and the Python names configure the same test."""
    by_alias = LoadTestConfig.model_validate(
        {"spawnRate": 2, "duration": 5, "maxFailureRatio": 0.05, "maxP99Ms": 250}
    )
    by_name = LoadTestConfig(
        spawn_rate=2, duration_seconds=5, max_failure_ratio=0.05, max_p99_ms=250
    )
    assert by_alias == by_name
    assert by_alias.protocol == "v2"
    assert by_alias.min_requests == 50


def test_config_refuses_unknown_keys() -> None:
    """A misspelt key is an error, not a silently ignored threshold."""
    with pytest.raises(ValidationError, match="maxP99"):
        LoadTestConfig.model_validate({"maxP99": 250})


def test_a_paced_test_carries_its_rate_and_refuses_a_min_rps_it_could_not_reach() -> None:
    """rps paces the plan (unset: back to back); minRps above it could never pass."""
    config = LoadTestConfig.model_validate({"users": 4, "rps": 40})
    assert config.load_plan(url="http://h", model_name="m", payloads=[{"a": 1}]).rps == 40
    assert LoadTestConfig().load_plan(url="http://h", model_name="m", payloads=[]).rps is None
    with pytest.raises(ValidationError, match="minRps 50 is above rps 40"):
        LoadTestConfig.model_validate({"rps": 40, "minRps": 50})


def test_every_field_of_the_schema_is_described() -> None:
    """The JSON schema documents each camelCase field."""
    schema = LoadTestConfig.model_json_schema(by_alias=True)
    properties = schema["properties"]
    assert "maxFailureRatio" in properties
    assert "duration" in properties
    assert [name for name, field in properties.items() if not field.get("description")] == []


def test_plan_starts_all_users_within_a_second_by_default(tmp_path: Path) -> None:
    """The plan carries the config, with a spawn rate equal to the users when none is set."""
    config = LoadTestConfig(users=8, duration_seconds=5, protocol="v1")
    plan = config.load_plan(
        url="http://127.0.0.1:8080/_tag/canary",
        model_name="fraud",
        payloads=[{"amount": 1.0}],
        report_dir=tmp_path,
    )
    assert (plan.users, plan.spawn_rate, plan.duration_seconds) == (8, 8.0, 5)
    assert (plan.protocol, plan.report_dir, plan.payloads) == ("v1", tmp_path, ({"amount": 1.0},))


def test_markdown_section_shows_verdict_and_numbers(tmp_path: Path) -> None:
    """The PR section names the verdict and tabulates requests, failures and latencies."""
    measured = report(failures=13, report_path=tmp_path / "locust.json")
    markdown = render_load_report_markdown(measured, evaluate_load(measured, LoadTestConfig()))
    assert markdown.startswith("#### Load test (Locust): fail\n")
    assert "| Requests | 1,204 |" in markdown
    assert "| Failed | 13 (1.1%) |" in markdown
    assert "| Latency p99 | 38 ms |" in markdown
    assert "| Throughput | 80 requests/s |" in markdown
    assert f"`{tmp_path / 'locust.json'}`" in markdown
