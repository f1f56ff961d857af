"""Drift per slice (`sluice drift --by COLUMN`), in memory: which rows make a slice, which
slices are judged, what a slice's verdict says and what is refused. The command run as a user
runs it is in tests/test_drift_command.py."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

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
from controller.drift.table import reference_notes, slice_table, slices_line
from controller.drift.thresholds import load_drift_config
from controller.errors import InputError
from controller.quality.data_profile import (
    DataProfile,
    SliceProfiles,
    build_profile,
    build_slice_profiles,
)
from models.market_regime.market import FEATURES, REGIME, market_frame
from models.market_regime.pipeline import split_holdout

#: What a more volatile market moves: the returns and their realised volatility, six of
#: the eight features (a slice drifts when half its features do).
VOL_FEATURES = [name for name in FEATURES if name.startswith(("return_", "realised_vol"))]


#: The market's drift thresholds (its notes say how they were chosen), as the README uses them.
MARKET_THRESHOLDS = (
    Path(__file__).resolve().parent.parent / "models" / "market_regime" / "drift_thresholds.yaml"
)


@dataclass(frozen=True)
class Market:
    """The market-regime training rows, their profiles (as the training step logs them: the
    features, numeric; pooled, and one per regime) and the holdout after them."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    profile: DataProfile
    by_regime: SliceProfiles


@pytest.fixture(scope="module")
def market() -> Market:
    train, holdout = split_holdout(market_frame(20_000, seed=7))
    return Market(
        train,
        holdout,
        build_profile(train, numeric=FEATURES, categorical=[]),
        build_slice_profiles(train, REGIME, numeric=FEATURES, categorical=[]),
    )


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


def test_against_its_own_regime_an_unchanged_market_drifts_in_no_slice(market: Market) -> None:
    """With a profile per regime, each regime's holdout rows are compared with the same
    regime's training rows: with the market's thresholds no slice of the unchanged holdout
    drifts, and when only the volatile rows' returns and volatilities are 1.5 times larger,
    the volatile slice drifts on them and the calm slice is judged as before. The black-swan
    days are too few to judge (the same minimum as ever)."""
    config = load_drift_config(MARKET_THRESHOLDS)
    unchanged = detect_drift_by(
        market.profile, market.holdout, REGIME, config=config, slice_profiles=market.by_regime
    )
    volatile_rows = market.holdout[REGIME] == "volatile"
    shifted = detect_drift_by(
        market.profile, scaled(market.holdout, volatile_rows), REGIME, config=config,
        slice_profiles=market.by_regime,
    )  # fmt: skip

    assert (unchanged.reference, unchanged.profiled_values) == (
        "per-slice",
        ("black_swan", "calm", "volatile"),
    )
    trained = market.train[REGIME].value_counts()
    assert [
        (p.value, p.own_reference, p.reference and p.reference.rows) for p in unchanged.slices
    ] == [(regime, True, trained[regime]) for regime in ("black_swan", "calm", "volatile")]
    assert (unchanged.drifted, unchanged.fallback_values, reference_notes(unchanged)) == (
        False, (), [],
    )  # fmt: skip
    assert slices_line(unchanged) == (
        "NO SLICE DRIFTS by regime: 0 of 2 judged slices drifted; 1 not judged"
    )
    assert unchanged.slices[0].skipped == "too few rows (< 500)"

    assert shifted.drifted_values == ("volatile",)
    assert shifted.slices[1] == unchanged.slices[1]  # calm: the same rows, the same verdict
    moved = shifted.slices[2].drift
    assert moved is not None
    assert set(moved.drifted_features) == set(VOL_FEATURES)
    text = rendered(slice_table(shifted))
    assert "By regime: each slice against its own training profile" in text
    assert re.search(rf"│ calm +│ +3,476 │ +{trained['calm']:,} │ +0 / 8 │ ✓ no drift", text)
    assert re.search(rf"│ volatile +│ +1,410 │ +{trained['volatile']:,} │ +6 / 8 │ ✗ DRIFT", text)


def test_the_market_thresholds_hold_on_other_markets(market: Market) -> None:
    """Why the market has thresholds of its own: at Evidently's 0.1, even against its own
    regime's training rows, the volatile slice of the unchanged holdout drifts (on the slow
    trailing windows: 60-day volatility, 120-day drawdown). At the market's thresholds, 40
    unchanged markets of other seeds drift in no regime but one, and a regime whose returns
    and volatilities are 1.5 times larger drifts in every one of them, the other regime's
    verdict staying as it was."""
    default = detect_drift_by(
        market.profile, market.holdout, REGIME, slice_profiles=market.by_regime
    )
    assert default.drifted_values == ("volatile",)
    volatile = default.slices[2].drift
    assert volatile is not None
    assert {"realised_vol_60d", "drawdown_120d"} <= set(volatile.drifted_features)
    assert len(volatile.drifted_features) == 7  # as the README says

    config = load_drift_config(MARKET_THRESHOLDS)
    missed: dict[tuple[int, str | None], tuple[object, ...]] = {}
    for seed in range(100, 140):
        current = market_frame(5_000, seed=seed)
        for moved in (None, "calm", "volatile"):
            frame = current if moved is None else scaled(current, current[REGIME] == moved)
            by = detect_drift_by(
                market.profile, frame, REGIME, config=config, slice_profiles=market.by_regime
            )
            if by.drifted_values != (() if moved is None else (moved,)):
                missed[seed, moved] = by.drifted_values
    # One market in 40 has volatile spells unlike the training ones (the thresholds' notes).
    assert missed == {(118, None): ("volatile",), (118, "calm"): ("calm", "volatile")}


def test_a_value_training_did_not_have_is_compared_with_the_pooled_profile(
    market: Market,
) -> None:
    """A regime with no training profile of its own (here volatile rows renamed "crash") is
    compared with the pooled profile, and the table, the note and the JSON say so; per-slice
    profiles by another column leave every slice pooled, with a note that says why."""
    current = market.holdout.assign(regime=market.holdout[REGIME].replace("volatile", "crash"))
    by = detect_drift_by(market.profile, current, REGIME, slice_profiles=market.by_regime)
    assert [(p.value, p.own_reference) for p in by.slices] == [
        ("black_swan", True),
        ("calm", True),
        ("crash", False),
    ]
    crash = by.slices[2]
    assert crash.reference == market.profile
    assert crash.drift is not None
    assert len(crash.drift.drifted_features) == len(FEATURES)  # a regime against the mix
    assert by.fallback_values == ("crash",)
    assert reference_notes(by) == [
        "Note: no training profile of its own, compared with the whole (pooled) training "
        "profile: crash (the version's profiles by regime: black_swan, calm, volatile)."
    ]
    text = rendered(slice_table(by))
    assert re.search(rf"│ crash +│ +1,410 │ +all {market.profile.rows:,} │ +8 / 8 │", text)
    output = sliced_dict(by)
    assert (output["reference"], output["profiles_by"]) == ("per-slice", "regime")
    assert output["notes"] == reference_notes(by)
    assert [(s["value"], s["reference"], s["reference_rows"]) for s in output["slices"]] == [
        ("black_swan", "slice", market.by_regime.profiles["black_swan"].rows),
        ("calm", "slice", market.by_regime.profiles["calm"].rows),
        ("crash", "pooled", market.profile.rows),
    ]
    page = render_report(
        detect_drift_from_profile(market.profile, current), market.profile, current,
        title="m", by=by,
    )  # fmt: skip
    assert "Each slice of the current data against the training profile of the same regime" in page
    assert f"Against the {market.by_regime.profiles['calm'].rows:,} training rows of" in page
    assert f"Against all {market.profile.rows:,} training rows: no profile of its own." in page

    rows = market.holdout.assign(desk=["a", "b"] * (len(market.holdout) // 2))
    other = detect_drift_by(market.profile, rows, "desk", slice_profiles=market.by_regime)
    assert (other.reference, other.profiles_by) == ("pooled", "regime")
    assert all(not part.own_reference for part in other.slices)
    assert reference_notes(other) == [
        "Note: each slice is compared with the whole (pooled) training profile: the version's "
        "per-value training profiles are by regime, not desk. A desk with a distribution of its "
        "own differs from the training mix even when nothing changed."
    ]
    assert "each slice against the whole training profile" in rendered(slice_table(other))


def test_slice_profiles_are_built_per_value_like_the_pooled_one() -> None:
    """One profile per value, of that value's rows and scores; 2 and 2.0 are one value (a CSV
    may give either), rows with no value are in none, and the document round-trips."""
    frame = pd.DataFrame(
        {"x": [1.0, 2.0, 3.0, 4.0, 5.0], "tier": [2, 2, 3, None, 3], "c": list("abaab")}
    )
    profiles = build_slice_profiles(
        frame, "tier", numeric=["x"], categorical=["c"], predictions=[0.1, 0.2, 0.3, 0.4, 0.5]
    )
    assert profiles.column == "tier"
    assert list(profiles.profiles) == ["2", "3"]  # the float column's 2.0 and 3.0
    two = profiles.of(2)
    assert two is not None
    assert two == build_profile(
        frame.iloc[:2], numeric=["x"], categorical=["c"], predictions=[0.1, 0.2]
    )
    assert profiles.of(3.0) == profiles.profiles["3"]
    assert (profiles.of("4"), profiles.of(None), profiles.of(float("nan"))) == (None, None, None)
    assert SliceProfiles.model_validate_json(profiles.model_dump_json()) == profiles


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

    assert reference_notes(by) == [
        "Note: each slice is compared with the whole (pooled) training profile: the version "
        "logged no training profile per regime. A regime with a distribution of its own differs "
        "from the training mix even when nothing changed."
    ]

    output = sliced_dict(by)
    assert (output["column"], output["min_rows"], output["drifted"]) == ("regime", 500, True)
    assert (output["reference"], output["profiles_by"]) == ("pooled", None)
    assert output["notes"] == reference_notes(by)
    assert output["drifted_values"] == ["calm", "volatile"]
    swan, calm, _ = output["slices"]
    assert (swan["judged"], swan["drifted"], swan["features"]) == (False, None, [])
    assert (calm["judged"], calm["drifted"], calm["rows"]) == (True, True, 3_476)
    calm_drift = by.slices[1].drift
    assert calm_drift is not None
    head = {"value", "rows", "judged", "reason", "reference", "reference_rows", "outcome"}
    assert set(calm) - head == set(drift_dict(calm_drift))
    assert (calm["reference"], calm["reference_rows"]) == ("pooled", market.profile.rows)
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
