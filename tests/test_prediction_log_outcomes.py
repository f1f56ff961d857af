"""The prediction log's read for the graph's outcome series: a graph's members' primary answers
since a time, with every outcome of their request and the segmenting outcome's value, over a
real SQLite file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.prediction_answers import answer

from controller.backends.prediction_log_queries import _OUTCOME_ANSWERS
from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.errors import InputError
from controller.outcome_scores import OutcomeAnswer, OutcomeKey, Tally, tally

CLASSIFIER, CALM, VOLATILE = "clf", "calm", "volatile"


def classified(regime: str) -> bytes:
    return json.dumps({"predictions": [{"regime": regime, "p_calm": 0.3, "ret_1": 0.01}]}).encode()


def p_up(p: float) -> bytes:
    return json.dumps({"predictions": [{"p_up": p}]}).encode()


def day(log: SqlitePredictionLog, request_id: str, regime: str, p: float, when: float) -> None:
    """One graph request: the classifier's answer, then its regime's specialist's."""
    log.record(answer(request_id, model=CLASSIFIER, revision="clf-1", when=when,
                      output=classified(regime)))  # fmt: skip
    specialist = CALM if regime == "calm" else VOLATILE
    log.record(answer(request_id, model=specialist, revision=f"{specialist}-1", when=when,
                      output=p_up(p)))  # fmt: skip


@pytest.fixture
def log(tmp_path: Path) -> Iterator[SqlitePredictionLog]:
    with SqlitePredictionLog(tmp_path / "log.db") as started:
        yield started


def read(log: SqlitePredictionLog, since: float = 0.0, **kwargs: object) -> list[OutcomeAnswer]:
    return sorted(
        log.outcome_answers([CLASSIFIER, CALM, VOLATILE], since, **kwargs),  # type: ignore[arg-type]
        key=lambda a: (a.model, a.outcome, a.value, a.segment),
    )


def test_each_members_answer_is_joined_with_every_outcome_and_the_segment(
    log: SqlitePredictionLog,
) -> None:
    """Two models answered one request id; its outcomes arrived one at a time, the segment last:
    before it, the segment is ""; after, every row of the request carries it."""
    day(log, "d1", "volatile", 0.3, 1000.0)
    assert log.flush()
    assert read(log, segment="regime") == []  # no outcome yet: nothing to score
    log.record_outcomes([("d1", "up", 1.0)])
    assert read(log, segment="regime") == [
        OutcomeAnswer(CLASSIFIER, "clf-1", _text(classified("volatile")), "up", 1.0, ""),
        OutcomeAnswer(VOLATILE, "volatile-1", _text(p_up(0.3)), "up", 1.0, ""),
    ]  # fmt: skip
    log.record_outcomes([("d1", "regime", "calm")])  # the day was calm after all
    rows = read(log, segment="regime")
    assert {(a.model, a.outcome, a.value, a.segment) for a in rows} == {
        (CLASSIFIER, "up", 1.0, "calm"), (CLASSIFIER, "regime", "calm", "calm"),
        (VOLATILE, "up", 1.0, "calm"), (VOLATILE, "regime", "calm", "calm"),
    }  # fmt: skip
    assert tally(rows) == {
        OutcomeKey(CLASSIFIER, "clf-1", "regime", "calm"): Tally(right=0, wrong=1),
        OutcomeKey(VOLATILE, "volatile-1", "up", "calm"): Tally(right=0, wrong=1),
    }
    # Without a segment, the same rows with segment "".
    assert {a.segment for a in read(log)} == {""}


def test_outcomes_in_any_order_give_the_same_rows(tmp_path: Path) -> None:
    def logged(name: str, order: list[tuple[str, str, float | str]]) -> list[OutcomeAnswer]:
        with SqlitePredictionLog(tmp_path / name) as log:
            day(log, "d1", "calm", 0.8, 1000.0)
            day(log, "d2", "volatile", 0.6, 1001.0)
            assert log.flush()
            for row in order:
                log.record_outcomes([row])
            return read(log, segment="regime")

    outcomes: list[tuple[str, str, float | str]] = [
        ("d1", "regime", "calm"), ("d1", "up", 1.0), ("d2", "up", 0.0),
        ("d2", "regime", "black_swan"),
    ]  # fmt: skip
    forward = logged("a.db", outcomes)
    assert forward == logged("b.db", outcomes[::-1])
    assert tally(forward) == {
        OutcomeKey(CALM, "calm-1", "up", "calm"): Tally(right=1),
        OutcomeKey(CLASSIFIER, "clf-1", "regime", "black_swan"): Tally(wrong=1),
        OutcomeKey(CLASSIFIER, "clf-1", "regime", "calm"): Tally(right=1),
        OutcomeKey(VOLATILE, "volatile-1", "up", "black_swan"): Tally(wrong=1),
    }


def test_only_the_models_primaries_since_the_time_and_the_newest_up_to_the_limit(
    log: SqlitePredictionLog,
) -> None:
    day(log, "old", "calm", 0.8, 100.0)
    day(log, "d1", "calm", 0.8, 1000.0)
    day(log, "d2", "calm", 0.2, 2000.0)
    log.record(answer("d2", "shadow", model=CALM, when=2000.0, output=p_up(0.9)))
    log.record(answer("d2", model="another", when=2000.0, output=p_up(0.9)))
    assert log.flush()
    log.record_outcomes([(rid, "up", 1.0) for rid in ("old", "d1", "d2")])
    rows = log.outcome_answers([CALM], 500.0)
    assert [(a.model, a.revision, a.output) for a in rows] == [
        (CALM, "calm-1", _text(p_up(0.2))), (CALM, "calm-1", _text(p_up(0.8))),
    ]  # fmt: skip
    assert [a.output for a in log.outcome_answers([CALM], 500.0, limit=1)] == [_text(p_up(0.2))]
    assert log.outcome_answers([], 0.0) == []


def test_a_numeric_segment_is_written_as_a_label_value(log: SqlitePredictionLog) -> None:
    day(log, "d1", "calm", 0.8, 1000.0)
    assert log.flush()
    log.record_outcomes([("d1", "up", 1.0), ("d1", "bucket", 2.0)])
    assert {a.segment for a in log.outcome_answers([CALM], 0.0, segment="bucket")} == {"2"}
    with pytest.raises(InputError):
        log.outcome_answers([CALM], 0.0, segment="Not An Outcome")


def test_the_read_walks_indexes_only(log: SqlitePredictionLog) -> None:
    """The answers are found by the (model, role, time) index, each request's outcomes and its
    segment by the (request_id, outcome) one: no table is scanned."""
    with sqlite3.connect(log.path) as connection:
        plan = connection.execute(
            "EXPLAIN QUERY PLAN " + _OUTCOME_ANSWERS.format(marks="?,?"),
            ["regime", CALM, VOLATILE, 0.0, 10],
        ).fetchall()
    steps = " | ".join(str(row[-1]) for row in plan)
    assert "p USING INDEX predictions_model_role_time (model=? AND role=? AND time>?)" in steps
    assert "f USING INDEX sqlite_autoindex_feedback_1 (request_id=?)" in steps
    assert "g USING INDEX sqlite_autoindex_feedback_1 (request_id=? AND outcome=?)" in steps
    assert "SCAN" not in steps


def test_a_log_of_schema_3_without_the_index_gets_it_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    SqlitePredictionLog(path).row_count()
    with sqlite3.connect(path) as connection:
        connection.execute("DROP INDEX predictions_model_role_time")
    SqlitePredictionLog(path).row_count()
    with sqlite3.connect(path) as connection:
        names = {n for (n,) in connection.execute("SELECT name FROM sqlite_master")}
    assert "predictions_model_role_time" in names


def _text(output: bytes) -> str:
    """An answer as the log keeps it (compact JSON)."""
    return json.dumps(json.loads(output), separators=(",", ":"))
