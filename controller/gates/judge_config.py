"""The judge's configuration (``gates.judge`` in an environment's ``rollout.yaml``), apart from the
judge itself (:mod:`controller.gates.judge`) so that reading a config does not load numpy.

Every command that reads an environment validates this model; only the commands that judge a
canary need the statistics behind it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["JudgeConfig", "Spending"]

Spending = Literal["obrien-fleming", "pocock"]


class JudgeConfig(BaseModel):
    """How sure the judge must be, and how long it may take, before it decides."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    alpha: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description="Overall one-sided error budget, spread over maxLooks by alpha spending.",
    )
    min_samples: int = Field(
        default=200,
        ge=2,
        alias="minSamples",
        description="Requests each revision needs before the judge may pass or fail.",
    )
    max_looks: int = Field(
        default=5,
        ge=1,
        le=100,
        alias="maxLooks",
        description="Analyses a step may take before the judge must decide; later looks stay "
        "inconclusive.",
    )
    error_margin: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        alias="errorMargin",
        description="Non-inferiority margin on the error rate, absolute: 0.01 lets the canary "
        "fail up to 1 percentage point more often than the primary.",
    )
    latency_margin: float = Field(
        default=0.1,
        gt=0,
        lt=0.5,
        alias="latencyMargin",
        description="Non-inferiority margin on P(canary slower than primary), ties counting "
        "half: the canary passes while that probability is shown below 0.5 + margin.",
    )
    spending: Spending = Field(
        default="obrien-fleming",
        description="Alpha-spending function (Lan-DeMets): obrien-fleming saves alpha for "
        "late looks, pocock spends it evenly.",
    )
    check_errors: bool = Field(
        default=True, alias="checkErrors", description="Compare error rates."
    )
    check_latency: bool = Field(
        default=True,
        alias="checkLatency",
        description="Compare latency histograms (skipped when a revision has none).",
    )

    @model_validator(mode="after")
    def _something_is_checked(self) -> JudgeConfig:
        if not (self.check_errors or self.check_latency):
            raise ValueError("checkErrors and checkLatency are both off: nothing to judge")
        return self
