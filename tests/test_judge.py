"""The statistical judge of a canary analysis."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy import optimize
from scipy import stats as scipy_stats

from controller.analysis_types import LatencyHistogram, RevisionTraffic, Verdict
from controller.errors import InputError
from controller.gates.judge import (
    JudgeConfig,
    alpha_spent,
    compare_error_rates,
    compare_latency,
    histogram_from_cumulative,
    judge,
    look_alphas,
    rebin,
)

#: Prometheus client's default buckets, in milliseconds.
BOUNDS = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, math.inf)
CONFIG = JudgeConfig()


def bucket_probabilities(median_ms: float, sigma: float = 0.6) -> np.ndarray:
    """Probability of each bucket for log-normal latencies."""
    cdf = scipy_stats.lognorm.cdf(np.asarray(BOUNDS), s=sigma, scale=median_ms)
    return np.diff(cdf, prepend=0.0)


def histogram(n: int, median_ms: float) -> LatencyHistogram:
    """Expected (rounded) bucket counts of ``n`` log-normal requests."""
    counts = np.rint(n * bucket_probabilities(median_ms)).astype(int)
    return LatencyHistogram(BOUNDS, tuple(int(c) for c in counts))


def traffic(revision: str, requests: int, errors: int, median_ms: float | None) -> RevisionTraffic:
    latency = None if median_ms is None else histogram(requests, median_ms)
    return RevisionTraffic(revision, requests, errors, latency)


def expand(counts: tuple[int, ...]) -> np.ndarray:
    """One value per request: the index of its bucket."""
    return np.repeat(np.arange(len(counts), dtype=float), counts)


def verdicts(canary: RevisionTraffic, primary: RevisionTraffic, config: JudgeConfig) -> list[str]:
    return [
        judge(canary, primary, look=look, config=config).verdict
        for look in range(1, config.max_looks + 1)
    ]


bucket_counts = st.lists(st.integers(0, 60), min_size=4, max_size=4)
histograms = st.one_of(
    st.none(),
    bucket_counts.map(lambda c: LatencyHistogram((10.0, 50.0, 200.0, math.inf), tuple(c))),
)


@st.composite
def revisions(draw: st.DrawFn, max_requests: int = 20_000) -> RevisionTraffic:
    requests = draw(st.integers(0, max_requests))
    errors = draw(st.integers(0, requests))
    return RevisionTraffic("r", requests, errors, draw(histograms))


@settings(max_examples=80, deadline=None)
@given(canary=bucket_counts, primary=bucket_counts)
def test_grouped_mann_whitney_matches_scipy_on_expanded_samples(
    canary: list[int], primary: list[int]
) -> None:
    """U and its one-sided p-value equal scipy's asymptotic Mann-Whitney on expanded requests."""
    if sum(canary) < 2 or sum(primary) < 2:
        return
    bounds = (10.0, 50.0, 200.0, math.inf)
    ours = compare_latency(
        LatencyHistogram(bounds, tuple(canary)),
        LatencyHistogram(bounds, tuple(primary)),
        margin=0.1,
    )
    theirs = scipy_stats.mannwhitneyu(
        expand(tuple(canary)), expand(tuple(primary)), method="asymptotic", alternative="greater"
    )
    assert math.isclose(ours.u, theirs.statistic, rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(ours.p_slower, theirs.pvalue, rel_tol=1e-9, abs_tol=1e-12)


def test_latency_noninferiority_uses_delong_variance_of_placements() -> None:
    """The latency non-inferiority p-value is the normal tail of DeLong's statistic."""
    canary, primary = histogram(300, 120.0), histogram(500, 100.0)
    x, y = expand(canary.counts), expand(primary.counts)
    wins = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    theta = wins.mean()
    variance = wins.mean(axis=1).var(ddof=1) / x.size + wins.mean(axis=0).var(ddof=1) / y.size
    expected = scipy_stats.norm.cdf((theta - 0.6) / math.sqrt(variance))
    result = compare_latency(canary, primary, margin=0.1)
    assert math.isclose(result.prob_slower, theta, rel_tol=1e-12)
    assert math.isclose(result.p_inferior, expected, rel_tol=1e-9)


def test_two_proportion_z_matches_the_pooled_formula() -> None:
    """With ample errors the harm p-value is the normal tail of the pooled z statistic."""
    pooled = 70 / 3000
    z = (30 / 1000 - 40 / 2000) / math.sqrt(pooled * (1 - pooled) * (1 / 1000 + 1 / 2000))
    result = compare_error_rates(30, 1000, 40, 2000, margin=0.01)
    assert not result.exact
    assert math.isclose(result.z, z, rel_tol=1e-12)
    assert math.isclose(result.p_worse, scipy_stats.norm.sf(z), rel_tol=1e-12)


def test_sparse_errors_use_the_fisher_exact_tail() -> None:
    """One canary error against none falls back to Fisher's exact test, not the z-test."""
    result = compare_error_rates(1, 1200, 0, 5400, margin=0.01)
    fisher = scipy_stats.fisher_exact([[1, 1199], [0, 5400]], alternative="greater")
    assert result.exact
    assert math.isclose(result.p_worse, fisher.pvalue, rel_tol=1e-9)
    assert math.isclose(result.p_worse, 1200 / 6600, rel_tol=1e-9)


@pytest.mark.parametrize(
    ("e1", "n1", "e2", "n2"), [(5, 1200, 16, 5400), (0, 1200, 0, 5400), (240, 1200, 5, 5400)]
)
def test_error_noninferiority_is_the_farrington_manning_score_test(
    e1: int, n1: int, e2: int, n2: int
) -> None:
    """The error non-inferiority p-value uses rates maximising the likelihood under the margin."""
    margin = 0.01

    def negative_log_likelihood(q1: float) -> float:
        q2 = q1 - margin
        return -float(scipy_stats.binom.logpmf(e1, n1, q1) + scipy_stats.binom.logpmf(e2, n2, q2))

    q1 = optimize.minimize_scalar(
        negative_log_likelihood,
        bounds=(margin + 1e-12, 1 - 1e-12),
        method="bounded",
        options={"xatol": 1e-12},
    ).x
    q2 = q1 - margin
    z = (e1 / n1 - e2 / n2 - margin) / math.sqrt(q1 * (1 - q1) / n1 + q2 * (1 - q2) / n2)
    result = compare_error_rates(e1, n1, e2, n2, margin=margin)
    assert math.isclose(result.p_inferior, scipy_stats.norm.cdf(z), rel_tol=1e-6, abs_tol=1e-12)


def test_identical_revisions_pass_eventually_and_never_fail() -> None:
    """A canary identical to the primary, with growing windows, passes by the last look."""
    seen = [
        judge(
            traffic("canary", 400 * look, 2 * look, 80.0),
            traffic("primary", 400 * look, 2 * look, 80.0),
            look=look,
            config=CONFIG,
        ).verdict
        for look in range(1, CONFIG.max_looks + 1)
    ]
    assert Verdict.FAIL not in seen
    assert Verdict.PASS in seen


def test_canary_failing_twenty_percent_fails_at_the_first_look() -> None:
    """20% errors against 0.1% fail as soon as both revisions have min samples."""
    result = judge(
        traffic("canary", 200, 40, 80.0), traffic("primary", 1000, 1, 80.0), look=1, config=CONFIG
    )
    assert result.verdict is Verdict.FAIL
    assert "errors worse" in result.summary


def test_canary_300ms_slower_fails() -> None:
    """A canary whose median is 300 ms above the primary's fails on latency."""
    result = judge(
        traffic("canary", 500, 1, 400.0), traffic("primary", 500, 1, 100.0), look=1, config=CONFIG
    )
    assert result.verdict is Verdict.FAIL
    assert "latency slower" in result.summary


def test_missing_histogram_skips_latency_and_says_so() -> None:
    """Without histograms the judge decides on errors alone and says latency was skipped."""
    result = judge(
        traffic("canary", 5000, 10, None), traffic("primary", 5000, 10, 80.0), look=5, config=CONFIG
    )
    assert result.verdict is Verdict.PASS
    assert "latency skipped (no histogram)" in result.summary
    assert "latency_p_value" not in result.values


def test_too_few_timed_requests_block_a_pass() -> None:
    """Histograms below min_samples neither fail nor let the canary pass on errors alone."""
    canary = RevisionTraffic("canary", 5000, 10, histogram(150, 80.0))
    primary = RevisionTraffic("primary", 5000, 10, histogram(150, 80.0))
    result = judge(canary, primary, look=5, config=CONFIG)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "latency n=150/150 below minSamples" in result.summary


def test_nothing_tested_is_never_a_pass() -> None:
    """With errors off and no histogram, the judge has no evidence and stays inconclusive."""
    config = JudgeConfig(check_errors=False)
    result = judge(
        traffic("canary", 5000, 0, None), traffic("primary", 5000, 0, None), look=5, config=config
    )
    assert result.verdict is Verdict.INCONCLUSIVE


def test_summary_is_one_line_with_rates_p_values_and_counts() -> None:
    """The summary names error rates, P(slower), p-values, counts and the verdict on one line."""
    result = judge(
        traffic("canary", 1200, 5, 80.0), traffic("primary", 5400, 16, 80.0), look=5, config=CONFIG
    )
    assert result.summary == (
        "judge look 5/5: errors 0.42% vs 0.30% (p=0.33), latency P(slower)=0.50 (p=0.51), "
        "n=1200/5400 — pass: no worse than primary within margins at alpha=0.022"
    )


def test_values_hold_the_numbers_as_finite_floats() -> None:
    """Values carry rates, p-values, P(slower) and counts as finite floats."""
    result = judge(
        traffic("canary", 1200, 5, 80.0), traffic("primary", 5400, 16, 80.0), look=2, config=CONFIG
    )
    expected = {"canary_error_rate", "primary_error_rate", "error_p_value", "latency_p_value"}
    expected |= {"prob_slower", "canary_n", "primary_n"}
    assert expected <= set(result.values)
    assert all(type(v) is float and math.isfinite(v) for v in result.values.values())
    assert result.values["canary_n"] == 1200.0


def test_look_beyond_max_looks_stays_inconclusive() -> None:
    """Once every look is spent, even a clearly broken canary is only inconclusive."""
    result = judge(
        traffic("canary", 1000, 500, 80.0), traffic("primary", 1000, 1, 80.0), look=6, config=CONFIG
    )
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "all 5 looks spent" in result.summary


@settings(max_examples=150, deadline=None)
@given(
    small=revisions(max_requests=CONFIG.min_samples - 1),
    other=revisions(),
    canary_is_small=st.booleans(),
    look=st.integers(1, CONFIG.max_looks + 2),
)
def test_below_min_samples_is_always_inconclusive(
    small: RevisionTraffic, other: RevisionTraffic, canary_is_small: bool, look: int
) -> None:
    """A revision with fewer than min_samples requests never lets the judge pass or fail."""
    canary, primary = (small, other) if canary_is_small else (other, small)
    assert judge(canary, primary, look=look, config=CONFIG).verdict is Verdict.INCONCLUSIVE


@settings(max_examples=100, deadline=None)
@given(canary=revisions(), primary=revisions(), look=st.integers(1, 6))
def test_judge_is_deterministic(
    canary: RevisionTraffic, primary: RevisionTraffic, look: int
) -> None:
    """The same traffic at the same look gives the same result."""
    first = judge(canary, primary, look=look, config=CONFIG)
    assert judge(canary, primary, look=look, config=CONFIG) == first


@settings(max_examples=100, deadline=None)
@given(
    canary_n=st.integers(2000, 100_000),
    primary_n=st.integers(2000, 100_000),
    primary_rate=st.floats(0.0, 0.1),
    excess=st.floats(0.02, 0.5),
)
def test_never_passes_a_canary_far_beyond_the_error_margin(
    canary_n: int, primary_n: int, primary_rate: float, excess: float
) -> None:
    """A canary erring more than primary + margin + 2 points with large n never passes."""
    canary_rate = min(primary_rate + CONFIG.error_margin + excess, 1.0)
    canary = RevisionTraffic("canary", canary_n, math.ceil(canary_rate * canary_n))
    primary = RevisionTraffic("primary", primary_n, math.floor(primary_rate * primary_n))
    assert Verdict.PASS not in verdicts(canary, primary, CONFIG)


@pytest.mark.parametrize("spending", ["obrien-fleming", "pocock"])
@pytest.mark.parametrize("max_looks", [1, 2, 5, 12])
def test_alpha_spending_levels_grow_cumulative_alpha_to_at_most_alpha(
    spending: str, max_looks: int
) -> None:
    """Every look spends some alpha, cumulative alpha rises, and the looks spend at most alpha."""
    levels = look_alphas(0.05, max_looks, spending)  # type: ignore[arg-type]
    cumulative = np.cumsum(levels)
    assert len(levels) == max_looks
    assert all(level > 0 for level in levels)
    assert np.all(np.diff(cumulative) > 0)
    assert cumulative[-1] <= 0.05 + 1e-15
    assert cumulative[-1] == pytest.approx(0.05, rel=1e-12)


def test_obrien_fleming_spends_less_early_than_pocock() -> None:
    """O'Brien-Fleming-type spending keeps alpha for late looks, Pocock-type spends it early."""
    early = {s: alpha_spent(0.2, alpha=0.05, spending=s) for s in ("obrien-fleming", "pocock")}
    assert early["obrien-fleming"] < 1e-4 < 0.01 < early["pocock"]


def test_false_fail_rate_over_sequential_looks_stays_within_alpha() -> None:
    """Identical canary and primary fail over all looks no more often than alpha allows."""
    rng = np.random.default_rng(20240611)
    repetitions, per_look, error_rate = 400, 250, 0.02
    probabilities = bucket_probabilities(80.0)
    shape = (repetitions, CONFIG.max_looks)
    errors = {r: rng.binomial(per_look, error_rate, size=shape).cumsum(axis=1) for r in "cp"}
    counts = {r: rng.multinomial(per_look, probabilities, size=shape).cumsum(axis=1) for r in "cp"}
    failed = 0
    for rep in range(repetitions):
        for look in range(1, CONFIG.max_looks + 1):
            c, p = (
                RevisionTraffic(
                    r,
                    per_look * look,
                    int(errors[r][rep, look - 1]),
                    LatencyHistogram(BOUNDS, tuple(int(x) for x in counts[r][rep, look - 1])),
                )
                for r in "cp"
            )
            if judge(c, p, look=look, config=CONFIG).verdict is Verdict.FAIL:
                failed += 1
                break
    tolerance = 3 * math.sqrt(CONFIG.alpha * (1 - CONFIG.alpha) / repetitions)
    assert failed / repetitions <= CONFIG.alpha + tolerance


def test_histogram_from_cumulative_differences_le_buckets() -> None:
    """Cumulative le counts become per-bucket counts, dips flattened and fractions rounded."""
    result = histogram_from_cumulative([5, 10, 25, math.inf], [10.2, 29.9, 29.5, 31.0])
    assert result == LatencyHistogram((5.0, 10.0, 25.0, math.inf), (10, 20, 0, 1))


def test_histogram_from_cumulative_rejects_mismatched_lengths() -> None:
    """Counts that do not match the bounds are an input error."""
    with pytest.raises(InputError):
        histogram_from_cumulative([5, 10], [1.0, 2.0, 3.0])


def test_rebin_merges_buckets_into_coarser_bounds() -> None:
    """Rebinning sums the counts of the buckets each coarse bound covers."""
    fine = LatencyHistogram((5.0, 10.0, 25.0, 50.0, math.inf), (1, 2, 3, 4, 5))
    assert rebin(fine, (10.0, 50.0, math.inf)) == LatencyHistogram(
        (10.0, 50.0, math.inf), (3, 7, 5)
    )


def test_rebin_rejects_a_bound_the_histogram_lacks() -> None:
    """A bound that is not one of the histogram's cannot be rebinned onto exactly."""
    fine = LatencyHistogram((5.0, 10.0, math.inf), (1, 2, 3))
    with pytest.raises(InputError):
        rebin(fine, (7.0, math.inf))


def test_judge_aligns_histograms_with_different_bounds() -> None:
    """Histograms with different buckets are compared on the bounds they share."""
    fine = LatencyHistogram((5.0, 10.0, 25.0, math.inf), (100, 200, 300, 10))
    coarse = LatencyHistogram((10.0, math.inf), (300, 310))
    result = judge(
        RevisionTraffic("canary", 610, 0, fine),
        RevisionTraffic("primary", 610, 0, coarse),
        look=1,
        config=CONFIG,
    )
    assert result.values["prob_slower"] == pytest.approx(0.5)


def test_config_reads_camel_case_keys() -> None:
    """The YAML spelling (camelCase) and the Python names both configure the judge."""
    from_yaml = JudgeConfig.model_validate({"minSamples": 50, "maxLooks": 3, "errorMargin": 0.02})
    assert from_yaml == JudgeConfig(min_samples=50, max_looks=3, error_margin=0.02)


def test_config_rejects_unknown_keys() -> None:
    """A misspelt key is an error, not silently ignored."""
    with pytest.raises(ValidationError):
        JudgeConfig.model_validate({"minSample": 50})


def test_config_rejects_turning_every_check_off() -> None:
    """With neither errors nor latency checked there is nothing to judge."""
    with pytest.raises(ValidationError):
        JudgeConfig(check_errors=False, check_latency=False)


def test_config_schema_describes_every_field() -> None:
    """Each field of the JSON schema has a description for the documentation."""
    properties = JudgeConfig.model_json_schema(by_alias=True)["properties"]
    assert "minSamples" in properties
    assert all(field.get("description") for field in properties.values())


def test_tiny_significant_slowdown_inside_the_margin_does_not_fail() -> None:
    """A slowdown that is significant with many requests but inside latencyMargin never fails."""
    bounds = (5.0, 10.0, 20.0, 40.0, float("inf"))
    primary = RevisionTraffic("p", 20000, 0, LatencyHistogram(bounds, (8000, 8000, 3000, 1000, 0)))
    canary = RevisionTraffic("c", 20000, 0, LatencyHistogram(bounds, (7200, 8400, 3300, 1100, 0)))
    config = JudgeConfig(maxLooks=1)
    result = judge(canary, primary, look=1, config=config)
    assert result.values["latency_p_value"] < 0.001
    assert result.verdict is not Verdict.FAIL
