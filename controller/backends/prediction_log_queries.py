"""Reading the prediction log: a request's primary and shadow answers joined into pairs with
the late value of one named outcome, the values of an outcome for given requests, a graph's
members' answers with every outcome of their requests (the graph router's outcome series), and
the counts the feedback and status commands report. Each function
runs on a connection of :mod:`controller.backends.prediction_log_schema`."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from controller.outcome_scores import OutcomeAnswer
from controller.predictions import (
    Label,
    LoggedPrediction,
    OutcomeCounts,
    PredictionPair,
    Role,
    ServedOutcome,
)

__all__ = [
    "count_logged",
    "pair_from_row",
    "read_outcome_answers",
    "read_outcome_counts",
    "read_outcomes",
    "read_pairs",
    "read_served_outcomes",
    "read_served_revisions",
    "segment_text",
]

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

#: Primary answers of some models since a time, newest first, each joined with every outcome of
#: its request and the value of the segmenting outcome (NULL when it has not arrived). The
#: answers are found by the (model, role, time) index, each request's outcomes by the
#: (request_id, outcome) one; ``{marks}`` is one ``?`` per model.
_OUTCOME_ANSWERS = """
SELECT p.model, p.revision, p.output, f.outcome, f.value, g.value
FROM predictions AS p
JOIN feedback AS f ON f.request_id = p.request_id
LEFT JOIN feedback AS g ON g.request_id = p.request_id AND g.outcome = ?
WHERE p.model IN ({marks}) AND p.role = 'primary' AND p.time >= ?
ORDER BY p.time DESC, p.seq DESC
LIMIT ?
"""


#: A model's primary answers by some revisions since a time, oldest first, each with the value
#: of one outcome (NULL until it arrives): found by the (model, role, time) index, the outcome
#: by the (request_id, outcome) one; ``{marks}`` is one ``?`` per revision.
_SERVED_OUTCOMES = """
SELECT p.request_id, p.revision, p.time, f.value
FROM predictions AS p
LEFT JOIN feedback AS f ON f.request_id = p.request_id AND f.outcome = ?
WHERE p.model = ? AND p.role = 'primary' AND p.time >= ? AND p.revision IN ({marks})
ORDER BY p.time, p.seq
"""


def read_served_outcomes(
    connection: sqlite3.Connection,
    model: str,
    revisions: list[str],
    outcome: str,
    since: float,
) -> list[ServedOutcome]:
    """The primary answers of ``model`` by these distinct ``revisions`` sent at or after
    ``since``, oldest first, each with the value of ``outcome`` (None until it arrived)."""
    if not revisions:
        return []
    query = _SERVED_OUTCOMES.format(marks=",".join("?" * len(revisions)))  # only ?s
    rows = connection.execute(query, [outcome, model, since, *revisions])
    return [
        ServedOutcome(str(request_id), str(revision), float(sent), _label(value))
        for request_id, revision, sent, value in rows
    ]


#: The answers :data:`_SERVED_OUTCOMES` reads, counted per revision in one pass over the same
#: index (:class:`~controller.predictions.OutcomeCounts`): settled ones, those of them with a
#: number as outcome and with 1, and values a rate cannot count (an INTEGER, as another tool
#: may write, is a number); ``{marks}`` is one named parameter per revision.
_OUTCOME_COUNTS = """
SELECT p.revision,
       sum(p.time <= :settled),
       sum(p.time <= :settled AND typeof(f.value) IN ('real', 'integer')),
       sum(p.time <= :settled AND typeof(f.value) IN ('real', 'integer') AND f.value = 1),
       sum(typeof(f.value) = 'text'
           OR (typeof(f.value) IN ('real', 'integer') AND f.value NOT IN (0, 1)))
FROM predictions AS p
LEFT JOIN feedback AS f ON f.request_id = p.request_id AND f.outcome = :outcome
WHERE p.model = :model AND p.role = 'primary' AND p.time >= :since AND p.revision IN ({marks})
GROUP BY p.revision
"""


def read_outcome_counts(
    connection: sqlite3.Connection,
    model: str,
    revisions: list[str],
    outcome: str,
    since: float,
    settled: float,
) -> dict[str, OutcomeCounts]:
    """What :func:`read_served_outcomes` would return for these distinct ``revisions``,
    counted per revision in SQLite with cut-off ``settled``."""
    if not revisions:
        return {}
    names = {f"r{i}": revision for i, revision in enumerate(revisions)}
    query = _OUTCOME_COUNTS.format(marks=",".join(f":{name}" for name in names))  # only names
    arguments = {"model": model, "outcome": outcome, "since": since, "settled": settled, **names}
    return {
        str(revision): OutcomeCounts(int(settled_n), int(numbers), int(ones), int(other))
        for revision, settled_n, numbers, ones, other in connection.execute(query, arguments)
    }


#: The revisions of a model that answered clients since a time, by their first answer then:
#: found by the (model, role, time) index as the served outcomes are.
_SERVED_REVISIONS = """
SELECT revision, min(time) AS first
FROM predictions
WHERE model = ? AND role = 'primary' AND time >= ?
GROUP BY revision
ORDER BY first, revision
"""


def read_served_revisions(connection: sqlite3.Connection, model: str, since: float) -> list[str]:
    """The revisions of ``model`` with primary answers sent at or after ``since``, each once,
    by their first answer since then."""
    return [str(revision) for revision, _ in connection.execute(_SERVED_REVISIONS, (model, since))]


def read_outcome_answers(
    connection: sqlite3.Connection,
    models: list[str],
    since: float,
    segment: str | None,
    limit: int,
) -> list[OutcomeAnswer]:
    """The primary answers of these distinct ``models`` logged at or after ``since``, each once
    per outcome that arrived for its request, with the value of outcome ``segment`` as text
    ("" when it has not arrived, or ``segment`` is None); at most ``limit`` rows, the newest.
    Answers without any outcome yet are not read."""
    if not models:
        return []
    query = _OUTCOME_ANSWERS.format(marks=",".join("?" * len(models)))  # only ?s
    rows = connection.execute(query, [segment or "", *models, since, limit]).fetchall()
    found = []
    for model, revision, output, outcome, value, segment_value in rows:
        label = _label(value)
        if label is None:
            continue
        found.append(
            OutcomeAnswer(
                model=str(model), revision=str(revision), output=output, outcome=str(outcome),
                value=label, segment=segment_text(segment_value),
            )
        )  # fmt: skip
    return found


def segment_text(stored: str | float | None) -> str:
    """A segmenting outcome's value as a label value: a class name as is, a number as it is
    written (``1``, ``0.5``), none as ""."""
    if stored is None:
        return ""
    if isinstance(stored, str):
        return stored
    return f"{float(stored):g}"


def read_pairs(
    connection: sqlite3.Connection, arguments: Mapping[str, object]
) -> list[PredictionPair]:
    """The pairs the ``:model``, ``:revision``, ``:since``, ``:labelled``, ``:limit`` and
    ``:outcome`` ``arguments`` select, oldest first, each with that outcome's value:
    :meth:`controller.predictions.PairQuery.admits` in SQL, so that the join runs in SQLite,
    over its indexes."""
    return [pair_from_row(row) for row in connection.execute(_PAIRS, arguments).fetchall()]


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


def pair_from_row(row: tuple[Any, ...]) -> PredictionPair:
    """A pair from ``(request_id, stored label, 8 columns of the primary, 8 of the shadow)``
    (the columns of :data:`_PAIRS`; PostgreSQL's store reads the same)."""
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
