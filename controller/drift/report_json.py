"""The drift verdict as JSON-ready data (``sluice drift --json``), with a fixed set of keys.

Non-finite values (a statistic that could not be computed) become null, so the output is
strict JSON.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from controller.domain import ModelVersion
from controller.drift.detector import DatasetDrift
from controller.drift.table import verdict_line
from controller.quality.data_profile import DataProfile

__all__ = ["report_dict"]


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def report_dict(
    version: ModelVersion,
    profile: DataProfile,
    result: DatasetDrift,
    *,
    alias: str | None,
    current: Path,
    current_rows: int,
    html: Path | None,
) -> dict[str, Any]:
    """The result as JSON-ready data; ``alias`` is the one resolved (None for a version asked
    for by number), ``current`` the compared file and ``html`` the HTML report, if written."""
    return {
        "model": version.name,
        "version": version.version,
        "alias": alias,
        "run_id": version.run_id,
        "reference_rows": profile.rows,
        "current": {"path": str(current), "rows": current_rows},
        "drifted": result.drifted,
        "drift_share": result.drift_share,
        "drifted_share": result.drifted_share,
        "drifted_features": list(result.drifted_features),
        "features": [
            {
                "feature": feature.feature,
                "kind": feature.kind,
                "method": feature.method,
                "statistic": feature.statistic,
                "value": _finite_or_none(feature.value),
                "threshold": feature.threshold,
                "drifted": feature.drifted,
                "reference_rows": feature.reference_rows,
                "current_rows": feature.current_rows,
                "approximate": feature.approximate,
            }
            for feature in result.features
        ],
        "summary": verdict_line(result),
        "html": str(html) if html is not None else None,
    }
