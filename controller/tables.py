"""One reader for the data files users name on the command line: CSV or Parquet, by suffix.

``sluice drift --current FILE`` and ``sluice feedback FILE`` both take a table exported from
somewhere else, and both must refuse a file that is missing, empty, of an unknown type or
unreadable with one line that names it and says what to fix (exit 2), never with a pandas or
pyarrow traceback. The checks and the translation of the readers' errors live here, once; what
a message calls the file and what it asks the user to do stay each command's own words.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from controller.errors import InputError
from controller.limits import check_size

__all__ = ["read_table"]

_PARQUET_SUFFIXES = (".parquet", ".pq")


def _read_csv_as_text(path: Path) -> pd.DataFrame:
    # Cells stay text as written: "007" keeps its zeros and "NA" is a value, not a gap.
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def read_table(
    path: Path,
    *,
    name: str,
    fix: str,
    fix_missing: str | None = None,
    fix_empty: str | None = None,
    csv_as_text: bool = False,
    max_bytes: int | None = None,
) -> pd.DataFrame:
    """The table in ``path`` (``.csv``, ``.parquet`` or ``.pq``); an InputError otherwise.

    Messages call the file ``name`` ("current data") and end with ``fix`` ("fix --current"),
    or with ``fix_missing`` / ``fix_empty`` when the file does not exist / has no content.
    ``csv_as_text`` keeps every CSV cell a string, for callers that check the values themselves.
    A frame without rows is returned: whether that is an error is the caller's to say. A file
    over ``max_bytes`` is refused before it is read.
    """
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = _read_csv_as_text if csv_as_text else pd.read_csv
    elif suffix in _PARQUET_SUFFIXES:
        reader = pd.read_parquet
    else:
        raise InputError(
            f"{name} {path}: unknown file type {path.suffix or '(no suffix)'!r}; "
            "give a .csv or .parquet file"
        )
    empty = f"{name} {path} is empty; {fix_empty or fix}"
    try:
        size = path.stat().st_size
        if size == 0:
            raise InputError(empty)
        if max_bytes is not None:
            check_size(size, max_bytes, label=f"{name} {path}", kind=name, error=InputError)
        frame: pd.DataFrame = reader(path)
    except FileNotFoundError:
        raise InputError(f"{name} {path} does not exist; {fix_missing or fix}") from None
    except pd.errors.EmptyDataError:  # a CSV of blank lines: no header, no rows
        raise InputError(empty) from None
    except (OSError, ValueError) as exc:  # pandas' and pyarrow's parse errors are ValueErrors
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{name} {path} cannot be read ({first}); {fix}") from None
    return frame
