"""Drift per slice of the current data: the rows of each value of one column, each compared with
a training profile (``sluice drift --by COLUMN``).

A whole-file verdict can hide a part that moved: a market regime, a user segment, a week.
Slicing splits the current rows by the values of one column (a categorical one: at most
:data:`MAX_SLICE_VALUES` values) and runs
:func:`~controller.drift.detector.detect_drift_from_profile` on each part, with the same
thresholds as the whole file.

What a slice is compared with (:attr:`SlicedDrift.reference`):

- ``per-slice``: the version's training step logged one profile per value of this column
  (:class:`~controller.quality.data_profile.SliceProfiles`), and each slice is compared with
  the profile of the same value's training rows. A value training did not have (or rows with
  no value) has no profile of its own and falls back to the pooled profile, which its
  :attr:`SliceDrift.own_reference` says.
- ``pooled``: no per-value profiles for this column, so every slice is compared with the whole
  training profile. A slice then drifts when its rows do not look like the training data as a
  whole. For slices that are samples of the same population (periods, batches, data sources,
  servers) that is the question; for slices that are sub-populations with their own
  distribution (a market regime, a customer tier) it is not: such a slice differs from the
  training mix even when nothing changed. On the market-regime generator, the calm and the
  volatile rows of an unchanged holdout both drift against the pooled training profile (every
  one of the 8 features, normed Wasserstein 0.14 to 0.67); against their own regime's
  training rows, the calm rows drift on 3 features and not as a slice (the volatile rows still
  drift at Evidently's 0.1, on the slow trailing windows: the market's own thresholds,
  ``models/market_regime/drift_thresholds.yaml``, say why 0.25 fits that data).

The slicing column itself is not compared unless the profile has it as a feature; then it stays
a feature, and since a slice holds one value of it, it usually drifts in every slice.

Slices smaller than a minimum are not judged (:data:`DEFAULT_MIN_SLICE_ROWS`). The distances
used for references of more than 1,000 rows are biased upwards on small samples: rows drawn from
the training data itself are called drifting (dataset verdict) in every draw at 30 or 50 rows,
in a third of the draws at 200 rows, and in 1 of 200 at 500 rows (the market-regime and fraud
generators, 200 draws each). 500 is also the window the drift alerts wait for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from controller.drift.detector import (
    DatasetDrift,
    DriftConfig,
    FeatureDrift,
    detect_drift_from_profile,
)
from controller.errors import InputError
from controller.quality.data_profile import DataProfile, SliceProfiles

__all__ = [
    "DEFAULT_MIN_SLICE_ROWS",
    "MAX_SLICE_VALUES",
    "Reference",
    "SliceDrift",
    "SliceValue",
    "SlicedDrift",
    "check_slice_column",
    "detect_drift_by",
    "named_columns",
    "slice_label",
    "split_by",
    "top_drifted",
]

#: Slices with fewer rows are reported as "too few rows" and never count as drifted or not.
DEFAULT_MIN_SLICE_ROWS = 500
#: A column with more distinct values is refused: slices are for categories, not identifiers.
MAX_SLICE_VALUES = 50
#: How many of a file's columns an error names before it says how many more there are.
_COLUMNS_NAMED = 30
_P_VALUE_METHODS = frozenset({"ks", "chisquare", "z"})

#: A value of the slicing column as JSON carries it; ``None`` stands for rows with no value.
SliceValue = str | int | float | bool | None
#: What the slices were compared with: each its own value's training profile, or all the pooled.
Reference = Literal["per-slice", "pooled"]


@dataclass(frozen=True)
class SliceDrift:
    """The rows of one value of the slicing column and their drift, or why they were not judged.

    ``drift`` is None exactly when ``skipped`` says why: too few rows, or a feature with no
    values in the slice. ``reference`` is the profile the slice is (or would be) compared with:
    its own value's training profile when ``own_reference``, else the pooled one.
    """

    value: SliceValue
    rows: int
    drift: DatasetDrift | None
    skipped: str | None = None
    reference: DataProfile | None = None
    own_reference: bool = False

    @property
    def drifted(self) -> bool:
        """True when the slice was judged and drifts; a skipped slice never drifts."""
        return self.drift is not None and self.drift.drifted


@dataclass(frozen=True)
class SlicedDrift:
    """Every slice of the current data by ``column``, in the order of the column's values.

    ``reference`` says whether per-value training profiles of ``column`` were used;
    ``profiled_values`` are the values they cover, and ``profiles_by`` the column the version's
    per-value profiles are by, if it has any (another column than ``column`` leaves the slices
    pooled)."""

    column: str
    min_rows: int
    slices: tuple[SliceDrift, ...]
    reference: Reference = "pooled"
    profiled_values: tuple[str, ...] = ()
    profiles_by: str | None = None

    @property
    def drifted(self) -> bool:
        """True when any judged slice drifts."""
        return any(part.drifted for part in self.slices)

    @property
    def drifted_values(self) -> tuple[SliceValue, ...]:
        """The values whose slices drift, in order."""
        return tuple(part.value for part in self.slices if part.drifted)

    @property
    def fallback_values(self) -> tuple[SliceValue, ...]:
        """With per-slice profiles, the values that have none and were compared with the pooled
        profile (a value training did not have, rows with no value)."""
        if self.reference == "pooled":
            return ()
        return tuple(part.value for part in self.slices if not part.own_reference)


def slice_label(value: SliceValue) -> str:
    """A slice value for people: its text, or ``(no value)`` for rows without one."""
    return "(no value)" if value is None else str(value)


def named_columns(frame: pd.DataFrame) -> str:
    """The frame's column names for a message, the first 30 and how many more."""
    names = [str(name) for name in frame.columns]
    shown = ", ".join(names[:_COLUMNS_NAMED])
    more = len(names) - _COLUMNS_NAMED
    return f"{shown} and {more} more" if more > 0 else shown


def check_slice_column(
    frame: pd.DataFrame, column: str, *, source: str, max_values: int = MAX_SLICE_VALUES
) -> None:
    """Refuse a slicing column the frame lacks, or one with more than ``max_values`` values.

    ``source`` names the file, for the message. A column that is also a feature is allowed.
    """
    if column not in frame.columns:
        raise InputError(
            f"{source} has no column '{column}' to slice by (its columns: "
            f"{named_columns(frame)}); fix --by"
        )
    distinct = int(frame[column].nunique(dropna=True))
    if distinct > max_values:
        raise InputError(
            f"column '{column}' of {source} has {distinct:,} distinct values, more than "
            f"{max_values} slices: use a categorical column (a segment, a regime, a period) "
            "with --by"
        )


def _plain(value: object) -> SliceValue:
    """A grouping key as a plain Python value; NaN and NA become None (rows with no value)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    item = value.item() if hasattr(value, "item") else value
    if isinstance(item, float) and math.isnan(item):
        return None
    if isinstance(item, str | int | float | bool):
        return item
    return str(item)


def _order(values: list[SliceValue]) -> list[SliceValue]:
    """Values ascending (numbers as numbers), rows with no value last."""
    present = [value for value in values if value is not None]
    try:
        ordered = sorted(present)
    except TypeError:
        ordered = sorted(present, key=str)
    return ordered + [None] * (len(values) - len(present))


def split_by(frame: pd.DataFrame, column: str) -> tuple[tuple[SliceValue, pd.DataFrame], ...]:
    """The rows of ``frame`` per value of ``column``, in :func:`_order`; rows with no value
    are one slice of their own (value None)."""
    codes, uniques = pd.factorize(frame[column], sort=False)  # no value: code -1
    groups: dict[SliceValue, list[int]] = {}
    for code, key in [(-1, None), *enumerate(uniques)]:
        positions = np.flatnonzero(codes == code)
        if positions.size:
            groups.setdefault(_plain(key), []).extend(positions.tolist())
    return tuple((value, frame.iloc[sorted(groups[value])]) for value in _order(list(groups)))


def _judge(
    reference: DataProfile,
    own: bool,
    value: SliceValue,
    rows: pd.DataFrame,
    config: DriftConfig,
    min_rows: int,
) -> SliceDrift:
    def skipped(reason: str) -> SliceDrift:
        return SliceDrift(value, len(rows), None, reason, reference, own)

    if len(rows) < min_rows:
        return skipped(f"too few rows (< {min_rows:,})")
    try:
        drift = detect_drift_from_profile(reference, rows, config=config)
    except InputError as error:  # a feature with no values in this slice, e.g.
        return skipped(f"not compared: {error}")
    return SliceDrift(value, len(rows), drift, None, reference, own)


def detect_drift_by(
    profile: DataProfile,
    current: pd.DataFrame,
    column: str,
    *,
    config: DriftConfig | None = None,
    min_rows: int = DEFAULT_MIN_SLICE_ROWS,
    slice_profiles: SliceProfiles | None = None,
) -> SlicedDrift:
    """Compare each slice of ``current`` by ``column`` with its reference (see module notes):
    its own value's profile in ``slice_profiles`` when those are by ``column`` and have one,
    else the pooled ``profile``.

    The frame must already have passed :func:`check_slice_column` and the profile's column
    checks; a slice of fewer than ``min_rows`` rows is skipped as too few rows.
    """
    if min_rows < 1:
        raise InputError(f"the minimum slice size must be at least 1 row, not {min_rows}")
    config = config or DriftConfig()
    own = slice_profiles if slice_profiles is not None and slice_profiles.column == column else None
    slices = []
    for value, rows in split_by(current, column):
        reference = own.of(value) if own is not None else None
        slices.append(
            _judge(reference or profile, reference is not None, value, rows, config, min_rows)
        )
    return SlicedDrift(
        column=column,
        min_rows=min_rows,
        slices=tuple(slices),
        reference="per-slice" if own is not None else "pooled",
        profiled_values=tuple(own.profiles) if own is not None else (),
        profiles_by=slice_profiles.column if slice_profiles is not None else None,
    )


def _excess(feature: FeatureDrift) -> float:
    """How far past its threshold a feature is, comparable across statistics: a distance over
    its threshold, a threshold over its p-value (infinite for a p-value of 0)."""
    if feature.method in _P_VALUE_METHODS:
        return feature.threshold / feature.value if feature.value > 0 else math.inf
    return feature.value / feature.threshold


def top_drifted(result: DatasetDrift) -> FeatureDrift | None:
    """The drifted feature farthest past its threshold (the first on a tie); None if none."""
    drifted = [feature for feature in result.features if feature.drifted]
    return max(drifted, key=_excess, default=None)
