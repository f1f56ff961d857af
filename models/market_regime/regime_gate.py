"""Per-regime quality gates: for each model, each metric and the regimes where it must be good.

``quality_gate.yaml`` has a section per model kind; in it, Sluice's gate sections (``minimum``,
``maximum``, ``max_regression``) name a metric and, under it, the scopes it applies to
(``all`` or a regime) with their thresholds::

    volatile:
      minimum:
        directional_accuracy: {volatile: 0.54}

A scope a metric does not name is not judged there: a specialist may be poor outside its
regime. The gate is flattened to Sluice's own :class:`~controller.quality.quality_gate.
QualityGate` over ``SCOPE/METRIC`` names (``volatile/directional_accuracy``) and judged by its
:func:`~controller.quality.quality_gate.evaluate_gate`, so a check's reason names the regime.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.quality.quality_gate import (
    GateVerdict,
    QualityGate,
    evaluate_gate,
)
from controller.yaml_config import load_yaml_file, validate_yaml_model
from models.market_regime.regime_metrics import LOWER_IS_BETTER, flatten

__all__ = ["RegimeGate", "RegimeGates", "evaluate_regime_gate", "load_regime_gates"]

Scope = Literal["all", "calm", "volatile", "black_swan"]
Thresholds = dict[str, dict[Scope, float]]


class RegimeGate(BaseModel):
    """One model's thresholds, per metric and scope."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    minimum: Thresholds = Field(
        default_factory=dict,
        description="Floors for larger-is-better metrics, e.g. {recall: {black_swan: 0.7}}.",
    )
    maximum: Thresholds = Field(
        default_factory=dict,
        description="Ceilings for smaller-is-better metrics, e.g. {brier: {calm: 0.24}}.",
    )
    max_regression: Thresholds = Field(
        default_factory=dict,
        description=(
            "Largest allowed worsening against the champion on the same holdout rows, per "
            "scope, for larger-is-better metrics. Ignored when there is no champion."
        ),
    )

    @model_validator(mode="after")
    def _regression_direction(self) -> RegimeGate:
        # Sluice's gate knows which of its own metrics are lower-is-better; these are not its.
        lower = sorted(set(self.max_regression) & LOWER_IS_BETTER)
        if lower:
            raise ValueError(
                f"max_regression of {', '.join(lower)} (lower is better) is not supported: "
                "bound it with maximum"
            )
        return self

    def flat(self) -> QualityGate:
        """The same thresholds over ``SCOPE/METRIC`` names."""
        return QualityGate(
            minimum=_flat(self.minimum),
            maximum=_flat(self.maximum),
            max_regression=_flat(self.max_regression),
        )


def _flat(thresholds: Thresholds) -> dict[str, float]:
    by_scope: dict[str, dict[str, float]] = {}
    for metric, scopes in thresholds.items():
        for scope, value in scopes.items():
            by_scope.setdefault(scope, {})[metric] = value
    return flatten(by_scope)


class RegimeGates(BaseModel):
    """The gate file: one section per model kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    classifier: RegimeGate = Field(default_factory=RegimeGate)
    calm: RegimeGate = Field(default_factory=RegimeGate)
    volatile: RegimeGate = Field(default_factory=RegimeGate)
    blend: RegimeGate = Field(default_factory=RegimeGate)

    def of(self, kind: str) -> RegimeGate:
        """The section of model ``kind``."""
        gate: RegimeGate = getattr(self, kind)
        return gate


def evaluate_regime_gate(
    candidate: Mapping[str, Mapping[str, float]],
    champion: Mapping[str, Mapping[str, float]] | None,
    gate: RegimeGate,
) -> GateVerdict:
    """Judge per-scope metrics (``{scope: {metric: value}}``) against a model's gate."""
    return evaluate_gate(
        flatten(candidate), flatten(champion) if champion is not None else None, gate.flat()
    )


def load_regime_gates(path: Path) -> RegimeGates:
    """Read the gate file; a malformed or unknown field is a one-line ``ConfigError``."""
    label = f"quality gate {path}"
    data = load_yaml_file(path, label=label, fix="fix --gate")
    return validate_yaml_model(RegimeGates, data, label=label)
