"""Request rows for a model: from its logged input example, else shaped by its signature.

The smoke and the load test send rows the registry gives them; a model trained anywhere (not
only by Sluice's example code) must have some. MLflow writes input examples in several shapes
(pandas ``split`` orient, records, the serving formats ``dataframe_split``/``dataframe_records``,
``instances`` and ``inputs``); a model logged with a column signature and no example gets rows
of typed placeholders (zeros, empty strings), enough for a smoke to reach the model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["example_rows", "signature_columns", "signature_rows"]

#: A placeholder per MLflow column type (a row a signature-only model can be sent).
_PLACEHOLDERS: dict[str, object] = {
    "boolean": False,
    "integer": 0,
    "long": 0,
    "float": 0.0,
    "double": 0.0,
    "string": "",
    "binary": "",
    "datetime": "1970-01-01T00:00:00",
}


def example_rows(data: object, columns: list[str] | None = None) -> list[dict[str, object]]:
    """Rows (column -> value) of an MLflow input example; empty when it has no named columns.

    ``columns`` names the values of list rows (the signature's order) when the example has none.
    """
    if isinstance(data, Mapping):
        for key in ("dataframe_split", "dataframe_records", "instances", "inputs"):
            if key in data:
                return example_rows(data[key], columns)
        if "columns" in data and "data" in data:
            names = [str(c) for c in data["columns"]]
            return [dict(zip(names, row, strict=False)) for row in data["data"]]
        if data and all(isinstance(v, list) for v in data.values()):
            # Column-oriented: {"a": [1, 2], "b": [3, 4]}.
            names = [str(k) for k in data]
            return [
                dict(zip(names, row, strict=False)) for row in zip(*data.values(), strict=False)
            ]
        return [{str(k): v for k, v in data.items()}] if data else []
    if isinstance(data, list):
        if all(isinstance(row, Mapping) for row in data):
            return [{str(k): v for k, v in row.items()} for row in data]
        if columns and all(isinstance(row, list) and len(row) == len(columns) for row in data):
            return [dict(zip(columns, row, strict=True)) for row in data]
    return []


def signature_columns(mlmodel: Mapping[str, Any]) -> list[tuple[str, str]] | None:
    """The (name, MLflow type) input columns of an MLmodel's signature; None when it has no
    column signature (none at all, or tensors)."""
    signature = mlmodel.get("signature")
    if not isinstance(signature, Mapping) or not signature.get("inputs"):
        return None
    inputs = signature["inputs"]
    try:
        specs = json.loads(inputs) if isinstance(inputs, str) else inputs
    except ValueError:
        return None
    if not isinstance(specs, list) or not specs:
        return None
    columns = []
    for spec in specs:
        if not isinstance(spec, Mapping) or "name" not in spec or spec.get("type") == "tensor":
            return None
        columns.append((str(spec["name"]), str(spec.get("type", "string"))))
    return columns


def signature_rows(columns: list[tuple[str, str]], rows: int = 5) -> list[dict[str, object]]:
    """``rows`` identical rows of typed placeholders for a column signature."""
    row = {name: _PLACEHOLDERS.get(kind, "") for name, kind in columns}
    return [dict(row) for _ in range(rows)]
