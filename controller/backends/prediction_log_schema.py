"""The prediction log's SQLite file: its schema (checked; a file of schema 1 or 2 is migrated
to 3 once, any other refused), how a connection is opened (WAL, a bounded write-ahead log, a busy
timeout), the statements that write it, and the translation of every ``sqlite3`` error into a
Sluice error that names the file.

Schema 2 lets a label be a class name (``"volatile"``) as well as a number: the ``feedback``
table's ``label`` column has no declared type, so SQLite keeps a REAL as a REAL and a TEXT as
a TEXT (a ``REAL`` column would turn ``"1"`` into 1.0), and a CHECK admits only those two.
Schema 1 declared it ``REAL NOT NULL``; SQLite cannot change a column's type in place, so the
migration copies the table, its numeric labels unchanged, in one transaction.

Schema 3 names outcomes: one request may have several late values (a regime classifier's
``regime`` and a direction specialist's ``up`` under one graph request id; a KPI's ``click``),
so the ``feedback`` table is keyed by ``(request_id, outcome)`` and keeps each value in
``value``. The UNIQUE constraint's index is the one the judge's join reads (``request_id`` and
the outcome it asked for). Schemas 1 and 2 are migrated straight to 3 in one transaction: each
label becomes outcome ``label`` (:data:`~controller.predictions.DEFAULT_OUTCOME`) with its
``seq``, which rotation reads, unchanged.

Schema 3 also keys an answer by model: ``(request_id, model, role)``. Through a graph one
request id is answered by several models (the classifier, then the specialist its decision
chose), each primary and each with its own shadow; keyed by request and role alone, the
specialist's answer replaced the classifier's, so a challenger classifier had no pairs. A
pair joins a request's primary and shadow answers of the same model. The migration copies the
``predictions`` table too (its rows were unique by request and role, so by request, model and
role as well).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from controller.errors import ConfigError, TransientError

__all__ = [
    "INSERT_FEEDBACK",
    "INSERT_PREDICTION",
    "ROTATE",
    "SCHEMA_VERSION",
    "connect",
    "ensure_schema",
    "output_text",
    "sqlite_errors",
]

#: ``PRAGMA user_version`` of the log's schema; 1 and 2 are migrated to it, any other refused.
SCHEMA_VERSION = 3
_WAL_LIMIT_BYTES = 8 << 20
#: SQLite's primary result codes for a file another connection holds.
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)

_FEEDBACK = """
CREATE TABLE {exists}feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    value NOT NULL CHECK (typeof(value) IN ('real', 'text')),
    time REAL NOT NULL,
    UNIQUE (request_id, outcome)
);
"""
_PREDICTIONS = """
CREATE TABLE {exists}predictions (
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
    UNIQUE (request_id, model, role)
);
"""
#: The index the outcome series' read walks (:func:`~controller.backends.prediction_log_queries.
#: read_outcome_answers`): a graph's members' primary answers since a time. An index only, so a
#: file of schema 3 gets it when next opened, without a migration.
_OUTCOME_INDEX = (
    "CREATE INDEX IF NOT EXISTS predictions_model_role_time ON predictions (model, role, time);"
)
_SCHEMA = (
    _PREDICTIONS.format(exists="IF NOT EXISTS ")
    + _FEEDBACK.format(exists="IF NOT EXISTS ")
    + _OUTCOME_INDEX
)
_PREDICTION_COLUMNS = (
    "seq, request_id, time, model, version, revision, role, inputs_digest, output, latency_ms,"
    " status"
)
#: Schema 1 or 2 to 3, in one transaction: the predictions table copied into one keyed by
#: request, model and role, and the feedback table (``seq``, ``request_id``, ``label``,
#: ``time`` in both) copied into one keyed by request and outcome; each label
#: becomes outcome ``label``, its value and its order (``seq``, which rotation reads) unchanged.
_MIGRATE_TO_3 = (
    "ALTER TABLE predictions RENAME TO predictions_before_3",
    _PREDICTIONS.format(exists=""),
    f"INSERT INTO predictions ({_PREDICTION_COLUMNS})"  # noqa: S608 (constant columns)
    f" SELECT {_PREDICTION_COLUMNS} FROM predictions_before_3",
    "DROP TABLE predictions_before_3",
    "ALTER TABLE feedback RENAME TO feedback_before_3",
    _FEEDBACK.format(exists=""),
    "INSERT INTO feedback (seq, request_id, outcome, value, time)"
    " SELECT seq, request_id, 'label', label, time FROM feedback_before_3",
    "DROP TABLE feedback_before_3",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
#: The schemas :data:`_MIGRATE_TO_3` migrates.
_MIGRATED = (1, 2)
INSERT_FEEDBACK = (
    "INSERT OR REPLACE INTO feedback (request_id, outcome, value, time) VALUES (?, ?, ?, ?)"
)
INSERT_PREDICTION = (
    "INSERT OR REPLACE INTO predictions (request_id, time, model, version, revision, role,"
    " inputs_digest, output, latency_ms, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: Deletes all but the newest ``?`` rows of each table.
ROTATE = {
    table: f"DELETE FROM {table} WHERE seq <= (SELECT max(seq) FROM {table}) - ?"  # noqa: S608
    for table in ("predictions", "feedback")
}


def output_text(output: bytes, limit: int) -> str | None:
    """A model's answer as compact JSON to keep, or None when it is empty, over ``limit``
    bytes or not JSON."""
    if not output or len(output) > limit:
        return None
    try:
        return json.dumps(json.loads(output), separators=(",", ":"), ensure_ascii=False)
    except (ValueError, RecursionError):
        return None


@contextlib.contextmanager
def sqlite_errors(path: Path) -> Iterator[None]:
    """``sqlite3`` errors as Sluice's: a busy file is transient, any other needs a person."""
    try:
        yield
    except sqlite3.Error as exc:
        if (exc.sqlite_errorcode & 0xFF) in _BUSY_CODES:  # the primary code of an extended one
            raise TransientError(
                f"the prediction log {path} is locked by another process ({exc}); "
                "try again when it is free"
            ) from exc
        raise ConfigError(
            f"the prediction log {path} cannot be used ({exc}): move it aside (a new one is "
            "created) or set SLUICE_PREDICTION_LOG_PATH to another file"
        ) from exc


def connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """A connection to the log at ``path`` in autocommit mode, WAL journaling on; a statement
    waits ``busy_timeout`` seconds for another process's lock."""
    with sqlite_errors(path):
        connection = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")  # durable across a process crash
            # After each checkpoint the write-ahead log is cut back to this: it stays bounded.
            connection.execute(f"PRAGMA journal_size_limit = {_WAL_LIMIT_BYTES}")
        except sqlite3.Error:
            connection.close()
            raise
    return connection


def ensure_schema(path: Path, busy_timeout: float) -> None:
    """Create the file and its tables, migrate a log of schema 1 or 2, or check an existing one
    is a log of this schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite_errors(path), contextlib.closing(connect(path, busy_timeout)) as connection:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version in _MIGRATED:
            _migrate(connection)  # then the index, below
        elif version not in (0, SCHEMA_VERSION):
            raise ConfigError(
                f"{path} is a prediction log of schema {version}, not {SCHEMA_VERSION}:"
                " move it aside or choose another path"
            )
        connection.executescript(_SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")


def _migrate(connection: sqlite3.Connection) -> None:
    """Schema 1 or 2 to 3 in one transaction; a process that migrated it meanwhile leaves
    nothing to do (the version is read again under the write lock)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        if connection.execute("PRAGMA user_version").fetchone()[0] in _MIGRATED:
            for statement in _MIGRATE_TO_3:
                connection.execute(statement)
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
