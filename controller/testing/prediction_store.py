"""The prediction log in dicts: answers paired by request, late labels joined, as SQLite keeps them.

Why it exists: the shadow judge, ``sluice feedback`` and the shadow phase of a rollout read
paired answers and write labels through :class:`~controller.ports.PredictionStore`; a test of
them should not need a file, a writer thread and a flush. :class:`MemoryPredictionStore` is
that port and the router's :class:`~controller.ports.PredictionSink`, with the rules of
:class:`~controller.backends.sqlite_prediction_log.SqlitePredictionLog`:

- one answer per request id, model and role, the latest kept; a pair needs the primary's and
  the shadow's answers of one model to the same inputs (equal
  :func:`~controller.predictions.inputs_digest`);
- pairs come oldest first by when the primary's answer was logged, filtered by the shadow's
  model and revision, the primary's time (``since``), a label (the value of the query's
  named outcome, ``label`` unless it names another), and a ``limit``
  (:meth:`~controller.predictions.PairQuery.admits`, which SQLite's query says in SQL);
- outputs are kept as parsed JSON, None when empty, not JSON or over ``max_output_bytes``;
- at most ``max_rows`` answers and ``max_rows`` outcome values (the oldest go first);
- a value needs a request id, an outcome name and a finite number or a class name
  (:func:`~controller.predictions.checked_outcomes`, shared with SQLite's log), a batch is
  stored all or none, a value is read back as it was given (a number as a float, a class name
  as text), and the latest value of a request's outcome wins.

``tests/test_prediction_store_contract.py`` holds it, SQLite's log and PostgreSQL's store
(:class:`~controller.backends.postgres_prediction_log.PostgresPredictionLog`) to the same
behaviour. Fault: with :attr:`~MemoryPredictionStore.locked` set, writes of labels fail as a
log another process holds locked (:class:`~controller.errors.TransientError`); reads go on, as
SQLite's write-ahead log and PostgreSQL's row locks let them.

What it is not: a queue. :meth:`~MemoryPredictionStore.record` stores at once (the real log
commits from a writer thread; its tests wait with ``flush``), so nothing is ever dropped.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from controller.errors import TransientError
from controller.predictions import (
    Label,
    LoggedPrediction,
    OutcomeCounts,
    OutcomeRecorder,
    PairQuery,
    PairReader,
    Prediction,
    PredictionPair,
    ServedOutcome,
    checked_outcome,
    checked_outcomes,
    count_outcomes,
    inputs_digest,
)

if TYPE_CHECKING:
    from controller.ports import PredictionSink, PredictionStore

__all__ = ["MemoryPredictionStore"]

_K = TypeVar("_K")
_V = TypeVar("_V")


def _output(output: bytes, limit: int) -> object:
    """What the log keeps of a model's answer: its JSON, or None (empty, too large, not JSON)."""
    if not output or len(output) > limit:
        return None
    try:
        return json.loads(output)
    except (ValueError, RecursionError):
        return None


class MemoryPredictionStore(PairReader, OutcomeRecorder):
    """A prediction log in memory (thread-safe); ``path`` names it in error messages."""

    def __init__(
        self,
        *,
        max_rows: int = 1_000_000,
        max_output_bytes: int = 4096,
        path: str = "memory://predictions",
    ) -> None:
        self.max_rows = max_rows
        self.max_output_bytes = max_output_bytes
        self.path = path
        # Each table numbers its rows, as SQLite's AUTOINCREMENT does; a replaced row is new.
        self._answer_seq = itertools.count(1)
        self._label_seq = itertools.count(1)
        #: By request id, model and role.
        self._answers: dict[tuple[str, str, str], tuple[int, LoggedPrediction]] = {}
        self._labels: dict[tuple[str, str], tuple[int, Label]] = {}
        self._lock = threading.Lock()
        #: Label writes fail as a log another process holds locked past the busy timeout.
        self.locked = False

    # -- the sink ----------------------------------------------------------------------------

    def record(self, prediction: Prediction) -> None:
        """Keep one answer (replacing an earlier answer of its request id, model and role)."""
        p = prediction
        logged = LoggedPrediction(
            request_id=p.request_id, time=p.time, model=p.model, version=p.version,
            revision=p.revision, role=p.role, inputs_digest=inputs_digest(p.body),
            output=_output(p.output, self.max_output_bytes), latency_ms=p.latency_ms,
            status=p.status,
        )  # fmt: skip
        with self._lock:
            self._answers.pop((p.request_id, p.model, p.role), None)
            self._answers[(p.request_id, p.model, p.role)] = (next(self._answer_seq), logged)
            _rotate(self._answers, self.max_rows)

    def flush(self, timeout: float = 10.0) -> bool:
        """Everything recorded is kept already (the real log's writer may lag)."""
        return True

    def row_count(self) -> int:
        """Answers kept now (both roles)."""
        with self._lock:
            return len(self._answers)

    # -- the store ---------------------------------------------------------------------------

    def record_outcomes(self, rows: Iterable[tuple[str, str, Label]]) -> int:
        checked = checked_outcomes(rows)
        with self._lock:
            if self.locked:
                raise TransientError(
                    f"the prediction log {self.path} is locked by another process (database "
                    "is locked); try again when it is free"
                )
            for request_id, outcome, value in checked:
                self._labels.pop((request_id, outcome), None)  # a replaced value is the newest
                self._labels[(request_id, outcome)] = (next(self._label_seq), value)
            _rotate(self._labels, self.max_rows)
        return len(checked)

    def outcomes(self, request_ids: Iterable[str], outcome: str) -> dict[str, Label]:
        checked_outcome(outcome)
        with self._lock:
            labels = dict(self._labels)
        found: dict[str, Label] = {}
        for request_id in dict.fromkeys(request_ids):
            row = labels.get((request_id, outcome))
            if row is not None:
                found[request_id] = row[1]
        return found

    def count_logged(self, request_ids: Iterable[str]) -> int:
        with self._lock:
            ids = {request_id for request_id, _model, _role in self._answers}
        return sum(1 for request_id in dict.fromkeys(request_ids) if request_id in ids)

    def served_outcomes(
        self, model: str, revisions: Sequence[str], outcome: str, since: float
    ) -> list[ServedOutcome]:
        checked_outcome(outcome)
        wanted = set(revisions)
        with self._lock:
            answers = sorted(self._answers.values(), key=lambda row: (row[1].time, row[0]))
            labels = {key: value for key, (_seq, value) in self._labels.items()}
        return [
            ServedOutcome(a.request_id, a.revision, a.time, labels.get((a.request_id, outcome)))
            for _seq, a in answers
            if a.model == model and a.role == "primary" and a.revision in wanted
            and a.time >= since
        ]  # fmt: skip

    def outcome_counts(
        self, model: str, revisions: Sequence[str], outcome: str, since: float, settled: float
    ) -> dict[str, OutcomeCounts]:
        return count_outcomes(self.served_outcomes(model, revisions, outcome, since), settled)

    def served_revisions(self, model: str, since: float) -> list[str]:
        with self._lock:
            answers = sorted(self._answers.values(), key=lambda row: (row[1].time, row[1].revision))
        first = [
            a.revision
            for _seq, a in answers
            if a.model == model and a.role == "primary" and a.time >= since
        ]
        return list(dict.fromkeys(first))

    def select_pairs(self, query: PairQuery) -> list[PredictionPair]:
        with self._lock:
            answers = dict(self._answers)
            labels = {
                request_id: label
                for (request_id, outcome), (_seq, label) in self._labels.items()
                if outcome == query.outcome
            }
        found: list[tuple[int, PredictionPair]] = []
        for (request_id, model, role), (_seq, shadow) in answers.items():
            primary_row = answers.get((request_id, model, "primary"))
            if role != "shadow" or primary_row is None:
                continue
            seq, primary = primary_row
            label = labels.get(request_id)
            if query.admits(primary, shadow, label):
                found.append((seq, PredictionPair(request_id, primary, shadow, label)))
        found.sort(key=lambda item: item[0])
        limit = query.limit
        chosen = found if limit is None or limit < 0 else found[:limit]
        return [pair for _seq, pair in chosen]


def _rotate(rows: dict[_K, tuple[int, _V]], max_rows: int) -> None:
    """Drop what the log's rotation drops: every row more than ``max_rows`` behind the newest."""
    if not rows:
        return
    # A row is (re)inserted with the next number, so the dict's order is the numbers' order:
    # the newest is last, and what rotation drops is a run at the front (O(dropped), not O(n)).
    newest = next(reversed(rows.values()))[0]
    stale = []
    for key, (seq, _) in rows.items():
        if seq > newest - max_rows:
            break
        stale.append(key)
    for key in stale:
        del rows[key]


if TYPE_CHECKING:  # mypy holds the fake to both ports it stands in for
    _ports: tuple[type[PredictionStore], type[PredictionSink]] = (
        MemoryPredictionStore,
        MemoryPredictionStore,
    )
