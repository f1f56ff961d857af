"""The load-test gate: judge what Locust measured against a canary before its step is judged.

Before each canary step, Sluice puts a short, fixed load on the canary revision's tag route
(:class:`~controller.ports.LoadGenerator`), so that a canary receiving little live traffic
still answers enough requests to judge, and so that errors and latencies under load show up
before the traffic does. This module holds the configuration of that test, the pure decision
over its :class:`~controller.analysis_types.LoadReport`, and the Markdown a pull request shows.

Too few requests is *inconclusive*, never a pass: a test that sent 3 requests has shown
nothing about a 1 % failure budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.analysis_types import GateResult, LoadPlan, LoadReport, Verdict

__all__ = ["GATE", "LoadTestConfig", "evaluate_load", "render_load_report_markdown"]

#: The gate's name in :class:`~controller.analysis_types.GateResult` and commit bodies.
GATE = "locust"


class LoadTestConfig(BaseModel):
    """A headless Locust load test on the canary before each step, and what it must show."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    enabled: bool = Field(
        default=True, description="Run the load test before each canary step is judged."
    )
    users: int = Field(
        default=4,
        ge=1,
        le=1000,
        description="Concurrent simulated users; each sends its next request as soon as the "
        "last is answered, or paced by rps.",
    )
    rps: float | None = Field(
        default=None,
        gt=0,
        description="Requests per second to send in all (each user paces itself to rps/users, "
        "as Locust's constant_throughput does); a revision that answers slower gets fewer. "
        "Unset: back to back, as many as the revision answers (closed loop).",
    )
    spawn_rate: float | None = Field(
        default=None,
        alias="spawnRate",
        gt=0,
        description="Users started per second; by default all users start within one second.",
    )
    duration_seconds: float = Field(
        default=15.0,
        alias="duration",
        gt=0,
        le=3600,
        description="Length of the test in seconds, rounded up to a whole second.",
    )
    protocol: Literal["v1", "v2"] = Field(
        default="v2",
        description="KServe inference protocol: v1 (POST /v1/models/NAME:predict with "
        "instances) or v2 (POST /v2/models/NAME/infer with one input tensor per feature).",
    )
    max_failure_ratio: float = Field(
        default=0.01,
        alias="maxFailureRatio",
        ge=0,
        le=1,
        description="Fail when more than this fraction of requests is not answered with a 2xx "
        "status (0.01 = 1 %).",
    )
    max_p95_ms: float | None = Field(
        default=None,
        alias="maxP95Ms",
        gt=0,
        description="Fail when the 95th percentile response time, in milliseconds, is above this.",
    )
    max_p99_ms: float | None = Field(
        default=None,
        alias="maxP99Ms",
        gt=0,
        description="Fail when the 99th percentile response time, in milliseconds, is above this.",
    )
    min_rps: float | None = Field(
        default=None,
        alias="minRps",
        gt=0,
        description="Fail when fewer requests than this were answered per second on average.",
    )
    min_requests: int = Field(
        default=50,
        alias="minRequests",
        ge=1,
        description="Fewer requests than this make the test inconclusive: too few to judge.",
    )

    @model_validator(mode="after")
    def _reachable_min_rps(self) -> LoadTestConfig:
        if self.rps is not None and self.min_rps is not None and self.min_rps > self.rps:
            raise ValueError(
                f"minRps {self.min_rps:g} is above rps {self.rps:g}: a test paced at rps could "
                "never pass; lower minRps or raise rps"
            )
        return self

    def load_plan(
        self,
        *,
        url: str,
        model_name: str,
        payloads: Sequence[Mapping[str, object]],
        headers: Mapping[str, str] | None = None,
        report_dir: Path | None = None,
    ) -> LoadPlan:
        """The plan of this test against the route at ``url`` (a canary's tag route)."""
        return LoadPlan(
            url=url,
            model_name=model_name,
            protocol=self.protocol,
            payloads=tuple(payloads),
            users=self.users,
            spawn_rate=self.spawn_rate or float(self.users),
            duration_seconds=self.duration_seconds,
            rps=self.rps,
            headers=dict(headers or {}),
            report_dir=report_dir,
        )


def evaluate_load(report: LoadReport, config: LoadTestConfig) -> GateResult:
    """Pass, fail or inconclusive for one load test, with one line saying why.

    Below ``minRequests`` the verdict is inconclusive whatever else was measured; otherwise
    every configured threshold is checked and each one broken is named. A latency threshold
    with no latencies measured is inconclusive.
    """
    values = _values(report)
    max_failed = f"{config.max_failure_ratio * 100:g}%"
    failed = f"{report.failure_ratio * 100:.1f}% failed (max {max_failed})"
    if report.requests < config.min_requests:
        summary = (
            f"{GATE}: {report.requests:,} requests, fewer than the {config.min_requests:,} "
            f"needed to judge; {failed}"
        )
        return GateResult(GATE, Verdict.INCONCLUSIVE, summary, values)
    parts = [f"{report.requests:,} requests", failed]
    broken: list[str] = []
    missing: list[str] = []
    if report.failure_ratio > config.max_failure_ratio:
        broken.append(f"{report.failure_ratio * 100:.1f}% failed, above {max_failed}")
    for label, measured, limit in (
        ("p95", report.p95_ms, config.max_p95_ms),
        ("p99", report.p99_ms, config.max_p99_ms),
    ):
        if limit is None:
            if label == "p99" and measured is not None:
                parts.append(f"p99 {_ms(measured)}")
            continue
        if measured is None:
            missing.append(label)
            parts.append(f"{label} unknown (max {_ms(limit)})")
            continue
        parts.append(f"{label} {_ms(measured)} (max {_ms(limit)})")
        if measured > limit:
            broken.append(f"{label} {_ms(measured)} above {_ms(limit)}")
    rps = f"{_number(report.rps)} rps"
    if config.min_rps is not None:
        rps += f" (min {_number(config.min_rps)})"
        if report.rps < config.min_rps:
            broken.append(f"{_number(report.rps)} rps below {_number(config.min_rps)}")
    parts.append(rps)
    summary = f"{GATE}: " + ", ".join(parts)
    if broken:
        return GateResult(GATE, Verdict.FAIL, summary + ": " + "; ".join(broken), values)
    if missing:
        summary += f": no latencies measured for {' and '.join(missing)}"
        return GateResult(GATE, Verdict.INCONCLUSIVE, summary, values)
    return GateResult(GATE, Verdict.PASS, summary, values)


def render_load_report_markdown(report: LoadReport, result: GateResult) -> str:
    """A short Markdown section for a pull-request comment: verdict, summary, numbers."""
    latencies = [("p50", report.p50_ms), ("p95", report.p95_ms), ("p99", report.p99_ms)]
    rows = [
        ("Requests", f"{report.requests:,}"),
        ("Failed", f"{report.failures:,} ({report.failure_ratio * 100:.1f}%)"),
        *(
            (f"Latency {label}", _ms(value) if value is not None else "n/a")
            for label, value in latencies
        ),
        ("Throughput", f"{_number(report.rps)} requests/s"),
        ("Duration", f"{_number(report.duration_seconds)} s"),
    ]
    lines = [
        f"#### Load test (Locust): {result.verdict.value}",
        "",
        _escape(result.summary),
        "",
        "| Measure | Value |",
        "| --- | ---: |",
        *(f"| {name} | {value} |" for name, value in rows),
    ]
    if report.report_path is not None:
        lines += ["", f"Locust statistics: `{report.report_path}`"]
    return "\n".join(lines) + "\n"


def _values(report: LoadReport) -> dict[str, float]:
    values = {
        "requests": float(report.requests),
        "failures": float(report.failures),
        "failure_ratio": report.failure_ratio,
        "rps": report.rps,
        "duration_seconds": report.duration_seconds,
    }
    percentiles = {"p50_ms": report.p50_ms, "p95_ms": report.p95_ms, "p99_ms": report.p99_ms}
    return values | {name: value for name, value in percentiles.items() if value is not None}


def _ms(value: float) -> str:
    return f"{_number(value)} ms"


def _number(value: float) -> str:
    """Whole numbers with thousands separators from 10 up; one decimal below."""
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:.1f}".removesuffix(".0")


def _escape(text: str) -> str:
    # A summary is plain text: keep Markdown from reading its characters as markup.
    return "".join(f"\\{c}" if c in "\\`*_[]<>|#" else c for c in text)
