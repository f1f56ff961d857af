"""Drift statistics: equal to scipy where scipy defines them, Evidently's conventions elsewhere."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from controller.drift.statistics import (
    KS_EXACT_MAX_SIZE,
    bin_counts,
    chi_square,
    fill_empty_bins,
    jensen_shannon,
    ks_2samp,
    psi,
    quantile_bin_edges,
    wasserstein,
    wasserstein_normed,
    z_test_proportions,
)
from controller.errors import InputError
from controller.quality.data_profile import profile_numeric

TOL = 1e-9
RNG = np.random.default_rng(20240601)
SMALL_REF = RNG.normal(size=300)
SMALL_CUR = RNG.normal(0.2, 1.1, size=450)
LARGE_REF = RNG.lognormal(size=30_000)
LARGE_CUR = RNG.lognormal(0.05, 1.0, size=25_000)
# Integer-valued samples: many ties across the two samples.
TIED_REF = RNG.integers(0, 40, size=20_000).astype(np.float64)
TIED_CUR = RNG.integers(0, 42, size=15_000).astype(np.float64)
SAMPLE_PAIRS = [
    pytest.param(SMALL_REF, SMALL_CUR, id="small-continuous"),
    pytest.param(LARGE_REF, LARGE_CUR, id="large-continuous"),
    pytest.param(TIED_REF, TIED_CUR, id="large-ties"),
    pytest.param(TIED_REF[:500], TIED_CUR[:700], id="small-ties"),
]

finite_floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
samples = st.lists(finite_floats | st.integers(-5, 5).map(float), min_size=1, max_size=60)
histograms = st.lists(st.integers(0, 1000), min_size=1, max_size=12).filter(lambda c: sum(c) > 0)


@pytest.mark.parametrize(("reference", "current"), SAMPLE_PAIRS)
def test_ks_equals_scipy(reference: np.ndarray, current: np.ndarray) -> None:
    """KS statistic and p-value equal scipy's ks_2samp, in its exact and asymptotic regimes."""
    expected = stats.ks_2samp(reference, current)
    result = ks_2samp(reference, current)
    assert result.statistic == pytest.approx(expected.statistic, abs=TOL)
    assert result.pvalue == pytest.approx(expected.pvalue, abs=TOL)


def test_ks_large_samples_use_the_vectorised_path_with_scipy_values() -> None:
    """Above scipy's exact limit the merged-sample statistic equals scipy's on sorted input."""
    assert max(LARGE_REF.size, LARGE_CUR.size) > KS_EXACT_MAX_SIZE
    result = ks_2samp(np.sort(LARGE_REF), np.sort(LARGE_CUR), assume_sorted=True)
    assert result.statistic == pytest.approx(
        stats.ks_2samp(LARGE_REF, LARGE_CUR).statistic, abs=TOL
    )


@pytest.mark.parametrize(("reference", "current"), SAMPLE_PAIRS)
def test_wasserstein_equals_scipy(reference: np.ndarray, current: np.ndarray) -> None:
    """W1 equals scipy's wasserstein_distance, and the normed one divides by std(reference)."""
    expected = stats.wasserstein_distance(reference, current)
    assert wasserstein(reference, current) == pytest.approx(expected, abs=TOL)
    normed = wasserstein_normed(reference, current)
    assert normed == pytest.approx(expected / np.std(reference), abs=TOL)


def test_wasserstein_normed_floors_a_constant_reference_at_a_thousandth() -> None:
    """A constant reference divides by 0.001, as Evidently does, instead of by zero."""
    assert wasserstein_normed([2.0, 2.0, 2.0], [2.5]) == pytest.approx(0.5 / 0.001)


def test_wasserstein_normed_uses_a_given_reference_std() -> None:
    """A profile's exact standard deviation replaces the sample's."""
    assert wasserstein_normed([0.0, 1.0], [1.0, 2.0], reference_std=4.0) == pytest.approx(0.25)


@pytest.mark.parametrize("base", [None, 2.0, 10.0])
def test_jensen_shannon_equals_scipy(base: float | None) -> None:
    """The JS distance of two histograms equals scipy's jensenshannon with the same base."""
    p = np.array([10.0, 0.0, 35.0, 5.0, 50.0])
    q = np.array([12.0, 3.0, 20.0, 0.0, 65.0])
    expected = jensenshannon(p / p.sum(), q / q.sum(), base=base)
    assert jensen_shannon(p, q, base=base) == pytest.approx(expected, abs=TOL)


def test_jensen_shannon_of_disjoint_supports_is_maximal() -> None:
    """Disjoint histograms are sqrt(ln 2) apart with Evidently's natural log, 1 with base 2."""
    assert jensen_shannon([5, 5, 0, 0], [0, 0, 3, 1]) == pytest.approx(math.sqrt(math.log(2)))
    assert jensen_shannon([5, 5, 0, 0], [0, 0, 3, 1], base=2) == pytest.approx(1.0)


def test_chi_square_equals_scipy_goodness_of_fit_to_reference_frequencies() -> None:
    """Chi-square equals scipy's chisquare of current counts against scaled reference counts."""
    reference = np.array([400.0, 250.0, 200.0, 150.0])
    current = np.array([90.0, 70.0, 20.0, 20.0])
    expected = stats.chisquare(current, reference * current.sum() / reference.sum())
    result = chi_square(reference, current)
    assert result.statistic == pytest.approx(expected.statistic, abs=TOL)
    assert result.pvalue == pytest.approx(expected.pvalue, abs=TOL)


def test_chi_square_of_a_category_new_in_current_is_certain_drift() -> None:
    """A category the reference never saw has expectation zero: infinite statistic, p = 0."""
    result = chi_square([50, 50, 0], [40, 40, 1])
    assert math.isinf(result.statistic)
    assert result.pvalue == 0.0


def test_chi_square_bin_empty_on_both_sides_adds_nothing_but_keeps_its_freedom() -> None:
    """A bin neither side has adds 0 to the statistic (scipy alone would make it NaN); the
    p-value still has one degree of freedom per bin less one."""
    result = chi_square([50, 0, 50], [40, 0, 60])
    statistic = stats.chisquare([40, 60], [50, 50]).statistic
    assert result.statistic == pytest.approx(statistic, abs=TOL)
    assert result.pvalue == pytest.approx(stats.chi2.sf(statistic, 2), abs=TOL)


def test_z_test_squared_is_the_uncorrected_two_by_two_chi_square() -> None:
    """The pooled two-proportion z-test equals Pearson's chi-square on the 2x2 table."""
    result = z_test_proportions(30, 100, 50, 120)
    table = np.array([[30, 70], [50, 70]])
    chi2, pvalue, _, _ = stats.chi2_contingency(table, correction=False)
    assert result.statistic**2 == pytest.approx(chi2, abs=TOL)
    assert result.pvalue == pytest.approx(pvalue, abs=TOL)


def test_z_test_of_one_identical_value_on_both_sides_is_no_drift() -> None:
    """Both samples all zeros (pooled proportion 0) gives p = 1, Evidently's special case."""
    assert z_test_proportions(0, 10, 0, 20).pvalue == 1.0
    assert z_test_proportions(10, 10, 20, 20).pvalue == 1.0


def test_fill_empty_bins_uses_evidently_epsilons() -> None:
    """Empty bins become 1e-4, or a millionth of the smallest fraction when that is <= 1e-4."""
    assert fill_empty_bins([0.5, 0.5, 0.0]).tolist() == [0.5, 0.5, 1e-4]
    filled = fill_empty_bins([0.99995, 0.00005, 0.0])
    assert filled[2] == pytest.approx(0.00005 / 1e6)


def test_psi_matches_the_formula_on_fixed_fractions() -> None:
    """PSI is sum((r - c) * ln(r / c)) over bin fractions, whatever the counts' totals."""
    reference = np.array([0.25, 0.25, 0.5])
    current = np.array([0.5, 0.25, 0.25])
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + 0.0 + (0.5 - 0.25) * math.log(0.5 / 0.25)
    assert psi(reference, current) == pytest.approx(expected)
    assert psi(reference * 40, current * 80) == pytest.approx(expected)


def test_psi_with_an_empty_current_bin_is_finite_and_large() -> None:
    """An empty bin is filled with Evidently's epsilon, so PSI stays finite."""
    value = psi([50, 50], [100, 0])
    assert math.isfinite(value)
    assert value == pytest.approx((0.5 - 1.0) * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4))


def test_identical_samples_show_no_drift() -> None:
    """Every statistic reports no difference between a sample and itself."""
    counts = np.array([3.0, 9.0, 1.0])
    assert ks_2samp(SMALL_REF, SMALL_REF) == (0.0, 1.0)
    assert ks_2samp(LARGE_REF, LARGE_REF) == (0.0, 1.0)
    assert wasserstein_normed(LARGE_REF, LARGE_REF) == 0.0
    assert jensen_shannon(counts, counts) == 0.0
    assert psi(counts, counts) == 0.0
    assert chi_square(counts, counts).pvalue == pytest.approx(1.0)


def test_disjoint_samples_show_maximal_ks_difference() -> None:
    """Samples with no overlap have KS statistic 1 and a p-value near 0, in both regimes."""
    for size in (100, 20_000):
        result = ks_2samp(np.arange(size), np.arange(size) + size)
        assert result.statistic == 1.0
        assert result.pvalue < 1e-12


def test_quantile_bins_match_the_reference_profile() -> None:
    """Bin edges and counts follow the profile's convention, sorted or not."""
    profile = profile_numeric(LARGE_REF, bins=10)
    edges = quantile_bin_edges(LARGE_REF, 10)
    assert edges.tolist() == profile.bin_edges
    assert bin_counts(LARGE_REF, edges).tolist() == profile.bin_counts
    sorted_counts = bin_counts(np.sort(LARGE_REF), edges, assume_sorted=True)
    assert sorted_counts.tolist() == profile.bin_counts


def test_empty_samples_are_refused() -> None:
    """An empty side is an input error, not a silent NaN."""
    with pytest.raises(InputError, match="empty"):
        ks_2samp([], [1.0])
    with pytest.raises(InputError, match="empty"):
        wasserstein([1.0], [])
    with pytest.raises(InputError, match="empty"):
        psi([0, 0], [1, 1])


@settings(max_examples=150, deadline=None)
@given(samples, samples)
def test_wasserstein_equals_scipy_on_any_samples(u: list[float], v: list[float]) -> None:
    """The merged-sample W1 equals scipy's on arbitrary samples with ties, and is symmetric."""
    expected = stats.wasserstein_distance(u, v)
    assert wasserstein(u, v) == pytest.approx(expected, rel=1e-9, abs=TOL)
    assert wasserstein(v, u) == pytest.approx(wasserstein(u, v), rel=1e-12, abs=1e-12)
    assert wasserstein(u, v) >= 0.0


@settings(max_examples=150, deadline=None)
@given(histograms.flatmap(lambda p: st.tuples(st.just(p), _same_length(len(p)))))
def test_jensen_shannon_is_a_bounded_symmetric_distance(pair: tuple[list[int], list[int]]) -> None:
    """JS is symmetric, non-negative and at most sqrt(ln 2)."""
    p, q = pair
    value = jensen_shannon(p, q)
    assert value == pytest.approx(jensen_shannon(q, p), abs=1e-12)
    assert 0.0 <= value <= math.sqrt(math.log(2)) + 1e-12


@settings(max_examples=150, deadline=None)
@given(histograms.flatmap(lambda p: st.tuples(st.just(p), _same_length(len(p)))))
def test_psi_is_non_negative(pair: tuple[list[int], list[int]]) -> None:
    """PSI is never negative (each term's factors share a sign) and symmetric."""
    p, q = pair
    assert psi(p, q) >= 0.0
    assert psi(p, q) == pytest.approx(psi(q, p), rel=1e-9, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(histograms, st.integers(1, 50))
def test_psi_of_identical_distributions_is_zero(counts: list[int], scale: int) -> None:
    """Histograms with the same proportions, whatever their sizes, have PSI 0."""
    assert psi(counts, [count * scale for count in counts]) == pytest.approx(0.0, abs=1e-12)


def _same_length(length: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, 1000), min_size=length, max_size=length).filter(
        lambda c: sum(c) > 0
    )
