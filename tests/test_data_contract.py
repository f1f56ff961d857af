"""Data contracts stop bad training data before anything is trained or logged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from controller.errors import DataValidationError
from controller.quality.data_contract import validate_frame
from models.fraud_detector.contract import CONTRACT
from models.fraud_detector.data import generate_transactions


@pytest.fixture
def frame() -> pd.DataFrame:
    return generate_transactions(week=0, rows=2_000, seed=3)


def test_generated_data_meets_the_contract() -> None:
    """Every synthetic week is valid training data."""
    for week in range(6):
        validate_frame(generate_transactions(week=week, rows=2_000), CONTRACT, source=f"w{week}")


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda f: f.drop(columns=["card_age_days"]), "missing columns ['card_age_days']"),
        (lambda f: f.assign(amount=-f["amount"]), "'amount' has 2000 values below 0"),
        (lambda f: f.assign(country=None), "'country' is entirely null"),
        (lambda f: f.assign(hour=f["hour"] + 0.5), "'hour' must hold whole numbers"),
        (lambda f: f.assign(amount="12.50"), "'amount' must be numeric"),
        (lambda f: f.assign(is_fraud=0), "label 'is_fraud' rate 0.00% outside"),
        (lambda f: f.assign(amount=np.inf), "'amount' has infinite values"),
    ],
)
def test_violations_are_named_in_one_line(frame: pd.DataFrame, corrupt, message: str) -> None:
    """Each kind of breakage raises one line that names the column and the problem."""
    with pytest.raises(DataValidationError) as caught:
        validate_frame(corrupt(frame), CONTRACT, source="data.csv")
    text = str(caught.value)
    assert message in text
    assert text.startswith("data.csv fails the data contract: ")
    assert "\n" not in text


def test_too_few_rows_is_a_violation(frame: pd.DataFrame) -> None:
    """A truncated extract is refused."""
    with pytest.raises(DataValidationError, match="10 rows"):
        validate_frame(frame.head(10), CONTRACT, source="x")
