"""The columnar side of ``prediction_store_volume.py``: the same logged requests exported to
Parquet, and the judges' reads run by DuckDB over those files and by chDB (ClickHouse embedded
in the process) over the same files and over its own MergeTree table (issue #17).

Why both ClickHouse shapes: a team that runs ClickHouse runs a server with MergeTree tables
(sorted by ``model, role, time``, so a window's rows are one contiguous range), fed in batches
from what the log shipper writes; chDB over the Parquet files is what ``clickhouse-local``
would do with the files DuckDB reads. DuckDB has only the one shape here (files a shipper
appends, one per chunk of 50,000 requests: about 4 minutes of traffic at 200 a second).

The files are append-only: one answer per request id, model and role, one value per request
and outcome, as the generated traffic is. A store fed by replicas that upsert (the latest
answer wins) would need a ``ReplacingMergeTree`` or a ``max_by`` per key in every read, which
these timings do not include.

Not a script: ``python benchmarks/prediction_store_volume.py --store duckdb chdb`` runs it.
Needs ``pip install -e '.[bench]'`` (``duckdb``, ``chdb``; ``pyarrow`` comes with MLflow).
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from controller.backends.prediction_log_queries import pair_from_row
from controller.predictions import Label, Prediction, ServedOutcome, inputs_digest

#: The stores this module measures, each with the package it needs.
COLUMNAR = {"duckdb": "duckdb", "chdb-parquet": "chdb", "chdb": "chdb"}
INSTALL = "install with pip install -e '.[bench]'"

_PREDICTION_COLUMNS = (
    "seq", "request_id", "time", "model", "version", "revision", "role", "inputs_digest",
    "output", "latency_ms", "status",
)  # fmt: skip
_FEEDBACK_COLUMNS = ("seq", "request_id", "outcome", "value_number", "value_text", "time")

# DuckDB: PostgreSQL's statements (controller.backends.postgres_prediction_queries), $names.
_DUCKDB = {
    "counts": """
SELECT p.revision,
       count(*) FILTER (WHERE p.time <= $settled),
       count(f.value_number) FILTER (WHERE p.time <= $settled),
       count(*) FILTER (WHERE p.time <= $settled AND f.value_number = 1),
       count(*) FILTER (WHERE f.value_text IS NOT NULL OR f.value_number NOT IN (0, 1))
FROM predictions AS p
LEFT JOIN feedback AS f ON f.request_id = p.request_id AND f.outcome = $outcome
WHERE p.model = $model AND p.role = 'primary' AND p.revision IN ($canary, $primary)
  AND p.time >= $since
GROUP BY p.revision""",
    "rows": """
SELECT p.request_id, p.revision, p.time, f.value_number, f.value_text
FROM predictions AS p
LEFT JOIN feedback AS f ON f.request_id = p.request_id AND f.outcome = $outcome
WHERE p.model = $model AND p.role = 'primary' AND p.revision IN ($canary, $primary)
  AND p.time >= $since
ORDER BY p.time, p.seq""",
    "pairs": """
SELECT s.request_id, f.value_number, f.value_text,
       p.time, p.model, p.version, p.revision, p.inputs_digest, p.output, p.latency_ms, p.status,
       s.time, s.model, s.version, s.revision, s.inputs_digest, s.output, s.latency_ms, s.status
FROM predictions AS s
JOIN predictions AS p
  ON p.request_id = s.request_id AND p.model = s.model AND p.role = 'primary'
  AND p.inputs_digest = s.inputs_digest
LEFT JOIN feedback AS f ON f.request_id = s.request_id AND f.outcome = $outcome
WHERE s.role = 'shadow' AND s.model = $model AND s.revision = $shadow AND p.time >= $since
  AND (f.value_number IS NOT NULL OR f.value_text IS NOT NULL)
ORDER BY p.seq""",
}
# ClickHouse: the same, in its dialect ({name:Type} parameters, countIf, NULLs from the outer
# join as in SQL); {predictions} and {feedback} are the tables or the Parquet files.
_CLICKHOUSE = {
    "counts": """
SELECT p.revision,
       countIf(p.time <= {{settled:Float64}}),
       countIf(p.time <= {{settled:Float64}} AND f.value_number IS NOT NULL),
       countIf(p.time <= {{settled:Float64}} AND f.value_number = 1),
       countIf(f.value_text IS NOT NULL OR f.value_number NOT IN (0, 1))
FROM {predictions} AS p
LEFT JOIN (SELECT request_id, value_number, value_text FROM {feedback}
           WHERE outcome = {{outcome:String}}) AS f ON f.request_id = p.request_id
WHERE p.model = {{model:String}} AND p.role = 'primary'
  AND p.revision IN ({{canary:String}}, {{primary:String}}) AND p.time >= {{since:Float64}}
GROUP BY p.revision
SETTINGS join_use_nulls = 1""",
    "rows": """
SELECT p.request_id, p.revision, p.time, f.value_number, f.value_text
FROM {predictions} AS p
LEFT JOIN (SELECT request_id, value_number, value_text FROM {feedback}
           WHERE outcome = {{outcome:String}}) AS f ON f.request_id = p.request_id
WHERE p.model = {{model:String}} AND p.role = 'primary'
  AND p.revision IN ({{canary:String}}, {{primary:String}}) AND p.time >= {{since:Float64}}
ORDER BY p.time, p.seq
SETTINGS join_use_nulls = 1""",
    "pairs": """
SELECT s.request_id, f.value_number, f.value_text,
       p.time, p.model, p.version, p.revision, p.inputs_digest, p.output, p.latency_ms, p.status,
       s.time, s.model, s.version, s.revision, s.inputs_digest, s.output, s.latency_ms, s.status
FROM (SELECT * FROM {predictions} WHERE role = 'shadow' AND model = {{model:String}}
      AND revision = {{shadow:String}}) AS s
JOIN (SELECT * FROM {predictions} WHERE role = 'primary' AND model = {{model:String}}
      AND time >= {{since:Float64}}) AS p
  ON p.request_id = s.request_id AND p.inputs_digest = s.inputs_digest
JOIN (SELECT request_id, value_number, value_text FROM {feedback}
      WHERE outcome = {{outcome:String}}) AS f ON f.request_id = s.request_id
ORDER BY p.seq""",
}
_MERGE_TREE = """
CREATE TABLE predictions (
    seq UInt64, request_id String, time Float64, model LowCardinality(String),
    version LowCardinality(String), revision LowCardinality(String),
    role LowCardinality(String), inputs_digest String, output Nullable(String),
    latency_ms Float64, status UInt16
) ENGINE = MergeTree ORDER BY (model, role, time);
CREATE TABLE feedback (
    seq UInt64, request_id String, outcome LowCardinality(String),
    value_number Nullable(Float64), value_text Nullable(String), time Float64
) ENGINE = MergeTree ORDER BY (outcome, request_id);
"""


def missing_packages(stores: Sequence[str]) -> dict[str, str]:
    """The columnar stores among ``stores`` whose package is not importable, with the package."""
    return {
        store: COLUMNAR[store]
        for store in stores
        if store in COLUMNAR and importlib.util.find_spec(COLUMNAR[store]) is None
    }


class ParquetLog:
    """Chunks of generated traffic written as Parquet files, one per chunk and table, in the
    columns PostgreSQL's tables have."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.predictions = directory / "predictions"
        self.feedback = directory / "feedback"
        self.predictions.mkdir(parents=True)
        self.feedback.mkdir()
        self._seq = 0
        self._chunks = 0
        self._digests: dict[bytes, str] = {}

    def write(
        self, answers: Sequence[Prediction], clicks: Sequence[tuple[str, str, Label]], now: float
    ) -> tuple[Path, Path]:
        """One chunk's answers and outcome values, as two new files; returns their paths."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns: dict[str, list[Any]] = {name: [] for name in _PREDICTION_COLUMNS}
        for answer in answers:
            digest = self._digests.get(answer.body)
            if digest is None:
                digest = self._digests[answer.body] = inputs_digest(answer.body)
            self._seq += 1
            row = (
                self._seq, answer.request_id, answer.time, answer.model, answer.version,
                answer.revision, answer.role, digest, answer.output.decode() or None,
                answer.latency_ms, answer.status,
            )  # fmt: skip
            for name, value in zip(_PREDICTION_COLUMNS, row, strict=True):
                columns[name].append(value)
        values: dict[str, list[Any]] = {name: [] for name in _FEEDBACK_COLUMNS}
        for request_id, outcome, value in clicks:
            self._seq += 1
            text = value if isinstance(value, str) else None
            number = None if isinstance(value, str) else float(value)
            for name, item in zip(
                _FEEDBACK_COLUMNS, (self._seq, request_id, outcome, number, text, now), strict=True
            ):
                values[name].append(item)
        self._chunks += 1
        paths = (
            self.predictions / f"part-{self._chunks:05d}.parquet",
            self.feedback / f"part-{self._chunks:05d}.parquet",
        )
        pq.write_table(pa.table(columns, schema=_prediction_schema()), paths[0])
        pq.write_table(pa.table(values, schema=_feedback_schema()), paths[1])
        return paths

    def size_bytes(self) -> int:
        """The files' size on disk."""
        return sum(path.stat().st_size for path in self.directory.rglob("*.parquet"))


def _prediction_schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        ("seq", pa.uint64()), ("request_id", pa.string()), ("time", pa.float64()),
        ("model", pa.string()), ("version", pa.string()), ("revision", pa.string()),
        ("role", pa.string()), ("inputs_digest", pa.string()), ("output", pa.string()),
        ("latency_ms", pa.float64()), ("status", pa.uint16()),
    ])  # fmt: skip


def _feedback_schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        ("seq", pa.uint64()), ("request_id", pa.string()), ("outcome", pa.string()),
        ("value_number", pa.float64()), ("value_text", pa.string()), ("time", pa.float64()),
    ])  # fmt: skip


class ColumnarReader:
    """The judges' three reads on one columnar store: the rate KPI's counts, the mean KPI's
    rows (turned into :class:`ServedOutcome`, as the row stores' reads are) and the shadow
    judge's labelled pairs (turned into pairs by the row stores' own ``pair_from_row``)."""

    def __init__(self, store: str, log: ParquetLog, session: Any = None) -> None:
        self.store = store
        self._log = log
        self._duckdb: Any = None
        #: chDB allows one session a process: the chDB stores share it.
        self._session = session
        if store == "duckdb":
            import duckdb

            self._duckdb = duckdb.connect()
        elif store == "chdb":
            self._session.query(_MERGE_TREE)
        self._views = False

    def ingest(self, paths: tuple[Path, Path]) -> None:
        """Load one chunk's files into the store's own tables (chDB's MergeTree; the others
        read the files where they are)."""
        if self.store != "chdb":
            return
        for table, path in zip(("predictions", "feedback"), paths, strict=True):
            loading = f"INSERT INTO {table} SELECT * FROM file('{path}', Parquet)"  # noqa: S608
            self._session.query(loading)

    def close(self) -> None:
        if self._duckdb is not None:
            self._duckdb.close()

    def _run(self, name: str, arguments: dict[str, object]) -> list[tuple[Any, ...]]:
        if self._duckdb is not None:
            if not self._views:  # once there are files: a view re-reads the glob each query
                for table, directory in (
                    ("predictions", self._log.predictions), ("feedback", self._log.feedback),
                ):  # fmt: skip
                    files = f"read_parquet('{directory}/*.parquet')"
                    self._duckdb.execute(f"CREATE VIEW {table} AS SELECT * FROM {files}")  # noqa: S608
                self._views = True
            return list(self._duckdb.execute(_DUCKDB[name], arguments).fetchall())
        tables = (
            {"predictions": "predictions", "feedback": "feedback"}
            if self.store == "chdb"
            else {
                "predictions": f"file('{self._log.predictions}/*.parquet', Parquet)",
                "feedback": f"file('{self._log.feedback}/*.parquet', Parquet)",
            }
        )
        sql = _CLICKHOUSE[name].format(**tables)
        result = self._session.query(sql, "ArrowTable", params=arguments)
        return [tuple(row.values()) for row in result.to_pylist()]

    def reads(
        self, *, model: str, canary: str, primary: str, shadow: str, outcome: str
    ) -> Callable[[str, float, float], int]:
        """A function running read ``name`` (``counts``, ``rows``, ``pairs``) from ``since``
        with cut-off ``settled``; returns the answers counted, rows or pairs read."""
        base: dict[str, object] = {
            "model": model, "canary": canary, "primary": primary, "outcome": outcome,
        }  # fmt: skip

        def read(name: str, since: float, settled: float) -> int:
            if name == "counts":
                found = self._run("counts", {**base, "since": since, "settled": settled})
                return sum(int(row[1]) for row in found)
            if name == "rows":
                found = self._run("rows", {**base, "since": since})
                served = [
                    ServedOutcome(str(request_id), str(revision), float(sent),
                                  text if text is not None else number)
                    for request_id, revision, sent, number, text in found
                ]  # fmt: skip
                return len(served)
            pairs_arguments = {"model": model, "shadow": shadow, "outcome": outcome}
            found = self._run("pairs", {**pairs_arguments, "since": since})
            pairs = [pair_from_row((row[0], row[2] or row[1], *row[3:])) for row in found]
            return len(pairs)

        return read


@contextlib.contextmanager
def opened(
    stores: Sequence[str], directory: Path
) -> Iterator[tuple[ParquetLog, list[ColumnarReader]]]:
    """A Parquet log in ``directory`` and a reader for each of ``stores``."""
    log = ParquetLog(directory)
    session = None
    if any(store.startswith("chdb") for store in stores):
        from chdb import session as chdb_session

        session = chdb_session.Session(str(directory / "chdb-session"))
    readers = [ColumnarReader(store, log, session) for store in stores]
    try:
        yield log, readers
    finally:
        for reader in readers:
            reader.close()
        if session is not None:
            session.close()


if __name__ == "__main__":
    print("columnar_stores.py is part of prediction_store_volume.py: run that with --store duckdb")
