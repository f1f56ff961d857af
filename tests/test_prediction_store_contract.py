"""One contract, two implementations: SqlitePredictionLog on a file and the in-memory
MemoryPredictionStore pass the same behavioural tests, so a test that reads paired answers
from the fake learns what the real log would answer."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
from support.prediction_answers import answer, both

from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.errors import InputError, TransientError
from controller.ports import PredictionSink, PredictionStore
from controller.predictions import PredictionPair
from controller.testing import MemoryPredictionStore


class Log(PredictionStore, PredictionSink, Protocol):
    """What both implementations offer a test: the store, the sink, and a flush."""

    def flush(self, timeout: float = 10.0) -> bool: ...

    def row_count(self) -> int: ...

    def labelled_pairs(self) -> list[PredictionPair]: ...


@pytest.fixture(params=["sqlite", "memory"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Log]:
    """An empty prediction log, a file or dicts."""
    if request.param == "memory":
        yield MemoryPredictionStore(max_rows=20, max_output_bytes=64)
        return
    with SqlitePredictionLog(tmp_path / "log.db", max_rows=20, max_output_bytes=64) as sqlite:
        yield sqlite


def test_answers_pair_by_request_and_labels_join_whenever_they_arrive(log: Log) -> None:
    """A pair is a request both answered; a label may come before or after its answers, and
    the latest label of a request wins."""
    log.record_feedback("id-0", 1)
    for i in range(4):
        log.record(answer(f"id-{i}", score=i / 10))
        if i != 3:  # the shadow's copy of id-3 was lost: no pair
            log.record(answer(f"id-{i}", "shadow", score=i / 5))
    assert log.flush()
    assert log.record_feedback_batch([("id-2", 1), ("id-2", 0), ("id-3", 1)]) == 3
    pairs = log.pairs()
    assert [(p.request_id, p.label) for p in pairs] == [("id-0", 1), ("id-1", None), ("id-2", 0)]
    assert [p.request_id for p in log.pairs(labelled=True)] == ["id-0", "id-2"]
    assert log.labelled_pairs() == log.pairs(labelled=True)
    second = pairs[1]
    assert second.primary.output == {"predictions": [0.1]}
    assert second.shadow.output == {"predictions": [0.2]}
    assert (second.primary.role, second.shadow.role) == ("primary", "shadow")
    assert (second.primary.revision, second.shadow.revision) == ("r1", "r2")
    assert second.primary.inputs_digest == second.shadow.inputs_digest
    assert (second.primary.status, second.primary.latency_ms, second.primary.time) == (
        200, 3.0, 1000.0
    )  # fmt: skip


def test_pairs_filter_by_model_revision_time_and_limit(log: Log) -> None:
    """model and shadow_revision select the shadow's, since the primary's time; oldest first."""
    for i, (model, revision) in enumerate([("fraud", "r2"), ("fraud", "r3"), ("churn", "r2")]):
        for j in range(2):
            rid, when = f"{i}-{j}", 100.0 * i + j
            log.record(answer(rid, model=model, when=when))
            log.record(answer(rid, "shadow", model=model, revision=revision, when=when))
    assert log.flush()
    assert len(log.pairs(model="fraud")) == 4
    assert [p.request_id for p in log.pairs(model="fraud", shadow_revision="r3")] == ["1-0", "1-1"]
    assert [p.request_id for p in log.pairs(since=101.0)] == ["1-1", "2-0", "2-1"]
    assert [p.request_id for p in log.pairs(limit=2)] == ["0-0", "0-1"]
    assert log.pairs(model="absent") == []


def test_a_reused_request_id_keeps_the_latest_and_never_pairs_different_inputs(log: Log) -> None:
    """One answer per request id and role; a pair needs both answers to the same inputs."""
    log.record(answer("same", body=b'{"instances": [[1]]}', score=0.1))
    log.record(answer("same", "shadow", body=b'{"instances": [[1]]}', score=0.2))
    log.record(answer("same", body=b'{"instances": [[2]]}', score=0.3))
    assert log.flush()
    assert log.row_count() == 2
    assert log.pairs() == []
    log.record(answer("same", "shadow", body=b'{"instances":  [[2]]}', score=0.4))
    assert log.flush()
    (pair,) = log.pairs()  # the same JSON inputs, formatted otherwise, pair up
    assert pair.shadow.output == {"predictions": [0.4]}


def test_a_replaced_primary_answer_counts_as_the_newest(log: Log) -> None:
    """Pairs are ordered by when the primary's answer was logged: its latest answer."""
    both(log, "a")
    both(log, "b")
    log.record(answer("a"))
    assert log.flush()
    assert [p.request_id for p in log.pairs()] == ["b", "a"]


def test_outputs_that_are_not_json_or_too_large_are_not_kept(log: Log) -> None:
    """An answer that is not JSON, empty, or over max_output_bytes is logged without output."""
    log.record(answer("json", output=b'{"predictions": [1]}'))
    log.record(answer("json", "shadow", output=b"not json"))
    log.record(answer("big", output=b'{"p": "' + b"x" * 100 + b'"}'))
    log.record(answer("big", "shadow", output=b""))
    assert log.flush()
    json_pair, big_pair = log.pairs()
    assert json_pair.primary.output == {"predictions": [1]}
    assert json_pair.shadow.output is None
    assert (big_pair.primary.output, big_pair.shadow.output) == (None, None)


def test_rows_stay_within_max_rows_the_oldest_going_first(log: Log) -> None:
    """At most max_rows answers (20 here) are kept, and max_rows labels."""
    for i in range(15):
        both(log, f"id-{i:02}")
    assert log.flush()
    assert log.row_count() == 20
    assert [p.request_id for p in log.pairs()] == [f"id-{i:02}" for i in range(5, 15)]
    log.record_feedback_batch([(f"id-{i:02}", 1.0) for i in range(15)] * 2)
    assert log.record_feedback_batch([(f"x-{i}", 0.0) for i in range(10)]) == 10
    labelled = [p.request_id for p in log.pairs(labelled=True)]
    assert labelled == [f"id-{i:02}" for i in range(5, 15)]  # the 10 newest of them kept


def test_count_logged_counts_distinct_requests_with_any_answer(log: Log) -> None:
    """Either role counts; an id asked twice counts once."""
    both(log, "paired")
    log.record(answer("primary-only"))
    log.record(answer("shadow-only", "shadow"))
    assert log.flush()
    asked = ["paired", "paired", "primary-only", "shadow-only", "never"]
    assert log.count_logged(asked) == 3
    assert log.count_logged([]) == 0
    assert log.count_logged(f"n-{i}" for i in range(1200)) == 0  # beyond one statement's limit


@pytest.mark.parametrize("bad", [("", 1.0), ("id-1", float("nan")), ("id-1", float("inf"))])
def test_a_label_needs_an_id_and_a_finite_number_and_nothing_is_stored(
    log: Log, bad: tuple[str, float]
) -> None:
    both(log, "id-0")
    assert log.flush()
    with pytest.raises(InputError, match="needs an id and a number"):
        log.record_feedback_batch([("id-0", 1.0), bad])
    assert log.pairs(labelled=True) == []


def test_class_names_are_labels_read_back_as_text_beside_numbers(log: Log) -> None:
    """A classifier's label is its class's name: kept as text, read back as given, and the
    latest label of a request wins whichever kind it is; numbers stay floats."""
    for request_id in ("day-1", "day-2", "tx-1"):
        both(log, request_id)
    assert log.flush()
    assert log.record_feedback_batch([("day-1", "volatile"), ("day-2", 1.0), ("tx-1", 0)]) == 3
    log.record_feedback("day-2", "black_swan")
    pairs = log.pairs(labelled=True)
    assert [(p.request_id, p.label) for p in pairs] == [
        ("day-1", "volatile"), ("day-2", "black_swan"), ("tx-1", 0.0)
    ]  # fmt: skip
    assert [type(p.label) for p in pairs] == [str, str, float]


@pytest.mark.parametrize("bad", ["", " calm", "1", "nan", "x" * 101, "a\nb"])
def test_a_class_name_is_printable_text_that_is_not_a_number(log: Log, bad: str) -> None:
    both(log, "id-0")
    assert log.flush()
    with pytest.raises(InputError, match="a number or a class name"):
        log.record_feedback_batch([("id-0", "calm"), ("id-0", bad)])
    assert log.pairs(labelled=True) == []


def test_a_locked_log_refuses_labels_as_transient_and_still_answers_reads(
    log: Log, tmp_path: Path
) -> None:
    """Another process holding the write lock: writing labels is worth a retry; reads go on."""
    both(log, "id-0")
    assert log.flush()
    holder = None
    if isinstance(log, MemoryPredictionStore):
        log.locked = True
        locked: Log = log
    else:
        locked = SqlitePredictionLog(tmp_path / "log.db", busy_timeout=0.05)
        holder = sqlite3.connect(tmp_path / "log.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(TransientError, match="locked by another process"):
            locked.record_feedback("id-0", 1.0)
        assert [p.request_id for p in log.pairs()] == ["id-0"]
        assert log.count_logged(["id-0"]) == 1
    finally:
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()
