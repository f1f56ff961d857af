"""Data contracts: what a training dataset must look like before anything is trained or logged.

A model trained on broken data is registered, looks fine in its metrics, and fails in
production. The contract is checked first, and a violation stops the run before MLflow sees
anything, so the registry only ever holds versions trained on data that met it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from controller.errors import DataValidationError

__all__ = ["ColumnSpec", "DataContract", "validate_frame"]


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


def _check_column(name: str, spec: ColumnSpec, column: pd.Series) -> list[str]:
    problems: list[str] = []
    null_rate = float(column.isna().mean())
    if null_rate > spec.max_null_rate:
        if null_rate == 1.0:
            problems.append(f"column {name!r} is entirely null")
        else:
            problems.append(
                f"column {name!r} is {null_rate:.1%} null"
                f" (at most {spec.max_null_rate:.1%} allowed)"
            )
        return problems
    values = column.dropna()
    if spec.kind in ("numeric", "integer", "binary"):
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            problems.append(f"column {name!r} must be numeric, found {column.dtype}")
            return problems
        array = values.to_numpy(dtype=np.float64)
        if not np.isfinite(array).all():
            problems.append(f"column {name!r} has infinite values")
        if spec.kind in ("integer", "binary") and not np.equal(np.floor(array), array).all():
            problems.append(f"column {name!r} must hold whole numbers")
        if spec.kind == "binary" and not np.isin(array, (0.0, 1.0)).all():
            problems.append(f"column {name!r} must be 0 or 1")
        if spec.minimum is not None and (array < spec.minimum).any():
            problems.append(
                f"column {name!r} has {(array < spec.minimum).sum()} values below {spec.minimum:g}"
                f" (min {array.min():g})"
            )
        if spec.maximum is not None and (array > spec.maximum).any():
            problems.append(
                f"column {name!r} has {(array > spec.maximum).sum()} values above {spec.maximum:g}"
                f" (max {array.max():g})"
            )
    elif spec.categories is not None:
        unknown = sorted(set(values.astype(str)) - set(spec.categories))
        if unknown:
            problems.append(f"column {name!r} has unknown categories {unknown[:5]}")
    return problems


def validate_frame(frame: pd.DataFrame, contract: DataContract, *, source: str) -> None:
    """Raise :class:`DataValidationError` naming every violation of ``contract`` in one line.

    ``source`` names the dataset (a file path or "week 3 synthetic data") in the message.
    """
    problems: list[str] = []
    missing = [name for name in contract.columns if name not in frame.columns]
    if missing:
        problems.append(f"missing columns {missing}")
    if len(frame) < contract.min_rows:
        problems.append(f"{len(frame)} rows (at least {contract.min_rows} needed)")
    for name, spec in contract.columns.items():
        if name in frame.columns and len(frame):
            problems.extend(_check_column(name, spec, frame[name]))
    if not problems and len(frame):
        rate = float(frame[contract.label].mean())
        if not contract.min_label_rate <= rate <= contract.max_label_rate:
            problems.append(
                f"label {contract.label!r} rate {rate:.2%} outside "
                f"[{contract.min_label_rate:.2%}, {contract.max_label_rate:.2%}]"
            )
    if problems:
        raise DataValidationError(
            f"{source} fails the data contract: {'; '.join(problems)}; fix the data and run again"
        )
