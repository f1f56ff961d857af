"""``sluice drift``: compare a data file with the profile of the data a model version learnt from.

Step 5 of the loop asks "do live inputs still look like the training data?". The only reference a
deployed version carries is the profile its training step logged (``reference_profile.json``),
so this command resolves the version, fetches that profile, checks the current file can be
compared with it at all, and runs :func:`controller.drift.detect_drift_from_profile`.

Like :mod:`controller.commands_propose`, this is the composition root of one command: the only
place its concrete backend is named. The local input (the data file and the threshold file) is
checked before the registry is asked anything, so a typo fails fast and offline.

What counts as input that cannot be compared (exit 2, one line):

- a file that is missing, empty, has no rows, or is neither CSV nor Parquet;
- a file that lacks any feature of the profile. The profile carries no model name, so a file
  that shares fewer than half of the profile's features is reported as probably belonging to
  another model; extra columns (labels, ids, scores) are ignored;
- a numeric feature whose column is not numeric (text in a number column);
- a version whose run logged no profile (not trained by a Sluice-aware training step).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.text import Text

from controller.backends.mlflow_registry import MlflowRegistry, configure_mlflow_http
from controller.data_profile import DataProfile
from controller.domain import ModelVersion
from controller.drift import DatasetDrift, DriftConfig, detect_drift_from_profile
from controller.drift.report_html import render_report
from controller.drift.table import drift_table, verdict_line
from controller.errors import InputError
from controller.settings import Settings
from controller.tables import read_table
from controller.yaml_config import load_yaml_file, validate_yaml_model

__all__ = [
    "DEFAULT_ALIAS",
    "DriftRequest",
    "check_columns",
    "load_drift_config",
    "read_current",
    "report_dict",
    "run_drift",
]

#: The alias drift is measured for by default: the version that serves production.
DEFAULT_ALIAS = "champion"


@dataclass(frozen=True)
class DriftRequest:
    """What ``sluice drift`` was asked: which version, which data, which outputs."""

    model: str
    current: Path
    version: int | None = None
    alias: str | None = None
    html: Path | None = None
    threshold_config: Path | None = None
    as_json: bool = False


def read_current(path: Path) -> pd.DataFrame:
    """The current data as a frame; an unreadable, empty or unknown file is an InputError."""
    frame = read_table(path, name="current data", fix="fix --current")
    if frame.empty:
        raise InputError(f"current data {path} has no rows; fix --current")
    return frame


def load_drift_config(path: Path | None) -> DriftConfig:
    """Thresholds from YAML (the fields of :class:`DriftConfig`), or Evidently's defaults."""
    if path is None:
        return DriftConfig()
    label = f"drift thresholds {path}"
    data = load_yaml_file(path, label=label, fix="fix --threshold-config")
    return validate_yaml_model(DriftConfig, data, label=label)


def _check_numeric(column: pd.Series, *, name: str, source: str) -> None:
    if pd.api.types.is_numeric_dtype(column.dtype):
        return
    present = column.dropna()
    bad = present[pd.to_numeric(present, errors="coerce").isna()]
    found = (
        f"non-numeric values in {bad.size:,} of {column.size:,} rows (first: {bad.iloc[0]!r})"
        if bad.size
        else f"a column of type {column.dtype}"
    )
    raise InputError(
        f"feature '{name}' is numeric in the reference profile but {source} has {found}; "
        "fix the data"
    )


def check_columns(profile: DataProfile, frame: pd.DataFrame, *, source: str, owner: str) -> None:
    """Refuse a frame the profile cannot be compared with: missing features or wrong types.

    ``owner`` names the version ("fraud-detector v3") and ``source`` the file, for the message.
    """
    expected = list(profile.features)
    missing = [name for name in expected if name not in frame.columns]
    if missing:
        shared = len(expected) - len(missing)
        if shared * 2 < len(expected):
            raise InputError(
                f"{source} has only {shared} of the {len(expected)} features of {owner}'s "
                f"reference profile (missing columns: {', '.join(missing)}): is it data for "
                "another model?"
            )
        raise InputError(f"{source} lacks feature columns of {owner}: {', '.join(missing)}")
    for name, feature in profile.features.items():
        if feature.kind == "numeric":
            _check_numeric(frame[name], name=name, source=source)


def _resolve(registry: MlflowRegistry, request: DriftRequest) -> ModelVersion:
    if request.version is not None:
        return registry.resolve(request.model, version=request.version)
    return registry.resolve(request.model, alias=request.alias or DEFAULT_ALIAS)


def _reference_profile(registry: MlflowRegistry, version: ModelVersion) -> DataProfile:
    profile = registry.reference_profile(version.run_id) if version.run_id else None
    if profile is None:
        raise InputError(
            f"version {version.version} of {version.name} has no reference profile: it was not "
            "trained by a Sluice-aware training step"
        )
    return profile


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def report_dict(
    version: ModelVersion,
    request: DriftRequest,
    profile: DataProfile,
    current_rows: int,
    result: DatasetDrift,
) -> dict[str, Any]:
    """The result as JSON-ready data with a fixed set of keys; non-finite values become null."""
    return {
        "model": version.name,
        "version": version.version,
        "alias": None if request.version is not None else request.alias or DEFAULT_ALIAS,
        "run_id": version.run_id,
        "reference_rows": profile.rows,
        "current": {"path": str(request.current), "rows": current_rows},
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
        "html": str(request.html) if request.html is not None else None,
    }


def _write_html(
    path: Path,
    version: ModelVersion,
    request: DriftRequest,
    profile: DataProfile,
    current: pd.DataFrame,
    result: DatasetDrift,
) -> None:
    details = [
        ("model", f"{version.name} v{version.version}"),
        ("run", version.run_id or "-"),
        ("reference", f"{profile.rows:,} training rows (profile)"),
        ("current", f"{request.current} ({len(current):,} rows)"),
    ]
    text = render_report(
        result, profile, current, title=f"Drift: {version.name} v{version.version}", details=details
    )
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(
            f"cannot write the HTML report {path} ({exc.strerror}); fix --html"
        ) from None


def _print(
    console: Console,
    version: ModelVersion,
    request: DriftRequest,
    profile: DataProfile,
    rows: int,
    result: DatasetDrift,
) -> None:
    alias = "" if request.version is not None else f" ({request.alias or DEFAULT_ALIAS})"
    header = Text.assemble(
        (f"{version.name} v{version.version}", "bold"),
        f"{alias}: reference {profile.rows:,} training rows, current {request.current} "
        f"{rows:,} rows",
    )  # Text, not markup: a model name or path may contain "[".
    console.print(header, soft_wrap=True)
    console.print(drift_table(result))
    style = "bold red" if result.drifted else "bold green"
    console.print(Text(verdict_line(result), style=style), soft_wrap=True)
    if request.html is not None:
        console.print(f"HTML report: {request.html}", highlight=False)


def run_drift(settings: Settings, request: DriftRequest, *, console: Console) -> DatasetDrift:
    """Resolve the version, compare the current file with its profile, and report."""
    if request.html is not None and not request.html.parent.is_dir():
        raise InputError(f"cannot write the HTML report {request.html}: no such directory")
    current = read_current(request.current)
    config = load_drift_config(request.threshold_config)
    configure_mlflow_http(
        retries=settings.registry_request_retries,
        timeout_seconds=settings.registry_request_timeout_seconds,
    )
    registry = MlflowRegistry(settings.mlflow_tracking_uri)
    version = _resolve(registry, request)
    profile = _reference_profile(registry, version)
    owner = f"{version.name} v{version.version}"
    check_columns(profile, current, source=str(request.current), owner=owner)
    result = detect_drift_from_profile(profile, current, config=config)
    if request.html is not None:
        _write_html(request.html, version, request, profile, current, result)
    if request.as_json:
        console.print_json(json.dumps(report_dict(version, request, profile, len(current), result)))
    else:
        _print(console, version, request, profile, len(current), result)
    return result
