"""The online drift window: the detector's values on a window of rows, on whole arrays."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from controller.drift import DriftConfig, FeatureDriftConfig, detect_drift_from_profile
from controller.drift.online import DriftWindow, WindowDrift
from controller.drift.online_reference import OnlineReference
from controller.errors import ConfigError
from controller.quality.data_profile import DataProfile, build_profile
from models.fraud_detector.data import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    generate_transactions,
)


def fraud_profile(rows: int = 16_000) -> DataProfile:
    """The profile the training step logs, with a stand-in score per row."""
    frame = generate_transactions(week=0, rows=rows, seed=7)
    scores = np.random.default_rng(0).beta(1, 20, size=rows)
    return build_profile(
        frame, numeric=NUMERIC_FEATURES, categorical=CATEGORICAL_FEATURES, predictions=scores
    )


@pytest.fixture(scope="module")
def profile() -> DataProfile:
    return fraud_profile()


def window_of(
    profile: DataProfile,
    frame: pd.DataFrame,
    scores: Any = None,
    *,
    capacity: int = 1000,
    config: DriftConfig | None = None,
    chunk: int = 97,
) -> WindowDrift:
    """Feed ``frame`` in chunks, as requests arrive, and evaluate."""
    window = DriftWindow(OnlineReference.from_profile(profile, config), capacity)
    for start in range(0, len(frame), chunk):
        part = None if scores is None else scores[start : start + chunk]
        window.extend(frame.iloc[start : start + chunk], part)
    verdict = window.evaluate()
    assert verdict is not None
    return verdict


def assert_same_as_detector(
    verdict: WindowDrift, profile: DataProfile, frame: pd.DataFrame, **kwargs: Any
) -> None:
    batch = detect_drift_from_profile(profile, frame, **kwargs)
    assert [s.name for s in verdict.features] == [f.feature for f in batch.features]
    for online, offline in zip(verdict.features, batch.features, strict=True):
        assert online.method == offline.method, online.name
        assert online.value == pytest.approx(offline.value, abs=1e-9, rel=1e-9), online.name
        assert online.drifted == offline.drifted, online.name
    assert verdict.drifted_share == batch.drifted_share
    assert verdict.drifted == batch.drifted


@pytest.mark.parametrize("week", [0, 3, 8])
def test_window_gives_the_detectors_values(profile: DataProfile, week: int) -> None:
    """Every feature's value and verdict equal `sluice drift`'s on the same 1,000 rows."""
    frame = generate_transactions(week=week, rows=1000, seed=3)
    assert_same_as_detector(window_of(profile, frame), profile, frame)


def test_shifted_stream_drifts(profile: DataProfile) -> None:
    """Week 6's traffic drifts on most features and on the score; the dataset drifts."""
    frame = generate_transactions(week=6, rows=1000, seed=5)
    scores = np.random.default_rng(2).beta(1, 5, size=1000)
    verdict = window_of(profile, frame, scores)
    assert verdict.drifted
    assert {"amount", "tx_velocity_24h", "merchant_category"} <= set(verdict.drifted_features)
    assert verdict.prediction is not None
    assert verdict.prediction.drifted


def test_stream_like_the_training_data_does_not_drift(profile: DataProfile) -> None:
    """Fresh rows from the training week drift on no feature and not on the score."""
    frame = generate_transactions(week=0, rows=1000, seed=99)
    scores = np.random.default_rng(3).beta(1, 20, size=1000)
    verdict = window_of(profile, frame, scores)
    assert verdict.drifted_features == ()
    assert verdict.drifted_share == 0.0
    assert verdict.prediction is not None
    assert not verdict.prediction.drifted


def test_window_keeps_only_the_newest_rows(profile: DataProfile) -> None:
    """After 1,000 normal rows follow a shifted burst, the burst is gone from the window."""
    shifted = generate_transactions(week=8, rows=700, seed=1)
    normal = generate_transactions(week=0, rows=1000, seed=2)
    verdict = window_of(profile, pd.concat([shifted, normal], ignore_index=True))
    assert verdict.rows == 1000
    assert_same_as_detector(verdict, profile, normal)


def test_window_that_wraps_holds_the_last_rows(profile: DataProfile) -> None:
    """Chunks that wrap around the ring leave exactly the last `capacity` rows in it."""
    frame = generate_transactions(week=3, rows=1234, seed=4)
    verdict = window_of(profile, frame, capacity=500, chunk=333)
    assert verdict.rows == 500
    assert_same_as_detector(verdict, profile, frame.tail(500))


def test_empty_window_has_no_verdict(profile: DataProfile) -> None:
    """Before any row arrives there is nothing to evaluate."""
    assert DriftWindow(OnlineReference.from_profile(profile)).evaluate() is None


def test_missing_values_are_left_out_as_the_detector_does(profile: DataProfile) -> None:
    """NaN amounts and missing countries are dropped, not counted as a shift."""
    frame = generate_transactions(week=2, rows=1000, seed=8)
    frame.loc[frame.index[::7], "amount"] = np.nan
    frame["country"] = frame["country"].astype(object)
    frame.loc[frame.index[::5], "country"] = None
    verdict = window_of(profile, frame)
    assert next(s for s in verdict.features if s.name == "amount").rows == 1000 - 143
    assert_same_as_detector(verdict, profile, frame)


def test_new_categories_count_as_the_detector_counts_them(profile: DataProfile) -> None:
    """Categories the reference never saw (week 4's crypto and bnpl) give the detector's JS."""
    frame = generate_transactions(week=4, rows=1000, seed=9)
    assert {"crypto", "bnpl"} <= set(frame["merchant_category"])
    assert_same_as_detector(window_of(profile, frame), profile, frame)


def small_profile() -> tuple[DataProfile, pd.DataFrame]:
    """A reference of 800 rows (tests, not distances) with a binary and a few-valued feature."""
    rng = np.random.default_rng(11)
    reference = pd.DataFrame(
        {
            "amount": rng.lognormal(3.0, 1.0, 800),
            "channel": rng.choice(["app", "web"], 800),
            "items": rng.integers(1, 4, 800).astype(np.float64),
            "segment": rng.choice(["a", "b", "c", "d"], 800),
        }
    )
    profile = build_profile(
        reference, numeric=["amount", "items"], categorical=["channel", "segment"]
    )
    current = pd.DataFrame(
        {
            "amount": rng.lognormal(3.2, 1.0, 400),
            "channel": rng.choice(["app", "web"], 400, p=[0.7, 0.3]),
            "items": rng.integers(1, 5, 400).astype(np.float64),
            "segment": rng.choice(["a", "b", "c", "d", "e"], 400),
        }
    )
    return profile, current


def test_small_references_use_the_detectors_tests() -> None:
    """KS, z-test and chi-square on a small reference equal the detector's p-values."""
    profile, current = small_profile()
    verdict = window_of(profile, current)
    methods = {score.name: score.method for score in verdict.features}
    assert methods == {"amount": "ks", "items": "chisquare", "channel": "z", "segment": "chisquare"}
    assert_same_as_detector(verdict, profile, current)


def test_configured_methods_and_thresholds_apply() -> None:
    """PSI on the profile's bins and a per-feature threshold, as in `--threshold-config`."""
    profile, current = small_profile()
    config = DriftConfig(
        features={
            "amount": FeatureDriftConfig(method="psi", threshold=0.05),
            "segment": FeatureDriftConfig(method="jensenshannon"),
            "items": FeatureDriftConfig(method="wasserstein"),
        }
    )
    verdict = window_of(profile, current, config=config)
    amount = next(s for s in verdict.features if s.name == "amount")
    assert (amount.method, amount.threshold) == ("psi", 0.05)
    assert_same_as_detector(verdict, profile, current, config=config)


def test_distance_on_a_categorical_feature_is_refused() -> None:
    """Wasserstein on categories is a configuration error, as in the detector."""
    profile, _ = small_profile()
    config = DriftConfig(features={"segment": FeatureDriftConfig(method="wasserstein")})
    with pytest.raises(ConfigError, match="segment"):
        OnlineReference.from_profile(profile, config)


def python_calls(action: Callable[[], object]) -> int:
    """How many Python-level function calls ``action`` makes (C calls not counted)."""
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(count)
    try:
        action()
    finally:
        sys.setprofile(None)
    return calls


def wide_profile(features: int = 20) -> tuple[DataProfile, np.random.Generator]:
    rng = np.random.default_rng(5)
    names = [f"x{i}" for i in range(features)]
    reference = pd.DataFrame(rng.normal(size=(5000, features)), columns=names)
    reference["kind"] = rng.choice(list("abcdefgh"), 5000)
    profile = build_profile(reference, numeric=names, categorical=["kind"])
    return profile, rng


@pytest.mark.parametrize("rows", [100, 10_000])
def test_no_python_loop_over_rows(rows: int) -> None:
    """Adding and evaluating 100 or 10,000 rows makes the same number of Python calls."""
    profile, rng = wide_profile()
    names = [name for name in profile.features if name != "kind"]

    def calls_for(count: int) -> tuple[int, int]:
        window = DriftWindow(OnlineReference.from_profile(profile), capacity=count)
        frame = pd.DataFrame(rng.normal(0.2, 1.0, size=(count, len(names))), columns=names)
        frame["kind"] = rng.choice(list("abcdefghij"), count)
        window.extend(frame.iloc[:5])  # warm pandas' caches
        window.evaluate()
        adding = python_calls(lambda: window.extend(frame))
        evaluating = python_calls(window.evaluate)
        return adding, evaluating

    calls_for(50)  # the first evaluation also makes one-off calls: scipy is imported on first use
    baseline = calls_for(50)
    assert calls_for(rows) == baseline
