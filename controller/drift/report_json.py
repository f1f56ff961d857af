"""The drift verdict as JSON-ready data (``sluice drift --json``), with a fixed set of keys.

Non-finite values (a statistic that could not be computed) become null, so the output is
strict JSON. With ``--by``, ``"by"`` holds a slice per value of the column, each with the same
verdict keys as the whole file (``drifted`` and the shares null for a slice not judged), and
says what the slices were compared with: ``"reference"`` is ``"per-slice"`` (each value's own
training profile; a slice's ``"reference"`` is ``"pooled"`` when its value had none) or
``"pooled"`` (the whole training profile for every slice).

With ``--outcome``, ``"outcome"`` holds the outcome of the whole file (its ``kind``, ``rows``,
``value``, the ``training`` value and the ``change``, null when unknown) and each slice of
``"by"`` an ``"outcome"`` of its own; both are null without ``--outcome``. Nothing in them is
part of the verdict.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from controller.domain import ModelVersion
from controller.drift.detector import DatasetDrift
from controller.drift.outcomes import OutcomeReport, OutcomeValue
from controller.drift.slices import SlicedDrift, SliceDrift, SliceValue
from controller.drift.table import outcome_line, reference_notes, slices_line, verdict_line
from controller.quality.data_profile import DataProfile

__all__ = ["drift_dict", "outcome_dict", "report_dict", "sliced_dict"]


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _outcome_value(outcome: OutcomeValue) -> dict[str, Any]:
    return {
        "rows": outcome.rows,
        "value": _finite_or_none(outcome.value),
        "training": _finite_or_none(outcome.training),
        "change": _finite_or_none(outcome.change),
    }


def outcome_dict(report: OutcomeReport) -> dict[str, Any]:
    """The outcome of the whole file (``sluice drift --outcome``): what it is, its value
    beside the training value, the rows without one and the notes printed with it."""
    return {
        "name": report.name,
        "kind": report.kind,
        **_outcome_value(report.whole),
        "missing_rows": report.missing,
        "judged": False,
        "notes": list(report.notes),
        "summary": outcome_line(report),
    }


def drift_dict(result: DatasetDrift) -> dict[str, Any]:
    """One dataset's verdict: the shares, the drifted features and every feature's row."""
    return {
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
    }


def _json_value(value: SliceValue) -> SliceValue:
    """A slice value as strict JSON holds it: an infinite number as its text."""
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


def _slice_dict(part: SliceDrift, outcome: OutcomeValue | None) -> dict[str, Any]:
    head = {
        "value": _json_value(part.value),
        "rows": part.rows,
        "reference": "slice" if part.own_reference else "pooled",
        "reference_rows": part.reference.rows if part.reference is not None else None,
        "outcome": _outcome_value(outcome) if outcome is not None else None,
    }
    if part.drift is None:
        return {
            **head,
            "judged": False,
            "reason": part.skipped,
            "drifted": None,
            "drift_share": None,
            "drifted_share": None,
            "drifted_features": [],
            "features": [],
            "summary": part.skipped,
        }
    return {**head, "judged": True, "reason": None, **drift_dict(part.drift)}


def sliced_dict(sliced: SlicedDrift, outcome: OutcomeReport | None = None) -> dict[str, Any]:
    """Every slice's verdict (``sluice drift --by``), and whether any slice drifts; with
    ``outcome``, each slice's outcome too."""
    outcomes = {part.value: part.outcome for part in outcome.slices} if outcome else {}
    return {
        "column": sliced.column,
        "min_rows": sliced.min_rows,
        "reference": sliced.reference,
        "profiles_by": sliced.profiles_by,
        "notes": reference_notes(sliced),
        "drifted": sliced.drifted,
        "drifted_values": [_json_value(value) for value in sliced.drifted_values],
        "summary": slices_line(sliced),
        "slices": [_slice_dict(part, outcomes.get(part.value)) for part in sliced.slices],
    }


def report_dict(
    version: ModelVersion,
    profile: DataProfile,
    result: DatasetDrift,
    *,
    alias: str | None,
    current: Path,
    current_rows: int,
    html: Path | None,
    by: SlicedDrift | None = None,
    outcome: OutcomeReport | None = None,
) -> dict[str, Any]:
    """The result as JSON-ready data; ``alias`` is the one resolved (None for a version asked
    for by number), ``current`` the compared file, ``html`` the HTML report, if written,
    ``by`` the slices of ``--by`` and ``outcome`` the report of ``--outcome`` (each null
    without its flag)."""
    return {
        "model": version.name,
        "version": version.version,
        "alias": alias,
        "run_id": version.run_id,
        "reference_rows": profile.rows,
        "current": {"path": str(current), "rows": current_rows},
        **drift_dict(result),
        "html": str(html) if html is not None else None,
        "by": sliced_dict(by, outcome) if by is not None else None,
        "outcome": outcome_dict(outcome) if outcome is not None else None,
    }
