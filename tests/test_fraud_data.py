"""The synthetic transactions behind the example model."""

from __future__ import annotations

import pandas as pd

from controller.quality.data_profile import build_profile
from models.fraud_detector.data import (
    CATEGORICAL_FEATURES,
    LABEL,
    NUMERIC_FEATURES,
    generate_transactions,
)


def test_same_week_and_seed_give_the_same_data() -> None:
    """Generation is deterministic, so a holdout can be rebuilt anywhere."""
    pd.testing.assert_frame_equal(
        generate_transactions(3, 1000, 5), generate_transactions(3, 1000, 5)
    )


def test_weeks_shift_amounts_and_hours() -> None:
    """Later weeks have larger amounts and later activity."""
    early, late = generate_transactions(0, 20_000), generate_transactions(6, 20_000)
    assert late["amount"].median() > early["amount"].median() * 1.15
    assert late["hour"].mean() > early["hour"].mean()


def test_new_merchant_category_appears_in_week_2() -> None:
    """`crypto` transactions exist from week 2 on, not before."""
    assert "crypto" not in set(generate_transactions(1, 5000)["merchant_category"])
    assert "crypto" in set(generate_transactions(2, 5000)["merchant_category"])


def test_fraud_is_rare_but_present() -> None:
    """The label rate is that of card fraud: a few percent."""
    rate = generate_transactions(0, 20_000)[LABEL].mean()
    assert 0.01 < rate < 0.06


def test_profile_bins_cover_every_row() -> None:
    """Each numeric profile's bin counts add up to its non-null rows; its sample is sorted."""
    frame = generate_transactions(0, 5000)
    profile = build_profile(
        frame, numeric=NUMERIC_FEATURES, categorical=CATEGORICAL_FEATURES, label=LABEL
    )
    for name in NUMERIC_FEATURES:
        feature = profile.features[name]
        assert feature.kind == "numeric"
        assert sum(feature.bin_counts) == feature.count == 5000
        assert feature.sample == sorted(feature.sample)
        assert len(feature.bin_counts) == len(feature.bin_edges) + 1
    country = profile.features["country"]
    assert country.kind == "categorical"
    assert sum(country.frequencies.values()) == 5000
    assert profile.model_dump(mode="json")["schema_version"] == 1
