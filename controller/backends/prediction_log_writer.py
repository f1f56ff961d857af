"""The sink half every prediction log shares: a bounded queue, and a writer thread that commits
what the router handed over in batches.

The router calls :meth:`QueuedPredictionWriter.record` on its event loop in front of every
client request, so it must return at once: the answer is only put on a bounded queue (full: it
is dropped and counted, a client never waits for the log), and a thread of the log's own
digests, serialises and commits the answers in batches of up to ``batch_size``, gathered for
up to ``flush_interval`` after the first. A batch that cannot be written is dropped and counted
and the thread goes on, or the queue would fill up. Where a batch goes is the log's business
(:class:`~controller.backends.sqlite_prediction_log.SqlitePredictionLog`: one file;
:class:`~controller.backends.postgres_prediction_log.PostgresPredictionLog`: a database
several replicas share); this module does not know either.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Self

from controller.backends.prediction_log_schema import output_text
from controller.errors import ConfigError
from controller.predictions import Prediction, inputs_digest

__all__ = ["AnswerRow", "BatchWriter", "QueuedPredictionWriter", "answer_rows"]

_log = logging.getLogger("sluice.prediction_log")

#: One answer as a log stores it: request id, time, model, version, revision, role, inputs
#: digest, output (compact JSON or None), latency in ms, HTTP status.
AnswerRow = tuple[str, float, str, str, str, str, str, str | None, float, int]
#: Commits one batch of answers, or raises (the batch is then dropped and counted).
BatchWriter = Callable[[list[Prediction]], None]


def answer_rows(predictions: list[Prediction], max_output_bytes: int) -> list[AnswerRow]:
    """The rows of ``predictions`` in order; a request's primary and shadow share its body, so
    each body is digested once."""
    digests: dict[bytes, str] = {}
    return [
        (
            p.request_id, p.time, p.model, p.version, p.revision, p.role,
            digests.get(p.body) or digests.setdefault(p.body, inputs_digest(p.body)),
            output_text(p.output, max_output_bytes), p.latency_ms, p.status,
        )
        for p in predictions
    ]  # fmt: skip


class _Flush:
    """A marker on the queue: everything before it is committed when ``done`` is set."""

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class QueuedPredictionWriter(abc.ABC):
    """A :class:`~controller.ports.PredictionSink` that never blocks: ``start()`` (or
    ``with``) prepares the store and starts the writer; answers recorded before are kept on
    the queue until then. ``close()`` writes what is queued and stops."""

    def __init__(self, *, queue_size: int, batch_size: int, flush_interval: float) -> None:
        if queue_size < 1 or batch_size < 1:
            raise ConfigError("prediction log: queue_size and batch_size must be >= 1")
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._queue: queue.Queue[object] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: Answers not logged because the queue was full, or their batch failed to commit.
        self.dropped = 0
        #: Answers committed since start.
        self.written = 0

    # -- what a log says -----------------------------------------------------------------------

    @abc.abstractmethod
    def _prepare(self) -> None:
        """Create or check the store before the writer starts (errors of the tree)."""

    @abc.abstractmethod
    def _batch_writer(self) -> AbstractContextManager[BatchWriter]:
        """The writer thread's connection, as a function that commits one batch."""

    @abc.abstractmethod
    def _describe(self) -> str:
        """The log as messages name it (a path, or a URL without credentials)."""

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        """Prepare the store (:class:`ConfigError` if it is not a log of this schema) and start
        the writer. Readers and feedback need no writer."""
        if self._thread is not None:
            return self
        self._prepare()
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

    # -- writing -------------------------------------------------------------------------------

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
        with self._batch_writer() as write:
            for predictions, markers, stop in self._batches():
                if predictions:
                    self._commit(write, predictions)
                for marker in markers:
                    marker.done.set()
                if stop:
                    self._drain(write)

    def _drain(self, write: BatchWriter) -> None:
        rest: list[Prediction] = []
        with contextlib.suppress(queue.Empty):
            while True:
                item = self._queue.get_nowait()
                if isinstance(item, Prediction):
                    rest.append(item)
                elif isinstance(item, _Flush):
                    item.done.set()
        if rest:
            self._commit(write, rest)

    def _commit(self, write: BatchWriter, predictions: list[Prediction]) -> None:
        try:
            write(predictions)
        except Exception as exc:  # the writer must outlive any batch, or the queue fills up
            _log.warning(
                "prediction log %s: %d answers not written: %s",
                self._describe(), len(predictions), exc,
            )  # fmt: skip
            with self._lock:
                self.dropped += len(predictions)
            return
        with self._lock:
            self.written += len(predictions)
