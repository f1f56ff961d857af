"""The quality gate between training and the challenger alias."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.errors import ConfigError
from controller.quality.quality_gate import QualityGate, evaluate_gate, load_quality_gate

GATE = QualityGate(
    minimum={"roc_auc": 0.8},
    maximum={"calibration_error": 0.05},
    max_regression={"roc_auc": 0.01, "calibration_error": 0.01},
)
GOOD = {"roc_auc": 0.9, "calibration_error": 0.01}


def test_candidate_above_floors_without_champion_passes() -> None:
    """With no champion, only the absolute floors and ceilings are checked."""
    verdict = evaluate_gate(GOOD, None, GATE)
    assert verdict.passed
    assert [check.kind for check in verdict.checks] == ["minimum", "maximum"]


def test_candidate_below_floor_fails_and_says_why() -> None:
    """A metric under its minimum fails the gate with the numbers in the reason."""
    verdict = evaluate_gate({**GOOD, "roc_auc": 0.7}, None, GATE)
    assert not verdict.passed
    assert verdict.summary() == "failed: roc_auc 0.7000 < minimum 0.8000"


def test_regression_beyond_margin_against_champion_fails() -> None:
    """A drop larger than the allowed regression fails even above the floor."""
    verdict = evaluate_gate(GOOD, {"roc_auc": 0.95, "calibration_error": 0.01}, GATE)
    assert not verdict.passed
    (failure,) = verdict.failures
    assert failure.metric == "roc_auc"
    assert failure.champion_value == 0.95
    assert "worse by 0.0500, beyond allowed regression 0.0100" in failure.reason


def test_lower_is_better_metrics_regress_upwards() -> None:
    """For calibration error a higher value is the regression."""
    champion = {"roc_auc": 0.9, "calibration_error": 0.001}
    verdict = evaluate_gate({"roc_auc": 0.9, "calibration_error": 0.03}, champion, GATE)
    assert [f.metric for f in verdict.failures] == ["calibration_error"]


def test_improvement_reads_as_better() -> None:
    """An improvement on the champion is reported as such."""
    verdict = evaluate_gate(GOOD, {"roc_auc": 0.85, "calibration_error": 0.01}, GATE)
    reasons = [c.reason for c in verdict.checks if c.kind == "max_regression"]
    assert "roc_auc 0.9000 vs champion 0.8500: better by 0.0500" in reasons


def test_gate_naming_an_unknown_metric_is_a_config_error() -> None:
    """A typo in the gate is reported, not silently ignored."""
    with pytest.raises(ConfigError, match="roc_acu"):
        evaluate_gate(GOOD, None, QualityGate(minimum={"roc_acu": 0.8}))


@given(
    value=st.floats(0, 1),
    champion=st.floats(0, 1),
    margin=st.floats(0, 0.5),
)
def test_regression_check_passes_exactly_when_drop_within_margin(
    value: float, champion: float, margin: float
) -> None:
    """For a larger-is-better metric the verdict is `champion - value <= margin`."""
    gate = QualityGate(max_regression={"pr_auc": margin})
    verdict = evaluate_gate({"pr_auc": value}, {"pr_auc": champion}, gate)
    assert verdict.passed == (champion - value <= margin)


def test_load_rejects_unknown_fields(tmp_path: Path) -> None:
    """An unknown key in the gate file is a one-line config error naming it."""
    path = tmp_path / "gate.yaml"
    path.write_text("minimum: {roc_auc: 0.8}\nmax_regresion: {roc_auc: 0.01}\n")
    with pytest.raises(ConfigError, match="max_regresion"):
        load_quality_gate(path)


def test_load_rejects_malformed_yaml(tmp_path: Path) -> None:
    """Malformed YAML names the file."""
    path = tmp_path / "gate.yaml"
    path.write_text("minimum: [roc_auc\n")
    with pytest.raises(ConfigError, match=r"gate\.yaml: malformed YAML"):
        load_quality_gate(path)


def test_shipped_fraud_gate_loads() -> None:
    """The gate file the fraud detector ships with is valid."""
    gate = load_quality_gate(Path("models/fraud_detector/quality_gate.yaml"))
    assert gate.minimum["roc_auc"] == 0.8
