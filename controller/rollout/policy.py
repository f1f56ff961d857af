"""The rollout policy: steps, pacing and limits, typed and kept in Git beside the manifests.

It is the ``rollout:`` block of an environment's ``sluice.yaml``, so a change to how
carefully a model reaches production is reviewed like the manifests it governs. The JSON
schema printed by ``sluice config schema environment`` documents every field.

Defaults favour a fast, safe rollback (see ``benchmarks/rollback_latency.py``): one failing
analysis rolls back, because a gate only fails on evidence (a threshold crossed with enough
requests, or a statistically significant difference); missing data is inconclusive and only
rolls back after ``inconclusiveLimit`` analyses in a row.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from controller.rollout.gates_config import GatesConfig

__all__ = ["RolloutPolicy", "next_step"]


class RolloutPolicy(BaseModel):
    """How a new version takes traffic once its proposal merges."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    steps: tuple[int, ...] = Field(
        default=(10, 50, 100),
        description="canaryTrafficPercent steps, ascending, ending at 100 (100 = promote).",
    )
    interval_seconds: float = Field(
        default=30.0,
        alias="interval",
        gt=0,
        description="Seconds between analyses of a step; the first one comes this long after "
        "the step is served.",
    )
    failure_limit: int = Field(
        default=1,
        alias="failureLimit",
        ge=1,
        description="Failed analyses at one step before rolling back.",
    )
    inconclusive_limit: int = Field(
        default=5,
        alias="inconclusiveLimit",
        ge=1,
        description="Analyses in a row without an answer (no data, query errors, too few "
        "samples) before rolling back.",
    )
    progress_deadline_seconds: float = Field(
        default=600.0,
        alias="progressDeadline",
        gt=0,
        description="Seconds a step may wait for the target to sync and the canary revision "
        "to become ready before rolling back (Knative's default is 600).",
    )
    gates: GatesConfig = Field(
        default_factory=GatesConfig, description="What each analysis checks."
    )

    @field_validator("steps")
    @classmethod
    def _steps_ascend_to_100(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or value[-1] != 100:
            raise ValueError("steps must end at 100")
        if any(not 0 < step <= 100 for step in value) or list(value) != sorted(set(value)):
            raise ValueError("steps must be strictly ascending percentages in 1..100")
        return value


def next_step(steps: tuple[int, ...], current: int) -> int:
    """The step after ``current``: the first one above it (100 when none is)."""
    return next((step for step in steps if step > current), 100)
