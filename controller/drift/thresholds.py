"""Drift thresholds from a YAML file: what ``sluice drift --threshold-config`` and the model
server's drift monitor read.

The file holds the fields of :class:`~controller.drift.detector.DriftConfig`; without one, the
defaults are Evidently's.
"""

from __future__ import annotations

from pathlib import Path

from controller.drift.detector import DriftConfig
from controller.yaml_config import load_yaml_file, validate_yaml_model

__all__ = ["load_drift_config"]


def load_drift_config(path: Path | None) -> DriftConfig:
    """Thresholds from YAML (the fields of :class:`DriftConfig`), or Evidently's defaults."""
    if path is None:
        return DriftConfig()
    label = f"drift thresholds {path}"
    data = load_yaml_file(path, label=label, fix="fix --threshold-config")
    return validate_yaml_model(DriftConfig, data, label=label)
