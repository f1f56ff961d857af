"""Whether a data frame can be compared with a reference profile at all.

A frame that lacks any feature of the profile cannot be. The profile carries no model name, so
a frame that shares fewer than half of the profile's features is reported as probably belonging
to another model; extra columns (labels, ids, scores) are ignored. A numeric feature whose
column is not numeric (text in a number column) is refused too.
"""

from __future__ import annotations

import pandas as pd

from controller.errors import InputError
from controller.quality.data_profile import DataProfile

__all__ = ["check_columns"]


def _check_numeric(column: pd.Series, *, name: str, source: str) -> None:
    if pd.api.types.is_numeric_dtype(column.dtype):
        return
    present = column.dropna()
    bad = present[pd.to_numeric(present, errors="coerce").isna()]
    found = (
        f"non-numeric values in {bad.size:,} of {column.size:,} rows (first: {bad.iloc[0]!r})"
        if bad.size
        else f"a column of type {column.dtype}"
    )
    raise InputError(
        f"feature '{name}' is numeric in the reference profile but {source} has {found}; "
        "fix the data"
    )


def check_columns(profile: DataProfile, frame: pd.DataFrame, *, source: str, owner: str) -> None:
    """Refuse a frame the profile cannot be compared with: missing features or wrong types.

    ``owner`` names the version ("fraud-detector v3") and ``source`` the file, for the message.
    """
    expected = list(profile.features)
    missing = [name for name in expected if name not in frame.columns]
    if missing:
        shared = len(expected) - len(missing)
        if shared * 2 < len(expected):
            raise InputError(
                f"{source} has only {shared} of the {len(expected)} features of {owner}'s "
                f"reference profile (missing columns: {', '.join(missing)}): is it data for "
                "another model?"
            )
        raise InputError(f"{source} lacks feature columns of {owner}: {', '.join(missing)}")
    for name, feature in profile.features.items():
        if feature.kind == "numeric":
            _check_numeric(frame[name], name=name, source=source)
