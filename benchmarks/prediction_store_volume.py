"""How the prediction store holds up at volume: 10 million logged requests written through the
stores' own batch writers, the judges' queries timed at 1, 3 and 10 million, and the volume at
which a team should move the judge's read to a columnar store (issue #17).

``python benchmarks/prediction_store_volume.py [--rows N] [--store postgres|sqlite|both]``

Starts its own PostgreSQL server (as the tests do) and a SQLite file, both in a temporary
directory, and writes ``--rows`` requests of one model shaped like real traffic: 200 requests a
second (times spread over N/200 s, ending now), a primary revision and a canary at 5 %, a
shadow copy of 10 % of requests (same inputs, the challenger's revision), a ``click`` outcome
for 4 %. Answers go through :meth:`record` and :meth:`flush`, the queue and writer thread
``POST /v1/events`` ends in, in chunks; the clicks through ``record_outcomes``, as ``sluice
serve``'s feedback route writes them. At a tenth, three tenths and all of ``--rows`` it times
what the judges read, best of ``--repeats``:

- the KPI judge's read, ``served_outcomes(model, (canary, primary), "click", since)`` over the
  last 30 minutes and over a canary step's 2 hours, and the same count and sum per revision as
  one aggregating SQL statement (is reading rows into Python the cost?);
- the shadow judge's join, ``pairs(labelled=True, since=2 hours ago)``, and ``outcomes`` of
  10,000 request ids;
- on PostgreSQL, ``EXPLAIN (ANALYZE, BUFFERS)`` of the KPI read at the end (the index it uses).

Then a short run of KServe-shaped CloudEvents through the real ``/v1/events`` route into the
same store (``serve_events.py``'s events and server), for events/s end to end. Each read's time
is fitted as a line in the rows it returns, and the line says how many rows in the judge's
window cross ``--budget`` seconds (1 s of a 30 s analysis interval): past that, the rate KPI
belongs in an aggregate query, and past the aggregate's crossing in a columnar store. DuckDB
over Parquet is timed only when ``duckdb`` is importable (nothing is installed for it).
The last line is the summary the issue asks for.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests
from serve_events import RESPONSE, _event

from controller.backends.postgres_prediction_log import PostgresPredictionLog
from controller.backends.postgres_prediction_queries import _SERVED_OUTCOMES
from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.local.postgres import start_postgres
from controller.predictions import Prediction
from controller.serve.events import events_route
from controller.serve.server import ServeMetrics, SluiceServer, sluice_routes

MODEL = "ranker"
PRIMARY, CANARY, SHADOW = "ranker-predictor-00001", "ranker-predictor-00002", "ranker-shadow-00001"
RATE = 200.0  # requests per second
CANARY_SHARE, SHADOW_SHARE, CLICK_SHARE = 0.05, 0.10, 0.04
CHUNK = 50_000
WINDOWS = {"30 min": 1800.0, "2 h": 7200.0}
Store = PostgresPredictionLog | SqlitePredictionLog

_AGGREGATE = {
    "postgres": """
SELECT p.revision, count(*), count(f.value_number), coalesce(sum(f.value_number), 0)
FROM sluice_predictions AS p
LEFT JOIN sluice_feedback AS f ON f.request_id = p.request_id AND f.outcome = %s
WHERE p.model = %s AND p.role = 'primary' AND p.revision = ANY(%s) AND p.time >= %s
GROUP BY p.revision""",
    "sqlite": """
SELECT p.revision, count(*), count(f.value), coalesce(sum(f.value), 0)
FROM predictions AS p
LEFT JOIN feedback AS f ON f.request_id = p.request_id AND f.outcome = ?
WHERE p.model = ? AND p.role = 'primary' AND p.revision IN (?, ?) AND p.time >= ?
GROUP BY p.revision""",
}


@dataclass
class Timing:
    """One read at one volume: what it returned and how long it took."""

    store: str
    volume: int
    query: str
    rows: int
    seconds: float


@dataclass
class Run:
    """What one store measured."""

    store: str
    ingest_rows: int = 0
    ingest_seconds: float = 0.0
    events_per_second: float = 0.0
    timings: list[Timing] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.ingest_rows / self.ingest_seconds if self.ingest_seconds else 0.0


def _label(count: int) -> str:
    """10000000 as ``10M``, 20000 as ``20k``."""
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if count >= size:
            return f"{count / size:.3g}{suffix}"
    return str(count)


def request_id_of(i: int) -> str:
    """Request ``i``'s id, random-looking as a UUID is (the keys land all over the index)."""
    digest = hashlib.md5(str(i).encode(), usedforsecurity=False).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"


def traffic(
    first: int, count: int, start: float, rng: random.Random, bodies: Sequence[bytes]
) -> tuple[list[Prediction], list[tuple[str, str, float]]]:
    """Requests ``first`` to ``first + count``: their answers (a shadow copy for some) and
    their clicks."""
    answers, clicks = [], []
    for i in range(first, first + count):
        request_id, sent, body = request_id_of(i), start + i / RATE, bodies[i % len(bodies)]
        revision = CANARY if rng.random() < CANARY_SHARE else PRIMARY
        latency = 5.0 + rng.random() * 20
        answers.append(
            Prediction(request_id, sent, MODEL, revision[-1], revision, "primary", body, 200,
                       RESPONSE, latency)
        )  # fmt: skip
        if rng.random() < SHADOW_SHARE:
            answers.append(
                Prediction(request_id, sent, MODEL, "1", SHADOW, "shadow", body, 200, RESPONSE,
                           latency + 1)
            )  # fmt: skip
        if rng.random() < CLICK_SHARE:
            clicks.append((request_id, "click", 1.0))
    return answers, clicks


def best_of(repeats: int, read: Callable[[], int]) -> tuple[int, float]:
    """Rows ``read`` returned and its fastest time of ``repeats``."""
    times, rows = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        rows = read()
        times.append(time.perf_counter() - started)
    return rows, min(times)


def aggregate(run: str, target: str, since: float) -> Callable[[], int]:
    """Count and sum of clicks per revision in one statement; returns how many answers."""

    def read() -> int:
        if run == "postgres":
            import psycopg2

            with contextlib.closing(psycopg2.connect(target)) as connection:
                connection.set_session(readonly=True, autocommit=True)
                with connection.cursor() as cursor:
                    cursor.execute(_AGGREGATE[run], ("click", MODEL, [CANARY, PRIMARY], since))
                    found = cursor.fetchall()
        else:
            with contextlib.closing(sqlite3.connect(target)) as connection:
                found = connection.execute(
                    _AGGREGATE[run], ("click", MODEL, CANARY, PRIMARY, since)
                ).fetchall()
        return sum(int(row[1]) for row in found)

    return read


def judge_reads(store: Store, name: str, target: str, now: float, repeats: int, volume: int,
                rng: random.Random) -> list[Timing]:  # fmt: skip
    """The judges' reads at this volume, each timed."""
    reads: dict[str, Callable[[], int]] = {}
    for window, seconds in WINDOWS.items():
        since = now - seconds
        reads[f"KPI read, {window}"] = lambda since=since: len(
            store.served_outcomes(MODEL, (CANARY, PRIMARY), "click", since)
        )
        reads[f"KPI aggregate, {window}"] = aggregate(name, target, since)
    reads["shadow pairs, 2 h"] = lambda: len(
        store.pairs(model=MODEL, shadow_revision=SHADOW, since=now - 7200, labelled=True,
                    outcome="click")
    )  # fmt: skip
    ids = [request_id_of(rng.randrange(volume)) for _ in range(10_000)]
    reads["outcomes, 10k ids"] = lambda: len(store.outcomes(ids, "click"))
    timings = []
    for query, read in reads.items():
        rows, seconds = best_of(repeats, read)
        timings.append(Timing(name, volume, query, rows, seconds))
        print(f"  {name} at {_label(volume)}: {query}: {rows:,} rows in {seconds:.3f} s")
    return timings


def analyze(name: str, target: str) -> None:
    """Fresh planner statistics, as autovacuum's (or SQLite's ``optimize``) keep them on a store
    that grew over hours rather than in minutes."""
    if name == "sqlite":
        with contextlib.closing(sqlite3.connect(target)) as connection:
            connection.execute("ANALYZE")
        return
    import psycopg2

    with contextlib.closing(psycopg2.connect(target)) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE sluice_predictions, sluice_feedback")


def explain(url: str, now: float) -> None:
    """PostgreSQL's plans of the KPI read over each window, run: which index it walks (or why
    not: over most of the table a sequential scan is cheaper), what it read."""
    import psycopg2

    with contextlib.closing(psycopg2.connect(url)) as connection, connection.cursor() as cursor:
        for window, seconds in WINDOWS.items():
            cursor.execute(
                "EXPLAIN (ANALYZE, BUFFERS) " + _SERVED_OUTCOMES,
                ("click", MODEL, [CANARY, PRIMARY], now - seconds),
            )
            print(f"  EXPLAIN (ANALYZE, BUFFERS) of the KPI read, {window}:")
            for (line,) in cursor.fetchall():
                print(f"    {line}")


def events_per_second(store: Store, pairs: int) -> float:
    """KServe-shaped CloudEvents through the real ``/v1/events`` route into ``store``."""
    events = [
        _event(kind, f"event-{i}", data)
        for i in range(pairs)
        for kind, data in (("request", b'{"instances": [[1.0, 2.0]]}'), ("response", RESPONSE))
    ]
    metrics = ServeMetrics()
    route = events_route(sink=store, metrics=metrics, trust_network=True)
    routes = sluice_routes(
        metrics=metrics, status=dict, mlflow_trigger=lambda model, alias: False,
        mlflow_webhook_secret=None, events=route,
    )  # fmt: skip
    with SluiceServer(routes) as server, requests.Session() as session:
        started = time.perf_counter()
        for headers, body in events:
            session.post(f"{server.url}/v1/events", data=body, headers=headers, timeout=10)
        if not store.flush(timeout=60):
            raise SystemExit("the store did not commit the events' answers within 60 s")
        return len(events) / (time.perf_counter() - started)


def load_and_measure(store: Store, name: str, target: str, args: argparse.Namespace) -> Run:
    """Write ``args.rows`` requests, timing the judges' reads at each checkpoint."""
    rng = random.Random(17)  # noqa: S311 (traffic, not secrets)
    bodies = [
        f'{{"instances": [[{rng.random():.4f}, {rng.random():.4f}, {i}]]}}'.encode()
        for i in range(1000)
    ]
    start = time.time() - args.rows / RATE
    checkpoints = sorted({max(args.rows * share // 10, 1) for share in (1, 3, 10)})
    run = Run(name)
    written = 0
    for checkpoint in checkpoints:
        while written < checkpoint:
            count = min(CHUNK, checkpoint - written)
            answers, clicks = traffic(written, count, start, rng, bodies)
            started = time.perf_counter()
            for answer in answers:
                store.record(answer)
            if not store.flush(timeout=600):
                raise SystemExit(f"{name}: the writer did not commit a chunk within 600 s")
            store.record_outcomes(clicks)
            run.ingest_seconds += time.perf_counter() - started
            run.ingest_rows += len(answers) + len(clicks)
            written += count
        if store.dropped:
            raise SystemExit(f"{name}: {store.dropped} answers were dropped")
        print(
            f"{name}: {_label(written)} requests, {run.ingest_rows:,} rows written in "
            f"{run.ingest_seconds:.1f} s: {run.rows_per_second:,.0f} rows/s"
        )
        now = start + written / RATE
        analyze(name, target)
        run.timings += judge_reads(store, name, target, now, args.repeats, written, rng)
    if name == "postgres":
        explain(target, start + written / RATE)
    run.events_per_second = events_per_second(store, args.event_pairs)
    print(f"{name}: /v1/events end to end: {run.events_per_second:,.0f} events/s")
    return run


@contextlib.contextmanager
def opened(name: str, directory: Path, rows: int) -> Iterator[tuple[Store, str]]:
    """The store ``name`` in ``directory``, started, with what the aggregate connects to."""
    queue = int(CHUNK * (1 + SHADOW_SHARE)) + 10_000  # a whole chunk fits: nothing dropped
    if name == "sqlite":
        path = directory / "predictions.sqlite"
        with SqlitePredictionLog(path, max_rows=2 * rows + 10_000, queue_size=queue) as log:
            yield log, str(path)
        return
    data_root = Path(tempfile.mkdtemp(prefix="sluice-volume-pg-"))  # reachable by postgres
    data_root.chmod(0o711)
    try:
        with start_postgres(data_dir=data_root / "data", log_dir=directory / "pg-log") as server:
            url = server.create_database("sluice")
            with PostgresPredictionLog(url, retention=None, queue_size=queue) as log:
                yield log, url
    finally:
        shutil.rmtree(data_root, ignore_errors=True)


def fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least squares ``seconds = a + b * rows`` through ``(rows, seconds)``."""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    if len(set(xs)) < 2:
        return (0.0, ys[0] / xs[0] if xs[0] else 0.0)
    slope, intercept = statistics.linear_regression(xs, ys)
    return intercept, slope


def crossing(run: Run, prefix: str, budget: float) -> float:
    """Rows in the judge's window at which ``prefix`` reads take ``budget`` seconds."""
    points = [(t.rows, t.seconds) for t in run.timings if t.query.startswith(prefix) and t.rows]
    if not points:
        return float("inf")
    intercept, slope = fit(points)
    print(
        f"{run.store}: {prefix}: {intercept * 1000:.1f} ms + {slope * 1e6:.2f} µs a row; "
        f"{budget:g} s at ~{_label(int((budget - intercept) / slope)) if slope > 0 else 'never'}"
        " rows in the window"
    )
    return (budget - intercept) / slope if slope > 0 else float("inf")


def table(run: Run) -> None:
    """Each read's time at each volume, one line a read: how it grows with the table."""
    volumes = sorted({t.volume for t in run.timings})
    print(f"{run.store}: seconds at " + ", ".join(_label(v) for v in volumes) + " requests")
    for query in dict.fromkeys(t.query for t in run.timings):
        cells = [f"{t.seconds:.3f} ({t.rows:,})" for t in run.timings if t.query == query]
        print(f"  {query}: " + ", ".join(cells))


def duckdb_note() -> str:
    try:
        import duckdb  # noqa: F401
    except ImportError:
        return "DuckDB over Parquet: not measured (duckdb is not installed here)"
    return "DuckDB over Parquet: duckdb is importable, but this script does not time it yet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="logged requests")
    parser.add_argument("--store", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=2, help="each read, best of")
    parser.add_argument("--event-pairs", type=int, default=1000)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds a judge's read may take")
    args = parser.parse_args()
    if args.rows < 10:
        parser.error("--rows must be at least 10")
    names = ("postgres", "sqlite") if args.store == "both" else (args.store,)
    runs = {}
    with tempfile.TemporaryDirectory() as directory:
        for name in names:
            with opened(name, Path(directory), args.rows) as (store, target):
                runs[name] = load_and_measure(store, name, target, args)
    limits = {}
    for run in runs.values():
        table(run)
        crossing(run, "KPI read", args.budget)
        limits[run.store] = crossing(run, "KPI aggregate", args.budget)
    print(duckdb_note())

    def kpi(name: str) -> str:
        if name not in runs:
            return "-"
        final = [t for t in runs[name].timings if t.query == "KPI read, 2 h"][-1]
        return f"{final.seconds:.2f}"

    def rate(name: str) -> str:
        return f"{runs[name].rows_per_second:,.0f}" if name in runs else "-"

    # The production store decides when to move: PostgreSQL's, SQLite's when it alone ran.
    production = runs.get("postgres") or runs["sqlite"]
    limit, events = limits[production.store], production.events_per_second
    print(
        f"ingest {rate('postgres')} rows/s (postgres), {rate('sqlite')} rows/s (sqlite), "
        f"events {events:,.0f}/s; KPI read at {_label(args.rows)}: {kpi('postgres')} s "
        f"(postgres), {kpi('sqlite')} s (sqlite); move to a columnar store past "
        f"~{_label(int(limit)) if limit != float('inf') else 'never'} rows"
    )


if __name__ == "__main__":
    main()
