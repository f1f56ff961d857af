"""The outcome beside drift (`sluice drift --outcome NAME [--by COLUMN]`), in memory: what the
rate or mean is over, when a training value is shown and why not, and what is refused. The
command run as a user runs it is in tests/test_drift_command.py and, on the recommender's
holiday, tests/test_recommender.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from controller.domain import ModelVersion
from controller.drift import detect_drift_from_profile
from controller.drift.outcomes import (
    OutcomeReport,
    OutcomeValue,
    outcome_column,
    report_outcome,
)
from controller.drift.report_html import render_report
from controller.drift.report_json import report_dict
from controller.drift.slices import detect_drift_by, split_by
from controller.drift.table import (
    format_outcome,
    format_outcome_change,
    outcome_line,
    outcome_table,
)
from controller.errors import InputError
from controller.quality.data_profile import DataProfile, build_profile, build_slice_profiles


def _shop(rows: int, click_rate: dict[str, float], seed: int) -> pd.DataFrame:
    """Rows of three segments in equal parts, each clicked at its own rate, with an amount."""
    rng = np.random.default_rng(seed)
    segment = np.array(["bargain", "loyal", "new"])[np.arange(rows) % 3]
    rate = np.vectorize(click_rate.get)(segment)
    return pd.DataFrame(
        {
            "price": rng.normal(50, 10, rows),
            "segment": segment,
            "click": (rng.random(rows) < rate).astype(int),
            "revenue": rng.gamma(2.0, 10.0, rows),
        }
    )


TRAINING = _shop(3_000, {"bargain": 0.3, "loyal": 0.1, "new": 0.1}, seed=1)
HOLIDAY = _shop(3_000, {"bargain": 0.15, "loyal": 0.15, "new": 0.1}, seed=2)
COLUMNS = {"numeric": ["price"], "categorical": ["segment"]}
PROFILE = build_profile(TRAINING, **COLUMNS, label="click")
BY_SEGMENT = build_slice_profiles(TRAINING, "segment", **COLUMNS, label="click")


def _rate(frame: pd.DataFrame, segment: str | None = None) -> float:
    rows = frame if segment is None else frame[frame["segment"] == segment]
    return float(rows["click"].mean())


def test_a_binary_outcome_is_a_rate_against_the_training_rate_of_the_same_label() -> None:
    """0/1 clicks make a rate; the profile's label is click, so its rate is the training
    value, and the change is the difference."""
    report = report_outcome(HOLIDAY, "click", source="h.csv", profile=PROFILE)
    assert (report.name, report.kind, report.missing, report.notes) == ("click", "rate", 0, ())
    whole = report.whole
    assert whole.rows == 3_000
    assert whole.value == pytest.approx(_rate(HOLIDAY))
    assert whole.training == pytest.approx(_rate(TRAINING))
    assert whole.change == pytest.approx(_rate(HOLIDAY) - _rate(TRAINING))
    assert report.slices == ()
    assert outcome_line(report) == (
        f"Outcome click, a rate (0/1), not judged: {_rate(HOLIDAY):.1%} over 3,000 rows; "
        f"training {_rate(TRAINING):.1%}, {(_rate(HOLIDAY) - _rate(TRAINING)) * 100:+.1f} pp"
    )


def test_each_slice_is_against_its_own_training_rate_in_the_drift_slices_order() -> None:
    """With per-segment profiles, each segment's rate is compared with that segment's training
    rows: bargain hunters fell, loyal customers rose, though the whole file moved less."""
    report = report_outcome(
        HOLIDAY, "click", source="h.csv", profile=PROFILE, by="segment", slice_profiles=BY_SEGMENT
    )
    drift = detect_drift_by(PROFILE, HOLIDAY, "segment", slice_profiles=BY_SEGMENT, min_rows=100)
    assert [part.value for part in report.slices] == [part.value for part in drift.slices]
    for part in report.slices:
        segment = str(part.value)
        assert part.outcome.rows == 1_000
        assert part.outcome.value == pytest.approx(_rate(HOLIDAY, segment))
        assert part.outcome.training == pytest.approx(_rate(TRAINING, segment))
    bargain, loyal, _ = (part.outcome.change for part in report.slices)
    assert bargain is not None
    assert bargain < -0.1
    assert loyal is not None
    assert loyal > 0.02
    assert report.notes == ()

    console = Console(width=100, record=True)
    console.print(outcome_table(report))
    text = console.export_text()
    assert "click rate by segment: reported, not judged" in text
    cells = ["bargain", "1,000", f"{_rate(HOLIDAY, 'bargain'):.1%}"]
    cells += [
        f"{_rate(TRAINING, 'bargain'):.1%}",
        f"{report.slices[0].outcome.change * 100:+.1f} pp",
    ]
    assert re.search(r"│ +" + r" +│ +".join(re.escape(cell) for cell in cells) + r" +│", text)


def test_without_per_value_profiles_no_slice_gets_the_pooled_rate() -> None:
    """A segment's rate is never compared with the training mix's: without profiles by the
    column (none, or by another column) each slice's training value is unknown, and a note
    says why."""
    none = report_outcome(HOLIDAY, "click", source="h.csv", profile=PROFILE, by="segment")
    assert {part.outcome.training for part in none.slices} == {None}
    assert none.whole.training is not None
    assert none.notes == (
        "Note: no training click per segment: the version logged no training profile per segment.",
    )
    other = HOLIDAY.assign(device=["app", "web"] * 1_500)
    by_device = report_outcome(
        other, "click", source="h.csv", profile=PROFILE, by="device", slice_profiles=BY_SEGMENT
    )
    assert {part.outcome.training for part in by_device.slices} == {None}
    assert by_device.notes == (
        "Note: no training click per device: the version's per-value training profiles are "
        "by segment, not device.",
    )


def test_a_value_training_did_not_have_has_no_training_value() -> None:
    """A segment with no training profile of its own, and rows with no segment, show '-'
    and are named in a note; the others keep theirs."""
    current = pd.concat(
        [HOLIDAY, HOLIDAY.head(30).assign(segment="gift"), HOLIDAY.head(20).assign(segment=None)],
        ignore_index=True,
    )
    report = report_outcome(
        current, "click", source="h.csv", profile=PROFILE, by="segment", slice_profiles=BY_SEGMENT
    )
    trained = {part.value: part.outcome.training for part in report.slices}
    assert list(trained) == ["bargain", "gift", "loyal", "new", None]
    assert (trained["gift"], trained[None]) == (None, None)
    assert trained["bargain"] == pytest.approx(_rate(TRAINING, "bargain"))
    assert report.notes == (
        "Note: no training click per segment for gift, (no value): no training profile of its own.",
    )


@pytest.mark.parametrize(
    ("label", "named", "reason"),
    [
        ("revenue", True, "the version's training label is 'revenue', not 'click'"),
        (
            "click",
            False,
            "the version's training profile has a label rate but does not name its column "
            "(logged before Sluice recorded it; retrain to record it)",
        ),
        (None, False, "the version's training step recorded no label"),
    ],
    ids=["another-label", "unnamed-label", "no-label"],
)
def test_a_training_rate_of_another_or_an_unnamed_label_is_not_compared(
    label: str | None, named: bool, reason: str
) -> None:
    """label_rate is compared only when the profile names the same column; otherwise '-',
    and one note (not one per slice) says why. An unnamed label is a profile logged before
    Sluice recorded the name."""

    def as_logged(profile: DataProfile) -> DataProfile:
        return profile if named else profile.model_copy(update={"label": None})

    profile = as_logged(build_profile(TRAINING, **COLUMNS, label=label))
    by_segment = build_slice_profiles(TRAINING, "segment", **COLUMNS, label=label)
    by_segment = by_segment.model_copy(
        update={"profiles": {k: as_logged(v) for k, v in by_segment.profiles.items()}}
    )
    report = report_outcome(
        HOLIDAY, "click", source="h.csv", profile=profile, by="segment", slice_profiles=by_segment
    )
    assert report.whole.training is None
    assert {part.outcome.training for part in report.slices} == {None}
    assert report.notes == (f"Note: no training click: {reason}.",)
    assert outcome_line(report).endswith("over 3,000 rows; training -")


def test_other_numbers_are_a_mean_and_rows_without_a_value_are_left_out() -> None:
    """Revenue is not 0/1: its mean; rows with no value are left out of rows and mean and
    counted in a note."""
    current = HOLIDAY.assign(revenue=HOLIDAY["revenue"].where(HOLIDAY.index % 10 != 0))
    report = report_outcome(current, "revenue", source="h.csv", profile=PROFILE)
    assert report.kind == "mean"
    assert (report.whole.rows, report.missing) == (2_700, 300)
    assert report.whole.value == pytest.approx(current["revenue"].mean())
    assert report.notes[-1] == "Note: 300 of 3,000 rows have no revenue and are left out."


def test_true_and_false_are_a_rate_and_text_numbers_are_numbers() -> None:
    """A boolean column is a rate of True; numbers written as text are read as numbers."""
    flags = pd.DataFrame({"clicked": [True, False, False, True], "spent": ["1.5", "2", None, "3"]})
    values = outcome_column(flags, "clicked", source="f.csv")
    assert values.tolist() == [1.0, 0.0, 0.0, 1.0]
    report = report_outcome(flags, "spent", source="f.csv", profile=PROFILE)
    assert (report.kind, report.whole.rows, report.whole.value) == (
        "mean",
        3,
        pytest.approx(6.5 / 3),
    )


def test_a_missing_or_text_outcome_is_refused_in_one_line() -> None:
    """A column the file lacks is named with the columns it has; text is named with a value."""
    with pytest.raises(InputError) as missing:
        outcome_column(HOLIDAY, "clicks", source="h.csv")
    assert str(missing.value) == (
        "h.csv has no column 'clicks' to report as the outcome (its columns: price, segment, "
        "click, revenue); fix --outcome"
    )
    with pytest.raises(InputError) as text:
        outcome_column(HOLIDAY, "segment", source="h.csv")
    assert str(text.value) == (
        "outcome column 'segment' of h.csv is not numeric (3,000 of 3,000 rows, first: "
        "'bargain'); give 0/1 or numbers with --outcome"
    )


def test_an_outcome_with_no_values_yet_is_reported_as_none() -> None:
    """Outcomes that have not arrived: 0 rows, no value, no change; not an error."""
    current = HOLIDAY.assign(click=np.nan)
    report = report_outcome(current, "click", source="h.csv", profile=PROFILE)
    assert (report.whole.rows, report.whole.value, report.whole.change) == (0, None, None)
    assert outcome_line(report).startswith("Outcome click, a rate (0/1), not judged: - over 0")


def test_values_and_changes_are_formatted_for_people() -> None:
    """Rates as percentages and points; means with fixed decimals and the change's share."""
    rate = OutcomeValue(rows=10, value=0.163, training=0.293)
    assert (format_outcome("rate", rate.value), format_outcome_change("rate", rate)) == (
        "16.3%", "-13.0 pp",
    )  # fmt: skip
    mean = OutcomeValue(rows=10, value=17.59, training=15.2)
    assert (format_outcome("mean", mean.value), format_outcome_change("mean", mean)) == (
        "17.59", "+2.39 (+16%)",
    )  # fmt: skip
    assert format_outcome("mean", 1234.5) == "1,234"
    assert format_outcome("mean", 0.01234) == "0.0123"
    assert format_outcome_change("mean", OutcomeValue(rows=1, value=1.0, training=None)) == "-"


def test_the_json_keeps_its_keys_and_adds_the_outcome() -> None:
    """--json without --outcome has "outcome": null and every slice "outcome": null; with it,
    the whole file's outcome and each slice's, with the same slices as the drift's."""
    version = ModelVersion(
        "shop", 3, "r1", source="models:/m-1", artifact_uri="mlflow-artifacts:/1"
    )
    whole = detect_drift_from_profile(PROFILE, HOLIDAY)
    by = detect_drift_by(PROFILE, HOLIDAY, "segment", slice_profiles=BY_SEGMENT, min_rows=100)

    def report(outcome: OutcomeReport | None) -> dict[str, Any]:
        return report_dict(
            version, PROFILE, whole, alias=None, current=Path("h.csv"), current_rows=3_000,
            html=None, by=by, outcome=outcome,
        )  # fmt: skip

    plain = report(None)
    assert plain["outcome"] is None
    assert {part["outcome"] for part in plain["by"]["slices"]} == {None}

    kpi = report_outcome(
        HOLIDAY, "click", source="h.csv", profile=PROFILE, by="segment", slice_profiles=BY_SEGMENT
    )
    full = report(kpi)
    assert list(full) == list(plain)
    assert {key: full[key] for key in full if key not in ("outcome", "by")} == {
        key: plain[key] for key in plain if key not in ("outcome", "by")
    }
    for with_outcome, without in zip(full["by"]["slices"], plain["by"]["slices"], strict=True):
        assert {**with_outcome, "outcome": None} == without
    outcome = json.loads(json.dumps(full))["outcome"]
    assert (outcome["name"], outcome["kind"]) == ("click", "rate")
    assert outcome["judged"] is False
    assert outcome["training"] == pytest.approx(_rate(TRAINING))
    assert outcome["summary"] == outcome_line(kpi)
    (bargain, *_) = full["by"]["slices"]
    assert bargain["value"] == "bargain"
    assert bargain["outcome"]["rows"] == 1_000
    assert bargain["outcome"]["change"] == pytest.approx(
        _rate(HOLIDAY, "bargain") - _rate(TRAINING, "bargain")
    )


def test_the_html_report_has_the_outcome_section() -> None:
    """The HTML report shows the outcome's line and a row per slice, escaped."""
    report = report_outcome(
        HOLIDAY, "click", source="h.csv", profile=PROFILE, by="segment", slice_profiles=BY_SEGMENT
    )
    whole = detect_drift_from_profile(PROFILE, HOLIDAY)
    page = render_report(whole, PROFILE, HOLIDAY, title="shop", outcome=report)
    assert "<h2>Outcome click</h2>" in page
    assert outcome_line(report) in page
    for value, _ in split_by(HOLIDAY, "segment"):
        assert f"<tr><td>{value}</td><td class=num>1,000</td>" in page


def test_a_profile_names_its_label_only_when_it_has_one() -> None:
    """``label`` is written only when training named one, so a profile without it is the
    same JSON as before the field (readable by an older Sluice); old profiles read back."""
    plain = build_profile(TRAINING, **COLUMNS)
    assert "label" not in plain.model_dump(mode="json")
    labelled = PROFILE.model_dump(mode="json")
    assert (labelled["label"], labelled["label_rate"]) == ("click", pytest.approx(_rate(TRAINING)))
    old = {key: value for key, value in labelled.items() if key != "label"}
    assert DataProfile.model_validate(old).label is None
    assert DataProfile.model_validate_json(PROFILE.model_dump_json()) == PROFILE
    assert {profile.label for profile in BY_SEGMENT.profiles.values()} == {"click"}
