"""Data contracts stop bad training data before anything is trained or logged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
from pandera.typing import Series

from controller.errors import DataValidationError
from controller.quality.data_contract import ColumnSpec, contract_schema, validate_frame
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


def test_several_violations_are_named_in_contract_order(frame: pd.DataFrame) -> None:
    """The contract runs as a pandera schema; its failures still read as Sluice's, in order."""
    broken = frame.assign(amount=-frame["amount"], hour=frame["hour"] + 0.5, country=None)
    with pytest.raises(DataValidationError) as caught:
        validate_frame(broken.head(100), CONTRACT, source="x")
    assert str(caught.value) == (
        "x fails the data contract: 100 rows (at least 500 needed);"
        f" column 'amount' has 100 values below 0 (min {broken['amount'].head(100).min():g});"
        " column 'hour' must hold whole numbers; column 'country' is entirely null;"
        " fix the data and run again"
    )


def test_a_partial_null_rate_and_unknown_categories_are_named(frame: pd.DataFrame) -> None:
    """A null rate over the allowance gives the rate; unknown categories are listed."""
    contract = CONTRACT.model_copy(
        update={
            "columns": {
                **CONTRACT.columns,
                "country": ColumnSpec(kind="categorical", categories=("US",)),
            }
        }
    )
    sparse = frame.assign(merchant_category=frame["merchant_category"].where(frame.index % 10 > 0))
    with pytest.raises(DataValidationError) as caught:
        validate_frame(sparse, contract, source="x")
    text = str(caught.value)
    assert "column 'merchant_category' is 10.0% null (at most 1.0% allowed)" in text
    assert "column 'country' has unknown categories [" in text


def test_a_pass_names_the_rows_and_the_checks(frame: pd.DataFrame) -> None:
    """What passed is what the provenance record keeps: the rows and every check by name."""
    result = validate_frame(frame, CONTRACT, source="x")
    assert result.rows == len(frame)
    assert result.schema == "data contract"
    assert {"column amount", "column amount: >= 0", "at least 500 rows"} <= set(result.checks)
    assert result.record()["passed"] is True


def test_the_contract_is_a_pandera_schema_a_team_can_extend(frame: pd.DataFrame) -> None:
    """contract_schema gives plain pandera: pandera validates with it, and a check a team adds
    fails in its own words beside Sluice's."""
    schema = contract_schema(CONTRACT)
    schema.validate(frame)
    stricter = schema.update_column(
        "amount", checks=[*schema.columns["amount"].checks, pa.Check.lt(100, error="small")]
    )
    with pytest.raises(DataValidationError) as caught:
        validate_frame(frame, stricter, source="x")
    large = int((frame["amount"] >= 100).sum())
    assert f"column 'amount' fails 'small' in {large} rows (e.g. " in str(caught.value)


TEAM_SCHEMA = pa.DataFrameSchema(
    {
        "amount": pa.Column(float, pa.Check.ge(0, error="amounts are never negative")),
        "country": pa.Column(str, nullable=False),
    },
    checks=[pa.Check(lambda f: len(f) >= 3, error="at least 3 transactions")],
    name="payments suite",
)


def test_a_team_schema_fails_in_its_own_words() -> None:
    """A team's pandera suite runs in the contract's place: every failure in one line, each in
    the suite's words with how many rows and a few of their values."""
    data = pd.DataFrame({"amount": [5.0, -1.5, -2.0], "country": ["DE", None, "US"]}).head(2)
    with pytest.raises(DataValidationError) as caught:
        validate_frame(data, TEAM_SCHEMA, source="payments.csv")
    assert str(caught.value) == (
        "payments.csv fails the data contract 'payments suite':"
        " column 'amount' fails 'amounts are never negative' in 1 rows (e.g. -1.5);"
        " column 'country' has 1 null values; the frame fails 'at least 3 transactions';"
        " fix the data and run again"
    )


def test_a_wrong_dtype_is_the_column_only_message() -> None:
    """A column of the wrong dtype says so once, not once per check that cannot run on it."""
    data = pd.DataFrame({"amount": ["5", "7", "9"], "country": ["DE", "FR", "US"]})
    with pytest.raises(DataValidationError) as caught:
        validate_frame(data, TEAM_SCHEMA, source="p.csv")
    assert str(caught.value) == (
        "p.csv fails the data contract 'payments suite': column 'amount' has dtype object,"
        " expected float64; fix the data and run again"
    )


class Payments(pa.DataFrameModel):
    amount: Series[float] = pa.Field(ge=0)

    class Config:
        name = "payments model"


def test_a_dataframe_model_class_is_a_contract_too() -> None:
    """pandera's class API works as is: its pass names the model and its checks."""
    result = validate_frame(pd.DataFrame({"amount": [1.0, 2.0]}), Payments, source="p")
    assert (result.schema, result.rows) == ("payments model", 2)
    assert "column amount: greater_than_or_equal_to(0)" in result.checks
    with pytest.raises(DataValidationError, match="greater_than_or_equal_to"):
        validate_frame(pd.DataFrame({"amount": [-1.0]}), Payments, source="p")


def test_something_else_is_not_a_contract(frame: pd.DataFrame) -> None:
    """A dict or a Great Expectations suite is refused with what a contract may be."""
    with pytest.raises(TypeError, match="DataContract, a pandera DataFrameSchema or"):
        validate_frame(frame, {"amount": "float"}, source="x")  # type: ignore[arg-type]


def test_pandera_switched_off_still_checks(frame: pd.DataFrame) -> None:
    """PANDERA_VALIDATION_ENABLED=False or a schema-only depth would let pandera skip the
    checks the provenance record says passed: the contract runs them all the same."""
    from pandera.config import config_context

    with (
        config_context(validation_enabled=False, validation_depth="SCHEMA_ONLY"),
        pytest.raises(DataValidationError, match="'amount' has 2000 values below 0"),
    ):
        validate_frame(frame.assign(amount=-frame["amount"]), CONTRACT, source="x")


def test_a_check_that_only_warns_is_recorded_as_such() -> None:
    """A team's check with raise_warning=True does not fail the data; the record says so."""
    schema = pa.DataFrameSchema(
        {"amount": pa.Column(float, pa.Check.le(10, error="usually small", raise_warning=True))}
    )
    with pytest.warns(UserWarning, match="usually small"):
        result = validate_frame(pd.DataFrame({"amount": [50.0]}), schema, source="x")
    assert "column amount: usually small (warns only)" in result.checks
