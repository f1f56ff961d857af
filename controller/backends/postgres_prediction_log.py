"""The production prediction store: every answer and late outcome in PostgreSQL, which several
``sluice serve`` replicas and routers write at once.

It behaves as :class:`~controller.backends.sqlite_prediction_log.SqlitePredictionLog` does
for every method (``tests/test_prediction_store_contract.py`` holds both, and the in-memory
fake, to one behaviour): the router's sink queues answers and a writer thread commits them in
batches (:mod:`controller.backends.prediction_log_writer`); one answer per request id, model
and role, the latest kept; one value per request id and named outcome, a number kept as a number
and a class name as text. What differs is what PostgreSQL is for:

- **Several writers.** Every write is an ``INSERT … ON CONFLICT DO UPDATE`` of deduplicated
  rows in key order (:mod:`controller.backends.postgres_prediction_queries`), so replicas
  writing the same request ids end with one row each, the latest, and never deadlock each
  other; a transaction that loses a race anyway (deadlock, serialization failure) is retried.
  The schema is created once under an advisory lock
  (:mod:`controller.backends.postgres_prediction_schema`).
- **Retention by time.** Rows older than ``retention`` (30 days unless set; None keeps
  everything) are deleted by a thread of the writer's process (and of ``sluice serve``'s,
  :meth:`PostgresPredictionLog.start_retention`) every ``retention_interval``, in
  batches of ``retention_batch`` rows, each its own short transaction that skips rows another
  writer holds, so retention never blocks the writers or holds a long lock. Answers are aged by
  the time the router sent the request, outcomes by the time they arrived. ``max_rows`` (None
  unless set) bounds each table by count as SQLite's log does, the oldest first.
- **Connections.** The writer holds one connection and opens another after losing it; every
  read and every label write opens its own (``sluice serve``'s feedback route, the judge), so
  nothing is shared between threads. Taking an event half reuses idle connections (a few are
  kept): ``/v1/events`` takes one per event.
- **Event halves.** After :meth:`PostgresPredictionLog.pair_events`, ``/v1/events``'s halves
  wait in the store, not in one process's memory, so any replica may take either half of a
  request (:mod:`controller.backends.postgres_event_halves`); the retention pass deletes the
  halves that waited their time to live in vain, every ``retention_interval`` or time to live,
  whichever is shorter, and reports how many.

No ``psycopg2`` exception leaves this module: an unreachable server is a
:class:`~controller.errors.TransientError` naming ``host:port``, a wrong user, password or
database a :class:`~controller.errors.ConfigError` naming the fix, and the URL's password
appears in neither.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from controller.backends.postgres_event_halves import delete_expired_halves, take_half
from controller.backends.postgres_prediction_queries import (
    count_logged,
    delete_before,
    read_outcome_answers,
    read_outcome_counts,
    read_outcomes,
    read_pairs,
    read_served_outcomes,
    read_served_revisions,
    rotate,
    upsert_answers,
    upsert_outcomes,
)
from controller.backends.postgres_prediction_schema import (
    RETRYABLE,
    SCHEMA_VERSION,
    StoreAddress,
    connect,
    ensure_schema,
    postgres_errors,
    store_address,
)
from controller.backends.prediction_log_writer import (
    AnswerRow,
    BatchWriter,
    QueuedPredictionWriter,
    answer_rows,
)
from controller.errors import ConfigError, TransientError
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
from controller.serve.event_pairing import HALF_TTL_SECONDS, InferenceEvent, Pairing

if TYPE_CHECKING:
    import psycopg2.extensions as pg

__all__ = [
    "DEFAULT_RETENTION_SECONDS",
    "SCHEMA_VERSION",
    "PostgresPredictionLog",
    "StoreEventHalves",
]

#: How long answers and outcomes are kept unless ``retention`` says otherwise: 30 days.
DEFAULT_RETENTION_SECONDS = 30 * 24 * 3600.0
_TABLES = ("sluice_predictions", "sluice_feedback")
#: Attempts of a transaction that lost a race to another writer (deadlock, serialization).
_ATTEMPTS = 3
#: Idle connections kept for taking event halves.
_IDLE_CONNECTIONS = 8
_T = TypeVar("_T")
_log = logging.getLogger("sluice.prediction_log")


def _in_transaction(connection: pg.connection, work: Callable[[pg.cursor], _T]) -> _T:
    """``work`` in one transaction, committed or rolled back, and again when it lost a race to
    another writer (a deadlock or a serialization failure), up to :data:`_ATTEMPTS` times."""
    import psycopg2

    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with connection, connection.cursor() as cursor:
                return work(cursor)
        except psycopg2.Error as exc:
            if exc.pgcode not in RETRYABLE or attempt == _ATTEMPTS:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


class PostgresPredictionLog(QueuedPredictionWriter, PairReader, OutcomeRecorder):
    """The prediction log in the PostgreSQL database at ``url``
    (``postgresql://user:password@host:5432/sluice``).

    ``start()`` (or ``with``) creates or checks the schema, starts the writer and, with a
    ``retention``, the thread that deletes expired rows; ``close()`` writes what is queued and
    stops both. Readers and label writes need neither.
    """

    def __init__(
        self,
        url: str,
        *,
        retention: float | None = DEFAULT_RETENTION_SECONDS,
        retention_interval: float = 600.0,
        retention_batch: int = 5000,
        max_rows: int | None = None,
        max_output_bytes: int = 4096,
        queue_size: int = 10_000,
        batch_size: int = 512,
        flush_interval: float = 0.05,
        lock_timeout: float = 10.0,
        connect_timeout: int = 5,
    ) -> None:
        if (max_rows is not None and max_rows < 1) or retention_batch < 1:
            raise ConfigError("prediction store: max_rows and retention_batch must be >= 1")
        if retention is not None and retention <= 0:
            raise ConfigError("prediction store: retention must be a positive number of seconds")
        super().__init__(
            queue_size=queue_size, batch_size=batch_size, flush_interval=flush_interval
        )
        self.address: StoreAddress = store_address(url)
        self.retention = retention
        self.retention_interval = retention_interval
        self.retention_batch = retention_batch
        self.max_rows = max_rows
        self.max_output_bytes = max_output_bytes
        self._lock_timeout = lock_timeout
        self._connect_timeout = connect_timeout
        self._schema_ready = False
        self._stop_retention = threading.Event()
        self._retention_thread: threading.Thread | None = None
        self._half_ttl: float | None = None
        self._on_halves_expired: Callable[[int], None] = lambda count: None
        self._idle: list[pg.connection] = []
        self._idle_lock = threading.Lock()

    @property
    def path(self) -> str:
        """The store as messages name it: ``postgresql://host:port/database``."""
        return str(self.address)

    # -- connections and the schema ------------------------------------------------------------

    def _connect(self) -> pg.connection:
        return connect(
            self.address, lock_timeout=self._lock_timeout, connect_timeout=self._connect_timeout
        )

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with contextlib.closing(self._connect()) as connection:
            ensure_schema(connection, self.address)
        self._schema_ready = True

    def _transaction(self, work: Callable[[pg.cursor], _T]) -> _T:
        """``work`` in one transaction on a connection of its own; errors of the tree."""
        self._ensure_schema()
        with postgres_errors(self.address), contextlib.closing(self._connect()) as connection:
            connection.autocommit = False
            return _in_transaction(connection, work)

    def _read(self, work: Callable[[pg.cursor], _T]) -> _T:
        self._ensure_schema()
        with postgres_errors(self.address), contextlib.closing(self._connect()) as connection:
            connection.set_session(readonly=True, autocommit=True)
            with connection.cursor() as cursor:
                return work(cursor)

    # -- the writer ----------------------------------------------------------------------------

    def _prepare(self) -> None:
        self._ensure_schema()
        self.start_retention()

    def start_retention(self) -> None:
        """Delete expired rows now and every ``retention_interval`` in a thread of its own,
        until :meth:`close` (idempotent; nothing without a ``retention``). ``start()`` runs it
        with the writer; ``sluice serve``, which takes labels but writes no answers, runs it
        alone."""
        if self._retention_thread is None and (
            self.retention is not None or self._half_ttl is not None
        ):
            self._stop_retention.clear()
            self._retention_thread = threading.Thread(
                target=self._retention_loop, name="prediction-retention", daemon=True
            )
            self._retention_thread.start()

    def _describe(self) -> str:
        return self.path

    @contextlib.contextmanager
    def _batch_writer(self) -> Iterator[BatchWriter]:
        held: list[pg.connection] = []

        def write(predictions: list[Prediction]) -> None:
            rows = answer_rows(predictions, self.max_output_bytes)
            if not held:
                held.append(self._connect())
                held[0].autocommit = False
            try:
                self._write_answers(held[0], rows)
            except TransientError:
                with contextlib.suppress(Exception):
                    held.pop().close()  # lost or wedged: the next batch opens another
                raise

        try:
            yield write
        finally:
            for connection in held:
                connection.close()

    def _write_answers(self, connection: pg.connection, rows: list[AnswerRow]) -> None:
        def write(cursor: pg.cursor) -> None:
            upsert_answers(cursor, rows, self._batch_size)
            if self.max_rows is not None:
                rotate(cursor, "sluice_predictions", self.max_rows)

        with postgres_errors(self.address):
            _in_transaction(connection, write)

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the writer and the retention (idempotent)."""
        self._stop_retention.set()
        retention, self._retention_thread = self._retention_thread, None
        super().close(timeout)
        if retention is not None:
            retention.join(timeout)
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    # -- event halves --------------------------------------------------------------------------

    def pair_events(
        self,
        *,
        ttl_seconds: float = HALF_TTL_SECONDS,
        on_expired: Callable[[int], None] | None = None,
    ) -> StoreEventHalves:
        """``/v1/events``'s halves, paired in the store from now on: each waits
        ``ttl_seconds``, and the retention pass (which ``start()`` runs) deletes and reports to
        ``on_expired`` those that waited in vain."""
        if ttl_seconds <= 0:
            raise ConfigError("prediction store: an event half's time to live must be positive")
        self._half_ttl = ttl_seconds
        if on_expired is not None:
            self._on_halves_expired = on_expired
        return StoreEventHalves(self)

    def take_half(self, event: InferenceEvent, *, now: float) -> Pairing:
        """Pair ``event`` with its other half waiting in the store and record the pair's
        answer, or keep it waiting, in one transaction
        (:func:`~controller.backends.postgres_event_halves.take_half`)."""
        ttl = self._half_ttl if self._half_ttl is not None else HALF_TTL_SECONDS
        self._ensure_schema()
        with postgres_errors(self.address), self._pooled() as connection:
            return _in_transaction(
                connection,
                lambda cursor: take_half(
                    cursor, event, now=now, ttl_seconds=ttl,
                    max_output_bytes=self.max_output_bytes, max_rows=self.max_rows,
                ),
            )  # fmt: skip

    @contextlib.contextmanager
    def _pooled(self) -> Iterator[pg.connection]:
        """An idle connection, or a new one; kept for the next caller unless it failed."""
        with self._idle_lock:
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            connection = self._connect()
            connection.autocommit = False
        try:
            yield connection
        except BaseException:
            connection.close()
            raise
        with self._idle_lock:
            if len(self._idle) < _IDLE_CONNECTIONS:
                self._idle.append(connection)
                return
        connection.close()

    # -- retention -----------------------------------------------------------------------------

    def delete_expired(self, now: float | None = None) -> int:
        """Delete the answers and outcomes older than ``retention`` before ``now`` (the clock
        unless given), and after :meth:`pair_events` the event halves that waited their time to
        live, a batch at a time; returns how many rows. Nothing without either."""
        return self._delete_expired(time.time() if now is None else now, None)

    def _delete_expired(self, now: float, stop: threading.Event | None) -> int:
        if self.retention is None and self._half_ttl is None:
            return 0
        self._ensure_schema()
        deleted = 0
        with postgres_errors(self.address), contextlib.closing(self._connect()) as connection:

            def batches(delete: Callable[[pg.cursor], int]) -> int:
                total, count = 0, self.retention_batch
                while count == self.retention_batch and not (stop and stop.is_set()):
                    with connection.cursor() as cursor:  # autocommit: a batch, a transaction
                        count = delete(cursor)
                    total += count
                return total

            if self.retention is not None:
                cutoff = now - self.retention
                for table in _TABLES:
                    deleted += batches(
                        functools.partial(
                            delete_before, table=table, cutoff=cutoff, batch=self.retention_batch
                        )
                    )
            if self._half_ttl is not None:
                cutoff = now - self._half_ttl
                expired = batches(
                    functools.partial(
                        delete_expired_halves, cutoff=cutoff, batch=self.retention_batch
                    )
                )
                if expired:
                    self._on_halves_expired(expired)
                deleted += expired
        return deleted

    def _retention_loop(self) -> None:
        while not self._stop_retention.is_set():
            try:
                deleted = self._delete_expired(time.time(), self._stop_retention)
            except Exception as exc:  # the loop must outlive a database that went away
                _log.warning("prediction store %s: retention did not run: %s", self.path, exc)
            else:
                if deleted:
                    _log.info("prediction store %s: %d expired rows deleted", self.path, deleted)
            interval = self.retention_interval
            if self._half_ttl is not None:
                interval = min(interval, self._half_ttl)
            self._stop_retention.wait(interval)

    # -- feedback and reading ------------------------------------------------------------------

    def record_outcomes(self, rows: Iterable[tuple[str, str, Label]]) -> int:
        """Store many ``(request_id, outcome, value)`` in one transaction, all or none; returns
        how many. A number is kept in ``value_number`` and a class name in ``value_text``, and
        each is read back as it was given."""
        checked = checked_outcomes(rows)
        if not checked:
            return 0
        now = time.time()

        def write(cursor: pg.cursor) -> None:
            upsert_outcomes(cursor, checked, now, self._batch_size)
            if self.max_rows is not None:
                rotate(cursor, "sluice_feedback", self.max_rows)

        self._transaction(write)
        return len(checked)

    def outcomes(self, request_ids: Iterable[str], outcome: str) -> dict[str, Label]:
        """The value of ``outcome`` of those of ``request_ids`` that have one."""
        checked_outcome(outcome)
        unique = list(dict.fromkeys(request_ids))
        return self._read(lambda cursor: read_outcomes(cursor, unique, outcome))

    def count_logged(self, request_ids: Iterable[str]) -> int:
        """How many of these distinct request ids have an answer (either role) in the store."""
        unique = list(dict.fromkeys(request_ids))
        return self._read(lambda cursor: count_logged(cursor, unique))

    def select_pairs(self, query: PairQuery) -> list[PredictionPair]:
        """The pairs ``query`` selects, oldest first, with the value of its outcome (committed
        rows only)."""
        return self._read(lambda cursor: read_pairs(cursor, query))

    def served_outcomes(
        self, model: str, revisions: Sequence[str], outcome: str, since: float
    ) -> list[ServedOutcome]:
        """The primary answers of ``model`` by any of ``revisions`` sent at or after ``since``,
        oldest first, each with the value of ``outcome`` (None until it arrived): what a KPI
        check counts (as SQLite's log reads them)."""
        checked_outcome(outcome)
        unique = list(dict.fromkeys(revisions))
        return self._read(
            lambda cursor: read_served_outcomes(cursor, model, unique, outcome, since)
        )

    def outcome_counts(
        self, model: str, revisions: Sequence[str], outcome: str, since: float, settled: float
    ) -> dict[str, OutcomeCounts]:
        """What :meth:`served_outcomes` would return, counted per revision in one aggregating
        query with cut-off ``settled``: what a rate KPI counts (as SQLite's log counts them)."""
        checked_outcome(outcome)
        unique = list(dict.fromkeys(revisions))
        return self._read(
            lambda cursor: read_outcome_counts(cursor, model, unique, outcome, since, settled)
        )

    def served_revisions(self, model: str, since: float) -> list[str]:
        """The revisions of ``model`` with primary answers sent at or after ``since``, each
        once, by their first answer since then (as SQLite's log reads them)."""
        return self._read(lambda cursor: read_served_revisions(cursor, model, since))

    def outcome_answers(
        self,
        models: Iterable[str],
        since: float,
        *,
        segment: str | None = None,
        limit: int = 100_000,
    ) -> list[OutcomeAnswer]:
        """The primary answers of ``models`` logged at or after ``since``, one row per outcome
        that arrived for their request, with the value of outcome ``segment`` ("" until it
        arrives): at most ``limit`` rows, the newest (as SQLite's log reads them)."""
        unique = list(dict.fromkeys(models))
        if segment is not None:
            checked_outcome(segment)
        return self._read(
            lambda cursor: read_outcome_answers(cursor, unique, since, segment, limit)
        )

    def row_count(self) -> int:
        """Answers in the store now (both roles)."""

        def count(cursor: pg.cursor) -> int:
            cursor.execute("SELECT count(*) FROM sluice_predictions")
            found = cursor.fetchone()
            return int(found[0]) if found else 0

        return self._read(count)


class StoreEventHalves:
    """:class:`~controller.serve.event_pairing.EventHalves` in the store: any replica takes
    either half (:meth:`PostgresPredictionLog.pair_events` makes one)."""

    def __init__(self, store: PostgresPredictionLog) -> None:
        self.store = store

    def add(self, event: InferenceEvent, *, now: float) -> Pairing:
        """Pair ``event`` in the store and record the answer, or keep it waiting there."""
        return self.store.take_half(event, now=now)
