"""Drift statistics as pure functions over numpy arrays, defined as Evidently defines them.

Sluice alerts on drift with the statistics Evidently's ``DataDriftPreset`` uses, so that a verdict
can be checked against that widely used tool, but without its cost: Evidently computes every
column twice through pandas objects, where these functions sort each column once and work on
whole arrays (no Python loop over rows).

Definitions (each checked against scipy and, where it differs, against Evidently's source,
``evidently/legacy/calculations/stattests/``, version 0.7.23); Jensen-Shannon and chi-square
are scipy's own functions, called with Evidently's arguments:

- **KS**: two-sided two-sample Kolmogorov-Smirnov, statistic and p-value exactly as
  ``scipy.stats.ks_2samp(method="auto")``: the exact distribution when both samples have at most
  10,000 values (delegated to scipy, whose exact algorithm is a dynamic programme not worth
  copying, and cheap at that size), Smirnov's asymptotic ``kstwo`` otherwise.
- **Wasserstein** (W1) as ``scipy.stats.wasserstein_distance``; Evidently's *normed* variant
  divides by ``max(std(reference), 0.001)`` with the population standard deviation (ddof=0).
- **Jensen-Shannon distance** as ``scipy.spatial.distance.jensenshannon`` with the *natural*
  logarithm by default, because Evidently passes ``base=None``: the distance lies in
  ``[0, sqrt(ln 2)] ~ [0, 0.833]``, not ``[0, 1]`` as with base 2.
- **Chi-square**: ``scipy.stats.chisquare(current_counts, reference_counts * n_cur / n_ref)``,
  Evidently's goodness-of-fit form (reference frequencies are the expectation), *not* a
  contingency-table test. A category absent from the reference gives an infinite statistic and
  p = 0, as in scipy.
- **Z-test** for two proportions with a pooled variance, two-sided.
- **PSI**: ``sum((r - c) * ln(r / c))`` over bin fractions, where empty bins of each side are
  first filled as Evidently fills them: with ``1e-4``, or with a millionth of the smallest
  non-empty fraction when that is itself at most ``1e-4``. Fractions are not renormalised after
  filling (Evidently does not either).

All functions take finite values only (callers drop NaN and infinities, as Evidently does) and
raise :class:`~controller.errors.InputError` on an empty sample.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from controller.errors import InputError

# scipy is imported inside the functions that use it: the model server, `sluice drift` and the
# policy models import this module, and importing scipy.stats costs about 0.6 s of CPU.

__all__ = [
    "KS_EXACT_MAX_SIZE",
    "SignificanceResult",
    "bin_counts",
    "chi_square",
    "fill_empty_bins",
    "jensen_shannon",
    "ks_2samp",
    "psi",
    "quantile_bin_edges",
    "wasserstein",
    "wasserstein_normed",
    "z_test_proportions",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: scipy's ``ks_2samp(method="auto")`` is exact up to this many values in the larger sample.
KS_EXACT_MAX_SIZE = 10_000
#: Evidently's floor for the reference standard deviation in the normed Wasserstein distance.
WASSERSTEIN_MIN_STD = 0.001
#: Evidently's fill for empty PSI bins, unless the smallest non-empty fraction is below it.
PSI_EMPTY_BIN_FRACTION = 1e-4


class SignificanceResult(NamedTuple):
    """A test statistic and its p-value; drift is suggested by a small p-value."""

    statistic: float
    pvalue: float


def _sample(values: npt.ArrayLike, name: str, *, assume_sorted: bool) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise InputError(f"the {name} sample is empty: drift needs at least one value on each side")
    return array if assume_sorted else np.sort(array)


def _counts(values: npt.ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0 or not array.sum() > 0:
        raise InputError(
            f"the {name} counts are empty: drift needs at least one value on each side"
        )
    return array


def _cdf_gaps(u_sorted: FloatArray, v_sorted: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``|F_u - F_v|`` at each point of the merged sample, and the gaps to the next point.

    One stable argsort of the two concatenated sorted runs merges them in linear time (timsort
    finds the runs). The running count of ``u`` values equals ``searchsorted(u, x, "right")``
    wherever the next merged value is larger, that is at the end of every group of ties, the
    only places that matter: inside a tie group the gap is zero and the KS maximum is reached
    at a group's end.
    """
    merged = np.concatenate((u_sorted, v_sorted))
    order = np.argsort(merged, kind="stable")
    merged = merged[order]
    # Counts are whole numbers below 2**53, so float64 holds them exactly and each division
    # below rounds as scipy's int / size does; working in place spares ~5 arrays of n + m.
    u_seen = np.cumsum(order < u_sorted.size).astype(np.float64)  # 3x faster than dtype=float
    del order
    v_seen = np.arange(1.0, merged.size + 1.0)
    v_seen -= u_seen
    u_seen /= u_sorted.size
    v_seen /= v_sorted.size
    u_seen -= v_seen
    del v_seen
    gaps = np.abs(u_seen, out=u_seen)
    return gaps, np.diff(merged)


def ks_2samp(
    reference: npt.ArrayLike, current: npt.ArrayLike, *, assume_sorted: bool = False
) -> SignificanceResult:
    """Two-sided two-sample KS test, equal to ``scipy.stats.ks_2samp`` (``method="auto"``).

    Beware of sample size: with hundreds of thousands of values the test calls a shift of a
    hundredth of a standard deviation significant, which is why Evidently (and Sluice) switch to
    distances once the reference has more than 1,000 rows.
    """
    from scipy import stats as scipy_stats  # on use, see the module's note on imports

    ref = _sample(reference, "reference", assume_sorted=assume_sorted)
    cur = _sample(current, "current", assume_sorted=assume_sorted)
    if max(ref.size, cur.size) <= KS_EXACT_MAX_SIZE:
        result = scipy_stats.ks_2samp(ref, cur)
        return SignificanceResult(float(result.statistic), float(result.pvalue))
    gaps, steps = _cdf_gaps(ref, cur)
    # Maximum over the ends of tie groups (step > 0); the final point has gap 0.
    statistic = float(np.max(gaps[:-1][steps > 0], initial=0.0))
    larger, smaller = max(ref.size, cur.size), min(ref.size, cur.size)
    effective = float(larger) * float(smaller) / (larger + smaller)
    pvalue = float(np.clip(scipy_stats.kstwo.sf(statistic, np.round(effective)), 0.0, 1.0))
    return SignificanceResult(statistic, pvalue)


def wasserstein(u: npt.ArrayLike, v: npt.ArrayLike, *, assume_sorted: bool = False) -> float:
    """First Wasserstein distance of two samples, equal to ``scipy.stats.wasserstein_distance``."""
    gaps, steps = _cdf_gaps(
        _sample(u, "first", assume_sorted=assume_sorted),
        _sample(v, "second", assume_sorted=assume_sorted),
    )
    return float(np.sum(gaps[:-1] * steps))


def wasserstein_normed(
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    assume_sorted: bool = False,
    reference_std: float | None = None,
) -> float:
    """Wasserstein distance in units of the reference's standard deviation, as Evidently.

    ``reference_std`` lets a caller pass the standard deviation of the full reference when
    ``reference`` is only a sample of it (a :class:`~controller.quality.data_profile.DataProfile`).
    """
    ref = _sample(reference, "reference", assume_sorted=assume_sorted)
    std = float(np.std(ref)) if reference_std is None else reference_std
    return wasserstein(ref, current, assume_sorted=assume_sorted) / max(std, WASSERSTEIN_MIN_STD)


def jensen_shannon(
    reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike, *, base: float | None = None
) -> float:
    """Jensen-Shannon distance of two histograms over the same bins (counts or fractions).

    Equal to ``scipy.spatial.distance.jensenshannon(p, q, base)``; Evidently uses ``base=None``
    (natural log), so two disjoint histograms are ``sqrt(ln 2)`` apart, and 1 only with base 2.
    """
    p = _counts(reference_counts, "reference")
    q = _counts(current_counts, "current")
    if p.shape != q.shape:
        raise InputError(f"histograms differ in length: {p.size} and {q.size} bins")
    from scipy.spatial import distance

    return float(distance.jensenshannon(p, q, base=base))


def chi_square(
    reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike
) -> SignificanceResult:
    """Chi-square goodness of fit of current counts to the reference's frequencies.

    Equal to ``scipy.stats.chisquare(current, reference * n_current / n_reference)``, which is
    how Evidently tests categoricals: the reference is treated as the known distribution, so
    its own sampling noise is ignored. With samples of equal size that doubles the statistic's
    spread: on two samples of 1,000 rows from one distribution, p < 0.05 in about 24% of cases
    with 3 categories, 43% with 8 and 97% with 50, not 5% (a 2 x k contingency test keeps 5%).
    Sluice keeps Evidently's definition so that verdicts match; lower the threshold or use
    Jensen-Shannon where that matters.

    With a single category the p-value is NaN (no degrees of freedom), as in scipy. A bin empty
    on both sides adds 0 (scipy: NaN); Evidently never makes one, since its categories are those
    seen on either side.
    """
    observed = _counts(current_counts, "current")
    reference = _counts(reference_counts, "reference")
    if reference.shape != observed.shape:
        raise InputError(f"histograms differ in length: {reference.size} and {observed.size} bins")
    expected = reference * (observed.sum() / reference.sum())
    # A bin empty on both sides is left out of the sum (scipy would add 0/0) but keeps its
    # degree of freedom: ddof is minus the number of such bins.
    seen = (observed > 0) | (expected > 0)
    from scipy import stats as scipy_stats

    with np.errstate(divide="ignore", invalid="ignore"):  # a new category: inf, p = 0
        result = scipy_stats.chisquare(
            observed[seen], expected[seen], ddof=-int(seen.size - np.count_nonzero(seen))
        )
    return SignificanceResult(float(result.statistic), float(result.pvalue))


def z_test_proportions(
    reference_hits: float, reference_total: float, current_hits: float, current_total: float
) -> SignificanceResult:
    """Two-sided z-test that two proportions are equal, with the pooled variance.

    When both samples hold a single, identical value (pooled proportion 0 or 1) the p-value is 1,
    the special case Evidently makes for a binary column that never varies.
    """
    if reference_total <= 0 or current_total <= 0:
        raise InputError("the z-test needs at least one value on each side")
    p_ref = reference_hits / reference_total
    p_cur = current_hits / current_total
    pooled = (reference_hits + current_hits) / (reference_total + current_total)
    variance = pooled * (1.0 - pooled) * (1.0 / reference_total + 1.0 / current_total)
    if variance <= 0.0:
        return SignificanceResult(0.0, 1.0)
    statistic = float((p_ref - p_cur) / np.sqrt(variance))
    # Evidently writes 2 * (1 - cdf(|z|)); the survival function keeps precision in the tail.
    from scipy import stats as scipy_stats

    return SignificanceResult(statistic, float(2.0 * scipy_stats.norm.sf(abs(statistic))))


def fill_empty_bins(fractions: npt.ArrayLike) -> FloatArray:
    """Replace zero fractions as Evidently does before PSI, so that ``ln(r / c)`` is finite."""
    filled = np.array(fractions, dtype=np.float64, copy=True).ravel()
    empty = filled == 0.0
    if empty.all():
        raise InputError("every bin is empty: drift needs at least one value on each side")
    if empty.any():
        smallest = float(filled[~empty].min())
        filled[empty] = (
            smallest / 1e6 if smallest <= PSI_EMPTY_BIN_FRACTION else PSI_EMPTY_BIN_FRACTION
        )
    return filled


def psi(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> float:
    """Population stability index of two histograms over the same bins (counts or fractions)."""
    ref = _counts(reference_counts, "reference")
    cur = _counts(current_counts, "current")
    if ref.shape != cur.shape:
        raise InputError(f"histograms differ in length: {ref.size} and {cur.size} bins")
    ref = fill_empty_bins(ref / ref.sum())
    cur = fill_empty_bins(cur / cur.sum())
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def quantile_bin_edges(reference: npt.ArrayLike, bins: int) -> FloatArray:
    """Interior edges of ``bins`` reference quantile bins, duplicates merged.

    The same convention as :func:`controller.quality.data_profile.profile_numeric`: bins are
    ``(-inf, e0], (e0, e1], ..., (e_last, +inf)``, so values outside the reference's range
    still land in the outer bins.
    """
    if bins < 2:
        raise InputError(f"quantile binning needs at least 2 bins, got {bins}")
    ref = np.asarray(reference, dtype=np.float64).ravel()
    if ref.size == 0:
        raise InputError("the reference sample is empty: drift needs at least one value")
    edges: FloatArray = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    return edges


def bin_counts(
    values: npt.ArrayLike, interior_edges: npt.ArrayLike, *, assume_sorted: bool = False
) -> IntArray:
    """Counts of ``values`` in the bins ``(-inf, e0], (e0, e1], ..., (e_last, +inf)``."""
    edges = np.asarray(interior_edges, dtype=np.float64).ravel()
    array = np.asarray(values, dtype=np.float64).ravel()
    if assume_sorted:
        # Values <= each edge, by bisection: O(bins log n) instead of a pass over every value.
        at_most = np.searchsorted(array, edges, side="right")
        counts: IntArray = np.diff(np.concatenate(([0], at_most, [array.size]))).astype(np.int64)
        return counts
    positions = np.searchsorted(edges, array, side="left")
    return np.bincount(positions, minlength=edges.size + 1).astype(np.int64)
