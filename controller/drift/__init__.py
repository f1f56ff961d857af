"""Drift of live inputs against the training data: statistics and the per-feature detector.

:mod:`controller.drift.statistics` holds the statistics as pure functions over arrays,
:mod:`controller.drift.features` reduces a raw or profiled reference to what they need, and
:mod:`controller.drift.detector` chooses a statistic per feature as Evidently's
``DataDriftPreset`` does and gives the dataset's verdict.
"""

from __future__ import annotations

from controller.drift.detector import (
    DEFAULT_THRESHOLDS,
    DatasetDrift,
    DriftConfig,
    DriftMethod,
    FeatureDrift,
    FeatureDriftConfig,
    FeatureKind,
    choose_method,
    detect_drift,
    detect_drift_from_profile,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "DatasetDrift",
    "DriftConfig",
    "DriftMethod",
    "FeatureDrift",
    "FeatureDriftConfig",
    "FeatureKind",
    "choose_method",
    "detect_drift",
    "detect_drift_from_profile",
]
