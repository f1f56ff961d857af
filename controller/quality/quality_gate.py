"""The quality gate between training and the registry's ``challenger`` alias.

A freshly trained version must clear absolute floors (it is good enough at all) and must not
regress against the current champion on the same holdout by more than the allowed margin (it
is not worse than what serves). The decision is a pure function over plain numbers, so CI,
the demo and the tests reach the same verdict from the same metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from controller.errors import ConfigError
from controller.yaml_config import load_yaml_file, validate_yaml_model

__all__ = [
    "LOWER_IS_BETTER",
    "GateCheck",
    "GateVerdict",
    "QualityGate",
    "evaluate_gate",
    "load_quality_gate",
]

#: Metrics (of :mod:`controller.quality.classification_metrics`) for which a smaller value is
#: better; everything else: larger is better. Here, not there, so that a model card can say
#: which way a metric moved without loading numpy.
LOWER_IS_BETTER = frozenset({"calibration_error"})


class QualityGate(BaseModel):
    """Thresholds a candidate must meet. Metric names are those the training step logs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    minimum: dict[str, float] = Field(
        default_factory=dict,
        description="Floors for larger-is-better metrics, e.g. {roc_auc: 0.85}.",
    )
    maximum: dict[str, float] = Field(
        default_factory=dict,
        description="Ceilings for smaller-is-better metrics, e.g. {calibration_error: 0.05}.",
    )
    max_regression: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Largest allowed worsening against the champion on the same holdout, in the "
            "metric's own units, e.g. {pr_auc: 0.02}. Ignored when there is no champion."
        ),
    )


class GateCheck(BaseModel):
    """One comparison the gate made, in words a reviewer reads."""

    model_config = ConfigDict(frozen=True)

    metric: str
    kind: Literal["minimum", "maximum", "max_regression"]
    threshold: float
    value: float
    champion_value: float | None = None
    passed: bool
    reason: str


class GateVerdict(BaseModel):
    """All checks and the overall result; ``passed`` only when every check passed."""

    model_config = ConfigDict(frozen=True)

    passed: bool
    checks: tuple[GateCheck, ...]

    @property
    def failures(self) -> tuple[GateCheck, ...]:
        """The checks that did not pass."""
        return tuple(check for check in self.checks if not check.passed)

    def summary(self) -> str:
        """One line: 'passed' or the failed checks' reasons."""
        if self.passed:
            return "passed"
        return "failed: " + "; ".join(check.reason for check in self.failures)


def _metric(metrics: Mapping[str, float], name: str, where: str) -> float:
    if name not in metrics:
        known = ", ".join(sorted(metrics)) or "none"
        raise ConfigError(
            f"quality gate names metric {name!r} that the {where} does not have (known: {known})"
        )
    return float(metrics[name])


def evaluate_gate(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    gate: QualityGate,
) -> GateVerdict:
    """Compare a candidate's holdout metrics with the gate's floors and with the champion's."""
    checks: list[GateCheck] = []
    for name, floor in sorted(gate.minimum.items()):
        value = _metric(candidate, name, "candidate")
        ok = value >= floor
        reason = f"{name} {value:.4f} {'>=' if ok else '<'} minimum {floor:.4f}"
        checks.append(
            GateCheck(
                metric=name, kind="minimum", threshold=floor, value=value, passed=ok, reason=reason
            )
        )
    for name, ceiling in sorted(gate.maximum.items()):
        value = _metric(candidate, name, "candidate")
        ok = value <= ceiling
        reason = f"{name} {value:.4f} {'<=' if ok else '>'} maximum {ceiling:.4f}"
        checks.append(
            GateCheck(
                metric=name,
                kind="maximum",
                threshold=ceiling,
                value=value,
                passed=ok,
                reason=reason,
            )
        )
    if champion is not None:
        for name, margin in sorted(gate.max_regression.items()):
            value = _metric(candidate, name, "candidate")
            reference = _metric(champion, name, "champion")
            worsening = value - reference if name in LOWER_IS_BETTER else reference - value
            ok = worsening <= margin
            if worsening > 0:
                relation = "within" if ok else "beyond"
                change = f"worse by {worsening:.4f}, {relation} allowed regression {margin:.4f}"
            else:
                change = f"better by {-worsening:.4f}" if worsening < 0 else "unchanged"
            reason = f"{name} {value:.4f} vs champion {reference:.4f}: {change}"
            checks.append(
                GateCheck(
                    metric=name,
                    kind="max_regression",
                    threshold=margin,
                    value=value,
                    champion_value=reference,
                    passed=ok,
                    reason=reason,
                )
            )
    return GateVerdict(passed=all(check.passed for check in checks), checks=tuple(checks))


def load_quality_gate(path: Path) -> QualityGate:
    """Read a gate from YAML; a malformed or unknown field is a one-line :class:`ConfigError`."""
    label = f"quality gate {path}"
    data = load_yaml_file(path, label=label, fix="fix --gate")
    return validate_yaml_model(QualityGate, data, label=label)
