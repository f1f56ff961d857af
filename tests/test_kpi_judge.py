"""The KPI judge: outcome rates and heavy-tailed means, canary against primary, look by look."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from controller.analysis_types import Verdict
from controller.errors import InputError
from controller.gates.judge import JudgeConfig, look_alphas
from controller.gates.kpi_judge import compare_means, judge_kpi
from controller.gates.kpi_policy import KpiCheck
from controller.gates.kpi_samples import (
    MeanSample,
    OutcomeRequest,
    RateSample,
    rate_sample_of_counts,
    sample_of,
)
from controller.predictions import ServedOutcome, count_outcomes


def check(**fields: object) -> KpiCheck:
    """A CTR check, 4 looks, O'Brien-Fleming, with ``fields`` changed."""
    base: dict[str, object] = {
        "name": "ctr",
        "outcome": "click",
        "kind": "rate",
        "direction": "higher",
        "margin": 0.005,
        "minSamples": 1000,
        "outcomeDelay": 300,
        "maxLooks": 4,
    }
    return KpiCheck.model_validate(base | fields)


CTR = check()
REVENUE = check(name="revenue", outcome="revenue", kind="mean", margin=0.05, minSamples=500)


def revenue(rng: np.random.Generator, size: int, scale: float = 1.0) -> np.ndarray:
    """3 % of requests buy, for a log-normal amount (sigma 1.5): heavy-tailed revenue."""
    return np.where(rng.random(size) < 0.03, scale * rng.lognormal(3.0, 1.5, size), 0.0)


def test_a_significant_drop_in_ctr_fails_with_the_numbers_in_one_line() -> None:
    """3.5 % against 4.0 % on 20,000 canary requests fails, and the summary says why."""
    judged = judge_kpi(CTR, RateSample(20_000, 700), RateSample(380_000, 15_200), look=2)
    assert judged.verdict is Verdict.FAIL
    assert re.fullmatch(
        r"ctr canary 3\.50% vs primary 4\.00% \(n=20,000/380,000\): -0\.50 pts, margin "
        r"-0\.50 pts, worse p=\S+ at look 2/4 \(alpha 0\.0055\) → fail",
        judged.summary,
    ), judged.summary
    assert "\n" not in judged.summary
    assert judged.comparison is not None
    assert judged.comparison.p_worse < 0.0055


def test_an_equal_ctr_on_enough_requests_passes_within_the_margin() -> None:
    """Equal rates on 20,000 canary requests show the canary within half a point."""
    judged = judge_kpi(CTR, RateSample(20_000, 800), RateSample(380_000, 15_200), look=2)
    assert judged.verdict is Verdict.PASS
    assert "within margin p=" in judged.summary
    assert judged.summary.endswith("→ pass")


def test_a_small_sample_neither_fails_nor_passes_even_at_the_last_look() -> None:
    """3,000 canary requests cannot tell 3.9 % from 4.0 % nor bound the drop: inconclusive."""
    judged = judge_kpi(CTR, RateSample(3_000, 117), RateSample(57_000, 2_280), look=4)
    assert judged.verdict is Verdict.INCONCLUSIVE
    assert "at look 4/4" in judged.summary
    assert "worse p=" in judged.summary


def test_too_few_samples_is_inconclusive_naming_the_counts_even_when_the_drop_is_huge() -> None:
    """No canary clicks out of 900 is not judged below minSamples 1,000."""
    judged = judge_kpi(CTR, RateSample(900, 0), RateSample(50_000, 2_000), look=4)
    assert judged.verdict is Verdict.INCONCLUSIVE
    assert "too few samples: canary 900, primary 50,000 (minSamples 1,000)" in judged.summary


def test_looks_beyond_max_looks_stay_inconclusive() -> None:
    """The budget is spent after maxLooks: a fifth look decides nothing."""
    judged = judge_kpi(CTR, RateSample(20_000, 700), RateSample(380_000, 15_200), look=5)
    assert judged.verdict is Verdict.INCONCLUSIVE
    assert "all 4 looks spent" in judged.summary


def test_each_look_spends_its_increment_of_alpha() -> None:
    """A drop with p about 0.01 waits at the early looks and fails at the last one."""
    canary, primary = RateSample(12_000, 425), RateSample(228_000, 9_120)
    judged = [judge_kpi(CTR, canary, primary, look=look) for look in range(1, 5)]
    levels = look_alphas(0.05, 4, "obrien-fleming")
    assert [j.level for j in judged] == list(levels)
    assert judged[0].comparison is not None
    assert levels[0] < judged[0].comparison.p_worse <= levels[3]
    assert judged[0].verdict is Verdict.INCONCLUSIVE
    assert judged[-1].verdict is Verdict.FAIL


def test_alpha_and_looks_default_to_the_canary_judges() -> None:
    """A check without maxLooks takes the judge's."""
    unset = check(maxLooks=None)
    judged = judge_kpi(
        unset,
        RateSample(20_000, 700),
        RateSample(380_000, 15_200),
        look=3,
        judge=JudgeConfig(maxLooks=3, spending="pocock"),
    )
    assert "at look 3/3" in judged.summary
    assert judged.level == look_alphas(0.05, 3, "pocock")[2]


def test_a_lower_is_better_rate_fails_when_the_canary_rises() -> None:
    """A complaint rate of 2 % against 1 % fails; the margin is shown as a rise."""
    complaints = check(name="complaints", outcome="complaint", direction="lower")
    judged = judge_kpi(complaints, RateSample(10_000, 200), RateSample(190_000, 1_900), look=4)
    assert judged.verdict is Verdict.FAIL
    assert "+1.00 pts, margin +0.50 pts" in judged.summary


def test_the_gate_result_carries_the_numbers() -> None:
    """As a gate result it is kpi/NAME with its rates, counts and p-values."""
    result = judge_kpi(
        CTR, RateSample(20_000, 700), RateSample(380_000, 15_200), look=2
    ).gate_result()
    assert result.gate == "kpi/ctr"
    assert result.verdict is Verdict.FAIL
    assert result.values["canary_value"] == pytest.approx(0.035)
    assert result.values["canary_n"] == 20_000
    assert result.values["look"] == 2
    assert {"p_worse", "p_beyond_margin", "look_alpha", "difference"} <= set(result.values)


def test_counts_for_a_mean_or_values_for_a_rate_are_refused() -> None:
    """A sample of the wrong kind is an input error naming the check."""
    with pytest.raises(InputError, match="revenue is a mean"):
        judge_kpi(REVENUE, RateSample(2000, 10), RateSample(2000, 10), look=1)
    with pytest.raises(InputError, match="ctr is a rate"):
        judge_kpi(CTR, MeanSample((1.0, 2.0)), MeanSample((1.0, 2.0)), look=1)
    with pytest.raises(InputError, match="look 0"):
        judge_kpi(CTR, RateSample(2000, 10), RateSample(2000, 10), look=0)


def test_the_winsorized_mean_test_holds_alpha_on_heavy_tails_where_raw_welch_does_not() -> None:
    """A/A on log-normal revenue (3 % buy): the judge's test rejects at most about alpha,
    Welch's z on raw values several times as often."""
    rng = np.random.default_rng(5)
    runs, alpha, judged, raw = 300, 0.025, 0, 0
    for _ in range(runs):
        canary, primary = revenue(rng, 2_000), revenue(rng, 38_000)
        judged += (
            compare_means(canary, primary, margin=0.05, higher_is_better=True).p_worse <= alpha
        )
        se = math.sqrt(canary.var(ddof=1) / canary.size + primary.var(ddof=1) / primary.size)
        raw += float(special.ndtr((canary.mean() - primary.mean()) / se)) <= alpha
    assert judged / runs <= 0.04
    assert raw / runs >= 0.08


def test_a_revenue_drop_fails_and_equal_revenue_passes() -> None:
    """30 % less revenue per request fails; equal revenue on many requests passes the 5 %
    margin."""
    rng = np.random.default_rng(8)
    primary = MeanSample(tuple(revenue(rng, 400_000)))
    lower = MeanSample(tuple(revenue(rng, 40_000, scale=0.7)))
    same = MeanSample(tuple(revenue(rng, 200_000)))
    failed = judge_kpi(REVENUE, lower, primary, look=4)
    assert failed.verdict is Verdict.FAIL, failed.summary
    assert re.search(
        r"revenue canary \S+ vs primary \S+ \(winsorized at \S+, n=40,000/", failed.summary
    )
    passed = judge_kpi(REVENUE, same, primary, look=4)
    assert passed.verdict is Verdict.PASS, passed.summary


def test_one_enormous_order_is_counted_at_the_cap() -> None:
    """A single order a million times the rest cannot carry the canary's mean."""
    primary = [0.0] * 990 + [10.0] * 10
    canary = [0.0] * 989 + [10.0] * 10 + [1e7]
    comparison = compare_means(canary, primary, margin=0.05, higher_is_better=True)
    assert comparison.caps is not None
    assert comparison.caps[1] == pytest.approx(10.0)
    assert comparison.canary_value == pytest.approx(0.11)


def test_samples_leave_out_young_requests_and_count_old_ones_without_an_outcome_as_zero() -> None:
    """At t=1000 with a 300 s delay: the request at 800 is left out even with its click, the
    one at 100 without an outcome counts as no click."""
    requests = [OutcomeRequest(100, None), OutcomeRequest(200, 1.0), OutcomeRequest(800, 1.0)]
    assert sample_of(requests, now=1000, check=CTR) == RateSample(2, 1)
    skip = check(missing="skip")
    assert sample_of(requests, now=1000, check=skip) == RateSample(1, 1)
    revenue_sample = sample_of(
        [OutcomeRequest(0, 12.5), OutcomeRequest(0, None)], now=1000, check=REVENUE
    )
    assert revenue_sample == MeanSample((12.5, 0.0))


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["r1", "r2"]),
            st.sampled_from([0.0, 600.0, 700.0, 700.5, 999.0]),
            st.sampled_from([None, 0.0, 1.0, 2.5, "yes"]),
        ),
        max_size=30,
    ),
    missing=st.sampled_from(["zero", "skip"]),
)
def test_a_rate_from_the_stores_counts_is_the_rate_from_its_rows(
    rows: list[tuple[str, float, float | str | None]], missing: str
) -> None:
    """The counts a store adds up (``count_outcomes``: what the SQL aggregates equal, the
    contract tests say) give the sample the rows give, under either ``missing`` rule, at the
    cut-off (now 1000, delay 300: a request at 700 counts, at 700.5 not yet); and a window with
    a value a rate cannot count is refused by both."""
    rate = check(missing=missing)
    served = [ServedOutcome(f"q{i}", revision, when, value)
              for i, (revision, when, value) in enumerate(rows)]  # fmt: skip
    counts = count_outcomes(served, 1000 - rate.outcome_delay_seconds)
    for revision in ("r1", "r2"):
        mine = [row for row in served if row.revision == revision]
        if any(row.value not in (None, 0.0, 1.0) for row in mine):
            assert counts[revision].other > 0  # the judge reads these rows: they name the value
            with pytest.raises(InputError, match="not 0 or 1 but KPI ctr is a rate"):
                rate_sample_of_counts(counts[revision], check=rate)
            continue
        from_rows = sample_of(
            [OutcomeRequest(row.time, row.value) for row in mine],  # type: ignore[arg-type]
            now=1000,
            check=rate,
        )
        assert rate_sample_of_counts(counts.get(revision), check=rate) == from_rows


def test_a_rate_outcome_other_than_zero_or_one_is_refused() -> None:
    """Revenue sent to a rate check says to send 0 or 1 or use a mean."""
    with pytest.raises(InputError, match="KPI ctr is a rate: send 0 or 1, or make it kind: mean"):
        sample_of([OutcomeRequest(0, 12.5)], now=1000, check=CTR)
