"""The sequential watch's SPRT, against boundaries computed by hand and by property."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.analysis_types import Verdict
from controller.gates.sequential_watch import (
    WatchConfig,
    WatchCounts,
    bounds,
    hypotheses,
    log_likelihood_ratio,
    watch_verdict,
)

# p0 = 1 %, p1 = 11 % with an error-free primary, ten requests at least.
CONFIG = WatchConfig(minDetectableErrorRate=0.1, minSamples=10)
MARGIN = CONFIG.error_margin


def test_wald_boundaries_by_hand() -> None:
    """alpha = beta = 0.01: accept H1 at ln(99) = 4.595, H0 at -ln(99)."""
    sprt = bounds(0.01, 0.11, alpha=0.01, beta=0.01)
    assert sprt.upper == pytest.approx(4.59512, abs=1e-5)
    assert sprt.lower == pytest.approx(-4.59512, abs=1e-5)
    assert hypotheses(WatchCounts(0, 0), margin=MARGIN, min_detectable=0.1) == pytest.approx(
        (0.01, 0.11)
    )
    # p0 follows the primary: 2 errors in 100 is 2 %, plus the margin.
    assert hypotheses(WatchCounts(0, 0, 100, 2), margin=MARGIN, min_detectable=0.1) == (
        pytest.approx((0.03, 0.13))
    )


def test_llr_by_hand() -> None:
    """Per error ln(0.11/0.01) = 2.3979, per success ln(0.89/0.99) = -0.10647."""
    assert log_likelihood_ratio(10, 2, 0.01, 0.11) == pytest.approx(3.9440, abs=1e-4)
    assert log_likelihood_ratio(10, 3, 0.01, 0.11) == pytest.approx(6.4484, abs=1e-4)
    # The example, 1 % against 20 %: 3 errors in 11 requests conclude, 2 do not.
    assert log_likelihood_ratio(11, 2, 0.01, 0.2) == pytest.approx(4.0737, abs=1e-4)
    assert log_likelihood_ratio(11, 3, 0.01, 0.2) > math.log(99)


@pytest.mark.parametrize(
    ("requests", "errors", "verdict"),
    [
        (9, 5, Verdict.INCONCLUSIVE),  # below minSamples, however bad
        (10, 2, Verdict.INCONCLUSIVE),  # LLR 3.94 < 4.595
        (10, 3, Verdict.FAIL),  # LLR 6.45
        (27, 3, Verdict.FAIL),  # 7.1937 - 24 x 0.10647 = 4.638: just above
        (28, 3, Verdict.INCONCLUSIVE),  # 4.531: just below
        (43, 0, Verdict.INCONCLUSIVE),  # 43 x -0.10647 = -4.578: not yet below -4.595
        (44, 0, Verdict.PASS),  # -4.685: H0 accepted, nothing to stop for (nothing promoted)
    ],
)
def test_boundaries_at_the_default_policy(requests: int, errors: int, verdict: Verdict) -> None:
    result = watch_verdict(WatchCounts(requests, errors), CONFIG)
    assert result.verdict is verdict, result.summary
    assert result.gate == "watch"


@pytest.mark.parametrize(
    ("requests", "errors", "verdict"),
    [
        (4, 4, Verdict.INCONCLUSIVE),  # below the default minSamples, 5
        (5, 1, Verdict.INCONCLUSIVE),  # LLR 2.14: ln(20) = 2.9957 per error, -0.21309 per success
        (5, 2, Verdict.FAIL),  # 5.35
        (8, 2, Verdict.FAIL),  # 4.71: two errors in the first eight conclude
        (9, 2, Verdict.INCONCLUSIVE),  # 4.50
        (23, 3, Verdict.FAIL),  # 4.73: or three in 23
        (24, 3, Verdict.INCONCLUSIVE),  # 4.51
        (21, 0, Verdict.INCONCLUSIVE),  # -4.47
        (22, 0, Verdict.PASS),  # -4.69
    ],
)
def test_the_defaults_tell_one_percent_from_twenty(
    requests: int, errors: int, verdict: Verdict
) -> None:
    """The issue's example as the default: p0 1 %, p1 20 %, alpha = beta = 1 %."""
    config = WatchConfig()
    assert hypotheses(
        WatchCounts(0, 0), margin=config.error_margin, min_detectable=0.19
    ) == pytest.approx((0.01, 0.2))
    assert watch_verdict(WatchCounts(requests, errors), config).verdict is verdict


def test_a_fail_names_its_numbers() -> None:
    result = watch_verdict(
        WatchCounts(14, 4, 130, 0), CONFIG.model_copy(update={"error_margin": 0.02})
    )
    assert result.verdict is Verdict.FAIL
    assert "canary 4 errors in 14 requests since the step (28.6%)" in result.summary
    assert "SPRT p0 2% vs p1 12%" in result.summary
    assert "primary 0% of 130" in result.summary
    assert result.values["llr"] >= result.values["upper"]


counts = st.builds(
    WatchCounts,
    st.integers(0, 5000),
    st.integers(0, 5000),
    st.integers(0, 5000),
    st.integers(0, 5000),
)
configs = st.builds(
    WatchConfig,
    minDetectableErrorRate=st.floats(0.01, 0.5),
    alpha=st.floats(0.001, 0.2),
    beta=st.floats(0.001, 0.2),
    minSamples=st.integers(1, 200),
    errorMargin=st.floats(0.0, 0.2),
)


@given(counts, configs)
def test_never_fails_on_zero_errors(c: WatchCounts, config: WatchConfig) -> None:
    zero = WatchCounts(c.canary_requests, 0, c.primary_requests, c.primary_errors)
    assert watch_verdict(zero, config).verdict is not Verdict.FAIL


@given(counts, configs)
def test_never_fails_before_the_minimum_sample(c: WatchCounts, config: WatchConfig) -> None:
    if c.canary_requests < config.min_samples:
        assert watch_verdict(c, config).verdict is Verdict.INCONCLUSIVE


@given(st.integers(1, 2000), st.integers(0, 2000), configs)
def test_more_errors_never_weaken_the_evidence(n: int, e: int, config: WatchConfig) -> None:
    """Monotone in errors: if e errors fail the canary, e + 1 do too."""
    e = min(e, n - 1)
    first = watch_verdict(WatchCounts(n, e), config)
    second = watch_verdict(WatchCounts(n, e + 1), config)
    if first.verdict is Verdict.FAIL:
        assert second.verdict is Verdict.FAIL
    assert second.values["llr"] > first.values["llr"]


@given(counts, configs)
def test_fail_exactly_at_the_upper_boundary(c: WatchCounts, config: WatchConfig) -> None:
    result = watch_verdict(c, config)
    n = c.canary_requests
    p0, p1 = hypotheses(
        c, margin=config.error_margin, min_detectable=config.min_detectable_error_rate
    )
    llr = log_likelihood_ratio(n, min(c.canary_errors, n), p0, p1)
    conclusive = n >= config.min_samples and llr >= math.log((1 - config.beta) / config.alpha)
    assert (result.verdict is Verdict.FAIL) == (conclusive and min(c.canary_errors, n) > 0)
