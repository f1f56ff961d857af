"""One analysis of a graph canary: its branches compared on Prometheus, with the model's checks.

The checks are :func:`~controller.gates.prometheus_checks.evaluate_checks`, the same code and
thresholds a model's canary is judged by, reading the graph router's branch series
(:mod:`controller.gates.graph_branches`): the root Splitter's ``canary`` branch stands for the
canary revision and its ``stable`` branch for the primary, which must have answered too (a
branch without data, or with fewer than ``minRequests`` answers, is inconclusive). Both are
read over the step's life so far, at most each check's interval. A Prometheus that is
unreachable or refuses a query gives ``error`` results; no Prometheus at all too: neither ever
passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from controller.analysis_types import GateResult, Verdict
from controller.gates.graph_branches import CANARY_BRANCH, STABLE_BRANCH, GraphBranches
from controller.gates.metrics_profile import MetricsProfile
from controller.gates.prometheus_checks import Baseline, MetricCheck, evaluate_checks
from controller.ports import MetricsSource

__all__ = ["STABLE", "analyse_graph", "step_window"]

#: What the canary branch is compared with.
STABLE = Baseline(STABLE_BRANCH, "the stable branch", required=True)


def analyse_graph(
    metrics: MetricsSource | None,
    checks: Sequence[MetricCheck],
    *,
    graph: str,
    namespace: str,
    profile: MetricsProfile,
    window_seconds: float,
) -> list[GateResult]:
    """One result per check, ``prometheus/<name>``, canary branch against stable branch."""
    if metrics is None:
        return [
            GateResult(f"prometheus/{c.name}", Verdict.ERROR, f"{c.name}: no Prometheus configured")
            for c in checks
        ]
    return evaluate_checks(
        metrics,
        checks,
        canary_revision=CANARY_BRANCH,
        primary_revision=STABLE_BRANCH,
        namespace=namespace,
        configuration=graph,
        inference_service=graph,
        profile=profile,
        max_window_seconds=window_seconds,
        graph=GraphBranches(graph),
        baseline=STABLE,
    )


def step_window(changed_at: float, now: float) -> float:
    """Whole seconds of the step's life that surely follow its commit (a commit's time is
    whole seconds, so the commit may have come up to a second after it)."""
    return float(max(1, math.floor(now - changed_at - 1.0)))
