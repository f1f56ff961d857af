"""Every answer a model gave, primary or shadow, kept long enough to judge a challenger.

A shadow evaluation compares what the champion and the challenger answered to the same
requests, and, once fraud is confirmed days later, which of them was right. Metrics cannot
do that (they aggregate away the request), so the router hands each answer to a
:class:`~controller.ports.PredictionSink`, and the answers of one request share its request id.

The sink is called on the router's event loop, in front of every client request, so it must
return at once: :class:`SqlitePredictionLog` only puts the answer on a bounded queue (full:
the answer is dropped and counted, a client never waits for the log) and a writer thread
digests, serialises and inserts them in batches (both shared with the PostgreSQL log:
:mod:`controller.backends.prediction_log_writer`). Its file stays bounded: at most ``max_rows``
predictions (the oldest deleted in the transaction that adds new ones; SQLite reuses the
freed pages, so the file stops growing; the write-ahead log is cut back to 8 MiB after each
checkpoint) and outputs over ``max_output_bytes`` are not kept.
WAL journaling with one transaction per batch makes it safe across restarts: a killed process
loses at most the answers still on the queue, never the file; reopening resumes.

No ``sqlite3`` exception leaves this module: a file another process holds locked past the busy
timeout is a :class:`TransientError`, a damaged or foreign one a :class:`ConfigError`, each one
line naming the file and what to do.

Labels arrive late and out of band (``record_feedback``, ``record_outcomes``), each the value
of a named outcome of a request (``label`` unless named: a graph's request may have a
``regime`` and an ``up``), a number (0 or 1 for a binary model) or a class name
(``"volatile"``, for a classifier); readers join one outcome's values to the pairs of a
request's primary and shadow answers. A client that reuses an ``X-Request-Id`` keeps only its
latest request in the log (one row per request id, model and role), and a pair needs both answers
to the same inputs (equal digests), so a reused id never pairs two different requests.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from controller.backends.prediction_log_queries import (
    count_logged,
    read_outcome_answers,
    read_outcome_counts,
    read_outcomes,
    read_pairs,
    read_served_outcomes,
    read_served_revisions,
)
from controller.backends.prediction_log_schema import (
    INSERT_FEEDBACK,
    INSERT_PREDICTION,
    ROTATE,
    SCHEMA_VERSION,
    connect,
    ensure_schema,
    sqlite_errors,
)
from controller.backends.prediction_log_writer import (
    BatchWriter,
    QueuedPredictionWriter,
    answer_rows,
)
from controller.errors import ConfigError
from controller.outcome_scores import OutcomeAnswer
from controller.predictions import (
    Label,
    OutcomeCounts,
    OutcomeRecorder,
    PairQuery,
    PairReader,
    Prediction,
    PredictionPair,
    ServedOutcome,
    checked_outcome,
    checked_outcomes,
)

__all__ = ["SCHEMA_VERSION", "SqlitePredictionLog"]


class SqlitePredictionLog(QueuedPredictionWriter, PairReader, OutcomeRecorder):
    """The default prediction log: one SQLite file, written by a thread of its own.

    ``start()`` (or ``with``) opens the file and starts the writer; answers recorded before
    are kept on the queue until then. ``close()`` writes what is queued and stops.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_rows: int = 1_000_000,
        max_output_bytes: int = 4096,
        queue_size: int = 10_000,
        batch_size: int = 512,
        flush_interval: float = 0.05,
        busy_timeout: float = 10.0,
    ) -> None:
        if max_rows < 1:
            raise ConfigError("prediction log: max_rows, queue_size and batch_size must be >= 1")
        super().__init__(
            queue_size=queue_size, batch_size=batch_size, flush_interval=flush_interval
        )
        self.path = path
        self.max_rows = max_rows
        self.max_output_bytes = max_output_bytes
        #: Seconds a statement waits for another process's lock before giving up.
        self._busy_timeout = busy_timeout
        self._schema_ready = False

    # -- the writer ----------------------------------------------------------------------------

    def _prepare(self) -> None:
        self._ensure_schema()

    def _describe(self) -> str:
        return str(self.path)

    @contextlib.contextmanager
    def _batch_writer(self) -> Iterator[BatchWriter]:
        with contextlib.closing(self._connect()) as connection:

            def write(predictions: list[Prediction]) -> None:
                rows = answer_rows(predictions, self.max_output_bytes)
                with connection:  # one transaction: the batch and the rotation land together
                    connection.execute("BEGIN IMMEDIATE")
                    connection.executemany(INSERT_PREDICTION, rows)
                    connection.execute(ROTATE["predictions"], (self.max_rows,))

            yield write

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        ensure_schema(self.path, self._busy_timeout)
        self._schema_ready = True

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path, self._busy_timeout)

    # -- feedback and reading ----------------------------------------------------------------

    def record_outcomes(self, rows: Iterable[tuple[str, str, Label]]) -> int:
        """Store many ``(request_id, outcome, value)`` in one transaction, all or none; returns
        how many. A number is kept as a REAL and a class name as TEXT, and each is read back
        as it was given."""
        now = time.time()
        checked = [(*row, now) for row in checked_outcomes(rows)]
        self._ensure_schema()
        with (
            sqlite_errors(self.path),
            contextlib.closing(self._connect()) as connection,
            connection,
        ):
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(INSERT_FEEDBACK, checked)
            connection.execute(ROTATE["feedback"], (self.max_rows,))
        return len(checked)

    def outcomes(self, request_ids: Iterable[str], outcome: str) -> dict[str, Label]:
        """The value of ``outcome`` of those of ``request_ids`` that have one."""
        checked_outcome(outcome)
        unique = list(dict.fromkeys(request_ids))
        self._ensure_schema()
        with sqlite_errors(self.path), contextlib.closing(self._connect()) as connection:
            return read_outcomes(connection, unique, outcome)

    def count_logged(self, request_ids: Iterable[str]) -> int:
        """How many of these distinct request ids have an answer (either role) in the file."""
        unique = list(dict.fromkeys(request_ids))
        self._ensure_schema()
        with sqlite_errors(self.path), contextlib.closing(self._connect()) as connection:
            return count_logged(connection, unique)

    def select_pairs(self, query: PairQuery) -> list[PredictionPair]:
        """The pairs ``query`` selects, oldest first, with the value of its outcome (committed
        rows only)."""
        arguments = {
            "outcome": query.outcome,
            "model": query.model,
            "revision": query.shadow_revision,
            "since": query.since,
            "labelled": int(query.labelled),
            "limit": -1 if query.limit is None else query.limit,
        }
        self._ensure_schema()
        with sqlite_errors(self.path), contextlib.closing(self._connect()) as connection:
            return read_pairs(connection, arguments)

    def served_outcomes(
        self, model: str, revisions: Sequence[str], outcome: str, since: float
    ) -> list[ServedOutcome]:
        """The primary answers of ``model`` by any of ``revisions`` sent at or after ``since``,
        oldest first, each with the value of ``outcome`` (None until it arrived): what a KPI
        check counts. Read-only (committed rows), on a connection of its own."""
        checked_outcome(outcome)
        unique = list(dict.fromkeys(revisions))
        self._ensure_schema()
        with sqlite_errors(self.path), contextlib.closing(self._connect()) as connection:
            connection.execute("PRAGMA query_only = ON")
            return read_served_outcomes(connection, model, unique, outcome, since)

    def outcome_counts(
        self, model: str, revisions: Sequence[str], outcome: str, since: float, settled: float
    ) -> dict[str, OutcomeCounts]:
        """What :meth:`served_outcomes` would return, counted per revision in one aggregating
        query with cut-off ``settled``: what a rate KPI counts (read-only, on a connection of
        its own)."""
        checked_outcome(outcome)
        unique = list(dict.fromkeys(revisions))
        self._ensure_schema()
        with sqlite_errors(self.path), contextlib.closing(self._connect()) as connection:
            connection.execute("PRAGMA query_only = ON")
            return read_outcome_counts(connection, model, unique, outcome, since, settled)

    def served_revisions(self, model: str, since: float) -> list[str]:
        """The revisions of ``model`` with primary answers sent at or after ``since``, each
        once, by their first answer since then (read-only, on a connection of its own)."""
        self._ensure_schema()
        with sqlite_errors(self.path), contextlib.closing(self._connect()) as connection:
            connection.execute("PRAGMA query_only = ON")
            return read_served_revisions(connection, model, since)

    def outcome_answers(
        self,
        models: Iterable[str],
        since: float,
        *,
        segment: str | None = None,
        limit: int = 100_000,
    ) -> list[OutcomeAnswer]:
        """The primary answers of ``models`` logged at or after ``since`` (epoch seconds), one
        row per outcome that arrived for their request, each with the value of outcome
        ``segment`` of that request ("" until it arrives; always "" when ``segment`` is None):
        at most ``limit`` rows, the newest. Read-only (committed rows), on a connection of its
        own: call it off any event loop."""
        unique = list(dict.fromkeys(models))
        if segment is not None:
            checked_outcome(segment)
        self._ensure_schema()
        with sqlite_errors(self.path), contextlib.closing(self._connect()) as connection:
            connection.execute("PRAGMA query_only = ON")
            return read_outcome_answers(connection, unique, since, segment, limit)

    def row_count(self) -> int:
        """Predictions in the file now (both roles)."""
        self._ensure_schema()
        with sqlite_errors(self.path), contextlib.closing(self._connect()) as connection:
            count: int = connection.execute("SELECT count(*) FROM predictions").fetchone()[0]
        return count
