"""The controller's own metrics, in the shape Flagger's users alert on.

``sluice_rollout_phase{model,environment,phase}`` is 1 for the current phase and 0 for the
others (one series per phase, so an alert can say ``== 1`` for ``rolled_back``);
``sluice_canary_weight`` follows the canary's percent; ``sluice_gate_results_total`` counts
every gate verdict; ``sluice_reconcile_duration_seconds`` times a pass and
``sluice_git_push_retries_total`` counts lost push races. They live in a registry of their own
that ``sluice serve`` exposes on ``/metrics`` beside its other counters.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controller.analysis_types import GateResult

__all__ = ["PHASES", "RolloutMetrics"]

PHASES = (
    "idle",
    "shadowing",
    "smoke_testing",
    "progressing",
    "analysing",
    "promoting",
    "succeeded",
    "rolling_back",
    "rolled_back",
    "failed",
)


class RolloutMetrics:
    """Gauges, counters and a histogram of rollouts, in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.phase = Gauge(
            "sluice_rollout_phase",
            "1 for the phase a release's rollout is in, 0 for the others.",
            ["model", "environment", "phase"],
            registry=self.registry,
        )
        self.weight = Gauge(
            "sluice_canary_weight",
            "Percent of traffic the canary version takes (0 when none is canarying).",
            ["model", "environment"],
            registry=self.registry,
        )
        self.gates = Counter(
            "sluice_gate_results",
            "Gate verdicts by gate and result.",
            ["gate", "result"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "sluice_reconcile_duration_seconds",
            "Seconds one rollout pass took (observe, decide, act; analyses included).",
            ["model", "environment"],
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.push_retries = Counter(
            "sluice_git_push_retries",
            "git pushes that lost a race and were retried on the new tip.",
            registry=self.registry,
        )

    def set_phase(self, model: str, environment: str, phase: str) -> None:
        """Mark ``phase`` as current for one release."""
        for name in PHASES:
            self.phase.labels(model, environment, name).set(1 if name == phase else 0)

    def set_weight(self, model: str, environment: str, percent: int) -> None:
        """The canary's current percent."""
        self.weight.labels(model, environment).set(percent)

    def count_gates(self, results: Sequence[GateResult]) -> None:
        """Count each verdict (the gate name without its check: ``prometheus``, ``locust``)."""
        for result in results:
            self.gates.labels(result.gate.split("/", 1)[0], result.verdict.value).inc()
