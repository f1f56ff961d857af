"""The pre-traffic smoke: the load test's payloads against a new revision before clients.

KServe gives a new revision its client share as soon as it is ready, so a model that answers
every request with a 500 costs clients requests until the first analysis (or the watch) sees
it. The smoke phase pins the new version at weight 0 (``canaryTrafficPercent: 0`` with
``sluice.dev/phase: smoke``; in RawDeployment ``spec.canary[0].trafficPercent: 0``), so its
revision is created and reachable on its tag route but takes no client request; once it is
ready, a short Locust run sends it ``requests`` of the version's logged input examples, and
only if at most ``maxFailureRatio`` of them failed is the first canary step committed (Argo
Rollouts' pre-promotion analysis, Flagger's pre-rollout webhooks). A failed smoke is evidence
against the model: it is rolled back and quarantined, having answered no client. A smoke that
could not run (Locust did not start, no input example, too few answers) aborts the rollout,
which quarantines nothing. With a shadow phase configured the smoke runs at its start, before
the challenger's answers are judged, instead of adding a phase.

This module holds the configuration and the pure verdict over a
:class:`~controller.analysis_types.LoadReport`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from controller.analysis_types import GateResult, LoadReport, Verdict

__all__ = ["GATE", "SmokeConfig", "evaluate_smoke"]

#: The gate's name in results and commit bodies.
GATE = "smoke"


class SmokeConfig(BaseModel):
    """``rollout.smoke``: requests to the new revision at 0 % client weight before step one."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    enabled: bool = Field(
        default=True,
        description="On by default: pin a new version at weight 0 (sluice.dev/phase: smoke) "
        "and smoke-test its tag route before it takes client traffic (with a shadow phase: at "
        "its start); false starts the canary at the first step in the proposal's commit.",
    )
    requests: int = Field(
        default=50,
        ge=1,
        le=100_000,
        description="Requests the smoke sends (the load test's payloads, users and protocol); "
        "fewer answered makes the smoke inconclusive, which aborts the rollout.",
    )
    max_failure_ratio: float = Field(
        default=0.0,
        alias="maxFailureRatio",
        ge=0,
        le=1,
        description="Fail the smoke (roll back, quarantine) when more than this fraction of "
        "its requests is not answered 2xx; 0: any failed request fails it.",
    )
    timeout_seconds: float = Field(
        default=60.0,
        alias="timeout",
        gt=0,
        le=3600,
        description="Seconds the smoke may take to send its requests.",
    )


def evaluate_smoke(report: LoadReport, config: SmokeConfig) -> GateResult:
    """FAIL when more than ``maxFailureRatio`` of the answers failed (whatever their number:
    errors are evidence), INCONCLUSIVE when fewer than ``requests`` were answered, else PASS."""
    limit = f"{config.max_failure_ratio * 100:g}%"
    seen = (
        f"{GATE}: {report.failures:,} of {report.requests:,} requests to the new revision "
        f"failed ({report.failure_ratio * 100:.1f}%, max {limit}) before any client request"
    )
    values = {"requests": float(report.requests), "failures": float(report.failures)}
    if report.requests and report.failure_ratio > config.max_failure_ratio:
        return GateResult(GATE, Verdict.FAIL, seen, values)
    if report.requests < config.requests:
        summary = f"{seen}; fewer than the {config.requests:,} asked for"
        return GateResult(GATE, Verdict.INCONCLUSIVE, summary, values)
    return GateResult(GATE, Verdict.PASS, seen, values)
