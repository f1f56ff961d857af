"""Data contracts: what a training dataset must look like before anything is trained or logged.

A model trained on broken data is registered, looks fine in its metrics, and fails in
production. The contract is checked first, and a violation stops the run before MLflow sees
anything, so the registry only ever holds versions trained on data that met it.

A contract is a `pandera <https://pandera.readthedocs.io>`_ schema when it runs: Sluice's own
:class:`DataContract` (the columns' kinds, ranges, null rates, the label's rate) becomes one
(:func:`contract_schema`), and a team's own suite (a ``pandera.pandas.DataFrameSchema`` or a
``DataFrameModel`` class) runs the same way. Either way a violation is one line naming every
failure (:mod:`controller.quality.contract_failures`), and a pass is a
:class:`ContractResult`: the rows and the checks, what the provenance record keeps.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.config import ValidationDepth, config_context
from pandera.errors import SchemaErrors
from pydantic import BaseModel, ConfigDict, Field

from controller.errors import DataValidationError
from controller.quality.contract_failures import SLUICE_CHECK, contract_problems

__all__ = [
    "ColumnSpec",
    "Contract",
    "ContractResult",
    "DataContract",
    "as_schema",
    "contract_schema",
    "validate_frame",
]


class ColumnSpec(BaseModel):
    """One column: its kind, allowed values or range, and how many nulls it may hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["numeric", "integer", "categorical", "binary"]
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] | None = Field(
        default=None,
        description="Allowed values of a categorical column; None accepts any (new) category.",
    )
    max_null_rate: float = Field(default=0.0, ge=0.0, le=1.0)


class DataContract(BaseModel):
    """The columns a dataset must have, the label column, and the label rate it may show."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: dict[str, ColumnSpec]
    label: str
    min_label_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    max_label_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    min_rows: int = Field(default=1, ge=1)

    @property
    def features(self) -> list[str]:
        """Column names other than the label, in contract order."""
        return [name for name in self.columns if name != self.label]


@dataclass(frozen=True)
class ContractResult:
    """A contract a dataset passed: its name, the rows it covered and the checks it ran."""

    schema: str
    rows: int
    checks: tuple[str, ...]

    def record(self) -> dict[str, Any]:
        """The provenance record's ``dataContract`` annotation."""
        return {"passed": True, "schema": self.schema, "rows": self.rows, "checks": [*self.checks]}


#: What a team may pass as its contract: Sluice's, a pandera schema, or a DataFrameModel class.
Contract = DataContract | pa.DataFrameSchema | type[pa.DataFrameModel]


def _check(
    kind: str,
    title: str,
    test: Callable[[pd.Series], Any],
    *,
    ignore_na: bool = True,
    **limits: Any,
) -> pa.Check:
    """A Sluice check: named ``sluice.KIND`` with its limits as statistics, so the failure
    reads as Sluice's message; an empty column passes (the row minimum says it is short)."""
    return pa.Check(
        lambda column: True if column.empty else test(column),
        name=f"{SLUICE_CHECK}{kind}",
        error=title,
        ignore_na=ignore_na,
        statistics=limits,
    )


def _numbers(column: pd.Series) -> pd.Series:
    """The column as floats (nulls as NaN, which the element-wise checks ignore)."""
    return column.astype("float64")


def _column_checks(spec: ColumnSpec) -> list[pa.Check]:
    rate = spec.max_null_rate
    checks = [
        _check(
            "null_rate",
            f"at most {rate:.1%} null",
            lambda c: float(c.isna().mean()) <= rate,
            ignore_na=False,
            max_null_rate=rate,
        )
    ]
    if spec.kind == "categorical":
        if spec.categories is not None:
            allowed = list(spec.categories)
            checks.append(
                _check("categories", f"one of {allowed}", lambda c: c.astype(str).isin(allowed))
            )
        return checks
    checks += [
        _check(
            "numeric",
            "numeric",
            lambda c: pd.api.types.is_numeric_dtype(c) and not pd.api.types.is_bool_dtype(c),
        ),
        _check("finite", "finite", lambda c: np.isfinite(_numbers(c))),
    ]
    if spec.kind in ("integer", "binary"):
        checks.append(
            _check("whole", "whole numbers", lambda c: np.floor(_numbers(c)) == _numbers(c))
        )
    if spec.kind == "binary":
        checks.append(_check("binary", "0 or 1", lambda c: _numbers(c).isin((0.0, 1.0))))
    low, high = spec.minimum, spec.maximum
    if low is not None:
        checks.append(_check("minimum", f">= {low:g}", lambda c: _numbers(c) >= low, minimum=low))
    if high is not None:
        checks.append(
            _check("maximum", f"<= {high:g}", lambda c: _numbers(c) <= high, maximum=high)
        )
    return checks


def contract_schema(contract: DataContract, *, name: str = "data contract") -> pa.DataFrameSchema:
    """``contract`` as a pandera schema: one column per contract column (present, any dtype,
    its null rate, kind and range as checks), the row minimum and the label's rate as checks
    of the frame. Extra columns are allowed; a team may extend the schema as any other."""
    rows, label = contract.min_rows, contract.label
    low, high = contract.min_label_rate, contract.max_label_rate
    return pa.DataFrameSchema(
        {
            column: pa.Column(checks=_column_checks(spec), nullable=True, required=True)
            for column, spec in contract.columns.items()
        },
        checks=[
            pa.Check(
                lambda frame: len(frame) >= rows,
                name=f"{SLUICE_CHECK}min_rows",
                error=f"at least {rows} rows",
                statistics={"min_rows": rows},
            ),
            pa.Check(
                lambda frame: frame.empty or low <= float(frame[label].mean()) <= high,
                name=f"{SLUICE_CHECK}label_rate",
                error=f"label {label} rate in [{low:.2%}, {high:.2%}]",
                statistics={"label": label, "min_label_rate": low, "max_label_rate": high},
            ),
        ],
        name=name,
    )


def as_schema(contract: Contract) -> pa.DataFrameSchema:
    """The pandera schema ``contract`` runs as."""
    if isinstance(contract, DataContract):
        return contract_schema(contract)
    if isinstance(contract, pa.DataFrameSchema):
        return contract
    if isinstance(contract, type) and issubclass(contract, pa.DataFrameModel):
        return contract.to_schema()
    raise TypeError(
        f"a data contract is a DataContract, a pandera DataFrameSchema or a DataFrameModel "
        f"class, not {type(contract).__name__}"
    )


def _check_titles(schema: pa.DataFrameSchema) -> tuple[str, ...]:
    """What the schema checks, one line each: a column's presence, then its checks."""
    titles: list[str] = []
    for name, column in schema.columns.items():
        titles.append(f"column {name}")
        if column.dtype is not None:
            titles.append(f"column {name}: dtype {column.dtype}")
        if not column.nullable:
            titles.append(f"column {name}: no nulls")
        if column.unique:
            titles.append(f"column {name}: unique")
        titles += [f"column {name}: {_check_title(check)}" for check in column.checks]
    titles += [_check_title(check) for check in schema.checks]
    return tuple(titles)


def _check_title(check: pa.Check) -> str:
    """A check's error text or name; one that only warns says so (its failure passes)."""
    title = str(check.error or check.name)
    return f"{title} (warns only)" if check.raise_warning else title


def validate_frame(frame: pd.DataFrame, contract: Contract, *, source: str) -> ContractResult:
    """Check ``frame`` against ``contract`` (Sluice's or a team's pandera suite).

    Raises :class:`DataValidationError` naming every violation in one line; ``source`` names
    the dataset (a file path or "week 3 synthetic data") in it. Returns what passed. A schema
    that coerces or parses checks its own converted copy, which is not returned: train on
    ``schema.validate(frame)`` then, or convert the data before checking it.
    """
    schema = as_schema(contract)
    # Every check runs whatever PANDERA_VALIDATION_ENABLED or _DEPTH say, since the provenance
    # record says the data passed them; pandera's own concat of failure cases warns, not ours.
    with (
        config_context(
            validation_enabled=True,
            validation_depth=ValidationDepth.SCHEMA_AND_DATA,
            use_narwhals_backend=False,
        ),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", FutureWarning)
        try:
            schema.validate(frame, lazy=True)
        except SchemaErrors as failed:
            columns = [str(column) for column in schema.columns]
            problems = contract_problems(failed.schema_errors, frame, columns)
            suite = "the data contract"
            if schema.name not in (None, "data contract"):
                suite += f" {schema.name!r}"
            raise DataValidationError(
                f"{source} fails {suite}: {'; '.join(problems)}; fix the data and run again"
            ) from None
    return ContractResult(
        schema=str(schema.name or "data contract"), rows=len(frame), checks=_check_titles(schema)
    )
