"""Every answer a model gave, primary or shadow, kept long enough to judge a challenger.

A shadow evaluation compares what the champion and the challenger answered to the same
requests, and, once fraud is confirmed days later, which of them was right. Metrics cannot
do that (they aggregate away the request), so the router hands each answer to a
:class:`~controller.ports.PredictionSink`, and the answers of one request share its request id.

The sink is called on the router's event loop, in front of every client request, so it must
return at once: :class:`SqlitePredictionLog` only puts the answer on a bounded queue (full:
the answer is dropped and counted, a client never waits for the log) and a writer thread
digests, serialises and inserts them in batches. Its file stays bounded: at most ``max_rows``
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
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Self

from controller.backends.prediction_log_queries import (
    count_logged,
    read_outcome_answers,
    read_outcomes,
    read_pairs,
    read_served_outcomes,
)
from controller.backends.prediction_log_schema import (
    INSERT_FEEDBACK,
    INSERT_PREDICTION,
    ROTATE,
    SCHEMA_VERSION,
    connect,
    ensure_schema,
    output_text,
    sqlite_errors,
)
from controller.errors import ConfigError
from controller.outcome_scores import OutcomeAnswer
from controller.predictions import (
    DEFAULT_OUTCOME,
    Label,
    PairQuery,
    PairReader,
    Prediction,
    PredictionPair,
    ServedOutcome,
    checked_outcome,
    checked_outcomes,
    inputs_digest,
)

__all__ = ["SCHEMA_VERSION", "SqlitePredictionLog"]

_log = logging.getLogger("sluice.prediction_log")


class _Flush:
    """A marker on the queue: everything before it is committed when ``done`` is set."""

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class SqlitePredictionLog(PairReader):
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
        if max_rows < 1 or queue_size < 1 or batch_size < 1:
            raise ConfigError("prediction log: max_rows, queue_size and batch_size must be >= 1")
        self.path = path
        self.max_rows = max_rows
        self.max_output_bytes = max_output_bytes
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        #: Seconds a statement waits for another process's lock before giving up.
        self._busy_timeout = busy_timeout
        self._queue: queue.Queue[object] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._schema_ready = False
        #: Answers not logged because the queue was full, or their batch failed to commit.
        self.dropped = 0
        #: Answers committed since start.
        self.written = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Create or reopen the file (:class:`ConfigError` if it is not a log of this schema)
        and start the writer. Readers and feedback need no writer."""
        if self._thread is not None:
            return self
        self._ensure_schema()
        self._thread = threading.Thread(target=self._write_loop, name="prediction-log", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the writer (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(_STOP)
        thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        ensure_schema(self.path, self._busy_timeout)
        self._schema_ready = True

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path, self._busy_timeout)

    # -- writing -----------------------------------------------------------------------------

    def record(self, prediction: Prediction) -> None:
        """Queue one answer; when the queue is full it is dropped and counted."""
        try:
            self._queue.put_nowait(prediction)
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything recorded before this call is committed; False on timeout."""
        if self._thread is None:
            return False
        marker = _Flush()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.done.wait(timeout)

    def _batches(self) -> Iterator[tuple[list[Prediction], list[_Flush], bool]]:
        """Answers gathered for up to ``flush_interval`` after the first, markers, stop."""
        while True:
            items = [self._queue.get()]
            deadline = time.monotonic() + self._flush_interval
            # A flush or a stop ends the batch at once; otherwise wait for company briefly.
            while len(items) < self._batch_size and isinstance(items[-1], Prediction):
                try:
                    items.append(self._queue.get(timeout=max(deadline - time.monotonic(), 0)))
                except queue.Empty:
                    break
            predictions = [item for item in items if isinstance(item, Prediction)]
            markers = [item for item in items if isinstance(item, _Flush)]
            stop = any(item is _STOP for item in items)
            yield predictions, markers, stop
            if stop:
                return

    def _write_loop(self) -> None:
        with contextlib.closing(self._connect()) as connection:
            for predictions, markers, stop in self._batches():
                if predictions:
                    self._commit(connection, predictions)
                for marker in markers:
                    marker.done.set()
                if stop:
                    self._drain(connection)

    def _drain(self, connection: sqlite3.Connection) -> None:
        rest: list[Prediction] = []
        with contextlib.suppress(queue.Empty):
            while True:
                item = self._queue.get_nowait()
                if isinstance(item, Prediction):
                    rest.append(item)
                elif isinstance(item, _Flush):
                    item.done.set()
        if rest:
            self._commit(connection, rest)

    def _commit(self, connection: sqlite3.Connection, predictions: list[Prediction]) -> None:
        digests: dict[bytes, str] = {}  # a request's primary and shadow share its body
        try:
            rows = [
                (
                    p.request_id, p.time, p.model, p.version, p.revision, p.role,
                    digests.get(p.body) or digests.setdefault(p.body, inputs_digest(p.body)),
                    output_text(p.output, self.max_output_bytes), p.latency_ms, p.status,
                )
                for p in predictions
            ]  # fmt: skip
            with connection:  # one transaction: the batch and the rotation land together
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany(INSERT_PREDICTION, rows)
                connection.execute(ROTATE["predictions"], (self.max_rows,))
        except Exception as exc:  # the writer must outlive any batch, or the queue fills up
            _log.warning(
                "prediction log %s: %d answers not written: %s", self.path, len(predictions), exc
            )
            with self._lock:
                self.dropped += len(predictions)
            return
        with self._lock:
            self.written += len(predictions)

    # -- feedback and reading ----------------------------------------------------------------

    def record_feedback(
        self, request_id: str, label: Label, outcome: str = DEFAULT_OUTCOME
    ) -> None:
        """Store the value of one request's ``outcome``, a number or a class name (the latest
        value of a request's outcome wins)."""
        self.record_outcomes([(request_id, outcome, label)])

    def record_feedback_batch(
        self, labels: Iterable[tuple[str, Label]], outcome: str = DEFAULT_OUTCOME
    ) -> int:
        """Store many ``(request_id, label)`` of one ``outcome`` in one transaction; returns
        how many."""
        return self.record_outcomes((request_id, outcome, label) for request_id, label in labels)

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
