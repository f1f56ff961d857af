"""The shadow judge: its paired statistics, its inputs from the log, and its verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy import stats as scipy_stats
from sklearn.metrics import average_precision_score

from controller.analysis_types import Verdict
from controller.drift.statistics import bin_counts, psi, quantile_bin_edges
from controller.errors import InputError
from controller.predictions import LoggedPrediction, PredictionPair
from controller.quality.classification_metrics import recall_at_fpr
from controller.shadow.judge import ShadowPolicy, judge_shadow, shadow_report_markdown
from controller.shadow.samples import ShadowObservation, ShadowSamples, score_of
from controller.shadow.statistics import (
    average_precision,
    mcnemar,
    paired_bootstrap,
    stratified_resample_counts,
)

FAST = {"bootstrapResamples": 300}
#: Limits no score distribution can break, so that only the labelled checks decide.
LABELS_ONLY = {"maxScorePsi": 100, "maxScoreKs": 1, "minAgreement": 0}


def fraud_scores(
    n: int,
    *,
    seed: int = 1,
    shadow_signal: float = 2.5,
    shadow_shift: float = 0.0,
    shadow_latency: float = 1.0,
    base_rate: float = 0.05,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two models' scores sharing the request's features; the champion's signal is
    2.5 logits, the challenger's ``shadow_signal``, its scores moved by ``shadow_shift``."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < base_rate).astype(np.float64)
    features = rng.normal(size=n)
    primary = 1 / (1 + np.exp(-(2.5 * labels + features + 0.2 * rng.normal(size=n) - 3)))
    shadow = 1 / (
        1
        + np.exp(-(shadow_signal * labels + features + 0.2 * rng.normal(size=n) - 3 + shadow_shift))
    )
    return labels, primary, shadow


def samples(
    n: int = 4000,
    *,
    labelled: int | None = None,
    latency: float = 1.0,
    failures: int = 0,
    **kw: float,
) -> ShadowSamples:
    labels, primary, shadow = fraud_scores(n, **kw)  # type: ignore[arg-type]
    rng = np.random.default_rng(5)
    primary_ms = rng.lognormal(np.log(5), 0.3, n)
    shadow_ms = rng.lognormal(np.log(5 * latency), 0.3, n)
    known = n if labelled is None else labelled
    observations = [
        ShadowObservation(p, s, a, b, float(y) if i < known else None)
        for i, (p, s, a, b, y) in enumerate(
            zip(primary, shadow, primary_ms, shadow_ms, labels, strict=True)
        )
    ]
    return ShadowSamples.from_observations(observations, shadow_failures=failures)


def verdicts(judgement: object) -> dict[str, Verdict]:
    return {r.gate: r.verdict for r in judgement.results}  # type: ignore[attr-defined]


# -- statistics ---------------------------------------------------------------------------------


def test_average_precision_equals_sklearn_with_ties_and_weights() -> None:
    """PR AUC equals sklearn's average_precision_score, tied scores and sample weights included."""
    rng = np.random.default_rng(3)
    labels = (rng.random(500) < 0.1).astype(int)
    scores = np.round(rng.random(500) * 0.5 + 0.4 * labels, 1)  # few distinct values: many ties
    weights = rng.integers(0, 4, 500).astype(float)
    assert average_precision(scores, labels) == pytest.approx(
        average_precision_score(labels, scores), abs=1e-12
    )
    assert average_precision(scores, labels, weights) == pytest.approx(
        average_precision_score(labels, scores, sample_weight=weights), abs=1e-12
    )


def test_bootstrap_recall_at_fpr_equals_the_holdout_metric() -> None:
    """The bootstrap's recall at an FPR bound, on the requests as they are, equals
    controller.quality.classification_metrics.recall_at_fpr (tied scores included)."""
    rng = np.random.default_rng(4)
    labels = (rng.random(2000) < 0.05).astype(int)
    scores = np.round(rng.random(2000) * 0.6 + 0.3 * labels, 2)
    other = np.round(rng.random(2000), 2)
    for bound in (0.0, 0.001, 0.01, 0.05, 0.3):
        result = paired_bootstrap(
            scores, other, labels, metric="recall_at_fpr", margin=0.02, alpha=0.05,
            resamples=1, seed=0, max_fpr=bound,
        )  # fmt: skip
        assert result.primary == pytest.approx(recall_at_fpr(labels, scores, bound), abs=1e-12)
        assert result.shadow == pytest.approx(recall_at_fpr(labels, other, bound), abs=1e-12)


def test_stratified_resamples_keep_each_class_count() -> None:
    """Every resample holds as many positives and negatives as the labelled requests do."""
    labels = np.array([0] * 90 + [1] * 10)
    counts = stratified_resample_counts(labels, 200, np.random.default_rng(0))
    assert counts.shape == (200, 100)
    assert np.all(counts[:, labels == 1].sum(axis=1) == 10)
    assert np.all(counts[:, labels == 0].sum(axis=1) == 90)


def test_paired_bootstrap_equals_a_loop_over_sklearn() -> None:
    """The vectorised bootstrap equals resampling by hand (same draws) and scoring with sklearn."""
    labels, primary, shadow = fraud_scores(400, seed=8, base_rate=0.1)
    resamples, alpha = 60, 0.1
    result = paired_bootstrap(
        primary, shadow, labels, metric="pr_auc", margin=0.02, alpha=alpha,
        resamples=resamples, seed=11,
    )  # fmt: skip
    rng = np.random.default_rng(11)
    negatives, positives = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    draw_negatives = rng.integers(0, negatives.size, size=(resamples, negatives.size))
    draw_positives = rng.integers(0, positives.size, size=(resamples, positives.size))
    differences = []
    for b in range(resamples):
        index = np.concatenate((negatives[draw_negatives[b]], positives[draw_positives[b]]))
        differences.append(
            average_precision_score(labels[index], shadow[index])
            - average_precision_score(labels[index], primary[index])
        )
    assert result.lower == pytest.approx(np.quantile(differences, alpha), abs=1e-12)
    assert result.upper == pytest.approx(np.quantile(differences, 1 - alpha), abs=1e-12)
    assert result.difference == pytest.approx(
        average_precision_score(labels, shadow) - average_precision_score(labels, primary)
    )


def test_paired_bootstrap_is_deterministic_for_a_seed() -> None:
    """The same seed gives the same bounds; another seed gives other bounds."""
    labels, primary, shadow = fraud_scores(3000)
    kw = {"metric": "recall_at_fpr", "margin": 0.02, "alpha": 0.05, "resamples": 500}
    first = paired_bootstrap(primary, shadow, labels, seed=1, **kw)  # type: ignore[arg-type]
    again = paired_bootstrap(primary, shadow, labels, seed=1, **kw)  # type: ignore[arg-type]
    other = paired_bootstrap(primary, shadow, labels, seed=2, **kw)  # type: ignore[arg-type]
    assert first == again
    assert (first.lower, first.upper) != (other.lower, other.upper)


def test_identical_models_have_a_zero_width_interval() -> None:
    """A challenger that scores exactly like the champion differs by 0 in every resample."""
    labels, primary, _ = fraud_scores(1000)
    result = paired_bootstrap(
        primary, primary, labels, metric="pr_auc", margin=0.01, alpha=0.05, resamples=200, seed=0
    )
    assert (result.difference, result.lower, result.upper, result.p_inferior) == (0, 0, 0, 0)


def test_mcnemar_exact_matches_a_hand_computation() -> None:
    """b=10, c=2: two-sided p = 2 (1 + 12 + 66) / 4096; one-sided p = (66 + 12 + 1) / 4096."""
    result = mcnemar(10, 2)
    assert result.exact
    assert result.pvalue == pytest.approx(2 * 79 / 4096)
    assert result.p_worse == pytest.approx(79 / 4096)
    assert result.pvalue == pytest.approx(scipy_stats.binomtest(2, 12, 0.5).pvalue)


def test_mcnemar_chi_square_matches_a_hand_computation() -> None:
    """b=30, c=12: (|30 - 12| - 1)^2 / 42 = 289 / 42, p = erfc(sqrt(statistic / 2))."""
    result = mcnemar(30, 12)
    assert not result.exact
    assert result.statistic == pytest.approx(289 / 42)
    assert result.pvalue == pytest.approx(math.erfc(math.sqrt(289 / 42 / 2)))
    assert mcnemar(0, 0).pvalue == 1.0


# -- inputs -------------------------------------------------------------------------------------


def test_score_of_reads_one_row_of_v1_and_v2_answers() -> None:
    """A number, a one-element row, the positive class of a two-class row or an object with
    one field; else None."""
    assert score_of({"predictions": [0.25]}) == 0.25
    assert score_of({"predictions": [{"p_up": 0.25}]}) == 0.25
    assert score_of({"predictions": [[0.25]]}) == 0.25
    assert score_of({"predictions": [[0.75, 0.25]]}) == 0.25
    assert score_of({"outputs": [{"name": "p", "shape": [1], "data": [0.25]}]}) == 0.25
    assert score_of({"outputs": [{"name": "p", "shape": [1, 2], "data": [0.75, 0.25]}]}) == 0.25
    for unreadable in (
        {"predictions": [0.1, 0.2]}, {"predictions": [True]}, {"error": "x"}, None, [0.2],
        {"outputs": [{"shape": [2], "data": [0.1, 0.2]}]}, {"predictions": [float("nan")]},
        {"predictions": [{"regime": "calm", "p_calm": 0.9}]}, {"predictions": [{"p": "x"}]},
    ):  # fmt: skip
        assert score_of(unreadable) is None, unreadable


def logged(role: str, output: object, status: int = 200, latency: float = 5.0) -> LoggedPrediction:
    return LoggedPrediction("id", 0.0, "fraud", "1", "r", role, "d", output, latency, status)  # type: ignore[arg-type]


def test_samples_from_pairs_skip_failed_primaries_and_count_shadow_failures() -> None:
    """A champion without a score is left out; a challenger without one is a failure."""
    low, high = {"predictions": [0.1]}, {"predictions": [0.2]}
    pairs = [
        PredictionPair("a", logged("primary", low), logged("shadow", high, latency=7), 1.0),
        PredictionPair("b", logged("primary", None, 502), logged("shadow", high), None),
        PredictionPair("c", logged("primary", low), logged("shadow", None, 504), None),
        PredictionPair("d", logged("primary", low), logged("shadow", {"error": "x"}, 500), None),
    ]
    result = ShadowSamples.from_pairs(pairs)
    assert result.size == 1
    assert result.shadow_failures == 2
    assert (result.primary[0], result.shadow[0], result.shadow_latency_ms[0]) == (0.1, 0.2, 7)
    assert result.labels[0] == 1.0


def test_observations_reject_impossible_values() -> None:
    """Non-finite scores, negative latencies and labels other than 0/1 are input errors."""
    for bad in (
        ShadowObservation(math.nan, 0.1, 1, 1),
        ShadowObservation(0.1, 0.1, -1, 1),
        ShadowObservation(0.1, 0.1, 1, 1, 0.5),
    ):
        with pytest.raises(InputError):
            ShadowSamples.from_observations([bad])


# -- verdicts -----------------------------------------------------------------------------------


def test_a_better_challenger_passes_every_check() -> None:
    """A challenger separating fraud better, as fast as the champion, passes all six checks."""
    judgement = judge_shadow(samples(shadow_signal=3.0), ShadowPolicy.model_validate(FAST))
    assert judgement.verdict is Verdict.PASS, [r.summary for r in judgement.results]
    assert set(verdicts(judgement).values()) == {Verdict.PASS}
    assert len(judgement.results) == 6


def test_shifted_scores_fail_the_score_shift_check() -> None:
    """Scores moved by one logit fail on PSI and KS, whatever the labels say."""
    judgement = judge_shadow(samples(shadow_shift=1.0), ShadowPolicy.model_validate(FAST))
    assert judgement.verdict is Verdict.FAIL
    assert verdicts(judgement)["shadow/score-shift"] is Verdict.FAIL
    result = next(r for r in judgement.results if r.gate == "shadow/score-shift")
    edges = quantile_bin_edges(samples(shadow_shift=1.0).primary, 10)
    shifted = samples(shadow_shift=1.0)
    expected = psi(bin_counts(shifted.primary, edges), bin_counts(shifted.shadow, edges))
    assert result.values["psi"] == pytest.approx(expected)
    assert result.values["ks"] == pytest.approx(
        scipy_stats.ks_2samp(shifted.primary, shifted.shadow).statistic
    )


def test_worse_recall_fails_the_task_metric() -> None:
    """A challenger that separates fraud far worse fails the task metric, with its numbers."""
    policy = ShadowPolicy.model_validate({**FAST, **LABELS_ONLY, "taskMetric": "recall_at_fpr"})
    judgement = judge_shadow(samples(shadow_signal=1.0), policy)
    assert verdicts(judgement)["shadow/task-metric"] is Verdict.FAIL
    assert judgement.verdict is Verdict.FAIL
    result = next(r for r in judgement.results if r.gate == "shadow/task-metric")
    assert result.values["lower_bound"] < -0.02
    assert "recall@0.01 FPR" in result.summary


def test_slow_or_failing_challengers_fail() -> None:
    """Twice the latency fails the latency check; 5% failed copies fail the errors check."""
    policy = ShadowPolicy.model_validate(FAST)
    assert verdicts(judge_shadow(samples(latency=2.0), policy))["shadow/latency"] is Verdict.FAIL
    failing = judge_shadow(samples(failures=210), policy)
    assert verdicts(failing)["shadow/errors"] is Verdict.FAIL


def test_an_interval_wider_than_the_margin_is_inconclusive_and_says_so() -> None:
    """A challenger not shown worse, but not shown within the margin either, has no verdict
    yet (it failed before, so a better challenger short of labels was stopped in shadow)."""
    judgement = judge_shadow(samples(8000), ShadowPolicy.model_validate(FAST))
    result = next(r for r in judgement.results if r.gate == "shadow/task-metric")
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.values["difference"] > -0.02 >= result.values["lower_bound"]
    assert "more labels would narrow it" in result.summary


def test_too_few_samples_or_labels_is_inconclusive() -> None:
    """Below minSamples every check holds; below minLabelled the labelled checks hold."""
    policy = ShadowPolicy.model_validate({**FAST, "minSamples": 5000})
    few = judge_shadow(samples(4000), policy)
    assert few.verdict is Verdict.INCONCLUSIVE
    assert set(verdicts(few).values()) == {Verdict.INCONCLUSIVE}
    assert "below minSamples 5000" in few.results[1].summary
    unlabelled = judge_shadow(samples(4000, labelled=100), ShadowPolicy.model_validate(FAST))
    assert unlabelled.verdict is Verdict.INCONCLUSIVE
    assert verdicts(unlabelled)["shadow/task-metric"] is Verdict.INCONCLUSIVE
    assert verdicts(unlabelled)["shadow/mcnemar"] is Verdict.INCONCLUSIVE


def test_mcnemar_check_fails_a_challenger_wrong_more_often() -> None:
    """At the threshold, a challenger that flags many more legitimate requests fails McNemar."""
    policy = ShadowPolicy.model_validate(
        {**FAST, **LABELS_ONLY, "threshold": 0.3, "nonInferiorityMargin": 0.5}
    )
    judgement = judge_shadow(samples(shadow_shift=1.5), policy)
    assert verdicts(judgement)["shadow/mcnemar"] is Verdict.FAIL
    result = next(r for r in judgement.results if r.gate == "shadow/mcnemar")
    assert result.values["b"] > result.values["c"]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 120),
    labelled_share=st.floats(0, 1),
    min_samples=st.integers(1, 150),
    min_labelled=st.integers(1, 150),
    shift=st.floats(-1, 1),
    seed=st.integers(0, 2**16),
)
def test_never_passes_below_min_samples_or_min_labelled(
    n: int, labelled_share: float, min_samples: int, min_labelled: int, shift: float, seed: int
) -> None:
    """Whatever the scores, a verdict with n < minSamples or labels < minLabelled is not pass."""
    labelled = int(n * labelled_share)
    policy = ShadowPolicy.model_validate(
        {"minSamples": min_samples, "minLabelled": min_labelled, "minPositives": 1,
         "bootstrapResamples": 100, "maxLatencyIncrease": 100, "nonInferiorityMargin": 0.99,
         **LABELS_ONLY}
    )  # fmt: skip
    judgement = judge_shadow(
        samples(n, labelled=labelled, seed=seed, shadow_shift=shift, base_rate=0.3), policy
    )
    if n < min_samples or labelled < min_labelled:
        assert judgement.verdict is not Verdict.PASS
    assert judgement.samples == n


# -- policy and report --------------------------------------------------------------------------


def test_policy_fields_are_camel_case_and_described() -> None:
    """Every field has a description; camelCase keys are read and unknown keys refused."""
    for name, field in ShadowPolicy.model_fields.items():
        assert field.description, name
    policy = ShadowPolicy.model_validate({"minSamples": 10, "nonInferiorityMargin": 0.05})
    assert (policy.min_samples, policy.non_inferiority_margin) == (10, 0.05)
    with pytest.raises(ValidationError):
        ShadowPolicy.model_validate({"minSampels": 10})
    with pytest.raises(ValidationError):
        ShadowPolicy.model_validate({"taskMetric": "accuracy"})


def test_markdown_report_has_a_row_per_check_and_the_verdict() -> None:
    """The report names both versions, the verdict, and one table row per check."""
    judgement = judge_shadow(samples(shadow_shift=1.0), ShadowPolicy.model_validate(FAST))
    report = shadow_report_markdown(
        judgement, model="fraud-detector", champion="v3", challenger="v4"
    )
    lines = report.splitlines()
    assert lines[0] == "### Shadow evaluation of fraud-detector: v4 vs v3 — **FAIL**"
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| check")]
    assert [row.split(" | ")[0][2:] for row in rows] == [
        "errors", "score-shift", "agreement", "latency", "task-metric", "mcnemar"
    ]  # fmt: skip
    assert "| score-shift | fail | PSI " in report
    assert "4000 mirrored requests scored by both, 4000 labelled" in report
