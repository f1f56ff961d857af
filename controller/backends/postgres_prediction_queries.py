"""The PostgreSQL prediction store's statements: the upserts several writers may run at once,
the deletions of rotation and retention, and the reads the SQLite log answers in
:mod:`controller.backends.prediction_log_queries`, over the tables of
:mod:`controller.backends.postgres_prediction_schema`.

Writers that upsert overlapping keys in different orders would deadlock, each holding a row the
other waits for. So a batch is deduplicated (the latest answer of a key wins, as one after
another would), numbered in the order it was recorded from the table's sequence (pairs are read
in that order), and then written in the order of its keys, the same for every writer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from controller.backends.prediction_log_queries import pair_from_row, segment_text
from controller.backends.prediction_log_writer import AnswerRow
from controller.outcome_scores import OutcomeAnswer
from controller.predictions import Label, OutcomeCounts, PairQuery, PredictionPair, ServedOutcome

if TYPE_CHECKING:
    import psycopg2.extensions as pg

__all__ = [
    "count_logged",
    "delete_before",
    "read_outcome_answers",
    "read_outcome_counts",
    "read_outcomes",
    "read_pairs",
    "read_served_outcomes",
    "read_served_revisions",
    "rotate",
    "upsert_answers",
    "upsert_outcomes",
]

_PREDICTION_KEY = "request_id, model, role"
_UPSERT_PREDICTIONS = """
INSERT INTO sluice_predictions (seq, request_id, time, model, version, revision, role,
    inputs_digest, output, latency_ms, status) VALUES %s
ON CONFLICT (request_id, model, role) DO UPDATE SET
    seq = EXCLUDED.seq, time = EXCLUDED.time, version = EXCLUDED.version,
    revision = EXCLUDED.revision, inputs_digest = EXCLUDED.inputs_digest,
    output = EXCLUDED.output, latency_ms = EXCLUDED.latency_ms, status = EXCLUDED.status
"""
_UPSERT_FEEDBACK = """
INSERT INTO sluice_feedback (seq, request_id, outcome, value_number, value_text, time)
VALUES %s
ON CONFLICT (request_id, outcome) DO UPDATE SET
    seq = EXCLUDED.seq, value_number = EXCLUDED.value_number,
    value_text = EXCLUDED.value_text, time = EXCLUDED.time
"""
_KEYS = {"sluice_predictions": _PREDICTION_KEY, "sluice_feedback": "request_id, outcome"}
_PAIRS = """
SELECT s.request_id, f.value_number, f.value_text,
       p.time, p.model, p.version, p.revision, p.inputs_digest, p.output, p.latency_ms, p.status,
       s.time, s.model, s.version, s.revision, s.inputs_digest, s.output, s.latency_ms, s.status
FROM sluice_predictions AS s
JOIN sluice_predictions AS p
  ON p.request_id = s.request_id AND p.model = s.model AND p.role = 'primary'
  AND p.inputs_digest = s.inputs_digest
LEFT JOIN sluice_feedback AS f ON f.request_id = s.request_id AND f.outcome = %(outcome)s
WHERE s.role = 'shadow'
"""
#: The filters of :meth:`PairQuery.admits` a query sets, each a constant fragment.
_FILTERS = {
    "model": " AND s.model = %(model)s",
    "revision": " AND s.revision = %(revision)s",
    "since": " AND p.time >= %(since)s",
}
_OUTCOME_ANSWERS = """
SELECT p.model, p.revision, p.output, f.outcome, f.value_number, f.value_text,
       g.value_number, g.value_text
FROM sluice_predictions AS p
JOIN sluice_feedback AS f ON f.request_id = p.request_id
LEFT JOIN sluice_feedback AS g ON g.request_id = p.request_id AND g.outcome = %s
WHERE p.model = ANY(%s) AND p.role = 'primary' AND p.time >= %s
ORDER BY p.time DESC, p.seq DESC
LIMIT %s
"""

#: A model's primary answers by some revisions since a time, oldest first, with one outcome's
#: value: the (model, revision, time) index finds them, (request_id, outcome) the outcome.
_SERVED_OUTCOMES = """
SELECT p.request_id, p.revision, p.time, f.value_number, f.value_text
FROM sluice_predictions AS p
LEFT JOIN sluice_feedback AS f ON f.request_id = p.request_id AND f.outcome = %s
WHERE p.model = %s AND p.role = 'primary' AND p.revision = ANY(%s) AND p.time >= %s
ORDER BY p.time, p.seq
"""

#: The answers :data:`_SERVED_OUTCOMES` reads, counted per revision in one pass
#: (:class:`~controller.predictions.OutcomeCounts`): settled ones, those of them with a number
#: as outcome and with 1, and values a rate cannot count (NaN too: it is not 0 or 1 here).
_OUTCOME_COUNTS = """
SELECT p.revision,
       count(*) FILTER (WHERE p.time <= %(settled)s),
       count(f.value_number) FILTER (WHERE p.time <= %(settled)s),
       count(*) FILTER (WHERE p.time <= %(settled)s AND f.value_number = 1),
       count(*) FILTER (WHERE f.value_text IS NOT NULL OR f.value_number NOT IN (0, 1))
FROM sluice_predictions AS p
LEFT JOIN sluice_feedback AS f ON f.request_id = p.request_id AND f.outcome = %(outcome)s
WHERE p.model = %(model)s AND p.role = 'primary' AND p.revision = ANY(%(revisions)s)
  AND p.time >= %(since)s
GROUP BY p.revision
"""

#: The revisions of a model that answered clients since a time, by their first answer then.
_SERVED_REVISIONS = """
SELECT revision, min(time) AS first
FROM sluice_predictions
WHERE model = %s AND role = 'primary' AND time >= %s
GROUP BY revision
ORDER BY first, revision
"""


def _numbered(cursor: pg.cursor, sequence: str, count: int) -> list[int]:
    """``count`` new numbers of ``sequence``, ascending."""
    cursor.execute("SELECT nextval(%s) FROM generate_series(1, %s)", (sequence, count))
    return sorted(int(row[0]) for row in cursor.fetchall())


def upsert_answers(cursor: pg.cursor, rows: list[AnswerRow], page_size: int) -> None:
    """Store answers, the latest of a request id, model and role winning, numbered in the
    order given and written in key order (no deadlock with another writer)."""
    from psycopg2.extras import execute_values

    latest: dict[tuple[str, str, str], AnswerRow] = {}
    for row in rows:  # a repeated key takes the place of its last answer: the newest number
        key = (row[0], row[2], row[5])  # request id, model, role
        latest.pop(key, None)
        latest[key] = row
    seqs = _numbered(cursor, "sluice_predictions_seq", len(latest))
    numbered = [(seq, *row) for seq, row in zip(seqs, latest.values(), strict=True)]
    numbered.sort(key=lambda row: (row[1], row[3], row[6]))
    execute_values(cursor, _UPSERT_PREDICTIONS, numbered, page_size=page_size)


def upsert_outcomes(
    cursor: pg.cursor, rows: Iterable[tuple[str, str, Label]], now: float, page_size: int
) -> None:
    """Store ``(request_id, outcome, value)``, the latest value of a request's outcome winning,
    a number in ``value_number`` and a class name in ``value_text``."""
    from psycopg2.extras import execute_values

    latest: dict[tuple[str, str], Label] = {}
    for request_id, outcome, value in rows:
        latest.pop((request_id, outcome), None)
        latest[(request_id, outcome)] = value
    seqs = _numbered(cursor, "sluice_feedback_seq", len(latest))
    numbered = [
        (seq, request_id, outcome, None if isinstance(value, str) else float(value),
         value if isinstance(value, str) else None, now)
        for seq, ((request_id, outcome), value) in zip(seqs, latest.items(), strict=True)
    ]  # fmt: skip
    numbered.sort(key=lambda row: (row[1], row[2]))
    execute_values(cursor, _UPSERT_FEEDBACK, numbered, page_size=page_size)


def rotate(cursor: pg.cursor, table: str, max_rows: int) -> None:
    """Delete all but the newest ``max_rows`` rows of ``table`` (by ``seq``)."""
    if table not in _KEYS:
        raise ValueError(f"not a table of the store: {table}")
    cursor.execute(
        f"DELETE FROM {table} WHERE seq <= (SELECT max(seq) FROM {table}) - %s",  # noqa: S608
        (max_rows,),
    )


def delete_before(cursor: pg.cursor, table: str, cutoff: float, batch: int) -> int:
    """Delete up to ``batch`` rows of ``table`` older than ``cutoff`` (epoch seconds), skipping
    rows another transaction holds; returns how many."""
    key = _KEYS[table]
    cursor.execute(
        f"DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table}"  # noqa: S608
        " WHERE time < %s LIMIT %s FOR UPDATE SKIP LOCKED)",
        (cutoff, batch),
    )
    return int(cursor.rowcount)


def _label(number: float | None, text: str | None) -> Label | None:
    if text is not None:
        return text
    return None if number is None else float(number)


def read_pairs(cursor: pg.cursor, query: PairQuery) -> list[PredictionPair]:
    """The pairs ``query`` selects, oldest first by the primary's ``seq``:
    :meth:`PairQuery.admits` in SQL, with only the filters it sets."""
    arguments: Mapping[str, object] = {
        "outcome": query.outcome, "model": query.model, "revision": query.shadow_revision,
        "since": query.since, "limit": query.limit,
    }  # fmt: skip
    sql = _PAIRS + "".join(
        fragment for name, fragment in _FILTERS.items() if arguments[name] is not None
    )
    if query.labelled:
        sql += " AND (f.value_number IS NOT NULL OR f.value_text IS NOT NULL)"
    sql += " ORDER BY p.seq"
    if query.limit is not None and query.limit >= 0:
        sql += " LIMIT %(limit)s"
    cursor.execute(sql, arguments)
    return [_pair(row) for row in cursor.fetchall()]


def _pair(row: tuple[Any, ...]) -> PredictionPair:
    return pair_from_row((row[0], _label(row[1], row[2]), *row[3:]))


def read_outcomes(cursor: pg.cursor, request_ids: list[str], outcome: str) -> dict[str, Label]:
    """The value of ``outcome`` of each of these distinct ``request_ids`` that has one."""
    if not request_ids:
        return {}
    cursor.execute(
        "SELECT request_id, value_number, value_text FROM sluice_feedback"
        " WHERE outcome = %s AND request_id = ANY(%s)",
        (outcome, request_ids),
    )
    found: dict[str, Label] = {}
    for request_id, number, text in cursor.fetchall():
        label = _label(number, text)
        if label is not None:
            found[str(request_id)] = label
    return found


def count_logged(cursor: pg.cursor, request_ids: list[str]) -> int:
    """How many of these distinct ``request_ids`` have an answer (either role)."""
    if not request_ids:
        return 0
    cursor.execute(
        "SELECT count(DISTINCT request_id) FROM sluice_predictions WHERE request_id = ANY(%s)",
        (request_ids,),
    )
    found = cursor.fetchone()
    return int(found[0]) if found else 0


def read_outcome_answers(
    cursor: pg.cursor, models: list[str], since: float, segment: str | None, limit: int
) -> list[OutcomeAnswer]:
    """The primary answers of these ``models`` at or after ``since``, each once per outcome
    that arrived for its request, with outcome ``segment``'s value as text; the newest
    ``limit`` (what :func:`controller.backends.prediction_log_queries.read_outcome_answers`
    reads from SQLite)."""
    if not models:
        return []
    cursor.execute(_OUTCOME_ANSWERS, (segment or "", models, since, limit))
    found = []
    for model, revision, output, outcome, number, text, seg_number, seg_text in cursor:
        label = _label(number, text)
        if label is None:
            continue
        found.append(
            OutcomeAnswer(
                model=str(model), revision=str(revision), output=output, outcome=str(outcome),
                value=label, segment=segment_text(_label(seg_number, seg_text)),
            )
        )  # fmt: skip
    return found


def read_served_revisions(cursor: pg.cursor, model: str, since: float) -> list[str]:
    """The revisions of ``model`` with primary answers at or after ``since``, by their first
    answer since then (as SQLite's log reads them)."""
    cursor.execute(_SERVED_REVISIONS, (model, since))
    return [str(revision) for revision, _ in cursor]


def read_served_outcomes(
    cursor: pg.cursor, model: str, revisions: list[str], outcome: str, since: float
) -> list[ServedOutcome]:
    """The primary answers of ``model`` by these ``revisions`` at or after ``since``, oldest
    first, each with the value of ``outcome`` (what
    :func:`controller.backends.prediction_log_queries.read_served_outcomes` reads from
    SQLite)."""
    if not revisions:
        return []
    cursor.execute(_SERVED_OUTCOMES, (outcome, model, revisions, since))
    return [
        ServedOutcome(str(request_id), str(revision), float(sent), _label(number, text))
        for request_id, revision, sent, number, text in cursor
    ]


def read_outcome_counts(
    cursor: pg.cursor,
    model: str,
    revisions: list[str],
    outcome: str,
    since: float,
    settled: float,
) -> dict[str, OutcomeCounts]:
    """What :func:`read_served_outcomes` would return, counted per revision in PostgreSQL with
    cut-off ``settled`` (what
    :func:`controller.backends.prediction_log_queries.read_outcome_counts` counts in SQLite)."""
    if not revisions:
        return {}
    arguments = {
        "model": model, "revisions": revisions, "outcome": outcome, "since": since,
        "settled": settled,
    }  # fmt: skip
    cursor.execute(_OUTCOME_COUNTS, arguments)
    return {
        str(revision): OutcomeCounts(int(settled_n), int(numbers), int(ones), int(other))
        for revision, settled_n, numbers, ones, other in cursor
    }
