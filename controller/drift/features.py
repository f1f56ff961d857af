"""One feature's drift: its reference and current values in the shape the statistics need.

The detector compares a reference that is either a raw training frame or a
:class:`~controller.quality.data_profile.DataProfile` logged at training. Both are reduced here to
the same two shapes, so the method choice and the statistics do not care where the reference came
from:

- :class:`NumericReference`: sorted finite values (all of them, or the profile's evenly spaced
  sample of order statistics), the true row count and standard deviation, and, from a profile,
  its stored quantile bins;
- :class:`CategoricalReference`: a count per category.

Histogram methods on numeric features bin as Evidently does, except PSI: a reference with at most
20 distinct values is compared value by value; otherwise Jensen-Shannon (and chi-square or z if
forced) use Evidently's equal-width Sturges bins over reference and current together, while PSI
uses reference quantile bins (``psi_bins`` of them, or the profile's own bins). Evidently bins PSI
like Jensen-Shannon and ignores its ``n_bins=30`` for numerics; quantile bins of the reference are
the textbook PSI, are not stretched by an outlier in the current data, and are what a profile can
reproduce.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from controller.drift.statistics import (
    bin_counts,
    chi_square,
    jensen_shannon,
    ks_2samp,
    psi,
    quantile_bin_edges,
    wasserstein_normed,
    z_test_proportions,
)
from controller.errors import InputError

__all__ = [
    "PER_VALUE_MAX_DISTINCT",
    "CategoricalReference",
    "DriftMethod",
    "FeatureKind",
    "NumericReference",
    "categorical_score",
    "choose_method",
    "count_distinct",
    "finite_values",
    "numeric_score",
]

DriftMethod = Literal["ks", "chisquare", "z", "wasserstein", "jensenshannon", "psi"]
FeatureKind = Literal["numeric", "categorical"]
FloatArray = npt.NDArray[np.float64]

#: Evidently compares numeric histograms value by value up to this many reference values.
PER_VALUE_MAX_DISTINCT = 20
#: Evidently's cut-off between "binary" (z-test) and "few values" (chi-square or JS) columns.
_BINARY_MAX_DISTINCT = 2
_LOW_CARDINALITY_MAX_DISTINCT = 5


@dataclass(frozen=True)
class NumericReference:
    """A numeric feature's reference: sorted finite values, possibly a sample of ``rows``."""

    sorted_values: FloatArray
    rows: int
    std: float
    bins: tuple[FloatArray, FloatArray] | None = None  # interior edges, counts (from a profile)

    @property
    def sampled(self) -> bool:
        """True when ``sorted_values`` stands in for a larger reference."""
        return self.sorted_values.size < self.rows


@dataclass(frozen=True)
class CategoricalReference:
    """A categorical feature's reference: how often each category occurs."""

    counts: pd.Series

    @property
    def rows(self) -> int:
        """Non-null reference rows."""
        return int(self.counts.sum())


def finite_values(column: pd.Series, *, name: str, side: str) -> FloatArray:
    """A numeric column's values without NaN and infinities, as Evidently drops them."""
    if not pd.api.types.is_numeric_dtype(column.dtype):
        raise InputError(
            f"feature '{name}' is numeric but the {side} column has dtype {column.dtype}: "
            "declare it categorical or fix the data"
        )
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    finite: FloatArray = values[np.isfinite(values)]
    if finite.size == 0:
        raise InputError(f"feature '{name}' has no finite values in the {side} data")
    return finite


def count_distinct(sorted_reference: FloatArray, current: FloatArray, *, limit: int) -> int:
    """Distinct values of reference and current together, exact up to ``limit``.

    Above ``limit`` only the reference is counted (a lower bound), which is all the method
    choice needs and spares a sort of the current data.
    """
    reference_distinct = 1 + int(np.count_nonzero(np.diff(sorted_reference)))
    if reference_distinct > limit:
        return reference_distinct
    return int(np.union1d(sorted_reference, current).size)


def choose_method(
    kind: FeatureKind,
    reference_rows: int,
    distinct_values: int,
    *,
    small_reference_rows: int = 1000,
) -> DriftMethod:
    """Evidently's default test for a column (``_get_default_stattest`` in its registry).

    ``distinct_values`` counts reference and current together. A reference of at most
    ``small_reference_rows`` rows gets a significance test: z-test for at most 2 values,
    chi-square for categoricals and numerics with at most 5 values, KS for other numerics.
    Larger references get a distance: Jensen-Shannon for categoricals and numerics with at most
    5 values, normed Wasserstein for other numerics. Tests are not used on large samples because
    their power grows with the sample: at 100,000 rows KS calls a negligible shift significant.
    """
    few_values = distinct_values <= _LOW_CARDINALITY_MAX_DISTINCT
    if reference_rows <= small_reference_rows:
        if distinct_values <= _BINARY_MAX_DISTINCT:
            return "z"
        if kind == "categorical" or few_values:
            return "chisquare"
        return "ks"
    if kind == "categorical" or few_values:
        return "jensenshannon"
    return "wasserstein"


def _histogram_score(
    method: DriftMethod, reference: FloatArray, current: FloatArray, first: int
) -> float:
    """The drift value of a histogram method over aligned bins; ``first`` is the z-test's 0."""
    if method == "chisquare":
        return chi_square(reference, current).pvalue
    if method == "jensenshannon":
        return jensen_shannon(reference, current)
    if method == "psi":
        return psi(reference, current)
    if method == "z":
        # Evidently codes the first value in sorted order as 0 and every other value as 1.
        ref_total, cur_total = float(reference.sum()), float(current.sum())
        return z_test_proportions(
            ref_total - reference[first], ref_total, cur_total - current[first], cur_total
        ).pvalue
    raise InputError(f"{method} compares samples, not histograms")


def _aligned_value_counts(
    reference: NumericReference, current: FloatArray
) -> tuple[FloatArray, FloatArray]:
    ref_values, ref_counts = np.unique(reference.sorted_values, return_counts=True)
    cur_values, cur_counts = np.unique(current, return_counts=True)
    keys = np.union1d(ref_values, cur_values)
    ref_aligned = np.zeros(keys.size)
    cur_aligned = np.zeros(keys.size)
    # A sample stands for the whole reference: scale its counts to the true row count.
    ref_aligned[np.searchsorted(keys, ref_values)] = ref_counts * (
        reference.rows / reference.sorted_values.size
    )
    cur_aligned[np.searchsorted(keys, cur_values)] = cur_counts
    return ref_aligned, cur_aligned


def _numeric_histograms(
    method: DriftMethod, reference: NumericReference, current: FloatArray, psi_bins: int
) -> tuple[FloatArray, FloatArray]:
    if method == "psi" and reference.bins is not None:
        edges, counts = reference.bins
        return counts, bin_counts(current, edges).astype(np.float64)
    distinct = 1 + int(np.count_nonzero(np.diff(reference.sorted_values)))
    if distinct <= PER_VALUE_MAX_DISTINCT:
        return _aligned_value_counts(reference, current)
    if method == "psi":
        edges = quantile_bin_edges(reference.sorted_values, psi_bins)
        ref_counts = bin_counts(reference.sorted_values, edges, assume_sorted=True)
        return ref_counts.astype(np.float64), bin_counts(current, edges).astype(np.float64)
    edges = np.histogram_bin_edges(
        np.concatenate((reference.sorted_values, current)), bins="sturges"
    )
    return (
        np.histogram(reference.sorted_values, edges)[0].astype(np.float64),
        np.histogram(current, edges)[0].astype(np.float64),
    )


def numeric_score(
    method: DriftMethod, reference: NumericReference, current: FloatArray, *, psi_bins: int
) -> float:
    """The drift value (p-value or distance) of ``method`` on a numeric feature."""
    if method == "ks":
        return ks_2samp(reference.sorted_values, np.sort(current), assume_sorted=True).pvalue
    if method == "wasserstein":
        return wasserstein_normed(
            reference.sorted_values,
            np.sort(current),
            assume_sorted=True,
            reference_std=reference.std,
        )
    ref_counts, cur_counts = _numeric_histograms(method, reference, current, psi_bins)
    return _histogram_score(method, ref_counts, cur_counts, 0)


def _first_in_sorted_order(keys: Sequence[Any]) -> int:
    try:
        return min(range(len(keys)), key=keys.__getitem__)
    except TypeError:  # categories of mixed types: compare their text
        return min(range(len(keys)), key=lambda i: str(keys[i]))


def categorical_score(
    method: DriftMethod, reference: CategoricalReference, current: pd.Series
) -> float:
    """The drift value of ``method`` on category counts (``current`` is counts per category)."""
    table = pd.concat([reference.counts, current], axis=1, join="outer").fillna(0.0)
    first = _first_in_sorted_order(list(table.index)) if method == "z" else 0
    return _histogram_score(
        method,
        table.iloc[:, 0].to_numpy(dtype=np.float64),
        table.iloc[:, 1].to_numpy(dtype=np.float64),
        first,
    )
