"""Reference data profile: a compact picture of the training data, logged with each version.

Drift on live inputs is only measurable against what the model was trained on. Keeping the raw
training set next to every version is too heavy, so training logs this profile instead: per
feature the quantile bins with their counts (for PSI), an evenly spaced sorted sample (for KS
and Wasserstein), and category frequencies, plus the same for the model's scores. The schema is
versioned so that a reader can refuse a profile it does not understand. ``label`` (the name of
the column ``label_rate`` is the mean of) came later within version 1: it is written only when
training named a label, so a profile without one reads as before everywhere, and a Sluice older
than the field refuses a profile with one ("upgrade Sluice"), as it refuses any it cannot read.

A profile of the whole training set describes the training *mix*. When the data is made of
sub-populations with distributions of their own (market regimes, customer tiers), training can
also log one profile per value of such a column (:func:`build_slice_profiles`, the artifact
``reference_profiles_by.json``), so that ``sluice drift --by COLUMN`` compares each value's
current rows with the same value's training rows.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# Profiles are read by commands that never build one (``sluice propose`` puts one in a model
# card): numpy and pandas load in the functions that build one, not with the models.
if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd

__all__ = [
    "PROFILE_SCHEMA_VERSION",
    "CategoricalProfile",
    "DataProfile",
    "NumericProfile",
    "SliceProfiles",
    "build_profile",
    "build_slice_profiles",
    "profile_numeric",
    "slice_key",
]

PROFILE_SCHEMA_VERSION = 1
#: Quantile bins per numeric feature (PSI reads counts per bin).
DEFAULT_BINS = 10
#: Values kept in each numeric feature's sorted sample.
DEFAULT_SAMPLE_SIZE = 1000


class NumericProfile(BaseModel):
    """A numeric feature: moments, quantile bin edges with counts, and a sorted sample."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["numeric"] = "numeric"
    count: int
    nulls: int
    minimum: float
    maximum: float
    mean: float
    std: float
    bin_edges: list[float] = Field(
        description="Interior edges; bins are (-inf, e0], (e0, e1], ..., (e_last, +inf)."
    )
    bin_counts: list[int]
    sample: list[float] = Field(description="Evenly spaced order statistics, ascending.")


class CategoricalProfile(BaseModel):
    """A categorical feature: how often each category occurs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["categorical"] = "categorical"
    count: int
    nulls: int
    frequencies: dict[str, int]


class DataProfile(BaseModel):
    """The profile of one training dataset and of the model's scores on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = PROFILE_SCHEMA_VERSION
    rows: int
    features: dict[str, Annotated[NumericProfile | CategoricalProfile, Field(discriminator="kind")]]
    predictions: NumericProfile | None = None
    label_rate: float | None = Field(
        default=None,
        description="Mean of the label column over the training rows: a rate for a 0/1 label.",
    )
    label: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="The label column label_rate is of; absent in profiles logged before "
        "Sluice recorded it, whose label_rate cannot be matched to a column.",
    )


class SliceProfiles(BaseModel):
    """One profile per value of one column of the training data (``reference_profiles_by.json``):
    ``profiles`` maps each value, as :func:`slice_key` writes it, to the profile of the training
    rows with that value (built like the pooled profile: same columns, same scores)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = PROFILE_SCHEMA_VERSION
    column: str
    profiles: dict[str, DataProfile]

    def of(self, value: object) -> DataProfile | None:
        """The profile of the training rows with ``value``; None for a value training did not
        have (or no value)."""
        key = slice_key(value)
        return None if key is None else self.profiles.get(key)


def slice_key(value: object) -> str | None:
    """A value of a slicing column as :class:`SliceProfiles` names it: its text, a whole number
    without decimals (``2`` and ``2.0`` are one value: a CSV reader may give either); None for
    no value (None or NaN; a frame's NA is None once its values are plain Python)."""
    if value is None:
        return None
    import numpy as np  # see the imports

    item = value.item() if isinstance(value, np.generic) else value
    if isinstance(item, float):
        if math.isnan(item):
            return None
        if item.is_integer():
            return str(int(item))
    return str(item)


def profile_numeric(
    values: npt.ArrayLike, *, bins: int = DEFAULT_BINS, sample_size: int = DEFAULT_SAMPLE_SIZE
) -> NumericProfile:
    """Profile one numeric column; nulls are counted and left out of every statistic."""
    import numpy as np  # see the imports

    array = np.asarray(values, dtype=np.float64)
    finite = np.sort(array[~np.isnan(array)])
    nulls = int(array.size - finite.size)
    if finite.size == 0:
        return NumericProfile(
            count=0, nulls=nulls, minimum=0.0, maximum=0.0, mean=0.0, std=0.0,
            bin_edges=[], bin_counts=[0], sample=[],
        )  # fmt: skip
    quantiles = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    edges = np.unique(quantiles)
    # side="left" puts a value equal to an edge in the bin that edge closes: (e_i-1, e_i].
    counts = np.bincount(np.searchsorted(edges, finite, side="left"), minlength=edges.size + 1)
    take = np.linspace(0, finite.size - 1, num=min(sample_size, finite.size)).round().astype(int)
    return NumericProfile(
        count=int(finite.size),
        nulls=nulls,
        minimum=float(finite[0]),
        maximum=float(finite[-1]),
        mean=float(finite.mean()),
        std=float(finite.std()),
        bin_edges=[float(edge) for edge in edges],
        bin_counts=[int(count) for count in counts],
        sample=[float(value) for value in finite[take]],
    )


def _profile_categorical(column: pd.Series) -> CategoricalProfile:
    present = column.dropna().astype(str)
    counts = present.value_counts(sort=True)
    return CategoricalProfile(
        count=int(present.size),
        nulls=int(column.size - present.size),
        frequencies={str(key): int(value) for key, value in counts.items()},
    )


def build_profile(
    frame: pd.DataFrame,
    *,
    numeric: list[str],
    categorical: list[str],
    predictions: npt.ArrayLike | None = None,
    label: str | None = None,
) -> DataProfile:
    """Profile the named columns of ``frame`` and, when given, the model's scores on it and the
    mean of its ``label`` column (recorded with the column's name)."""
    import numpy as np  # see the imports

    features: dict[str, NumericProfile | CategoricalProfile] = {}
    for name in numeric:
        features[name] = profile_numeric(frame[name].to_numpy(dtype=np.float64, na_value=np.nan))
    for name in categorical:
        features[name] = _profile_categorical(frame[name])
    return DataProfile(
        rows=len(frame),
        features=features,
        predictions=profile_numeric(predictions) if predictions is not None else None,
        label_rate=float(frame[label].mean()) if label is not None else None,
        label=label,
    )


def build_slice_profiles(
    frame: pd.DataFrame,
    column: str,
    *,
    numeric: list[str],
    categorical: list[str],
    predictions: npt.ArrayLike | None = None,
    label: str | None = None,
) -> SliceProfiles:
    """One :func:`build_profile` per value of ``column`` (the same ``numeric``, ``categorical``
    and ``label``), from that value's rows; ``predictions`` are the scores of ``frame``'s rows,
    in order, and each profile gets its rows' scores. Rows with no value are in no profile."""
    import numpy as np  # see the imports

    missing = frame[column].isna().to_numpy()
    keys = [
        None if absent else slice_key(value)
        for value, absent in zip(frame[column].tolist(), missing, strict=True)
    ]
    scores = None if predictions is None else np.asarray(predictions, dtype=np.float64)
    positions: dict[str, list[int]] = {}
    for position, key in enumerate(keys):
        if key is not None:
            positions.setdefault(key, []).append(position)
    profiles = {
        key: build_profile(
            frame.iloc[rows],
            numeric=numeric,
            categorical=categorical,
            label=label,
            predictions=None if scores is None else scores[rows],
        )
        for key, rows in sorted(positions.items())
    }
    return SliceProfiles(column=column, profiles=profiles)
