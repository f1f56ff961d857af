"""The prediction log: bounded, safe across restarts, answers paired and joined to late labels."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.prediction_answers import answer

from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.cli import main
from controller.errors import ConfigError, InputError, TransientError
from controller.predictions import Prediction, inputs_digest

ROOT = Path(__file__).resolve().parent.parent


def stored_ids(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT request_id FROM predictions ORDER BY seq").fetchall()
    return [row[0] for row in rows]


def test_rows_stay_within_max_rows_and_the_oldest_go_first(tmp_path: Path) -> None:
    """With max_rows 100, 1000 answers leave the newest 100 in the file."""
    path = tmp_path / "log.db"
    with SqlitePredictionLog(path, max_rows=100, batch_size=64) as log:
        for i in range(1000):
            log.record(answer(f"id-{i}"))
        assert log.flush()
        assert log.row_count() == 100
    assert stored_ids(path) == [f"id-{i}" for i in range(900, 1000)]


@pytest.mark.slow
def test_file_size_stops_growing_once_rotation_starts(tmp_path: Path) -> None:
    """The file with its write-ahead log is no larger after 40,000 answers than after 4,000."""
    path = tmp_path / "log.db"

    def size() -> int:
        return sum(p.stat().st_size for p in tmp_path.iterdir())

    with SqlitePredictionLog(path, max_rows=2000) as log:
        for i in range(4000):
            log.record(answer(f"early-{i}"))
        assert log.flush()
        early = size()
        for i in range(36000):
            log.record(answer(f"late-{i}"))
            if i % 5000 == 0:
                assert log.flush()
        assert log.flush()
        assert log.row_count() == 2000
        assert log.dropped == 0
    assert size() <= early * 1.1, (early, size())


def test_restart_keeps_committed_answers_and_appends(tmp_path: Path) -> None:
    """Closing and reopening the log keeps what was written; new answers join it."""
    path = tmp_path / "log.db"
    with SqlitePredictionLog(path) as log:
        log.record(answer("before"))
        log.record(answer("before", "shadow"))
    with SqlitePredictionLog(path) as log:
        log.record(answer("after"))
        log.record(answer("after", "shadow"))
        assert log.flush()
        log.record_feedback("before", 1)
        assert [(p.request_id, p.label) for p in log.pairs()] == [("before", 1), ("after", None)]


WRITER = """
import sys, time
from pathlib import Path
from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.predictions import Prediction

log = SqlitePredictionLog(Path(sys.argv[1]), max_rows=500, batch_size=50).start()
i = 0
while True:
    for role in ("primary", "shadow"):
        log.record(Prediction(str(i), time.time(), "fraud", "1", "r1", role, b"{}", 200,
                              b'{"predictions": [0.5]}', 1.0))
    i += 1
    if i == 300:
        log.flush()
        print("flushed", flush=True)
    if i == 400:
        print("writing", flush=True)
    if i % 50 == 0:
        time.sleep(0.001)
"""


def test_a_killed_writer_leaves_a_sound_log(tmp_path: Path) -> None:
    """SIGKILL in the middle of writing leaves a file that passes integrity_check and reopens."""
    path = tmp_path / "log.db"
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "flushed"
    assert process.stdout.readline().strip() == "writing"  # later batches are being written
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with SqlitePredictionLog(path, max_rows=500) as log:
        assert 300 <= log.row_count() <= 500
        log.record(answer("resumed"))
        log.record(answer("resumed", "shadow"))
        assert log.flush()
        assert log.pairs()[-1].request_id == "resumed"


def test_a_full_queue_drops_answers_without_waiting(tmp_path: Path) -> None:
    """record never blocks: beyond queue_size unwritten answers, answers are dropped and counted."""
    log = SqlitePredictionLog(tmp_path / "log.db", queue_size=10)
    started = time.perf_counter()
    for i in range(100):
        log.record(answer(str(i)))
    assert time.perf_counter() - started < 0.1
    assert log.dropped == 90
    with log:
        assert log.flush()
        assert log.row_count() == 10


def test_the_writer_outlives_a_batch_it_cannot_write(tmp_path: Path) -> None:
    """A batch holding an answer that cannot be stored is dropped and counted; later ones land."""
    with SqlitePredictionLog(tmp_path / "log.db") as log:
        log.record(answer("bad", body=None))  # type: ignore[arg-type]
        assert log.flush()
        log.record(answer("good"))
        assert log.flush()
        assert (log.dropped, log.written, log.row_count()) == (1, 1, 1)


def test_inputs_digest_is_of_canonical_json() -> None:
    """Key order and spacing do not change the digest; other inputs do; non-JSON is hashed raw."""
    a = inputs_digest(b'{"instances": [[1, 2]], "id": "x"}')
    assert a == inputs_digest(b'{"id":"x","instances":[[1,2]]}')
    assert a == hashlib.sha256(b'{"id":"x","instances":[[1,2]]}').hexdigest()
    assert a != inputs_digest(b'{"id":"x","instances":[[1,3]]}')
    assert inputs_digest(b"\x00raw") == hashlib.sha256(b"\x00raw").hexdigest()


def test_outputs_that_are_not_json_or_too_large_are_not_kept(tmp_path: Path) -> None:
    """An answer whose body is not JSON, or over max_output_bytes, is logged without output."""
    with SqlitePredictionLog(tmp_path / "log.db", max_output_bytes=64) as log:
        for rid, output in (("text", b"oops"), ("large", b'{"predictions": [%s]}' % b"1," * 40)):
            for role in ("primary", "shadow"):
                log.record(
                    Prediction(rid, 1.0, "m", "1", role, role, b"{}", 500, output, 1.0)  # type: ignore[arg-type]
                )
        assert log.flush()
        assert [(p.primary.output, p.shadow.status) for p in log.pairs()] == [(None, 500)] * 2


def test_a_log_of_another_schema_is_refused(tmp_path: Path) -> None:
    """A file whose user_version is another schema's is not written to."""
    path = tmp_path / "log.db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 7")
    with pytest.raises(ConfigError, match="schema 7"):
        SqlitePredictionLog(path).start()


def test_a_log_of_schema_1_is_migrated_and_keeps_its_labels(tmp_path: Path) -> None:
    """A log written before class-name labels (schema 1: label REAL NOT NULL) is migrated to
    schema 3 once when opened: its numeric labels (outcome label), their order and its answers
    stay, class names fit."""
    path = tmp_path / "log.db"
    with SqlitePredictionLog(path) as log:
        log.record(answer("tx-1"))
        log.record(answer("tx-1", "shadow"))
        assert log.flush()
    with sqlite3.connect(path) as connection:  # as schema 1 left it
        connection.executescript(
            "DROP TABLE feedback; CREATE TABLE feedback (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " request_id TEXT NOT NULL UNIQUE, label REAL NOT NULL, time REAL NOT NULL);"
            " INSERT INTO feedback (request_id, label, time) VALUES ('tx-0', 0.0, 1.0),"
            " ('tx-1', 1.0, 2.0); PRAGMA user_version = 1;"
        )
    log = SqlitePredictionLog(path)
    assert [(p.request_id, p.label) for p in log.pairs(labelled=True)] == [("tx-1", 1.0)]
    log.record_feedback("day-1", "volatile")
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (3,)
        rows = connection.execute(
            "SELECT seq, request_id, outcome, value FROM feedback ORDER BY seq"
        )
        assert rows.fetchall() == [
            (1, "tx-0", "label", 0.0), (2, "tx-1", "label", 1.0), (3, "day-1", "label", "volatile")
        ]  # fmt: skip
        tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        assert "feedback_before_3" not in {name for (name,) in tables}
    SqlitePredictionLog(path).start().close()  # reopening a migrated log changes nothing


def test_feedback_needs_an_id_and_a_finite_label(tmp_path: Path) -> None:
    """An empty request id or a NaN label is rejected, and nothing of the batch is stored."""
    log = SqlitePredictionLog(tmp_path / "log.db")
    with pytest.raises(InputError):
        log.record_feedback_batch([("a", 1), ("b", float("nan"))])
    with pytest.raises(InputError):
        log.record_feedback("", 1)
    assert log.labelled_pairs() == []


def damaged(path: Path) -> Path:
    """A log with answers whose pages after the first (the header and the schema) are garbage:
    SQLite opens it and reads its schema, then finds it malformed at the first query."""
    with SqlitePredictionLog(path) as log:
        for i in range(300):
            log.record(answer(f"id-{i}"))
        assert log.flush()
    data = path.read_bytes()
    page = 4096
    assert len(data) > 2 * page
    path.write_bytes(data[:page] + b"\xa5" * (len(data) - page))
    return path


def test_a_damaged_log_is_a_one_line_config_error(tmp_path: Path) -> None:
    """Every reader and writer turns SQLite's "malformed" into a ConfigError naming the file and
    what to do, never a sqlite3 exception."""
    log = SqlitePredictionLog(damaged(tmp_path / "log.db"))
    for call in (
        log.row_count,
        log.pairs,
        lambda: log.count_logged(["id-1"]),
        lambda: log.record_feedback("id-1", 1.0),
    ):
        with pytest.raises(ConfigError, match="malformed") as raised:
            call()
        assert str(tmp_path / "log.db") in raised.value.message
        assert "move it aside" in raised.value.message
        assert "\n" not in raised.value.message


def test_a_locked_log_is_a_transient_error_naming_the_file(tmp_path: Path) -> None:
    """Another process holding the write lock past the busy timeout is worth a retry."""
    path = tmp_path / "log.db"
    SqlitePredictionLog(path).row_count()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(TransientError, match="locked") as raised:
            SqlitePredictionLog(path, busy_timeout=0.05).record_feedback("id-1", 1.0)
        assert str(path) in raised.value.message
    finally:
        holder.close()


def test_sluice_feedback_into_a_damaged_log_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the command line: one line on stderr that names the log and the fix, exit 2 (a
    retry would not help), no traceback."""
    monkeypatch.chdir(tmp_path)
    for name in ("SLUICE_CONFIG", "SLUICE_FEEDBACK_TOKEN", "SLUICE_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    log = damaged(tmp_path / "predictions.sqlite")
    monkeypatch.setenv("SLUICE_PREDICTION_LOG_PATH", str(log))
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\nid-1,1\n", encoding="utf-8")
    code = main(["feedback", str(labels)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"sluice: error: the prediction log {log} cannot be used")
    assert "move it aside" in err
    assert err.count("\n") == 1
