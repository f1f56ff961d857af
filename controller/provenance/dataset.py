"""A dataset's identity: a digest of exactly the rows a model was trained or validated on.

The digest is the sha256 of a canonical text of the frame, so two tools (or two pandas
versions) that hold the same values in the same row order agree on it, whatever the index,
the column order or the file format the rows came from:

- **columns** sorted by name (a reordered file is the same data);
- a **header** line: the JSON array of ``[name, kind]`` pairs, where kind is ``int``,
  ``float``, ``bool``, ``datetime`` or ``str`` (any other dtype, categories included, is
  ``str``: its values as text);
- one **line per row**, in the frame's row order (the order trained on; the index is not
  part of it): the JSON array of the row's values, written compactly (``,`` with no spaces,
  UTF-8, not ASCII-escaped). Integers as integers; floats as Python's shortest round-trip
  ``repr`` (``0.1``, ``1.0``, ``-0.0``, ``1e-07``), infinities as ``Infinity`` and
  ``-Infinity``; booleans ``true``/``false``; datetimes as ISO 8601; strings as JSON strings;
  a missing value (NaN, None, NaT, pd.NA) as ``null``;
- lines joined by ``\\n``, no trailing newline.

When the data file is tracked by DVC, :func:`dvc_entry` reads DVC's own record of it (the
``.dvc`` file beside it, or the ``dvc.lock`` stage that outputs it): its md5 and its path in
the repository, so ``dvc get REPO PATH --rev COMMIT`` fetches the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:  # only a digest needs pandas: a command that reads a policy does not load it
    import pandas as pd

__all__ = [
    "DatasetRecord",
    "DvcEntry",
    "canonical_lines",
    "dataset_record",
    "dvc_entry",
    "frame_sha256",
]


@dataclass(frozen=True)
class DvcEntry:
    """DVC's record of a tracked file: its md5 and its path from the repository's root."""

    path: str
    md5: str
    size: int | None = None
    remote: str | None = None
    recorded_in: str = ""  # the .dvc or dvc.lock file it was read from


@dataclass(frozen=True)
class DatasetRecord:
    """One dataset a version was built from: ``name`` says its role (train, holdout)."""

    name: str
    digest: str  # "sha256:<hex>" of the canonical text
    rows: int
    columns: tuple[str, ...]
    source: str
    dvc: DvcEntry | None = None
    contract: Mapping[str, Any] = field(default_factory=dict)


def _kind(series: pd.Series) -> str:
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    return "str"


def _token(value: Any, kind: str, missing: tuple[object, ...]) -> str:
    if value is None or value is missing[0] or value is missing[1]:
        return "null"
    if isinstance(value, float) and math.isnan(value):
        return "null"
    if kind == "float":
        number = float(value)
        if math.isinf(number):
            return "Infinity" if number > 0 else "-Infinity"
        return repr(number)
    if kind == "int":
        return str(int(value))
    if kind == "bool":
        return "true" if bool(value) else "false"
    if kind == "datetime":
        import pandas as pd

        return json.dumps(pd.Timestamp(value).isoformat())
    return json.dumps(str(value), ensure_ascii=False)


def canonical_lines(frame: pd.DataFrame) -> Iterator[str]:
    """The canonical text of ``frame``, line by line (header first); see the module doc."""
    import pandas as pd

    missing = (pd.NaT, pd.NA)
    names = sorted(str(column) for column in frame.columns)
    by_name = {str(column): column for column in frame.columns}
    kinds = [_kind(frame[by_name[name]]) for name in names]
    yield json.dumps([[name, kind] for name, kind in zip(names, kinds, strict=True)])
    columns = [
        [_token(value, kind, missing) for value in frame[by_name[name]].tolist()]
        for name, kind in zip(names, kinds, strict=True)
    ]
    for row in zip(*columns, strict=True):
        yield "[" + ",".join(row) + "]"


def frame_sha256(frame: pd.DataFrame) -> str:
    """``sha256:<hex>`` of the frame's canonical text."""
    digest = hashlib.sha256()
    for index, line in enumerate(canonical_lines(frame)):
        digest.update((("\n" if index else "") + line).encode("utf-8"))
    return f"sha256:{digest.hexdigest()}"


def dataset_record(
    frame: pd.DataFrame,
    *,
    name: str,
    source: str,
    path: Path | None = None,
    contract: Mapping[str, Any] | None = None,
) -> DatasetRecord:
    """The record of one dataset: its digest, shape, where it came from and DVC's entry for
    ``path`` when DVC tracks it. ``contract`` is the data contract's result (rows, checks)."""
    return DatasetRecord(
        name=name,
        digest=frame_sha256(frame),
        rows=len(frame),
        columns=tuple(sorted(str(column) for column in frame.columns)),
        source=source,
        dvc=dvc_entry(path) if path is not None else None,
        contract=dict(contract or {}),
    )


def _outs(document: Any) -> list[Mapping[str, Any]]:
    outs = document.get("outs") if isinstance(document, Mapping) else None
    return [out for out in outs or [] if isinstance(out, Mapping)]


def _entry(out: Mapping[str, Any], path: str, recorded_in: Path) -> DvcEntry | None:
    md5 = out.get("md5")
    if not isinstance(md5, str):
        return None
    size = out.get("size")
    remote = out.get("remote")
    return DvcEntry(
        path=path,
        md5=md5,
        size=int(size) if isinstance(size, int) else None,
        remote=str(remote) if isinstance(remote, str) else None,
        recorded_in=str(recorded_in),
    )


def _repo_path(path: Path) -> str:
    """``path`` relative to the closest parent holding ``.dvc/`` or ``.git``, else as given."""
    for parent in path.parents:
        if (parent / ".dvc").is_dir() or (parent / ".git").exists():
            return path.relative_to(parent).as_posix()
    return path.as_posix()


def dvc_entry(path: Path) -> DvcEntry | None:
    """DVC's md5 and path of a data file, from ``PATH.dvc`` or the nearest ``dvc.lock`` that
    outputs it; None when DVC does not track it (or its record cannot be read)."""
    path = path.resolve()
    sidecar = path.with_name(path.name + ".dvc")
    if sidecar.is_file():
        document = _load(sidecar)
        for out in _outs(document):
            if out.get("path") == path.name:
                return _entry(out, _repo_path(path), sidecar)
    for parent in path.parents:
        lock = parent / "dvc.lock"
        if lock.is_file():
            stages = _load(lock)
            stages = stages.get("stages") if isinstance(stages, Mapping) else None
            for stage in (stages or {}).values():
                for out in _outs(stage):
                    if (parent / str(out.get("path", ""))).resolve() == path:
                        return _entry(out, _repo_path(path), lock)
        if (parent / ".dvc").is_dir():
            break
    return None


def _load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
