"""Drift of live inputs against the training data, feature by feature, with Evidently's defaults.

Step 5 of the loop alerts when live inputs no longer look like the data a model was trained on.
The verdict follows Evidently's ``DataDriftPreset`` (0.7.23) defaults, so a reviewer can reproduce
it with that tool, at a small fraction of its time and memory:

==========================  =====================================  ===========================
reference (non-null rows)   numeric feature                        categorical feature
==========================  =====================================  ===========================
<= 1000                     KS p-value, drift if p <= 0.05;        chi-square p < 0.05;
                            <= 5 values: chi-square; <= 2: z-test  <= 2 values: z-test p < 0.05
> 1000                      normed Wasserstein >= 0.1;             Jensen-Shannon >= 0.1
                            <= 5 values: Jensen-Shannon >= 0.1
==========================  =====================================  ===========================

"Values" counts the distinct values of reference and current together. The dataset drifts when
at least ``drift_share`` (0.5) of its features drift. PSI (threshold 0.1, 30 reference quantile
bins) is available per feature, as is any other method and threshold (:class:`DriftConfig`).

Why distances on large references: a significance test's power grows with the sample, so with
hundreds of thousands of rows KS flags shifts of a hundredth of a standard deviation that no
model notices; a distance measures how far the data moved, whatever the sample size.

Two entry points: :func:`detect_drift` compares two raw frames, exactly as Evidently does;
:func:`detect_drift_from_profile` compares a current frame with the
:class:`~controller.quality.data_profile.DataProfile` logged at training, the only reference a
deployed model carries. From a profile, categorical methods and PSI (on the profile's own bins, 10
by default) are exact; KS and Wasserstein use the profile's sorted sample of 1,000 evenly spaced
order statistics in place of the reference, with the profile's exact standard deviation as the
norm. That is exact when the reference had at most 1,000 rows (the sample is then the data, so
the KS branch is always exact); above, Wasserstein is off by at most the distance between the
reference and its sample, at most about 2 x range / 1,000 before the norm (in practice 0.01 of
the normed value on the fraud generator's amounts, against a threshold of 0.1). Features with
at most 20 distinct values take their per-value shares from the sample too. Results computed
from a sample say so (``approximate``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from controller.drift.features import (
    CategoricalReference,
    DriftMethod,
    FeatureKind,
    NumericReference,
    categorical_score,
    choose_method,
    count_distinct,
    finite_values,
    numeric_score,
)
from controller.errors import ConfigError, InputError
from controller.quality.data_profile import PROFILE_SCHEMA_VERSION, DataProfile, NumericProfile

__all__ = [
    "DEFAULT_THRESHOLDS",
    "STATISTIC_NAMES",
    "DatasetDrift",
    "DriftConfig",
    "DriftMethod",
    "FeatureDrift",
    "FeatureDriftConfig",
    "FeatureKind",
    "choose_method",
    "detect_drift",
    "detect_drift_from_profile",
    "is_drift",
]

DEFAULT_THRESHOLDS: Mapping[DriftMethod, float] = {
    "ks": 0.05,
    "chisquare": 0.05,
    "z": 0.05,
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
    "psi": 0.1,
}
#: Names as Evidently displays them, so reports read the same.
STATISTIC_NAMES: Mapping[DriftMethod, str] = {
    "ks": "K-S p_value",
    "chisquare": "chi-square p_value",
    "z": "Z-test p_value",
    "wasserstein": "Wasserstein distance (normed)",
    "jensenshannon": "Jensen-Shannon distance",
    "psi": "PSI",
}
_NUMERIC_ONLY: frozenset[DriftMethod] = frozenset({"ks", "wasserstein"})


class FeatureDriftConfig(BaseModel):
    """Overrides for one feature; what is left unset follows Evidently's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: DriftMethod | None = None
    threshold: float | None = Field(
        default=None, gt=0, description="p-value below which, or distance from which, it drifts."
    )


class DriftConfig(BaseModel):
    """How drift is decided; the defaults are Evidently's ``DataDriftPreset``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    drift_share: float = Field(
        default=0.5, gt=0, le=1, description="Share of drifted features that drifts the dataset."
    )
    small_reference_rows: int = Field(
        default=1000, ge=0, description="References up to this size get tests, larger distances."
    )
    psi_bins: int = Field(default=30, ge=2, description="Reference quantile bins for PSI.")
    features: dict[str, FeatureDriftConfig] = Field(default_factory=dict)


class FeatureDrift(BaseModel):
    """One feature's verdict: which statistic, its value, the threshold and the outcome."""

    model_config = ConfigDict(frozen=True)

    feature: str
    kind: FeatureKind
    method: DriftMethod
    statistic: str
    value: float
    threshold: float
    drifted: bool
    reference_rows: int
    current_rows: int
    approximate: bool = Field(
        default=False, description="Computed from a profile's sample, not the full reference."
    )


class DatasetDrift(BaseModel):
    """Every feature's verdict and the dataset's: drifted when enough features drifted."""

    model_config = ConfigDict(frozen=True)

    features: tuple[FeatureDrift, ...]
    drift_share: float
    drifted_share: float
    drifted: bool

    @property
    def drifted_features(self) -> tuple[str, ...]:
        """Names of the features that drifted, in input order."""
        return tuple(result.feature for result in self.features if result.drifted)

    def summary(self) -> str:
        """One line: the verdict and the drifted features."""
        verdict = "drift" if self.drifted else "no drift"
        names = ", ".join(self.drifted_features) or "none"
        return (
            f"{verdict}: {len(self.drifted_features)} of {len(self.features)} features drifted "
            f"({self.drifted_share:.0%}, threshold {self.drift_share:.0%}): {names}"
        )


def is_drift(method: DriftMethod, value: float, threshold: float) -> bool:
    """Evidently's comparison: KS drifts at ``p <= t``, chi-square and z at ``p < t``,
    distances at ``d >= t``. A NaN value (chi-square over one category) never drifts."""
    if method == "ks":
        return value <= threshold
    if method in ("chisquare", "z"):
        return value < threshold
    return value >= threshold


def _check_config(config: DriftConfig, kinds: Mapping[str, FeatureKind]) -> None:
    unknown = sorted(set(config.features) - set(kinds))
    if unknown:
        raise ConfigError(
            f"drift settings name features that are not compared: {', '.join(unknown)}"
        )
    for name, setting in config.features.items():
        if setting.method in _NUMERIC_ONLY and kinds[name] == "categorical":
            raise ConfigError(
                f"drift method {setting.method} needs numbers but feature '{name}' is categorical: "
                "use chisquare, z, jensenshannon or psi"
            )


def _result(
    name: str,
    kind: FeatureKind,
    method: DriftMethod,
    value: float,
    config: DriftConfig,
    rows: tuple[int, int],
    *,
    approximate: bool = False,
) -> FeatureDrift:
    setting = config.features.get(name, FeatureDriftConfig())
    threshold = setting.threshold if setting.threshold is not None else DEFAULT_THRESHOLDS[method]
    return FeatureDrift(
        feature=name,
        kind=kind,
        method=method,
        statistic=STATISTIC_NAMES[method],
        value=value,
        threshold=threshold,
        drifted=is_drift(method, value, threshold),
        reference_rows=rows[0],
        current_rows=rows[1],
        approximate=approximate,
    )


def _numeric_drift(
    name: str, reference: NumericReference, current: pd.Series, config: DriftConfig
) -> FeatureDrift:
    values = finite_values(current, name=name, side="current")
    method = config.features.get(name, FeatureDriftConfig()).method or choose_method(
        "numeric",
        reference.rows,
        count_distinct(reference.sorted_values, values, limit=5),
        small_reference_rows=config.small_reference_rows,
    )
    value = numeric_score(method, reference, values, psi_bins=config.psi_bins)
    approximate = reference.sampled and not (method == "psi" and reference.bins is not None)
    return _result(
        name,
        "numeric",
        method,
        value,
        config,
        (reference.rows, values.size),
        approximate=approximate,
    )


def _category_counts(column: pd.Series, *, name: str, side: str, as_text: bool) -> pd.Series:
    if pd.api.types.is_float_dtype(column.dtype):
        column = column.replace([np.inf, -np.inf], np.nan)
    counts = column.value_counts(dropna=True, sort=False)
    counts = counts[counts > 0]  # a pandas Categorical lists categories that never occur
    if as_text:  # after counting: one conversion per category, not per row
        counts = counts.groupby(counts.index.astype(str)).sum()
    if counts.empty:
        raise InputError(f"feature '{name}' has no values in the {side} data")
    return counts


def _categorical_drift(
    name: str, reference: CategoricalReference, current: pd.Series, config: DriftConfig
) -> FeatureDrift:
    method = config.features.get(name, FeatureDriftConfig()).method or choose_method(
        "categorical",
        reference.rows,
        len(reference.counts.index.union(current.index)),
        small_reference_rows=config.small_reference_rows,
    )
    value = categorical_score(method, reference, current)
    return _result(name, "categorical", method, value, config, (reference.rows, int(current.sum())))


def _verdict(results: list[FeatureDrift], config: DriftConfig) -> DatasetDrift:
    if not results:
        raise InputError("no features to compare: name numeric or categorical columns")
    share = sum(result.drifted for result in results) / len(results)
    return DatasetDrift(
        features=tuple(results),
        drift_share=config.drift_share,
        drifted_share=share,
        drifted=share >= config.drift_share,
    )


def _infer_kind(column: pd.Series) -> FeatureKind | None:
    """Evidently's column typing: floats are numeric, integers with at most 10 distinct values
    categorical, strings, booleans and categories categorical, anything else not compared.
    (Evidently treats mostly-unique strings as text; Sluice compares them as categories.)"""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if pd.api.types.is_float_dtype(dtype):
        return "numeric"
    if pd.api.types.is_integer_dtype(dtype):
        return "categorical" if column.nunique() <= 10 else "numeric"
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        return "categorical"
    return None


def _column_kinds(
    frame: pd.DataFrame, numeric: Sequence[str] | None, categorical: Sequence[str] | None
) -> dict[str, FeatureKind]:
    if numeric is None and categorical is None:
        inferred = {str(name): _infer_kind(frame[name]) for name in frame.columns}
        return {name: kind for name, kind in inferred.items() if kind is not None}
    kinds: dict[str, FeatureKind] = dict.fromkeys(numeric or (), "numeric")
    for name in categorical or ():
        if name in kinds:
            raise ConfigError(f"feature '{name}' is declared both numeric and categorical")
        kinds[name] = "categorical"
    return kinds


def _require_columns(frame: pd.DataFrame, names: Sequence[str], side: str) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise InputError(f"the {side} data lacks feature columns: {', '.join(missing)}")


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    config: DriftConfig | None = None,
) -> DatasetDrift:
    """Compare ``current`` with a raw ``reference`` frame, feature by feature.

    Name the features with ``numeric`` and ``categorical``; with neither, every column is typed
    as Evidently types it. NaN and infinite values are dropped first, as Evidently drops them.
    """
    config = config or DriftConfig()
    kinds = _column_kinds(reference, numeric, categorical)
    _require_columns(reference, list(kinds), "reference")
    _require_columns(current, list(kinds), "current")
    _check_config(config, kinds)
    results: list[FeatureDrift] = []
    for name, kind in kinds.items():
        if kind == "numeric":
            values = np.sort(finite_values(reference[name], name=name, side="reference"))
            ref = NumericReference(values, rows=values.size, std=float(np.std(values)))
            results.append(_numeric_drift(name, ref, current[name], config))
        else:
            counts = _category_counts(reference[name], name=name, side="reference", as_text=False)
            cur = _category_counts(current[name], name=name, side="current", as_text=False)
            results.append(_categorical_drift(name, CategoricalReference(counts), cur, config))
    return _verdict(results, config)


def _profile_reference(name: str, profile: NumericProfile) -> NumericReference:
    sample = np.asarray(profile.sample, dtype=np.float64)
    sample = sample[np.isfinite(sample)]
    if profile.count == 0 or sample.size == 0:
        raise InputError(f"feature '{name}' has no values in the reference profile")
    std = profile.std if np.isfinite(profile.std) else float(np.std(sample))
    bins = (
        np.asarray(profile.bin_edges, dtype=np.float64),
        np.asarray(profile.bin_counts, dtype=np.float64),
    )
    return NumericReference(sample, rows=max(profile.count, sample.size), std=std, bins=bins)


def detect_drift_from_profile(
    profile: DataProfile, current: pd.DataFrame, *, config: DriftConfig | None = None
) -> DatasetDrift:
    """Compare ``current`` with the reference profile logged at training (see module notes).

    Categories are compared as text, as the profile stores them.
    """
    if profile.schema_version != PROFILE_SCHEMA_VERSION:
        raise InputError(
            f"reference profile has schema version {profile.schema_version}, this Sluice reads "
            f"version {PROFILE_SCHEMA_VERSION}: upgrade Sluice or re-log the profile"
        )
    config = config or DriftConfig()
    kinds: dict[str, FeatureKind] = {name: feat.kind for name, feat in profile.features.items()}
    _require_columns(current, list(kinds), "current")
    _check_config(config, kinds)
    results: list[FeatureDrift] = []
    for name, feature in profile.features.items():
        if isinstance(feature, NumericProfile):
            ref = _profile_reference(name, feature)
            results.append(_numeric_drift(name, ref, current[name], config))
        else:
            counts = pd.Series(feature.frequencies, dtype=np.float64)
            counts = counts[counts > 0]
            if counts.empty:
                raise InputError(f"feature '{name}' has no values in the reference profile")
            cur = _category_counts(current[name], name=name, side="current", as_text=True)
            results.append(_categorical_drift(name, CategoricalReference(counts), cur, config))
    return _verdict(results, config)
