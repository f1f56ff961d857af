"""``soak:``: what an upstream environment watches while a version soaks there at 100 %.

How long a version must soak is the downstream environment's word
(``promotion.require.soak: 24h`` in production's ``sluice.yaml``); what breaks a soak is the
upstream environment's, since it knows its own traffic, Prometheus and alerts::

    soak:
      driftAlerts: true          # a drift alert recorded for the release breaks its soak
      checks:                    # rollout.gates.metrics' checks, absolute thresholds only
        - name: success-rate
          builtin: request-success-rate
          min: 99
          interval: 5m
        - name: error-budget-burn
          query: sum(rate(slo_errors_total{service="{{ inference_service }}"}[{{ interval }}]))
          max: 0.001
      kpis:                      # gates.kpis' series, judged over the window
        - name: ctr
          min: 0.02

A check is measured each pass over its own ``interval`` (the recent past, never before the
promotion) and, once the soak is long enough, over the whole window: those are the numbers
the evidence carries. A soak has one serving revision, so only ``min`` and ``max`` apply
(``maxIncrease`` and ``maxDecrease`` compare with a primary, which a soak has not). A KPI is
``sluice serve``'s own ``sluice_kpi`` series of the serving revision (see the README's KPI
series), averaged over the window. :func:`required_soak_seconds` reads the duration from the
downstream environments.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from controller.evidence.policy import PromotionPolicy, duration_text_seconds
from controller.gates.prometheus_checks import MetricCheck

__all__ = ["SoakKpi", "SoakPolicy", "required_soak_seconds"]


class SoakKpi(BaseModel):
    """One KPI of ``gates.kpis`` the soak watches on ``sluice_kpi``, with its bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(
        pattern=r"^[a-z][a-z0-9_-]{0,62}$",
        description="The KPI check's name in rollout.gates.kpis (sluice_kpi's kpi label).",
    )
    min: float | None = Field(
        default=None, description="Break the soak when the KPI over the window is below this."
    )
    max: float | None = Field(
        default=None, description="Break the soak when the KPI over the window is above this."
    )

    @model_validator(mode="after")
    def _a_bound(self) -> SoakKpi:
        if self.min is None and self.max is None:
            raise ValueError(f"kpi {self.name}: set min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"kpi {self.name}: min {self.min:g} is above max {self.max:g}")
        return self


class SoakPolicy(BaseModel):
    """``soak:`` of an environment's ``sluice.yaml``: what breaks the soak of a version that
    serves 100 % here, before a downstream environment takes it (``promotion.require.soak``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    drift_alerts: bool = Field(
        default=True,
        alias="driftAlerts",
        description="A drift alert that reached `sluice serve`'s /hooks/alertmanager for the "
        "release in this environment after the promotion breaks the soak (the retraining "
        "records keep it). A broken soak is final for the version: its soak evidence records "
        "the alert and the version is not promoted.",
    )
    checks: tuple[MetricCheck, ...] = Field(
        default=(),
        description="Prometheus checks of the serving revision, as rollout.gates.metrics "
        "declares them, with min and max only: each is measured every pass over its interval "
        "and, at the end, over the whole window; a value past a bound breaks the soak, no "
        "data or an unreachable Prometheus holds it.",
    )
    kpis: tuple[SoakKpi, ...] = Field(
        default=(),
        description="KPIs of rollout.gates.kpis, read from sluice serve's sluice_kpi series "
        "for the serving revision, averaged over the window at the end of the soak.",
    )

    @field_validator("checks")
    @classmethod
    def _absolute_and_distinct(cls, value: tuple[MetricCheck, ...]) -> tuple[MetricCheck, ...]:
        names = [check.name for check in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"checks {', '.join(twice)} are named twice; rename one")
        for check in value:
            if check.is_relative:
                raise ValueError(
                    f"check {check.name}: maxIncrease and maxDecrease compare with a primary "
                    "revision, which a soak has not; bound it with min or max"
                )
        return value

    @field_validator("kpis")
    @classmethod
    def _kpis_distinct(cls, value: tuple[SoakKpi, ...]) -> tuple[SoakKpi, ...]:
        names = [kpi.name for kpi in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"kpis {', '.join(twice)} are named twice; keep one")
        return value


def required_soak_seconds(
    environment: str, promotions: Iterable[PromotionPolicy | None]
) -> int | None:
    """How long a version must soak in ``environment``: the longest ``require.soak`` among
    the ``promotion:`` policies (of the other environments) whose ``from`` names it; None
    when none requires a soak there."""
    required = [
        duration_text_seconds(policy.require.soak)
        for policy in promotions
        if policy is not None and policy.require.soak is not None and environment in policy.upstream
    ]
    return max(required) if required else None
