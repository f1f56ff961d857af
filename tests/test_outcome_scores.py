"""Whether an answer was right about a named outcome, by convention, and the tally per member
revision and segment (controller.outcome_scores): pure, no log, no router."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.outcome_scores import (
    OutcomeAnswer,
    OutcomeKey,
    Tally,
    answer_field,
    is_right,
    is_right_text,
    tally,
)

REGIMES = ("calm", "volatile", "black_swan")
probabilities = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def v1(**row: object) -> dict[str, object]:
    return {"predictions": [row]}


def v2(**tensors: object) -> dict[str, object]:
    return {
        "outputs": [
            {"name": name, "shape": [1], "datatype": "FP64", "data": [value]}
            for name, value in tensors.items()
        ]
    }


def test_a_class_name_outcome_reads_the_field_of_its_name() -> None:
    answer = v1(regime="volatile", p_calm=0.2, p_volatile=0.7)
    assert is_right(answer, "regime", "volatile") is True
    assert is_right(answer, "regime", "calm") is False


def test_a_binary_outcome_reads_p_outcome_at_one_half() -> None:
    assert is_right(v1(p_up=0.61), "up", 1.0) is True
    assert is_right(v1(p_up=0.61), "up", 0.0) is False
    assert is_right(v1(p_up=0.5), "up", 1.0) is True  # >= 0.5 predicts 1
    assert is_right(v1(p_up=0.49), "up", 0.0) is True
    assert is_right(v1(p_up=1), "up", 1) is True  # an int probability is a number too


def test_v2_answers_are_read_from_the_tensor_named_the_field() -> None:
    assert is_right(v2(p_up=0.7), "up", 1.0) is True
    assert is_right(v2(regime="calm"), "regime", "calm") is True
    nested = {"outputs": [{"name": "p_up", "shape": [1, 1], "data": [[0.2]]}]}
    assert is_right(nested, "up", 0.0) is True
    two_rows = {"outputs": [{"name": "p_up", "shape": [2], "data": [0.2, 0.9]}]}
    assert is_right(two_rows, "up", 0.0) is None
    twice = {"outputs": [{"name": "p_up", "data": [0.2]}, {"name": "p_up", "data": [0.9]}]}
    assert is_right(twice, "up", 0.0) is None


@pytest.mark.parametrize(
    ("answer", "outcome", "value"),
    [
        (v1(p_up=0.6), "regime", "calm"),  # no such field
        (v1(regime="calm"), "up", 1.0),  # no p_up
        ({"predictions": [{"p_up": 0.6}, {"p_up": 0.1}]}, "up", 1.0),  # several rows
        ({"predictions": []}, "up", 1.0),
        ({"predictions": [0.6]}, "up", 1.0),  # a row that is no object
        ({"predictions": {"p_up": 0.6}}, "up", 1.0),
        (v1(regime=2), "regime", "calm"),  # a class-name outcome against a number
        (v1(p_up="high"), "up", 1.0),  # a probability that is no number
        (v1(p_up=True), "up", 1.0),
        (v1(p_up=None), "up", 1.0),
        (v1(p_up=0.6), "up", 0.5),  # an outcome value neither 0/1 nor a class name
        (v1(p_up=0.6), "up", 2.0),
        (v1(p_up=0.6), "up", math.nan),
        ({"error": "boom"}, "up", 1.0),
        ([{"p_up": 0.6}], "up", 1.0),
        ("0.6", "up", 1.0),
        (None, "up", 1.0),
    ],
)
def test_anything_else_is_not_scored(answer: object, outcome: str, value: float | str) -> None:
    assert is_right(answer, outcome, value) is None


def test_text_that_is_not_json_or_none_is_not_scored() -> None:
    assert is_right_text(None, "up", 1.0) is None
    assert is_right_text("{not json", "up", 1.0) is None
    assert is_right_text(json.dumps(v1(p_up=0.9)), "up", 1.0) is True


@given(p=probabilities, up=st.sampled_from([0.0, 1.0]))
def test_a_probability_is_right_exactly_when_its_side_of_one_half_is_the_outcome(
    p: float, up: float
) -> None:
    """Exactly one of the two outcomes is right for any probability, in V1 and V2 alike."""
    for answer in (v1(p_up=p), v2(p_up=p)):
        right = is_right(answer, "up", up)
        assert right is ((p >= 0.5) == (up == 1.0))
        assert is_right(answer, "up", 1.0 - up) is (not right)


@given(predicted=st.sampled_from(REGIMES), actual=st.sampled_from(REGIMES))
def test_a_class_is_right_exactly_when_it_is_the_outcome(predicted: str, actual: str) -> None:
    assert is_right(v1(regime=predicted, p_calm=0.1), "regime", actual) is (predicted == actual)


@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["calm", "volatile"]), st.sampled_from(["r1", "r2"]), probabilities,
            st.sampled_from([0.0, 1.0]), st.sampled_from(["", *REGIMES]),
        ),
        max_size=40,
    )
)  # fmt: skip
def test_the_tally_counts_each_scored_answer_once_under_its_key(
    rows: list[tuple[str, str, float, float, str]],
) -> None:
    answers = [
        OutcomeAnswer(m, r, json.dumps(v1(p_up=p)), "up", up, segment)
        for m, r, p, up, segment in rows
    ]
    counted = tally(answers)
    assert sum(t.right + t.wrong for t in counted.values()) == len(rows)
    for key, counts in counted.items():
        mine = [row for row in rows if (row[0], row[1], "up", row[4]) == tuple(vars(key).values())]
        assert counts.right == sum((p >= 0.5) == (up == 1.0) for _, _, p, up, _ in mine)
        assert counts.right + counts.wrong == len(mine) > 0


def test_the_tally_keeps_outcomes_apart_and_skips_what_is_not_scored() -> None:
    classifier = json.dumps(v1(regime="volatile", p_calm=0.2))
    answers = [
        OutcomeAnswer("clf", "clf-1", classifier, "regime", "volatile", "volatile"),
        OutcomeAnswer("clf", "clf-1", classifier, "up", 1.0, "volatile"),  # no p_up: skipped
        OutcomeAnswer("clf", "clf-1", None, "regime", "calm", "calm"),  # nothing kept: skipped
        OutcomeAnswer("calm", "calm-1", json.dumps(v1(p_up=0.7)), "up", 0.0, "calm"),
        OutcomeAnswer("calm", "calm-1", json.dumps(v1(p_up=0.7)), "up", 1.0, "calm"),
        OutcomeAnswer("calm", "calm-1", json.dumps(v1(p_up=0.7)), "regime", "calm", "calm"),
    ]
    assert tally(answers) == {
        OutcomeKey("calm", "calm-1", "up", "calm"): Tally(right=1, wrong=1),
        OutcomeKey("clf", "clf-1", "regime", "volatile"): Tally(right=1, wrong=0),
    }
    assert Tally(3, 1).share_right == 0.75
    assert Tally().share_right is None


def test_answer_field_reads_one_row_only() -> None:
    assert answer_field(v1(regime="calm"), "regime") == "calm"
    assert answer_field(v1(regime="calm"), "p_up") is None
    assert answer_field({"outputs": "x"}, "p_up") is None
