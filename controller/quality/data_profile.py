"""Reference data profile: a compact picture of the training data, logged with each version.

Drift on live inputs is only measurable against what the model was trained on. Keeping the raw
training set next to every version is too heavy, so training logs this profile instead: per
feature the quantile bins with their counts (for PSI), an evenly spaced sorted sample (for KS
and Wasserstein), and category frequencies, plus the same for the model's scores. The schema is
versioned so that a reader can refuse a profile it does not understand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # profiles are read by commands that never build one: no pandas for them
    import pandas as pd

__all__ = [
    "PROFILE_SCHEMA_VERSION",
    "CategoricalProfile",
    "DataProfile",
    "NumericProfile",
    "build_profile",
    "profile_numeric",
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
    label_rate: float | None = None


def profile_numeric(
    values: npt.ArrayLike, *, bins: int = DEFAULT_BINS, sample_size: int = DEFAULT_SAMPLE_SIZE
) -> NumericProfile:
    """Profile one numeric column; nulls are counted and left out of every statistic."""
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
    """Profile the named columns of ``frame`` and, when given, the model's scores on it."""
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
    )
