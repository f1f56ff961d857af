"""Reading the prediction log: a request's primary and shadow answers joined into pairs with
the late value of one named outcome, the values of an outcome for given requests, and the
counts the feedback and status commands report. Each function
runs on a connection of :mod:`controller.backends.prediction_log_schema`."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from controller.predictions import Label, LoggedPrediction, PredictionPair, Role

__all__ = ["count_logged", "read_outcomes", "read_pairs"]

_ID_CHUNK = 500
#: The columns of each side of a pair, in the order :func:`_logged` reads them.
_WIDTH = 8
_PAIRS = """
SELECT s.request_id, f.value,
       p.time, p.model, p.version, p.revision, p.inputs_digest, p.output, p.latency_ms, p.status,
       s.time, s.model, s.version, s.revision, s.inputs_digest, s.output, s.latency_ms, s.status
FROM predictions AS s
JOIN predictions AS p
  ON p.request_id = s.request_id AND p.model = s.model AND p.role = 'primary'
  AND p.inputs_digest = s.inputs_digest
LEFT JOIN feedback AS f ON f.request_id = s.request_id AND f.outcome = :outcome
WHERE s.role = 'shadow'
  AND (:model IS NULL OR s.model = :model)
  AND (:revision IS NULL OR s.revision = :revision)
  AND (:since IS NULL OR p.time >= :since)
  AND (:labelled = 0 OR f.value IS NOT NULL)
ORDER BY p.seq
LIMIT :limit
"""


def read_pairs(
    connection: sqlite3.Connection, arguments: Mapping[str, object]
) -> list[PredictionPair]:
    """The pairs the ``:model``, ``:revision``, ``:since``, ``:labelled``, ``:limit`` and
    ``:outcome`` ``arguments`` select, oldest first, each with that outcome's value:
    :meth:`controller.predictions.PairQuery.admits` in SQL, so that the join runs in SQLite,
    over its indexes."""
    return [_pair(row) for row in connection.execute(_PAIRS, arguments).fetchall()]


def read_outcomes(
    connection: sqlite3.Connection, request_ids: list[str], outcome: str
) -> dict[str, Label]:
    """The value of ``outcome`` of each of these distinct ``request_ids`` that has one."""
    found: dict[str, Label] = {}
    for start in range(0, len(request_ids), _ID_CHUNK):
        chunk = request_ids[start : start + _ID_CHUNK]
        marks = ",".join("?" * len(chunk))
        query = (
            "SELECT request_id, value FROM feedback"  # noqa: S608 (only ?s)
            f" WHERE outcome = ? AND request_id IN ({marks})"
        )
        for request_id, value in connection.execute(query, [outcome, *chunk]):
            label = _label(value)
            if label is not None:
                found[str(request_id)] = label
    return found


def count_logged(connection: sqlite3.Connection, request_ids: list[str]) -> int:
    """How many of these distinct ``request_ids`` have an answer (either role)."""
    count = 0
    # In chunks: SQLite caps the parameters of one statement (999 before 3.32).
    for start in range(0, len(request_ids), _ID_CHUNK):
        chunk = request_ids[start : start + _ID_CHUNK]
        marks = ",".join("?" * len(chunk))
        query = (
            "SELECT count(DISTINCT request_id) FROM predictions"  # noqa: S608 (only ?s)
            f" WHERE request_id IN ({marks})"
        )
        count += connection.execute(query, chunk).fetchone()[0]
    return count


def _logged(request_id: str, role: Role, columns: tuple[Any, ...]) -> LoggedPrediction:
    when, model, version, revision, digest, output, latency, status = columns
    return LoggedPrediction(
        request_id=request_id,
        time=float(when),
        model=model,
        version=version,
        revision=revision,
        role=role,
        inputs_digest=digest,
        output=None if output is None else json.loads(output),
        latency_ms=float(latency),
        status=int(status),
    )


def _pair(row: tuple[Any, ...]) -> PredictionPair:
    request_id, label = str(row[0]), row[1]
    primary = _logged(request_id, "primary", row[2 : 2 + _WIDTH])
    shadow = _logged(request_id, "shadow", row[2 + _WIDTH :])
    return PredictionPair(request_id, primary, shadow, _label(label))


def _label(stored: str | float | None) -> Label | None:
    """A label as it was given: a class name (TEXT) as text, a number (REAL; an INTEGER in a
    log another tool wrote) as a float."""
    if stored is None or isinstance(stored, str):
        return stored
    return float(stored)
