"""A reference profile prepared once for the online monitor, so a window costs microseconds.

``sluice drift`` compares a whole file with a profile once; the model server's monitor compares
its window of recent rows every few seconds for as long as it serves. Everything about the
reference that does not depend on the window is therefore decided here, at load: the method and
threshold of each feature (Evidently's defaults, as :func:`~controller.drift.choose_method`
picks them from the reference), the profile's sorted sample for the sample methods (normed
Wasserstein, KS), and for the histogram methods (Jensen-Shannon, chi-square, z-test, PSI) how a
value maps to a bin and the reference's count per bin.

Every histogram has one bin more than the reference knows: *other*, for a category or value the
reference never had. Merging all new categories into one bin leaves Jensen-Shannon unchanged
(a bin empty on the reference side adds ``q ln 2``, linear in ``q``) and chi-square infinite, so
the verdicts are those of :func:`~controller.drift.detect_drift_from_profile`. Two differences,
both at the edges: the method is chosen from the reference alone (Evidently also counts values
that only the current data has, which matters for features with at most 5 values), and a
histogram method forced on a numeric feature with more than 20 values uses the profile's
quantile bins where Evidently bins reference and current together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from controller.drift.detector import DEFAULT_THRESHOLDS, DriftConfig, FeatureDriftConfig
from controller.drift.features import PER_VALUE_MAX_DISTINCT, DriftMethod, choose_method
from controller.drift.statistics import quantile_bin_edges
from controller.errors import ConfigError, InputError
from controller.quality.data_profile import PROFILE_SCHEMA_VERSION, DataProfile, NumericProfile

__all__ = [
    "PREDICTION",
    "BinKind",
    "HistogramFeature",
    "OnlineReference",
    "SampleFeature",
    "column_numbers",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BinKind = Literal["categories", "values", "edges"]
#: The name the model's output is compared under, beside the input features.
PREDICTION = "prediction"
_SAMPLE_METHODS: frozenset[DriftMethod] = frozenset({"wasserstein", "ks"})


@dataclass(frozen=True)
class SampleFeature:
    """A numeric feature compared sample to sample: normed Wasserstein or KS."""

    name: str
    method: DriftMethod
    threshold: float
    sorted_sample: FloatArray
    std: float


@dataclass(frozen=True)
class HistogramFeature:
    """A feature compared bin to bin; ``reference_counts`` ends with the empty *other* bin."""

    name: str
    method: DriftMethod
    threshold: float
    kind: BinKind
    reference_counts: FloatArray
    categories: pd.Index | None = None  # kind "categories": the reference's categories, as text
    keys: FloatArray | None = None  # kind "values": sorted distinct values; "edges": interior edges

    @property
    def bins(self) -> int:
        """Bins including *other*."""
        return int(self.reference_counts.size)

    def codes(self, column: pd.Series) -> IntArray:
        """Each value's bin: ``0 .. bins-2`` known, ``bins-1`` other, ``-1`` missing (dropped)."""
        other = self.bins - 1
        if self.kind == "categories":
            assert self.categories is not None
            missing = column.isna().to_numpy()
            # As text, as the profile stores categories (an integer 3 is the category "3").
            found = self.categories.get_indexer(column.astype(str))
            codes = np.where(found < 0, other, found).astype(np.int64)
            codes[missing] = -1
            return codes
        values = column_numbers(column)
        finite = np.isfinite(values)
        assert self.keys is not None
        if self.kind == "edges":
            codes = np.searchsorted(self.keys, values, side="left").astype(np.int64)
        else:
            index = np.searchsorted(self.keys, values).clip(max=self.keys.size - 1)
            codes = np.where(self.keys[index] == values, index, other).astype(np.int64)
        codes[~finite] = -1
        return codes


Feature = SampleFeature | HistogramFeature


@dataclass(frozen=True)
class OnlineReference:
    """What the monitor compares a window with: one entry per feature, and the predictions."""

    features: tuple[Feature, ...]
    prediction: Feature | None
    drift_share: float

    @property
    def names(self) -> tuple[str, ...]:
        """Input feature names, in profile order."""
        return tuple(feature.name for feature in self.features)

    @classmethod
    def from_profile(
        cls, profile: DataProfile, config: DriftConfig | None = None
    ) -> OnlineReference:
        """Prepare ``profile`` (as logged at training) with ``config``'s methods and thresholds.

        Features without a single reference value are left out, as no statistic is defined.
        """
        if profile.schema_version != PROFILE_SCHEMA_VERSION:
            raise InputError(
                f"reference profile has schema version {profile.schema_version}, this Sluice "
                f"reads version {PROFILE_SCHEMA_VERSION}: upgrade Sluice or re-log the profile"
            )
        config = config or DriftConfig()
        unknown = sorted(set(config.features) - set(profile.features))
        if unknown:
            raise ConfigError(f"drift settings name features the profile lacks: {unknown}")
        features: list[Feature] = []
        for name, feature in profile.features.items():
            setting = config.features.get(name, FeatureDriftConfig())
            if isinstance(feature, NumericProfile):
                prepared = _numeric(name, feature, setting, config)
            else:
                prepared = _categorical(name, feature.frequencies, setting, config)
            if prepared is not None:
                features.append(prepared)
        prediction = None
        if profile.predictions is not None:
            prediction = _numeric(PREDICTION, profile.predictions, FeatureDriftConfig(), config)
        return cls(tuple(features), prediction, config.drift_share)


def _threshold(method: DriftMethod, setting: FeatureDriftConfig) -> float:
    return setting.threshold if setting.threshold is not None else DEFAULT_THRESHOLDS[method]


def _numeric(
    name: str, profile: NumericProfile, setting: FeatureDriftConfig, config: DriftConfig
) -> Feature | None:
    sample = np.asarray(profile.sample, dtype=np.float64)
    sample = np.sort(sample[np.isfinite(sample)])
    if profile.count == 0 or sample.size == 0:
        return None
    rows = max(profile.count, sample.size)
    distinct = 1 + int(np.count_nonzero(np.diff(sample)))
    method = setting.method or choose_method(
        "numeric", rows, distinct, small_reference_rows=config.small_reference_rows
    )
    threshold = _threshold(method, setting)
    if method in _SAMPLE_METHODS:
        std = profile.std if np.isfinite(profile.std) else float(np.std(sample))
        return SampleFeature(name, method, threshold, sample, std)
    if method == "psi" and profile.bin_edges:
        counts = np.asarray(profile.bin_counts, dtype=np.float64)
        edges = np.asarray(profile.bin_edges, dtype=np.float64)
        return _histogram(name, method, threshold, "edges", counts, keys=edges)
    if distinct <= PER_VALUE_MAX_DISTINCT:
        values, per_value = np.unique(sample, return_counts=True)
        # The sample stands for the whole reference: its counts scale to the true row count.
        scaled = per_value * (rows / sample.size)
        return _histogram(name, method, threshold, "values", scaled, keys=values)
    edges = (
        np.asarray(profile.bin_edges, dtype=np.float64)
        if profile.bin_edges
        else quantile_bin_edges(sample, config.psi_bins)
    )
    per_bin = np.bincount(np.searchsorted(edges, sample, side="left"), minlength=edges.size + 1)
    scaled = per_bin * (rows / sample.size)
    return _histogram(name, method, threshold, "edges", scaled, keys=edges)


def _categorical(
    name: str, frequencies: dict[str, int], setting: FeatureDriftConfig, config: DriftConfig
) -> Feature | None:
    present = {key: count for key, count in frequencies.items() if count > 0}
    if not present:
        return None
    method = setting.method or choose_method(
        "categorical",
        sum(present.values()),
        len(present),
        small_reference_rows=config.small_reference_rows,
    )
    if method in _SAMPLE_METHODS:
        raise ConfigError(
            f"drift method {method} needs numbers but feature '{name}' is categorical: "
            "use chisquare, z, jensenshannon or psi"
        )
    keys = sorted(present)
    counts = np.asarray([present[key] for key in keys], dtype=np.float64)
    return _histogram(
        name, method, _threshold(method, setting), "categories", counts, categories=keys
    )


def _histogram(
    name: str,
    method: DriftMethod,
    threshold: float,
    kind: BinKind,
    counts: npt.ArrayLike,
    *,
    keys: FloatArray | None = None,
    categories: Sequence[str] | None = None,
) -> HistogramFeature:
    with_other = np.append(np.asarray(counts, dtype=np.float64), 0.0)
    return HistogramFeature(
        name=name,
        method=method,
        threshold=threshold,
        kind=kind,
        reference_counts=with_other,
        categories=pd.Index(list(categories), dtype=object) if categories is not None else None,
        keys=keys,
    )


def column_numbers(column: pd.Series) -> FloatArray:
    """A column as floats; text in a numeric feature counts as missing, not as an error."""
    if pd.api.types.is_numeric_dtype(column.dtype):
        direct: FloatArray = column.to_numpy(dtype=np.float64, na_value=np.nan)
        return direct
    numbers: FloatArray = pd.to_numeric(column, errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    return numbers
