"""The drift detector: Evidently's default method per feature, thresholds and dataset verdict."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from controller.drift import (
    DriftConfig,
    FeatureDriftConfig,
    choose_method,
    detect_drift,
    detect_drift_from_profile,
)
from controller.errors import ConfigError, InputError
from controller.quality.data_profile import build_profile
from models.fraud_detector.data import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    generate_transactions,
)

FRAUD_COLUMNS = {"numeric": NUMERIC_FEATURES, "categorical": CATEGORICAL_FEATURES}


def mixed_frame(rows: int, seed: int, *, shift: float = 0.0) -> pd.DataFrame:
    """One column of each kind the method choice tells apart."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "continuous": rng.normal(shift, 1.0, size=rows),
            "three_values": rng.integers(0, 3, size=rows).astype(np.float64),
            "binary_number": rng.integers(0, 2, size=rows).astype(np.float64),
            "colour": np.array(["red", "green", "blue", "cyan"], dtype=object)[
                rng.integers(0, 4, size=rows)
            ],
            "flag": np.array(["yes", "no"], dtype=object)[rng.integers(0, 2, size=rows)],
        }
    )


MIXED_COLUMNS = {
    "numeric": ["continuous", "three_values", "binary_number"],
    "categorical": ["colour", "flag"],
}


@pytest.mark.parametrize(
    ("kind", "rows", "distinct", "expected"),
    [
        ("numeric", 1000, 50, "ks"),
        ("numeric", 1000, 5, "chisquare"),
        ("numeric", 1000, 2, "z"),
        ("categorical", 1000, 3, "chisquare"),
        ("categorical", 1000, 2, "z"),
        ("categorical", 1000, 1, "z"),
        ("numeric", 1001, 50, "wasserstein"),
        ("numeric", 1001, 6, "wasserstein"),
        ("numeric", 1001, 5, "jensenshannon"),
        ("numeric", 1001, 2, "jensenshannon"),
        ("categorical", 1001, 2, "jensenshannon"),
        ("categorical", 1001, 40, "jensenshannon"),
    ],
)
def test_choose_method_follows_evidently_defaults(
    kind: str, rows: int, distinct: int, expected: str
) -> None:
    """Tests up to 1,000 reference rows, distances above, by type and distinct values."""
    assert choose_method(kind, rows, distinct) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (
            1000,
            {
                "continuous": "ks",
                "three_values": "chisquare",
                "binary_number": "z",
                "colour": "chisquare",
                "flag": "z",
            },
        ),
        (
            1001,
            {
                "continuous": "wasserstein",
                "three_values": "jensenshannon",
                "binary_number": "jensenshannon",
                "colour": "jensenshannon",
                "flag": "jensenshannon",
            },
        ),
    ],
)
def test_detector_chooses_method_by_reference_size_and_column_type(
    rows: int, expected: dict[str, str]
) -> None:
    """The method of each feature depends on the reference's rows and the column's values."""
    result = detect_drift(mixed_frame(rows, 1), mixed_frame(5000, 2), **MIXED_COLUMNS)
    assert {feature.feature: feature.method for feature in result.features} == expected


def test_ks_feature_reports_scipy_p_value_and_evidently_threshold() -> None:
    """A small reference's numeric feature carries scipy's KS p-value against 0.05."""
    reference, current = mixed_frame(500, 1), mixed_frame(800, 2, shift=0.5)
    result = detect_drift(reference, current, numeric=["continuous"])
    (feature,) = result.features
    expected = stats.ks_2samp(reference["continuous"], current["continuous"]).pvalue
    assert (feature.statistic, feature.threshold) == ("K-S p_value", 0.05)
    assert feature.value == pytest.approx(expected, abs=1e-9)
    assert feature.drifted


def test_identical_frames_show_no_drift() -> None:
    """A frame compared with itself drifts on no feature, for tests and distances alike."""
    for rows in (600, 5000):
        frame = mixed_frame(rows, 3)
        result = detect_drift(frame, frame.copy(), **MIXED_COLUMNS)
        assert result.drifted_features == ()
        assert not result.drifted


def test_fraud_week_six_drifts_on_amount() -> None:
    """Six weeks of inflation move transaction amounts beyond the threshold."""
    result = detect_drift(generate_transactions(0), generate_transactions(6), **FRAUD_COLUMNS)
    amount = next(feature for feature in result.features if feature.feature == "amount")
    assert amount.method == "wasserstein"
    assert amount.drifted
    assert result.drifted


def test_fraud_week_zero_with_another_seed_does_not_drift() -> None:
    """A fresh sample of the same week drifts on no feature."""
    result = detect_drift(
        generate_transactions(0), generate_transactions(0, seed=8), **FRAUD_COLUMNS
    )
    assert result.drifted_features == ()
    assert not result.drifted


def test_profile_reference_gives_the_raw_verdicts_on_fraud_weeks() -> None:
    """The training profile flags week 6's amount and passes week 0 with another seed."""
    profile = build_profile(generate_transactions(0), **FRAUD_COLUMNS)
    shifted = detect_drift_from_profile(profile, generate_transactions(6))
    same = detect_drift_from_profile(profile, generate_transactions(0, seed=8))
    assert "amount" in shifted.drifted_features
    assert same.drifted_features == ()


def test_profile_sample_approximates_wasserstein_and_says_so() -> None:
    """From a 20,000-row profile, normed Wasserstein is within 0.02 of the raw value."""
    reference, current = generate_transactions(0), generate_transactions(6)
    raw = detect_drift(reference, current, **FRAUD_COLUMNS)
    profiled = detect_drift_from_profile(build_profile(reference, **FRAUD_COLUMNS), current)
    for exact, approx in zip(raw.features, profiled.features, strict=True):
        if exact.kind == "numeric":
            assert approx.approximate
            assert approx.value == pytest.approx(exact.value, abs=0.02)
        else:
            assert not approx.approximate
            assert approx.value == pytest.approx(exact.value, abs=1e-12)


def test_small_profile_is_exact() -> None:
    """A reference of at most 1,000 rows is its own sample: the profile gives the raw values."""
    reference, current = mixed_frame(700, 4), mixed_frame(900, 5, shift=0.2)
    columns = {"numeric": ["continuous", "three_values"], "categorical": ["colour"]}
    raw = detect_drift(reference, current, **columns)
    profiled = detect_drift_from_profile(build_profile(reference, **columns), current)
    assert [f.method for f in profiled.features] == ["ks", "chisquare", "chisquare"]
    for exact, from_profile in zip(raw.features, profiled.features, strict=True):
        assert not from_profile.approximate
        assert from_profile.value == pytest.approx(exact.value, abs=1e-9)


def test_psi_uses_thirty_reference_quantile_bins() -> None:
    """PSI on a raw reference bins by 30 reference quantiles and drifts from 0.1."""
    reference, current = mixed_frame(5000, 1), mixed_frame(5000, 2, shift=0.4)
    config = DriftConfig(features={"continuous": FeatureDriftConfig(method="psi")})
    (feature,) = detect_drift(reference, current, numeric=["continuous"], config=config).features
    edges = np.quantile(reference["continuous"], np.linspace(0, 1, 31)[1:-1])
    ref_share = np.bincount(np.searchsorted(edges, reference["continuous"]), minlength=30) / 5000
    cur_share = np.bincount(np.searchsorted(edges, current["continuous"]), minlength=30) / 5000
    assert (feature.method, feature.statistic, feature.threshold) == ("psi", "PSI", 0.1)
    assert feature.value == pytest.approx(
        np.sum((ref_share - cur_share) * np.log(ref_share / cur_share))
    )
    assert feature.drifted


def test_threshold_override_changes_the_verdict() -> None:
    """A per-feature threshold replaces the method's default."""
    reference, current = generate_transactions(0), generate_transactions(6)
    strict = DriftConfig(features={"amount": FeatureDriftConfig(threshold=0.9)})
    (amount,) = detect_drift(reference, current, numeric=["amount"], config=strict).features
    assert amount.threshold == 0.9
    assert not amount.drifted


def test_half_the_features_drifting_drifts_the_dataset() -> None:
    """The dataset drifts when the share of drifted features reaches drift_share."""
    reference, current = mixed_frame(5000, 1), mixed_frame(5000, 2, shift=1.0)
    result = detect_drift(reference, current, numeric=["continuous"], categorical=["colour"])
    assert result.drifted_features == ("continuous",)
    assert result.drifted_share == 0.5
    assert result.drifted
    assert result.summary() == ("drift: 1 of 2 features drifted (50%, threshold 50%): continuous")
    lenient = DriftConfig(drift_share=0.6)
    config_result = detect_drift(
        reference, current, numeric=["continuous"], categorical=["colour"], config=lenient
    )
    assert not config_result.drifted


def test_missing_and_infinite_values_are_dropped() -> None:
    """NaN and infinities do not count, as in Evidently."""
    reference, current = mixed_frame(3000, 1), mixed_frame(3000, 2)
    dirty = current.copy()
    dirty.loc[:99, "continuous"] = np.nan
    dirty.loc[100:109, "continuous"] = np.inf
    (feature,) = detect_drift(reference, dirty, numeric=["continuous"]).features
    (clean,) = detect_drift(reference, current.iloc[110:], numeric=["continuous"]).features
    assert feature.current_rows == 2890
    assert feature.value == pytest.approx(clean.value, abs=1e-12)


def test_columns_are_typed_as_evidently_types_them() -> None:
    """Without column lists: floats numeric, few-valued integers and strings categorical."""
    frame = pd.DataFrame(
        {
            "price": np.linspace(0, 1, 2000),
            "stars": np.arange(2000) % 5,
            "count": np.arange(2000),
            "city": ["a", "b"] * 1000,
        }
    )
    kinds = {feature.feature: feature.kind for feature in detect_drift(frame, frame).features}
    assert kinds == {
        "price": "numeric",
        "stars": "categorical",
        "count": "numeric",
        "city": "categorical",
    }


def test_unknown_feature_in_config_is_a_config_error() -> None:
    """A setting for a feature that is not compared is an error, never ignored."""
    config = DriftConfig(features={"amonut": FeatureDriftConfig(threshold=0.2)})
    frame = generate_transactions(0, rows=2000)
    with pytest.raises(ConfigError, match="amonut"):
        detect_drift(frame, frame, **FRAUD_COLUMNS, config=config)


def test_numeric_method_on_categorical_feature_is_a_config_error() -> None:
    """KS and Wasserstein need numbers; asking them of a categorical feature is refused."""
    config = DriftConfig(features={"country": FeatureDriftConfig(method="ks")})
    frame = generate_transactions(0, rows=2000)
    with pytest.raises(ConfigError, match="country"):
        detect_drift(frame, frame, **FRAUD_COLUMNS, config=config)


def test_missing_or_empty_current_column_is_an_input_error() -> None:
    """A feature absent from the current data, or all missing, names the feature."""
    frame = generate_transactions(0, rows=2000)
    with pytest.raises(InputError, match="amount"):
        detect_drift(frame, frame.drop(columns="amount"), **FRAUD_COLUMNS)
    with pytest.raises(InputError, match="amount"):
        detect_drift(frame, frame.assign(amount=np.nan), **FRAUD_COLUMNS)


def test_profile_of_another_schema_version_is_refused() -> None:
    """A profile this Sluice does not understand is refused, not misread."""
    frame = generate_transactions(0, rows=2000)
    profile = build_profile(frame, **FRAUD_COLUMNS).model_copy(update={"schema_version": 2})
    with pytest.raises(InputError, match="schema version 2"):
        detect_drift_from_profile(profile, frame)


@pytest.mark.parametrize("rows", [600, 3000])
def test_verdicts_and_values_equal_evidently_data_drift_preset(rows: int) -> None:
    """Evidently's DataDriftPreset picks the same method, value and verdict per feature."""
    evidently = pytest.importorskip("evidently")
    from evidently.presets import DataDriftPreset

    reference, current = mixed_frame(rows, 1), mixed_frame(rows + 77, 2, shift=0.12)
    current.loc[current.index[:5], "colour"] = "magenta"  # a category new in the current data
    definition = evidently.DataDefinition(
        numerical_columns=MIXED_COLUMNS["numeric"],
        categorical_columns=MIXED_COLUMNS["categorical"],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = evidently.Report([DataDriftPreset()], include_tests=True).run(
            evidently.Dataset.from_pandas(current, data_definition=definition),
            evidently.Dataset.from_pandas(reference, data_definition=definition),
        )
    report = snapshot.dict()
    values = {
        m["config"]["column"]: m["value"] for m in report["metrics"] if "column" in m["config"]
    }
    drifted = {
        t["metric_config"]["params"]["column"]: t["status"] == "FAIL"
        for t in report["tests"]
        if "column" in t["metric_config"]["params"]
    }
    result = detect_drift(reference, current, **MIXED_COLUMNS)
    for feature in result.features:
        assert feature.drifted == drifted[feature.feature], feature
        assert math.isclose(feature.value, values[feature.feature], abs_tol=1e-9), feature
