"""A data contract's failures, as Sluice says them: one short phrase per violation.

pandera reports each failed check with the values that failed it. Sluice's own checks (named
``sluice.KIND``, their limits in the check's statistics) read as they always have: "column
'amount' has 12 values below 0 (min -3.5)", "column 'country' is 2.0% null (at most 1.0%
allowed)". A team's own checks read by their ``error`` text (or their name) with the count and
a few of the values: "column 'bmi' fails 'bmi is never negative' in 3 rows (e.g. -0.2, -0.1)".

Order: missing columns, the row count, each column in schema order, then the frame's checks.
Within a column the first of its dtype, null rate and kind that fails is the only message
(the range of a column that is not numeric means nothing); the label's rate only counts when
nothing else failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaError, SchemaErrorReason

__all__ = ["SLUICE_CHECK", "contract_problems"]

#: The name prefix of the checks :func:`controller.quality.data_contract.contract_schema` makes.
SLUICE_CHECK = "sluice."
#: Sluice checks whose failure makes a column's other checks meaningless.
_GATING = ("null_rate", "numeric")
_EXAMPLES = 3
_CAUSE_CHARS = 120


def _sluice_kind(error: SchemaError) -> str | None:
    name = getattr(error.check, "name", None)
    if isinstance(name, str) and name.startswith(SLUICE_CHECK):
        return name[len(SLUICE_CHECK) :]
    return None


def _failed_values(error: SchemaError) -> pd.Series:
    cases = error.failure_cases
    if isinstance(cases, pd.DataFrame) and "failure_case" in cases:
        return cases["failure_case"]
    return pd.Series([cases])


def _statistic(error: SchemaError, key: str) -> Any:
    return getattr(error.check, "statistics", {})[key]


def _title(error: SchemaError) -> str:
    check = error.check
    return str(getattr(check, "error", None) or getattr(check, "name", None) or check)


def _sluice_message(kind: str, error: SchemaError, frame: pd.DataFrame) -> str:
    """Sluice's words for the failure of one of its own checks."""
    name = error.column_name
    if kind == "null_rate":
        rate = float(frame[name].isna().mean())
        allowed = float(_statistic(error, "max_null_rate"))
        if rate == 1.0:
            return f"column {name!r} is entirely null"
        return f"column {name!r} is {rate:.1%} null (at most {allowed:.1%} allowed)"
    if kind == "numeric":
        return f"column {name!r} must be numeric, found {frame[name].dtype}"
    if kind == "finite":
        return f"column {name!r} has infinite values"
    if kind == "whole":
        return f"column {name!r} must hold whole numbers"
    if kind == "binary":
        return f"column {name!r} must be 0 or 1"
    values = _failed_values(error)
    if kind == "minimum":
        values = values.astype(float)
        low = float(_statistic(error, "minimum"))
        return f"column {name!r} has {len(values)} values below {low:g} (min {values.min():g})"
    if kind == "maximum":
        values = values.astype(float)
        high = float(_statistic(error, "maximum"))
        return f"column {name!r} has {len(values)} values above {high:g} (max {values.max():g})"
    if kind == "categories":
        unknown = sorted({str(value) for value in values})
        return f"column {name!r} has unknown categories {unknown[:5]}"
    if kind == "min_rows":
        return f"{len(frame)} rows (at least {_statistic(error, 'min_rows')} needed)"
    # label_rate
    label = _statistic(error, "label")
    rate = float(frame[label].mean())
    low, high = _statistic(error, "min_label_rate"), _statistic(error, "max_label_rate")
    return f"label {label!r} rate {rate:.2%} outside [{low:.2%}, {high:.2%}]"


def _examples(values: pd.Series) -> str:
    shown = ", ".join(str(value) for value in values.head(_EXAMPLES))
    return f" (e.g. {shown})" if shown else ""


def _message(error: SchemaError) -> str:
    """A team's check, in the words it brought: its error text, how many rows, a few values."""
    name, reason = error.column_name, error.reason_code
    where = f"column {name!r}" if name is not None else "the frame"
    values = _failed_values(error)
    if reason is SchemaErrorReason.WRONG_DATATYPE:
        expected = getattr(error.schema, "dtype", None) or error.check
        return f"{where} has dtype {values.iloc[0]}, expected {expected}"
    if reason is SchemaErrorReason.SERIES_CONTAINS_NULLS:
        return f"{where} has {len(values)} null values"
    if reason is SchemaErrorReason.SERIES_CONTAINS_DUPLICATES:
        return f"{where} has {len(values)} duplicate values{_examples(values)}"
    if reason is SchemaErrorReason.CHECK_ERROR:
        cause = str(values.iloc[0]).splitlines()[0][:_CAUSE_CHARS]
        return f"{where}: check {_title(error)!r} could not run ({cause})"
    if reason is SchemaErrorReason.DATAFRAME_CHECK:
        cases = error.failure_cases
        if isinstance(cases, pd.DataFrame) and len(cases) and cases["index"].notna().any():
            return f"{where} fails {_title(error)!r} in {len(values)} rows{_examples(values)}"
        return f"{where} fails {_title(error)!r}"
    first = str(error).splitlines()[0] if str(error) else reason.name.lower()
    return f"{where}: {first}"


def _phrase(error: SchemaError, frame: pd.DataFrame) -> str:
    kind = _sluice_kind(error)
    if kind is None or error.reason_code is SchemaErrorReason.CHECK_ERROR:
        return _message(error)
    return _sluice_message(kind, error, frame)


def contract_problems(
    errors: Sequence[SchemaError], frame: pd.DataFrame, columns: Sequence[str]
) -> list[str]:
    """Every failure in ``errors`` (a lazy validation's ``schema_errors`` of ``frame``) as one
    phrase, in the module's order; ``columns`` are the schema's columns in its order."""
    missing: list[str] = []
    rows: list[str] = []
    by_column: dict[str, list[tuple[int, SchemaError]]] = {}
    frame_checks: list[tuple[int, SchemaError]] = []
    label_rate: list[str] = []
    for error in errors:
        if error.reason_code is SchemaErrorReason.COLUMN_NOT_IN_DATAFRAME:
            missing += [str(value) for value in _failed_values(error)]
            continue
        kind = _sluice_kind(error)
        order = error.check_index if isinstance(error.check_index, int) else -1
        if kind == "min_rows":
            rows.append(_phrase(error, frame))
        elif kind == "label_rate":
            label_rate.append(_phrase(error, frame))
        elif isinstance(error.schema, pa.Column) and str(error.column_name) in frame.columns:
            by_column.setdefault(str(error.column_name), []).append((order, error))
        else:
            frame_checks.append((order, error))
    problems = [f"missing columns {missing}"] if missing else []
    problems += rows
    for column in [name for name in columns if name in by_column]:
        for _, error in sorted(by_column[column], key=lambda pair: pair[0]):
            problems.append(_phrase(error, frame))
            if (
                _sluice_kind(error) in _GATING
                or error.reason_code is SchemaErrorReason.WRONG_DATATYPE
            ):
                break
    problems += [_phrase(error, frame) for _, error in sorted(frame_checks, key=lambda p: p[0])]
    return problems or label_rate
