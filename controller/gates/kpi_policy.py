"""``rollout.gates.kpis``: the business outcomes a canary is judged on, one :class:`KpiCheck` each.

Errors and latency say whether a version answers; they cannot say whether its answers help.
A recommender that answers fast and wrong loses clicks, a fraud model that answers fast and
wrong lets fraud through. A KPI check names an outcome that arrives after the request (a click,
a confirmed fraud caught, the revenue of an order: ``sluice feedback`` sends it, joined by
request id) and how the canary's requests are compared with the primary's on it
(:mod:`controller.gates.kpi_judge`).

How late outcomes count, ``outcomeDelay`` seconds after each request:

- a request younger than the delay is not counted at all, with or without an outcome (counting
  only the young requests that already have one would bias a rate up);
- an older request counts with its outcome, or, without one, as 0 (no click, no revenue), unless
  ``missing: skip``, which leaves it out: for a rate among the requests that have an outcome,
  such as a catch rate over the transactions later confirmed as fraud.

``alpha``, ``maxLooks`` and ``spending`` default to the canary judge's (``gates.judge``);
``power`` is what a canary's duration is planned for (:mod:`controller.gates.kpi_power`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationInfo, field_validator

from controller.gates.judge_config import JudgeConfig, Spending
from controller.predictions import OUTCOME_NAME_RULE, is_outcome_name

__all__ = ["KPI_EXAMPLES", "KpiCheck", "KpiPlan"]

_KPI_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
#: What ``power`` is when a check does not set it: 80 %, as most experiment plans assume.
DEFAULT_POWER = 0.8

#: The schema's examples of ``gates.kpis``: a click-through rate, a fraud catch rate and
#: revenue per request.
KPI_EXAMPLES: tuple[dict[str, JsonValue], ...] = (
    {
        "name": "ctr",
        "outcome": "click",
        "kind": "rate",
        "direction": "higher",
        "margin": 0.005,
        "minSamples": 2000,
        "outcomeDelay": 300,
    },
    {
        "name": "fraud-catch-rate",
        "outcome": "fraud_caught",
        "kind": "rate",
        "direction": "higher",
        "margin": 0.02,
        "minSamples": 300,
        "outcomeDelay": 86400,
        "missing": "skip",
    },
    {
        "name": "revenue-per-request",
        "outcome": "revenue",
        "kind": "mean",
        "direction": "higher",
        "margin": 0.05,
        "minSamples": 5000,
        "outcomeDelay": 1800,
        "alpha": 0.025,
    },
)


@dataclass(frozen=True)
class KpiPlan:
    """A check's error budget and looks once the judge's defaults are filled in."""

    alpha: float
    power: float
    max_looks: int
    spending: Spending


class KpiCheck(BaseModel):
    """One outcome metric the canary must not be worse on than the primary."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        json_schema_extra={"examples": [*KPI_EXAMPLES]},
    )

    name: str = Field(
        description="Names the check in verdicts and commit bodies (gate kpi/NAME): a "
        "lower-case letter, then letters, digits, _ or -.",
        examples=["ctr", "fraud-catch-rate", "revenue-per-request"],
    )
    outcome: str = Field(
        description="The named outcome of a request the metric is computed from, as `sluice "
        f"feedback` sends it ({OUTCOME_NAME_RULE}).",
        examples=["click", "fraud_caught", "revenue"],
    )
    kind: Literal["rate", "mean"] = Field(
        description="rate: the share of counted requests whose outcome is 1 (outcomes must be "
        "0 or 1); mean: the mean of the outcome's value per counted request (e.g. revenue), "
        "compared by Welch's z-test on values winsorized at the pooled 0.5th and 99.5th "
        "percentiles.",
    )
    direction: Literal["higher", "lower"] = Field(
        description="Which way is better: higher (CTR, catch rate, revenue) or lower (a "
        "complaint rate).",
    )
    margin: float = Field(
        gt=0,
        lt=1,
        description="Non-inferiority margin: how much worse the canary may be and still pass. "
        "For a rate an absolute difference of rates (0.005 = half a percentage point of CTR); "
        "for a mean a fraction of the primary's mean (0.05 = 5 % less revenue per request).",
        examples=[0.005, 0.05],
    )
    min_samples: int = Field(
        default=1000,
        ge=2,
        alias="minSamples",
        description="Counted requests each revision needs before the check may pass or fail; "
        "fewer is inconclusive, never a pass.",
    )
    outcome_delay_seconds: float = Field(
        alias="outcomeDelay",
        ge=0,
        description="Seconds after a request before it is counted: younger requests are left "
        "out; older ones without an outcome count as 0 (no click) unless missing is skip.",
        examples=[300, 86400],
    )
    missing: Literal["zero", "skip"] = Field(
        default="zero",
        description="A request past outcomeDelay without an outcome: zero counts it as 0 (no "
        "click, no revenue); skip leaves it out (a catch rate over confirmed frauds only).",
    )
    alpha: float | None = Field(
        default=None,
        gt=0,
        lt=0.5,
        description="One-sided error budget of this check over its looks; unset: gates.judge's.",
    )
    power: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Probability of detecting the drop a canary's duration is planned for "
        "(the README's table; benchmarks/kpi_gate_power.py); unset: 0.8.",
    )
    max_looks: int | None = Field(
        default=None,
        ge=1,
        le=100,
        alias="maxLooks",
        description="Analyses over which alpha is spent; unset: gates.judge's.",
    )
    spending: Spending | None = Field(
        default=None,
        description="Alpha-spending function (obrien-fleming, pocock); unset: gates.judge's.",
    )

    @field_validator("name")
    @classmethod
    def _name_is_a_gate_name(cls, value: str) -> str:
        if not _KPI_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a KPI name (a lower-case letter, then up to 62 lower-case "
                "letters, digits, _ or -), e.g. ctr"
            )
        return value

    @field_validator("outcome")
    @classmethod
    def _outcome_is_a_name(cls, value: str) -> str:
        if not is_outcome_name(value):
            raise ValueError(f"{value!r} is not an outcome name ({OUTCOME_NAME_RULE}), e.g. click")
        return value

    @field_validator("margin")
    @classmethod
    def _margin_fits_the_kind(cls, value: float, info: ValidationInfo) -> float:
        if info.data.get("kind") == "rate" and value >= 0.5:
            raise ValueError(
                f"{value} is too wide for a rate: its margin is an absolute difference of "
                "rates, e.g. 0.005 for half a percentage point"
            )
        return value

    def plan(self, judge: JudgeConfig) -> KpiPlan:
        """This check's alpha, power and looks, the judge's where it sets none."""
        return KpiPlan(
            alpha=self.alpha if self.alpha is not None else judge.alpha,
            power=self.power if self.power is not None else DEFAULT_POWER,
            max_looks=self.max_looks if self.max_looks is not None else judge.max_looks,
            spending=self.spending if self.spending is not None else judge.spending,
        )
