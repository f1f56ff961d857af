"""One contract, three implementations: SqlitePredictionLog on a file, PostgresPredictionLog on
a real PostgreSQL server and the in-memory MemoryPredictionStore pass the same behavioural
tests, so a test that reads paired answers from the fake learns what either real log would
answer, and the shadow judge, the KPI judge and `sluice feedback` work the same on both stores.
The tests at the end hold SQLite's file alone: its migration from schema 2 and the index its
join reads (PostgreSQL's own: tests/test_postgres_prediction_log.py)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
from support.prediction_answers import answer, both

from controller.backends.postgres_prediction_log import PostgresPredictionLog
from controller.backends.prediction_log_queries import _PAIRS
from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.errors import ConfigError, InputError, TransientError
from controller.ports import PredictionSink, PredictionStore
from controller.predictions import OutcomeCounts, PredictionPair, count_outcomes
from controller.testing import MemoryPredictionStore


class Log(PredictionStore, PredictionSink, Protocol):
    """What both implementations offer a test: the store, the sink, and a flush."""

    def flush(self, timeout: float = 10.0) -> bool: ...

    def row_count(self) -> int: ...

    def labelled_pairs(self) -> list[PredictionPair]: ...


@pytest.fixture(params=["sqlite", "memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Log]:
    """An empty prediction log: a file, dicts, or a new database of the session's PostgreSQL
    (bounded by count as the others are; its retention by time is off, as the answers here
    are from 1970)."""
    if request.param == "memory":
        yield MemoryPredictionStore(max_rows=20, max_output_bytes=64)
        return
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        url = server.create_database(f"contract_{uuid.uuid4().hex[:12]}")
        with PostgresPredictionLog(
            url, max_rows=20, max_output_bytes=64, retention=None
        ) as postgres:
            yield postgres
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


def test_models_answering_one_request_id_each_keep_their_answers_and_pairs(log: Log) -> None:
    """Through a graph one request id is answered by the classifier and then the specialist it
    chose, each with a shadow: every model keeps its own answers and its own pair (keyed by
    request and role alone, the specialist's answer replaced the classifier's)."""
    for model in ("classifier", "specialist"):
        log.record(answer("day-1", model=model, score=0.1))
        log.record(answer("day-1", "shadow", model=model, score=0.2))
    log.record(answer("day-2", model="classifier"))
    log.record(answer("day-2", "shadow", model="specialist"))  # no pair: different models
    assert log.flush()
    log.record_feedback("day-1", "calm", outcome="regime")
    pairs = log.pairs(outcome="regime")
    assert [(p.request_id, p.primary.model, p.shadow.model) for p in pairs] == [
        ("day-1", "classifier", "classifier"), ("day-1", "specialist", "specialist")
    ]  # fmt: skip
    assert [p.label for p in log.pairs(model="classifier", outcome="regime")] == ["calm"]
    assert log.count_logged(["day-1", "day-2"]) == 2


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
    elif isinstance(log, PostgresPredictionLog):
        import psycopg2

        locked = PostgresPredictionLog(log.address.url, lock_timeout=0.05, retention=None)
        holder = psycopg2.connect(log.address.url)
        holder.cursor().execute("LOCK TABLE sluice_feedback IN EXCLUSIVE MODE")
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
            holder.rollback()
            holder.close()


# -- named outcomes ------------------------------------------------------------------------------


def test_a_request_has_several_named_outcomes_and_pairs_read_one(log: Log) -> None:
    """A graph's request id carries the regime classifier's truth (regime) and the specialist's
    (up); pairs read the outcome asked for, label by default, and the latest value of a
    request's outcome wins without touching its other outcomes."""
    for request_id in ("day-1", "day-2", "day-3"):
        both(log, request_id)
    assert log.flush()
    stored = log.record_outcomes(
        [
            ("day-1", "regime", "volatile"), ("day-1", "up", 1), ("day-2", "regime", "calm"),
            ("day-3", "up", 0.0), ("day-2", "regime", "black_swan"),
        ]
    )  # fmt: skip
    assert stored == 5
    regime = log.pairs(outcome="regime")
    assert [(p.request_id, p.label) for p in regime] == [
        ("day-1", "volatile"), ("day-2", "black_swan"), ("day-3", None)
    ]  # fmt: skip
    up = log.pairs(outcome="up", labelled=True)
    assert [(p.request_id, p.label) for p in up] == [("day-1", 1.0), ("day-3", 0.0)]
    assert [type(p.label) for p in up] == [float, float]
    assert log.pairs(labelled=True) == []  # nobody sent the default outcome
    log.record_feedback("day-2", 1, outcome="up")
    assert log.record_feedback_batch([("day-3", 1)], outcome="up") == 1
    log.record_feedback("day-3", 0)  # outcome label
    assert log.outcomes(["day-1", "day-2", "day-3", "day-9", "day-1"], "up") == {
        "day-1": 1.0, "day-2": 1.0, "day-3": 1.0
    }  # fmt: skip
    assert log.outcomes(["day-1", "day-2", "day-3"], "regime") == {
        "day-1": "volatile", "day-2": "black_swan"
    }  # fmt: skip
    assert log.outcomes(["day-3"], "label") == {"day-3": 0.0}
    assert log.outcomes([], "up") == {}
    assert log.outcomes(["day-1"], "click") == {}
    assert [(p.request_id, p.label) for p in log.pairs(labelled=True)] == [("day-3", 0.0)]


def test_outcomes_reads_ids_beyond_one_statements_limit(log: Log) -> None:
    """Values of more ids than SQLite takes in one statement are read in chunks."""
    assert log.record_outcomes((f"n-{i}", "click", float(i % 2)) for i in range(15)) == 15
    ids = [f"n-{i}" for i in range(1200)]
    assert log.outcomes(ids, "click") == {f"n-{i}": float(i % 2) for i in range(15)}


@pytest.mark.parametrize("bad", ["", "Regime", "1up", "up-day", "x" * 64, "ré"])
def test_a_batch_with_an_outcome_that_is_not_a_name_stores_nothing(log: Log, bad: str) -> None:
    """Outcome names are a lower-case letter and up to 62 lower-case letters, digits or _;
    one bad name refuses the whole batch."""
    both(log, "id-0")
    assert log.flush()
    with pytest.raises(InputError, match="is not an outcome name"):
        log.record_outcomes([("id-0", "up", 1.0), ("id-0", bad, 1.0)])
    with pytest.raises(InputError, match="is not an outcome name"):
        log.record_feedback_batch([("id-0", 1.0)], outcome=bad)
    with pytest.raises(InputError, match="is not an outcome name"):
        log.pairs(outcome=bad)
    with pytest.raises(InputError, match="is not an outcome name"):
        log.outcomes(["id-0"], bad)
    assert log.outcomes(["id-0"], "up") == {}
    assert log.pairs(outcome="up", labelled=True) == []


def test_a_bad_value_of_any_outcome_refuses_the_whole_batch(log: Log) -> None:
    both(log, "id-0")
    assert log.flush()
    with pytest.raises(InputError, match="a number or a class name"):
        log.record_outcomes([("id-0", "regime", "calm"), ("id-0", "up", " 1")])
    with pytest.raises(InputError, match="needs an id and a number"):
        log.record_outcomes([("id-0", "regime", "calm"), ("", "up", 1.0)])
    assert log.outcomes(["id-0"], "regime") == {}


def test_rotation_counts_every_outcome_value(log: Log) -> None:
    """max_rows (20) bounds the values kept, whichever outcome they are of: the oldest go."""
    rows = [(f"id-{i:02}", outcome, 1.0) for i in range(15) for outcome in ("regime", "up")]
    assert log.record_outcomes(rows) == 30
    ids = [f"id-{i:02}" for i in range(15)]
    assert sorted(log.outcomes(ids, "regime")) == ids[5:]
    assert sorted(log.outcomes(ids, "up")) == ids[5:]


# -- SQLite's file ---------------------------------------------------------------------------------

#: The feedback table as schema 2 declared it (one label per request id).
_SCHEMA_2_FEEDBACK = """
ALTER TABLE predictions RENAME TO predictions_3;
CREATE TABLE predictions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    time REAL NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    revision TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('primary', 'shadow')),
    inputs_digest TEXT NOT NULL,
    output TEXT,
    latency_ms REAL NOT NULL,
    status INTEGER NOT NULL,
    UNIQUE (request_id, role)
);
INSERT INTO predictions SELECT * FROM predictions_3;
DROP TABLE predictions_3;
DROP TABLE feedback;
CREATE TABLE feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    label NOT NULL CHECK (typeof(label) IN ('real', 'text')),
    time REAL NOT NULL
);
INSERT INTO feedback (seq, request_id, label, time) VALUES
    (4, 'day-1', 'volatile', 1.0), (7, 'tx-1', 1.0, 2.0), (9, 'tx-2', 0.0, 3.0);
PRAGMA user_version = 2;
"""


def test_a_schema_2_log_is_migrated_with_its_labels_as_outcome_label(tmp_path: Path) -> None:
    """A schema-2 file (one label per request) opens as schema 3: each label is outcome
    label with its seq (rotation reads it), class names stay text, numbers floats, the answers
    stay, new values number after the old, and a second opening changes nothing."""
    path = tmp_path / "log.db"
    with SqlitePredictionLog(path) as log:
        for request_id in ("day-1", "tx-1", "tx-2"):
            both(log, request_id)
        assert log.flush()
    with sqlite3.connect(path) as connection:
        connection.executescript(_SCHEMA_2_FEEDBACK)
    log = SqlitePredictionLog(path, max_rows=3)
    labelled = [(p.request_id, p.label) for p in log.pairs(labelled=True)]
    assert labelled == [("day-1", "volatile"), ("tx-1", 1.0), ("tx-2", 0.0)]
    assert log.outcomes(["day-1", "tx-1"], "label") == {"day-1": "volatile", "tx-1": 1.0}
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (3,)
        rows = connection.execute("SELECT seq, request_id, outcome, value, time FROM feedback")
        assert sorted(rows.fetchall()) == [
            (4, "day-1", "label", "volatile", 1.0), (7, "tx-1", "label", 1.0, 2.0),
            (9, "tx-2", "label", 0.0, 3.0),
        ]  # fmt: skip
        tables = {n for (n,) in connection.execute("SELECT name FROM sqlite_master")}
        assert not {"feedback_before_3", "predictions_before_3"} & tables
        assert connection.execute("SELECT count(*) FROM predictions").fetchone() == (6,)
    # seq 10: rotation drops the rows more than max_rows (3) behind it, seq 4 and 7.
    log.record_feedback("day-1", "calm", outcome="regime")
    with sqlite3.connect(path) as connection:
        seqs = connection.execute("SELECT seq, request_id, outcome FROM feedback ORDER BY seq")
        assert seqs.fetchall() == [(9, "tx-2", "label"), (10, "day-1", "regime")]
    SqlitePredictionLog(path).start().close()  # reopening a migrated log changes nothing
    assert log.outcomes(["day-1"], "regime") == {"day-1": "calm"}
    assert [(p.request_id, p.label) for p in log.pairs(labelled=True)] == [("tx-2", 0.0)]
    # Answers are keyed by model now: another model's answers to tx-2 keep the first's.
    with SqlitePredictionLog(path) as writer:
        both(writer, "tx-2", model="regime")
        assert writer.flush()
        pairs = [p.primary.model for p in writer.pairs() if p.request_id == "tx-2"]
    assert pairs == ["fraud", "regime"]


def test_a_failed_migration_leaves_the_schema_2_file_as_it_was(tmp_path: Path) -> None:
    """The migration is one transaction: a file it cannot finish stays schema 2, labels
    and all."""
    path = tmp_path / "log.db"
    SqlitePredictionLog(path).start().close()
    with sqlite3.connect(path) as connection:
        connection.executescript(_SCHEMA_2_FEEDBACK)
        # A leftover of the name the migration renames to makes its first statement fail.
        connection.execute("CREATE TABLE feedback_before_3 (x)")
    with pytest.raises(ConfigError, match="cannot be used"):
        SqlitePredictionLog(path).pairs()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (2,)
        assert connection.execute("SELECT count(*) FROM feedback").fetchone() == (3,)


def test_the_judges_join_reads_feedback_through_its_index(tmp_path: Path) -> None:
    """The pairs' join finds a request's outcome by the (request_id, outcome) index, not by
    scanning the feedback table."""
    log = SqlitePredictionLog(tmp_path / "log.db")
    log.row_count()
    arguments = {
        "model": None, "revision": None, "since": None, "labelled": 1, "limit": -1,
        "outcome": "up",
    }  # fmt: skip
    with sqlite3.connect(log.path) as connection:
        plan = connection.execute("EXPLAIN QUERY PLAN " + _PAIRS, arguments).fetchall()
    steps = " | ".join(str(row[-1]) for row in plan)
    assert "f USING INDEX sqlite_autoindex_feedback_1 (request_id=? AND outcome=?)" in steps
    assert "SCAN f" not in steps


def test_served_outcomes_are_one_models_client_answers_by_revision_with_one_outcome(
    log: Log,
) -> None:
    """What a KPI check reads: the answers clients got (primary, not shadow copies) from the
    named revisions of one model since a time, oldest first, each with the value of one
    outcome or None until it arrives."""
    log.record(answer("old", revision="r1", when=900.0))
    log.record(answer("a", revision="r1", when=1001.0))
    log.record(answer("b", revision="r9", when=1002.0))
    log.record(answer("c", revision="r1", when=1000.0))
    log.record(answer("a", "shadow", revision="r9", when=1001.0))
    log.record(answer("d", model="other", revision="r1", when=1003.0))
    log.record(answer("e", revision="r7", when=1004.0))
    assert log.flush()
    log.record_outcomes([("a", "click", 1), ("b", "click", 0), ("a", "revenue", 12.5)])
    log.record_outcomes([("c", "label", 1), ("d", "click", 1)])
    served = log.served_outcomes("fraud", ["r1", "r9"], "click", 1000.0)
    assert [(s.request_id, s.revision, s.time, s.value) for s in served] == [
        ("c", "r1", 1000.0, None),
        ("a", "r1", 1001.0, 1),
        ("b", "r9", 1002.0, 0),
    ]
    assert [s.value for s in log.served_outcomes("fraud", ["r1"], "revenue", 0)] == [
        None, None, 12.5,
    ]  # fmt: skip
    assert log.served_outcomes("fraud", [], "click", 0) == []
    with pytest.raises(InputError, match="not an outcome name"):
        log.served_outcomes("fraud", ["r1"], "Click", 0)


def test_outcome_counts_are_the_served_rows_counted_in_the_store(log: Log) -> None:
    """What a rate KPI reads: the rows ``served_outcomes`` returns, counted per revision by one
    aggregating query, equal to the same rows counted in Python (``count_outcomes``): settled
    answers (at or before the cut-off), those with a number as outcome, those with 1, and the
    values in the whole window a rate cannot count (a class name, 2.5), settled or not."""
    since, settled = 1000.0, 1010.0
    for request_id, revision, when in [
        ("c", "r1", 1000.0), ("a", "r1", 1001.0), ("f", "r1", 1005.0), ("h", "r1", 1010.0),
        ("g", "r1", 1020.0), ("b", "r9", 1002.0), ("j", "r9", 1003.0), ("i", "r9", 1015.0),
        ("old", "r1", 900.0), ("e", "r7", 1004.0),
    ]:  # fmt: skip
        log.record(answer(request_id, revision=revision, when=when))
    log.record(answer("a", "shadow", revision="r9", when=1001.0))
    log.record(answer("d", model="other", revision="r1", when=1003.0))
    assert log.flush()
    log.record_outcomes(
        [("a", "click", 1), ("f", "click", 0), ("h", "click", 1), ("g", "click", 1),
         ("b", "click", 0), ("j", "click", 2.5), ("i", "click", "yes"), ("old", "click", 1),
         ("e", "click", 1), ("d", "click", 1), ("c", "revenue", 12.5)]
    )  # fmt: skip
    counts = log.outcome_counts("fraud", ["r1", "r9", "r1"], "click", since, settled)
    assert counts == {
        "r1": OutcomeCounts(settled=4, with_outcome=3, positive=2, other=0),
        "r9": OutcomeCounts(settled=2, with_outcome=2, positive=0, other=2),
    }
    rows = log.served_outcomes("fraud", ["r1", "r9"], "click", since)
    assert counts == count_outcomes(rows, settled)
    assert log.outcome_counts("fraud", ["r1"], "revenue", since, settled) == {
        "r1": OutcomeCounts(settled=4, with_outcome=1, positive=0, other=1),
    }
    assert log.outcome_counts("fraud", ["r1", "r9"], "click", since, 0.0) == {
        "r1": OutcomeCounts(0, 0, 0, 0), "r9": OutcomeCounts(0, 0, 0, 2),
    }  # fmt: skip
    assert log.outcome_counts("fraud", [], "click", 0, 0) == {}
    assert log.outcome_counts("absent", ["r1"], "click", 0, 0) == {}
    with pytest.raises(InputError, match="not an outcome name"):
        log.outcome_counts("fraud", ["r1"], "Click", 0, 0)


def test_served_revisions_are_the_revisions_that_answered_clients_since_a_time(log: Log) -> None:
    """What the KPI series read before the answers: every revision of one model that answered
    clients since a time, once, by its first answer then (a shadow's copy answered no one)."""
    log.record(answer("old", revision="r0", when=900.0))
    log.record(answer("a", revision="r2", when=1003.0))
    log.record(answer("b", revision="r1", when=1001.0))
    log.record(answer("c", revision="r2", when=1002.0))
    log.record(answer("d", revision="r1", when=1004.0))
    log.record(answer("b", "shadow", revision="r9", when=1001.0))
    log.record(answer("e", model="other", revision="r5", when=1005.0))
    assert log.flush()
    assert log.served_revisions("fraud", 1000.0) == ["r1", "r2"]
    assert log.served_revisions("fraud", 0.0) == ["r0", "r1", "r2"]
    assert log.served_revisions("fraud", 2000.0) == []
    assert log.served_revisions("nobody", 0.0) == []
