"""The ``gates`` block of a rollout policy: which checks every analysis runs.

Each gate module owns its configuration model; this one gathers them so the policy's schema
documents every gate in one place. The defaults are Flagger's two built-in checks (success
rate at least 99%, p99 latency at most 500 ms), each also relative to the primary, a short
Locust run against the canary's tag route, and the statistical judge.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from controller.gates.judge_config import JudgeConfig
from controller.gates.kpi_policy import KPI_EXAMPLES, KpiCheck
from controller.gates.load_test import LoadTestConfig
from controller.gates.metrics_profile import (
    MetricsProfile,
    ProfileName,
    resolve_profile,
)
from controller.gates.prometheus_checks import MetricCheck

__all__ = ["DEFAULT_METRIC_CHECKS", "GatesConfig"]

DEFAULT_METRIC_CHECKS = (
    MetricCheck.model_validate(
        {"name": "request-success-rate", "builtin": "request-success-rate", "min": 99.0}
    ),
    MetricCheck.model_validate(
        {
            "name": "request-latency",
            "builtin": "request-latency",
            "percentile": 99,
            "max": 500.0,
            "maxIncrease": 0.5,
        }
    ),
)


class GatesConfig(BaseModel):
    """What each analysis checks."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    load_test: LoadTestConfig = Field(
        default_factory=LoadTestConfig,
        alias="loadTest",
        description="Locust, headless, against the canary's tag route before the metrics are read.",
    )
    metrics: tuple[MetricCheck, ...] = Field(
        default=DEFAULT_METRIC_CHECKS,
        description="Prometheus checks comparing the canary revision with the primary.",
    )
    metrics_profile: ProfileName | MetricsProfile | None = Field(
        default=None,
        alias="metricsProfile",
        description="Which request metrics count and time each revision's requests: "
        "knative-otel (Knative Serving 1.19.8+/1.20.1+/1.21+, OpenTelemetry, seconds; the "
        "default), knative-opencensus (Knative 1.18 and older, milliseconds), sluice-wrapper "
        "(Sluice's serving wrapper, the default in RawDeployment environments), or an object "
        "naming the series and labels (requests, latency, latencyUnit, namespaceLabel, "
        "configurationLabel, revisionLabel, statusLabel, errorMatcher, exportedBy). The "
        "builtin checks and the judge query these names; the local target exports them.",
    )
    judge: JudgeConfig = Field(
        default_factory=JudgeConfig,
        description="Two-proportion and Mann-Whitney tests of canary against primary, sequential.",
    )
    kpis: tuple[KpiCheck, ...] = Field(
        default=(),
        description="Outcome metrics the canary must not be worse on than the primary, each "
        "judged per revision that served the request on outcomes joined by request id (sent "
        "with `sluice feedback`): kind rate (the share of requests whose outcome is 1, e.g. "
        "CTR or a fraud catch rate) or mean (e.g. revenue per request, Welch's z on values "
        "winsorized at the pooled 99.5th percentile), direction (which way is better), an "
        "absolute (rate) or relative (mean) non-inferiority margin, minSamples per revision "
        "and outcomeDelay, seconds before a request without an outcome counts as 0. "
        "Sequential like the judge, whose alpha, maxLooks and spending they inherit.",
        json_schema_extra={"examples": [[*KPI_EXAMPLES]]},
    )
    judge_enabled: bool = Field(
        default=True, alias="judgeEnabled", description="Run the statistical judge."
    )
    scrape_wait_seconds: float = Field(
        default=2.5,
        alias="scrapeWait",
        ge=0,
        description="Seconds to wait after the load test so Prometheus has scraped its requests.",
    )

    @field_validator("kpis")
    @classmethod
    def _kpi_names_are_unique(cls, value: tuple[KpiCheck, ...]) -> tuple[KpiCheck, ...]:
        names = [check.name for check in value]
        if repeated := sorted({name for name in names if names.count(name) > 1}):
            raise ValueError(f"KPI names must be unique: {', '.join(repeated)} repeated")
        return value

    @property
    def profile(self) -> MetricsProfile:
        """The metrics profile, resolved from its name when it is a builtin one (none set:
        knative-otel; a RawDeployment environment sets sluice-wrapper when it loads)."""
        return resolve_profile(self.metrics_profile)
