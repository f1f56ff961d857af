"""Drift of live inputs against the training data: statistics and the per-feature detector.

:mod:`controller.drift.statistics` holds the statistics as pure functions over arrays,
:mod:`controller.drift.features` reduces a raw or profiled reference to what they need, and
:mod:`controller.drift.detector` chooses a statistic per feature as Evidently's
``DataDriftPreset`` does and gives the dataset's verdict.

The detector's names are importable from here too, loaded on first use: the detector needs
pandas, and the modules that import only :mod:`controller.drift.statistics` (the shadow judge,
and through it every command that reads a policy) should not pay for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("controller.drift.detector"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
