"""The graph rollout policy: how a merged graph change walks its canary, typed and kept in Git.

It is the ``graphRollout:`` block of an environment's ``sluice.yaml``, beside the ``rollout:``
block of its model releases, and reads the same way: weights to step through, an interval
between analyses, the checks and the limits. ``sluice graph rollout`` reads it at every pass
from the environment's branch, so a change to it is reviewed like the graph it governs.

The checks are the model releases' own (``rollout.gates.metrics``, its builtin
``request-success-rate`` and ``request-latency``, with their thresholds), unless ``metrics``
names others, and they compare the canary branch of the graph's root Splitter with its stable
branch on the branch series (:mod:`controller.gates.graph_branches`) instead of a canary
revision with the primary. A branch with fewer than ``minRequests`` answers in the window makes
every check inconclusive: too few requests on either branch never pass.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from controller.gates.prometheus_checks import MetricCheck
from controller.rollout.gates_config import DEFAULT_METRIC_CHECKS, GatesConfig

__all__ = ["GraphRolloutPolicy", "graph_checks", "next_graph_step"]


class GraphRolloutPolicy(BaseModel):
    """How a merged change of an InferenceGraph (its canary form) is walked by
    ``sluice graph rollout``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    steps: tuple[int, ...] = Field(
        default=(10, 50),
        description="The canary graph's weights at the root Splitter, ascending, each 1-99; "
        "once the last one passes its analysis the new graph is promoted (it serves alone). The "
        "first is also what `sluice graph propose` proposes without --weight. A canary merged "
        "at another weight goes to the first step above it.",
    )
    interval_seconds: float = Field(
        default=30.0,
        alias="interval",
        gt=0,
        description="Seconds between analyses of a step; the first one comes this long after "
        "the step's commit.",
    )
    min_requests: int = Field(
        default=50,
        alias="minRequests",
        ge=1,
        description="Answers each branch (canary and stable) must have given over a check's "
        "window for the check to be judged; fewer on either is inconclusive (it holds, never "
        "passes). A check's own minRequests, when higher, wins.",
    )
    metrics: tuple[MetricCheck, ...] | None = Field(
        default=None,
        description="The checks comparing the canary branch with the stable branch, builtin "
        "ones only (request-success-rate, request-latency: the branch series have no revision "
        "to template); unset: the builtin checks of rollout.gates.metrics, with their "
        "thresholds (Flagger's two when it has none; by default success rate at least "
        "99 % and p99 latency at most 500 ms and at most 50 % above the stable branch's).",
    )
    failure_limit: int = Field(
        default=1,
        alias="failureLimit",
        ge=1,
        description="Failed analyses at one step before the graph is rolled back.",
    )
    inconclusive_limit: int = Field(
        default=5,
        alias="inconclusiveLimit",
        ge=1,
        description="Analyses in a row without an answer (no data, too few requests on a "
        "branch) before the graph is rolled back.",
    )
    error_limit: int = Field(
        default=4,
        alias="errorLimit",
        ge=1,
        description="Analyses in a row where Prometheus could not be read (unreachable, a query "
        "it refused) before the graph is rolled back.",
    )
    progress_deadline_seconds: float = Field(
        default=600.0,
        alias="progressDeadline",
        gt=0,
        description="Seconds a step may wait for the target to serve the committed graph "
        "before the graph is rolled back.",
    )

    @field_validator("steps")
    @classmethod
    def _steps_ascend_below_100(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("give at least one step (a weight 1-99)")
        if any(not 1 <= step <= 99 for step in value) or list(value) != sorted(set(value)):
            raise ValueError(
                "steps must be strictly ascending weights in 1..99 (the promotion follows the "
                "last one)"
            )
        return value

    @field_validator("metrics")
    @classmethod
    def _builtin_checks_only(
        cls, value: tuple[MetricCheck, ...] | None
    ) -> tuple[MetricCheck, ...] | None:
        if value is None:
            return None
        custom = [check.name for check in value if check.builtin is None]
        if custom:
            raise ValueError(
                f"check {custom[0]} has a query of its own; a graph's branches are judged with "
                "the builtin checks only (request-success-rate, request-latency)"
            )
        if not value:
            raise ValueError("give at least one check, or leave metrics unset")
        return value


def graph_checks(policy: GraphRolloutPolicy, gates: GatesConfig) -> tuple[MetricCheck, ...]:
    """The checks of a graph's analyses: the policy's, else the model releases' builtin ones,
    each needing at least ``minRequests`` answers per branch."""
    checks = policy.metrics
    if checks is None:
        checks = tuple(check for check in gates.metrics if check.builtin is not None)
        checks = checks or DEFAULT_METRIC_CHECKS
    return tuple(
        check.model_copy(update={"min_requests": max(check.min_requests or 0, policy.min_requests)})
        for check in checks
    )


def next_graph_step(steps: tuple[int, ...], weight: int) -> int:
    """The weight after ``weight``: the first step above it, 100 (the promotion) when none is."""
    return next((step for step in steps if step > weight), 100)
