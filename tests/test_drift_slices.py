"""Drift per slice (`sluice drift --by COLUMN`), in memory: which rows make a slice, which
slices are judged, what a slice's verdict says and what is refused. The command run as a user
runs it is in tests/test_drift_command.py."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from controller.drift import detect_drift_from_profile
from controller.drift.report_html import render_report
from controller.drift.report_json import drift_dict, sliced_dict
from controller.drift.slices import (
    DEFAULT_MIN_SLICE_ROWS,
    MAX_SLICE_VALUES,
    check_slice_column,
    detect_drift_by,
    split_by,
    top_drifted,
)
from controller.drift.table import slice_table, slices_line
from controller.errors import InputError
from controller.quality.data_profile import DataProfile, build_profile
from models.market_regime.market import FEATURES, REGIME, market_frame
from models.market_regime.pipeline import split_holdout

#: What a more volatile market moves: the returns and their realised volatility, six of
#: the eight features (a slice drifts when half its features do).
VOL_FEATURES = [name for name in FEATURES if name.startswith(("return_", "realised_vol"))]


@dataclass(frozen=True)
class Market:
    """The market-regime training rows, their profile (as the training step logs it: the
    features, numeric) and the holdout after them."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    profile: DataProfile


@pytest.fixture(scope="module")
def market() -> Market:
    train, holdout = split_holdout(market_frame(20_000, seed=7))
    return Market(train, holdout, build_profile(train, numeric=FEATURES, categorical=[]))


def scaled(frame: pd.DataFrame, rows: pd.Series, factor: float = 1.5) -> pd.DataFrame:
    """``frame`` with the returns and volatilities of ``rows`` multiplied by ``factor``."""
    out = frame.copy()
    out.loc[rows, VOL_FEATURES] *= factor
    return out


def rendered(renderable: object) -> str:
    console = Console(width=120, record=True, file=None)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


def test_only_the_slice_that_moved_drifts(market: Market) -> None:
    """Rows like the training data, split across three desks: when one desk's market turns
    30 % more volatile, that desk drifts and the others do not, while the whole file, two thirds
    unchanged, does not drift: the slice is what the whole-file verdict hides."""
    rng = np.random.default_rng(1)
    rows = market.train.sample(n=3_000, replace=True, random_state=1).reset_index(drop=True)
    rows["desk"] = rng.permutation(np.repeat(["a", "b", "c"], 1_000))
    current = scaled(rows, rows["desk"] == "b", factor=1.3)

    by = detect_drift_by(market.profile, current, "desk")

    assert not detect_drift_from_profile(market.profile, current).drifted
    assert [(part.value, part.rows, part.drifted) for part in by.slices] == [
        ("a", 1_000, False),
        ("b", 1_000, True),
        ("c", 1_000, False),
    ]
    assert (by.drifted, by.drifted_values) == (True, ("b",))
    moved = by.slices[1].drift
    assert moved is not None
    assert set(moved.drifted_features) >= set(VOL_FEATURES)
    top = top_drifted(moved)
    assert top is not None
    assert top.feature in VOL_FEATURES
    assert "desk" not in [f.feature for f in moved.features]  # the slicing column is no feature


def test_a_regime_slice_is_judged_against_the_pooled_training_profile(market: Market) -> None:
    """The profile pools every regime, so a regime's own rows never look like it: the calm and
    the volatile rows of an unchanged holdout both drift on every feature. Making the volatile
    rows more volatile moves the volatile slice further and leaves the calm slice's verdict as
    it was: a slice's verdict depends on its own rows only."""
    unchanged = detect_drift_by(market.profile, market.holdout, REGIME)
    shifted = detect_drift_by(
        market.profile, scaled(market.holdout, market.holdout[REGIME] == "volatile"), REGIME
    )

    assert [part.value for part in unchanged.slices] == ["black_swan", "calm", "volatile"]
    calm, volatile = unchanged.slices[1], unchanged.slices[2]
    assert calm.drift is not None
    assert volatile.drift is not None
    assert (calm.drifted, volatile.drifted) == (True, True)
    assert len(calm.drift.drifted_features) == len(FEATURES)
    assert shifted.slices[1] == calm
    moved = shifted.slices[2].drift
    assert moved is not None
    before = {f.feature: f.value for f in volatile.drift.features}
    for feature in moved.features:
        if feature.feature in VOL_FEATURES:
            assert feature.value > before[feature.feature] + 0.1, feature.feature
        else:
            assert feature.value == before[feature.feature], feature.feature


def test_slices_under_the_minimum_are_not_judged(market: Market) -> None:
    """Black-swan days (about 2 % of rows) are too few to judge in a 5,000-row holdout: they
    are reported with their count and never drift; a lower minimum judges them."""
    by = detect_drift_by(market.profile, market.holdout, REGIME)
    swan = by.slices[0]
    assert swan.rows == int((market.holdout[REGIME] == "black_swan").sum()) < DEFAULT_MIN_SLICE_ROWS
    assert (swan.drift, swan.drifted, swan.skipped) == (None, False, "too few rows (< 500)")
    assert slices_line(by) == (
        "SLICES DRIFT by regime: 2 of 2 judged slices drifted (calm, volatile); 1 not judged"
    )

    lower = detect_drift_by(market.profile, market.holdout, REGIME, min_rows=swan.rows)
    assert lower.slices[0].drift is not None


def test_the_minimum_keeps_unchanged_rows_from_drifting(market: Market) -> None:
    """Why 500: rows drawn from the training data itself, the distances' small-sample bias
    makes 50 of them drift, and 500 not (the module's notes give the rates)."""
    rows = market.train.sample(n=550, random_state=3).reset_index(drop=True)
    rows["part"] = ["small"] * 50 + ["large"] * 500
    by = detect_drift_by(market.profile, rows, "part", min_rows=1)
    assert [(part.value, part.drifted) for part in by.slices] == [
        ("large", False),
        ("small", True),
    ]


def test_values_are_sorted_as_values_and_missing_ones_come_last() -> None:
    """Numbers sort as numbers (2 before 10), rows with no value are a slice of their own (of
    a categorical column too), and a category that never occurs is no slice."""
    frame = pd.DataFrame({"week": [10.0, 2.0, np.nan, 2.0, 10.0, 1.0], "x": range(6)})
    assert [(value, len(rows)) for value, rows in split_by(frame, "week")] == [
        (1.0, 1),
        (2.0, 2),
        (10.0, 2),
        (None, 1),
    ]
    assert list(split_by(frame, "week")[1][1]["x"]) == [1, 3]
    tiers = pd.DataFrame({"tier": pd.Categorical(["b", None, "a"], categories=["a", "b", "z"])})
    assert [(value, len(rows)) for value, rows in split_by(tiers, "tier")] == [
        ("a", 1),
        ("b", 1),
        (None, 1),
    ]


def test_a_slice_with_no_values_of_a_feature_is_not_judged() -> None:
    """A slice where a feature is empty is reported as not judged, with the reason, and the
    other slices are still judged."""
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(size=2_000)})
    current = pd.DataFrame({"x": rng.normal(size=1_200), "source": ["api"] * 600 + ["batch"] * 600})
    current.loc[current["source"] == "batch", "x"] = np.nan
    profile = build_profile(reference, numeric=["x"], categorical=[])
    by = detect_drift_by(profile, current, "source")
    api, batch = by.slices
    assert api.drift is not None
    assert not api.drifted
    assert batch.drift is None
    assert batch.skipped == ("not compared: feature 'x' has no finite values in the current data")


def test_a_feature_may_slice_and_stays_a_feature() -> None:
    """Slicing by a profile feature is allowed; it is compared in each slice, where it holds one
    value of the reference's several, so it drifts there."""
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(size=2_000), "tier": rng.choice(["a", "b"], 2_000)})
    current = pd.DataFrame({"x": rng.normal(size=1_200), "tier": rng.choice(["a", "b"], 1_200)})
    profile = build_profile(reference, numeric=["x"], categorical=["tier"])
    check_slice_column(current, "tier", source="now.csv")
    by = detect_drift_by(profile, current, "tier")
    for part in by.slices:
        assert part.drift is not None
        assert part.drift.drifted_features == ("tier",)


def test_a_column_the_file_lacks_is_named_with_the_columns_it_has() -> None:
    frame = pd.DataFrame({"amount": [1.0], "hour": [3]})
    with pytest.raises(InputError) as error:
        check_slice_column(frame, "regime", source="now.csv")
    assert str(error.value) == (
        "now.csv has no column 'regime' to slice by (its columns: amount, hour); fix --by"
    )


def test_a_column_of_many_values_is_refused_as_not_categorical() -> None:
    frame = pd.DataFrame({"day": range(MAX_SLICE_VALUES + 1)})
    check_slice_column(frame.head(MAX_SLICE_VALUES), "day", source="now.csv")
    with pytest.raises(InputError) as error:
        check_slice_column(frame, "day", source="now.csv")
    assert str(error.value) == (
        "column 'day' of now.csv has 51 distinct values, more than 50 slices: use a "
        "categorical column (a segment, a regime, a period) with --by"
    )


def test_the_top_drifted_feature_is_the_one_farthest_past_its_threshold() -> None:
    """p-values and distances compare by how far past the threshold they are."""
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"near": rng.normal(size=500), "far": rng.normal(size=500)})
    current = pd.DataFrame({"near": rng.normal(0.3, size=500), "far": rng.normal(2.0, size=500)})
    profile = build_profile(reference, numeric=["near", "far"], categorical=[])
    result = detect_drift_from_profile(profile, current)  # 500 rows: KS p-values
    assert result.drifted_features == ("near", "far")
    top = top_drifted(result)
    assert top is not None
    assert top.feature == "far"
    assert top_drifted(detect_drift_from_profile(profile, reference)) is None


def test_the_slice_table_json_and_html_show_every_slice(market: Market) -> None:
    """The terminal table has a row per slice in order; the JSON gives each slice the whole
    file's verdict keys; the HTML has a section per slice, its text escaped."""
    by = detect_drift_by(market.profile, market.holdout, REGIME)
    text = rendered(slice_table(by))
    assert re.search(r"│ black_swan +│ +\d+ │ +- │ too few rows \(< 500\) +│ - +│ +- │", text)
    assert re.search(r"│ calm +│ +3,476 │ +8 / 8 │ ✗ DRIFT +│ realised_vol_5d +│ ≈0\.\d{4} │", text)
    assert text.index("black_swan") < text.index("calm") < text.index("volatile")

    output = sliced_dict(by)
    assert (output["column"], output["min_rows"], output["drifted"]) == ("regime", 500, True)
    assert output["drifted_values"] == ["calm", "volatile"]
    swan, calm, _ = output["slices"]
    assert (swan["judged"], swan["drifted"], swan["features"]) == (False, None, [])
    assert (calm["judged"], calm["drifted"], calm["rows"]) == (True, True, 3_476)
    calm_drift = by.slices[1].drift
    assert calm_drift is not None
    assert set(calm) - {"value", "rows", "judged", "reason"} == set(drift_dict(calm_drift))
    assert set(swan) == set(calm)

    current = market.holdout.assign(regime=market.holdout[REGIME].replace("calm", "<b>calm</b>"))
    whole = detect_drift_from_profile(market.profile, current)
    sliced = detect_drift_by(market.profile, current, REGIME)
    page = render_report(whole, market.profile, current, title="m", by=sliced)
    assert page.count("<section>") == 3
    assert "regime = &lt;b&gt;calm&lt;/b&gt; (3,476 rows)" in page
    assert "<b>" not in page
    assert "Not judged: too few rows (&lt; 500)." in page


def test_the_command_line_states_the_default_minimum() -> None:
    """`sluice drift --help` gives the minimum slice size the command applies."""
    from typing import get_type_hints

    from controller.cli.drift import drift

    option = get_type_hints(drift, include_extras=True)["min_slice_rows"].__metadata__[0]
    assert f"(default: {DEFAULT_MIN_SLICE_ROWS})" in option.help
