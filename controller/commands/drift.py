"""``sluice drift``: compare a data file with the profile of the data a model version learnt from.

Step 5 of the loop asks "do live inputs still look like the training data?". The only reference a
deployed version carries is the profile its training step logged (``reference_profile.json``),
so this command resolves the version, fetches that profile, checks the current file can be
compared with it at all, and runs :func:`controller.drift.detect_drift_from_profile`.

Like :mod:`controller.commands.propose`, this is the composition root of one command: the only
place its concrete backend is named. The local input (the data file and the threshold file) is
checked before the registry is asked anything, so a typo fails fast and offline.

What counts as input that cannot be compared (exit 2, one line):

- a file that is missing, empty, has no rows, or is neither CSV nor Parquet;
- a file that lacks any feature of the profile. The profile carries no model name, so a file
  that shares fewer than half of the profile's features is reported as probably belonging to
  another model; extra columns (labels, ids, scores) are ignored;
- a numeric feature whose column is not numeric (text in a number column);
- a version whose run logged no profile (not trained by a Sluice-aware training step);
- with ``--by COLUMN``: a file without that column (the message names the columns it has), or
  a column with more than :data:`~controller.drift.slices.MAX_SLICE_VALUES` distinct values
  (not a category). A column that is also a feature is allowed and stays a feature.

With ``--by``, the exit code is 1 when the whole file drifts *or* any slice drifts: a part of
the data that moved is what slicing asks about (see :mod:`controller.drift.slices`). When the
version's run also logged per-value profiles of that column (``reference_profiles_by.json``,
read through the same registry as the pooled profile), each slice is compared with its own
value's profile; otherwise with the pooled one, and the output says so.

With ``--outcome NAME`` (a column of the file: 0/1 outcomes or numbers) the output adds the
outcome of the whole file and, with ``--by``, of each slice, beside the training value where
the profile recorded the same column (:mod:`controller.drift.outcomes`). The outcome is
reported, not judged: the exit code stays drift's. A file without the column, or with text in
it, is refused like a missing ``--by`` column, before the registry is asked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.text import Text

from controller.backends.mlflow_registry import MlflowRegistry, configure_mlflow_http
from controller.domain import ModelVersion
from controller.drift.columns import check_columns
from controller.drift.detector import DatasetDrift, detect_drift_from_profile
from controller.drift.outcomes import OutcomeReport, outcome_column, report_outcome
from controller.drift.report_html import render_report
from controller.drift.report_json import report_dict
from controller.drift.slices import (
    DEFAULT_MIN_SLICE_ROWS,
    SlicedDrift,
    check_slice_column,
    detect_drift_by,
)
from controller.drift.table import (
    drift_table,
    outcome_line,
    outcome_table,
    reference_notes,
    slice_table,
    slices_line,
    verdict_line,
)
from controller.drift.thresholds import load_drift_config
from controller.errors import InputError
from controller.quality.data_profile import DataProfile, SliceProfiles
from controller.settings import Settings
from controller.tables import read_table

__all__ = ["DEFAULT_ALIAS", "DriftOutcome", "DriftRequest", "read_current", "run_drift"]

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
    by: str | None = None
    min_slice_rows: int | None = None  # None: DEFAULT_MIN_SLICE_ROWS
    outcome: str | None = None  # a column of ``current`` reported beside drift


@dataclass(frozen=True)
class DriftOutcome:
    """The whole file's verdict and, with ``--by``, every slice's; with ``--outcome``, the
    outcome column's report (never part of the verdict)."""

    whole: DatasetDrift
    by: SlicedDrift | None = None
    outcome: OutcomeReport | None = None

    @property
    def drifted(self) -> bool:
        """What exit 1 means: the whole file drifts, or any slice does."""
        return self.whole.drifted or (self.by is not None and self.by.drifted)


def read_current(path: Path) -> pd.DataFrame:
    """The current data as a frame; an unreadable, empty or unknown file is an InputError."""
    frame = read_table(path, name="current data", fix="fix --current")
    if frame.empty:
        raise InputError(f"current data {path} has no rows; fix --current")
    return frame


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


def _slice_profiles(registry: MlflowRegistry, version: ModelVersion) -> SliceProfiles | None:
    """The version's per-value training profiles, if its run logged any (optional)."""
    return registry.slice_profiles(version.run_id) if version.run_id else None


def _write_html(
    path: Path,
    version: ModelVersion,
    request: DriftRequest,
    profile: DataProfile,
    current: pd.DataFrame,
    outcome: DriftOutcome,
) -> None:
    details = [
        ("model", f"{version.name} v{version.version}"),
        ("run", version.run_id or "-"),
        ("reference", f"{profile.rows:,} training rows (profile)"),
        ("current", f"{request.current} ({len(current):,} rows)"),
    ]
    if outcome.by is not None:
        details.append(("sliced by", f"{outcome.by.column} ({len(outcome.by.slices)} values)"))
        details.append(("slices against", _against(outcome.by)))
    text = render_report(
        outcome.whole,
        profile,
        current,
        title=f"Drift: {version.name} v{version.version}",
        details=details,
        by=outcome.by,
        outcome=outcome.outcome,
    )
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(
            f"cannot write the HTML report {path} ({exc.strerror}); fix --html"
        ) from None


def _against(by: SlicedDrift) -> str:
    if by.reference == "per-slice":
        return f"the training profile of their own {by.column} (per-slice)"
    return "the whole training profile (pooled)"


def _print(
    console: Console,
    version: ModelVersion,
    request: DriftRequest,
    profile: DataProfile,
    rows: int,
    outcome: DriftOutcome,
) -> None:
    alias = "" if request.version is not None else f" ({request.alias or DEFAULT_ALIAS})"
    header = Text.assemble(
        (f"{version.name} v{version.version}", "bold"),
        f"{alias}: reference {profile.rows:,} training rows, current {request.current} "
        f"{rows:,} rows",
    )  # Text, not markup: a model name or path may contain "[".
    console.print(header, soft_wrap=True)
    console.print(drift_table(outcome.whole))
    style = "bold red" if outcome.whole.drifted else "bold green"
    console.print(Text(verdict_line(outcome.whole), style=style), soft_wrap=True)
    if outcome.outcome is not None:
        console.print(Text(outcome_line(outcome.outcome), style="bold"), soft_wrap=True)
    if outcome.by is not None:
        console.print(slice_table(outcome.by))
        for note in reference_notes(outcome.by):
            console.print(Text(note, style="yellow"), soft_wrap=True)
        style = "bold red" if outcome.by.drifted else "bold green"
        console.print(Text(slices_line(outcome.by), style=style), soft_wrap=True)
    if outcome.outcome is not None:
        if outcome.outcome.slices:
            console.print(outcome_table(outcome.outcome))
        for note in outcome.outcome.notes:
            console.print(Text(note, style="yellow"), soft_wrap=True)
    if request.html is not None:
        console.print(f"HTML report: {request.html}", highlight=False, soft_wrap=True, markup=False)


def run_drift(settings: Settings, request: DriftRequest, *, console: Console) -> DriftOutcome:
    """Resolve the version, compare the current file (and each slice) with its profile, and
    report."""
    if request.html is not None and not request.html.parent.is_dir():
        raise InputError(f"cannot write the HTML report {request.html}: no such directory")
    min_rows = DEFAULT_MIN_SLICE_ROWS if request.min_slice_rows is None else request.min_slice_rows
    if min_rows < 1:
        raise InputError(f"--min-slice-rows must be at least 1, not {min_rows}; fix it")
    current = read_current(request.current)
    if request.by is not None:
        check_slice_column(current, request.by, source=str(request.current))
    if request.outcome is not None:
        outcome_column(current, request.outcome, source=str(request.current))
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
    by = kpi = None
    slice_profiles = _slice_profiles(registry, version) if request.by is not None else None
    if request.by is not None:
        by = detect_drift_by(
            profile, current, request.by, config=config, min_rows=min_rows,
            slice_profiles=slice_profiles,
        )  # fmt: skip
    if request.outcome is not None:
        kpi = report_outcome(
            current, request.outcome, source=str(request.current), profile=profile,
            by=request.by, slice_profiles=slice_profiles,
        )  # fmt: skip
    whole = detect_drift_from_profile(profile, current, config=config)
    outcome = DriftOutcome(whole=whole, by=by, outcome=kpi)
    if request.html is not None:
        _write_html(request.html, version, request, profile, current, outcome)
    if request.as_json:
        alias = None if request.version is not None else request.alias or DEFAULT_ALIAS
        report = report_dict(
            version, profile, outcome.whole, alias=alias, current=request.current,
            current_rows=len(current), html=request.html, by=outcome.by,
            outcome=outcome.outcome,
        )  # fmt: skip
        console.print_json(json.dumps(report))
    else:
        _print(console, version, request, profile, len(current), outcome)
    return outcome
