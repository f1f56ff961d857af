"""The outcome (a KPI column of the current data) beside drift: for the whole file and per slice
(``sluice drift --outcome NAME [--by COLUMN]``).

Drift says the inputs moved; it does not say whether anyone is worse off. After the
recommender's holiday shift its inputs drift little while the click rate of bargain hunters
halves: a person asking "which segment is hurt?" needs the outcome of each slice next to its
drift. The outcome is a column of the current file: all of its values 0 or 1 make it a
**rate**, anything else numeric a **mean**. Rows with no value (outcomes that have not arrived)
are left out and counted.

The training value is shown only when it is known to be the same quantity: the training
profile's ``label_rate`` is the mean of its ``label`` column, so it is compared only when that
column is ``NAME`` (a profile that does not name its label, or names another, gives no training
value, and a note says why). Per slice the training value is the slice's own training profile's
(:class:`~controller.quality.data_profile.SliceProfiles` by the same column), never the pooled
rate: a segment's click rate is its own, and the training mix's would read as a change that is
not one.

The outcome is reported, not judged: ``sluice drift`` exits on drift alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from controller.drift.slices import SliceValue, named_columns, slice_label, split_by
from controller.errors import InputError
from controller.quality.data_profile import DataProfile, SliceProfiles

__all__ = [
    "OutcomeKind",
    "OutcomeReport",
    "OutcomeValue",
    "SliceOutcome",
    "outcome_column",
    "report_outcome",
]

#: A 0/1 outcome is a rate (the share of 1s); any other numbers have a mean.
OutcomeKind = Literal["rate", "mean"]


@dataclass(frozen=True)
class OutcomeValue:
    """The outcome over some rows: how many have it, its rate or mean (None: no row has it),
    and the training value of the same quantity, when known."""

    rows: int
    value: float | None
    training: float | None = None

    @property
    def change(self) -> float | None:
        """The value minus the training value; None when either is unknown."""
        if self.value is None or self.training is None:
            return None
        return self.value - self.training


@dataclass(frozen=True)
class SliceOutcome:
    """The outcome of the rows of one value of the slicing column (None: rows with no value)."""

    value: SliceValue
    outcome: OutcomeValue


@dataclass(frozen=True)
class OutcomeReport:
    """The outcome ``name`` of the whole file and, with a slicing column ``by``, of each slice
    (in :func:`~controller.drift.slices.split_by`'s order, the order of the drift slices).

    ``missing`` counts the file's rows with no value; ``notes`` say why a training value is not
    shown."""

    name: str
    kind: OutcomeKind
    whole: OutcomeValue
    missing: int = 0
    by: str | None = None
    slices: tuple[SliceOutcome, ...] = ()
    notes: tuple[str, ...] = ()


def outcome_column(frame: pd.DataFrame, name: str, *, source: str) -> pd.Series:
    """The outcome column as floats (NaN: no value); a column the frame lacks or one holding
    text is an :class:`InputError` that names it."""
    if name not in frame.columns:
        raise InputError(
            f"{source} has no column '{name}' to report as the outcome (its columns: "
            f"{named_columns(frame)}); fix --outcome"
        )
    column = frame[name]
    if pd.api.types.is_bool_dtype(column.dtype):
        return column.astype("float64")
    if pd.api.types.is_numeric_dtype(column.dtype):
        return column.astype("float64")
    present = column.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    bad = present[numbers.isna()]
    if bad.size:
        raise InputError(
            f"outcome column '{name}' of {source} is not numeric ({bad.size:,} of "
            f"{column.size:,} rows, first: {bad.iloc[0]!r}); give 0/1 or numbers with --outcome"
        )
    return pd.to_numeric(column, errors="coerce").astype("float64")


def _kind(values: pd.Series) -> OutcomeKind:
    present = values.dropna().to_numpy()
    return "rate" if bool(np.isin(present, (0.0, 1.0)).all()) else "mean"


def _over(values: pd.Series, training: float | None) -> OutcomeValue:
    present = values.dropna()
    value = float(present.mean()) if present.size else None
    return OutcomeValue(int(present.size), value, training)


def _label_reason(profile: DataProfile, name: str) -> str | None:
    """Why ``profile``'s label rate is not the training value of ``name``; None when it is."""
    if profile.label == name and profile.label_rate is not None:
        return None
    if profile.label is not None:
        return f"the version's training label is '{profile.label}', not '{name}'"
    if profile.label_rate is not None:
        return (
            "the version's training profile has a label rate but does not name its column "
            "(logged before Sluice recorded it; retrain to record it)"
        )
    return "the version's training step recorded no label"


def _training(profile: DataProfile | None, name: str) -> float | None:
    if profile is None or _label_reason(profile, name) is not None:
        return None
    return profile.label_rate


def _slice_notes(
    name: str,
    by: str,
    own: SliceProfiles | None,
    slice_profiles: SliceProfiles | None,
    slices: tuple[SliceOutcome, ...],
    whole_reason: str | None,
) -> list[str]:
    head = f"Note: no training {name} per {by}"
    if own is None:
        if whole_reason is not None:  # no training value at all: the whole file's note says why
            return []
        why = (
            f"the version's per-value training profiles are by {slice_profiles.column}, not {by}"
            if slice_profiles is not None
            else f"the version logged no training profile per {by}"
        )
        return [f"{head}: {why}."]
    reasons = sorted(
        {reason for profile in own.profiles.values() if (reason := _label_reason(profile, name))}
    )
    if reasons:  # the whole file's note says it when the reason is the same
        return [] if reasons == [whole_reason] else [f"{head}: {reasons[0]}."]
    unprofiled = [part.value for part in slices if own.of(part.value) is None]
    if not unprofiled:
        return []
    values = ", ".join(slice_label(value) for value in unprofiled)
    return [f"{head} for {values}: no training profile of its own."]


def report_outcome(
    current: pd.DataFrame,
    name: str,
    *,
    source: str,
    profile: DataProfile,
    by: str | None = None,
    slice_profiles: SliceProfiles | None = None,
) -> OutcomeReport:
    """The outcome ``name`` of ``current`` beside the training values (see module notes): of
    the whole file against ``profile``, and per value of ``by`` against the same value's
    profile in ``slice_profiles`` when those are by ``by``.

    ``by`` must already have passed :func:`~controller.drift.slices.check_slice_column`.
    """
    values = outcome_column(current, name, source=source)
    notes = []
    reason = _label_reason(profile, name)
    if reason is not None:
        notes.append(f"Note: no training {name}: {reason}.")
    whole = _over(values, _training(profile, name))
    slices: tuple[SliceOutcome, ...] = ()
    if by is not None:
        own = slice_profiles if slice_profiles is not None and slice_profiles.column == by else None
        frame = pd.DataFrame({"slice": current[by], "outcome": values})
        slices = tuple(
            SliceOutcome(
                value,
                _over(rows["outcome"], _training(own.of(value) if own else None, name)),
            )
            for value, rows in split_by(frame, "slice")
        )
        notes.extend(_slice_notes(name, by, own, slice_profiles, slices, reason))
    missing = len(values) - whole.rows
    if missing:
        notes.append(f"Note: {missing:,} of {len(values):,} rows have no {name} and are left out.")
    return OutcomeReport(
        name=name,
        kind=_kind(values),
        whole=whole,
        missing=missing,
        by=by,
        slices=slices,
        notes=tuple(notes),
    )
