"""How the prediction store holds up at volume: 10 million logged requests written through the
stores' own batch writers, the judges' queries timed at 1, 3 and 10 million, and the volume at
which a team should move the judge's reads to a columnar store, and to which (issue #17).

``python benchmarks/prediction_store_volume.py [--rows N] [--store postgres sqlite duckdb
chdb-parquet chdb | all]``

Starts its own PostgreSQL server (as the tests do) and a SQLite file, both in a temporary
directory, and writes ``--rows`` requests of one model shaped like real traffic: 200 requests a
second (times spread over N/200 s, ending now), a primary revision and a canary at 5 %, a
shadow copy of 10 % of requests (same inputs, the challenger's revision), a ``click`` outcome
for 4 %. Answers go through :meth:`record` and :meth:`flush`, the queue and writer thread
``POST /v1/events`` ends in, in chunks; the clicks through ``record_outcomes``, as ``sluice
serve``'s feedback route writes them. At a tenth, three tenths and all of ``--rows`` it times
what the judges read, best of ``--repeats``:

- the rate KPI's read, ``outcome_counts(model, (canary, primary), "click", since, now)``: one
  aggregating query per revision's counts, over the last 30 minutes and over a canary step's
  2 hours; and the mean KPI's, ``served_outcomes`` over the same windows (every row into
  Python: what the rate read was before);
- the shadow judge's join, ``pairs(labelled=True, since=2 hours ago)``, and ``outcomes`` of
  10,000 request ids;
- on PostgreSQL, ``EXPLAIN (ANALYZE, BUFFERS)`` of both KPI reads at the end.

Then a short run of KServe-shaped CloudEvents through the real ``/v1/events`` route into the
same store (``serve_events.py``'s events and server), for events/s end to end.

The columnar stores (``columnar_stores.py``; ``pip install -e '.[bench]'``, else skipped with a
line saying so) get the same generated rows, exported chunk by chunk to Parquet files, and run
the same three judges' reads: DuckDB over the files, chDB (embedded ClickHouse) over the same
files, and chDB over its own MergeTree table loaded from them.

Each read's time is fitted as a line in the rows it returns (the pair join's in the requests
logged), and the line says where it crosses ``--budget`` seconds (1 s of a 30 s analysis
interval). The last line is the summary the issue asks for: which store the judges' reads
should move to, and past what volume.
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

import columnar_stores
import requests
from serve_events import RESPONSE, _event

from controller.backends.postgres_prediction_log import PostgresPredictionLog
from controller.backends.postgres_prediction_queries import _OUTCOME_COUNTS, _SERVED_OUTCOMES
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

ROW_STORES = ("postgres", "sqlite")
STORES = (*ROW_STORES, *columnar_stores.COLUMNAR)


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


Traffic = tuple[list[Prediction], list[tuple[str, str, float]]]


def traffic(
    first: int, count: int, start: float, rng: random.Random, bodies: Sequence[bytes]
) -> Traffic:
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


def judge_reads(store: Store, name: str, now: float, repeats: int, volume: int) -> list[Timing]:
    """The judges' reads at this volume, each timed."""
    reads: dict[str, Callable[[], int]] = {}
    for window, seconds in WINDOWS.items():
        since = now - seconds
        reads[f"KPI counts, {window}"] = lambda since=since: sum(
            counts.settled
            for counts in store.outcome_counts(
                MODEL, (CANARY, PRIMARY), "click", since, now
            ).values()
        )
        reads[f"KPI rows, {window}"] = lambda since=since: len(
            store.served_outcomes(MODEL, (CANARY, PRIMARY), "click", since)
        )
    reads["shadow pairs, 2 h"] = lambda: len(
        store.pairs(model=MODEL, shadow_revision=SHADOW, since=now - 7200, labelled=True,
                    outcome="click")
    )  # fmt: skip
    pick = random.Random(volume)  # noqa: S311 (a sample, not secrets; apart from the traffic's)
    ids = [request_id_of(pick.randrange(volume)) for _ in range(10_000)]
    reads["outcomes, 10k ids"] = lambda: len(store.outcomes(ids, "click"))
    return timed_reads(name, volume, repeats, reads)


def timed_reads(
    name: str, volume: int, repeats: int, reads: dict[str, Callable[[], int]]
) -> list[Timing]:
    """Each of ``reads`` timed, best of ``repeats``, and printed."""
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
    """PostgreSQL's plans of the rate KPI's counts and the mean KPI's rows over each window,
    run: which index they walk (or why not), what they read, where the time goes."""
    import psycopg2

    with contextlib.closing(psycopg2.connect(url)) as connection, connection.cursor() as cursor:
        for window, seconds in WINDOWS.items():
            counts = {
                "model": MODEL, "revisions": [CANARY, PRIMARY], "outcome": "click",
                "since": now - seconds, "settled": now,
            }  # fmt: skip
            rows = ("click", MODEL, [CANARY, PRIMARY], now - seconds)
            for name, sql, arguments in (
                ("KPI counts", _OUTCOME_COUNTS, counts), ("KPI rows", _SERVED_OUTCOMES, rows),
            ):  # fmt: skip
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, arguments)
                print(f"  EXPLAIN (ANALYZE, BUFFERS) of the {name}, {window}:")
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


def traffic_plan(rows: int) -> tuple[float, list[int], Callable[[int, int], Traffic]]:
    """When the traffic starts (it ends now), the checkpoints (a tenth, three tenths, all of
    ``rows``) and the generator of requests ``first`` to ``first + count``: seeded, so every
    store gets the same requests."""
    rng = random.Random(17)  # noqa: S311 (traffic, not secrets)
    bodies = [
        f'{{"instances": [[{rng.random():.4f}, {rng.random():.4f}, {i}]]}}'.encode()
        for i in range(1000)
    ]
    start = time.time() - rows / RATE

    def generate(first: int, count: int) -> Traffic:
        return traffic(first, count, start, rng, bodies)

    return start, sorted({max(rows * share // 10, 1) for share in (1, 3, 10)}), generate


def load_and_measure(store: Store, name: str, target: str, args: argparse.Namespace) -> Run:
    """Write ``args.rows`` requests, timing the judges' reads at each checkpoint."""
    start, checkpoints, generate = traffic_plan(args.rows)
    run = Run(name)
    written = 0
    for checkpoint in checkpoints:
        while written < checkpoint:
            count = min(CHUNK, checkpoint - written)
            answers, clicks = generate(written, count)
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
        run.timings += judge_reads(store, name, now, args.repeats, written)
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


def columnar_reads(
    reader: columnar_stores.ColumnarReader, now: float
) -> dict[str, Callable[[], int]]:
    """The judges' reads on a columnar store at ``now``, as :func:`judge_reads` names them."""
    read = reader.reads(model=MODEL, canary=CANARY, primary=PRIMARY, shadow=SHADOW, outcome="click")
    reads: dict[str, Callable[[], int]] = {}
    for window, seconds in WINDOWS.items():
        since = now - seconds
        reads[f"KPI counts, {window}"] = lambda since=since: read("counts", since, now)
        reads[f"KPI rows, {window}"] = lambda since=since: read("rows", since, now)
    reads["shadow pairs, 2 h"] = lambda: read("pairs", now - 7200, now)
    return reads


def load_columnar(stores: Sequence[str], directory: Path, args: argparse.Namespace) -> list[Run]:
    """The same requests exported to Parquet chunk by chunk (and loaded into chDB's MergeTree
    when it runs), the judges' three reads timed on each columnar store at each checkpoint."""
    start, checkpoints, generate = traffic_plan(args.rows)
    runs = {name: Run(name) for name in stores}
    export_seconds, rows_written, written = 0.0, 0, 0
    with columnar_stores.opened(stores, directory / "columnar") as (log, readers):
        for checkpoint in checkpoints:
            while written < checkpoint:
                count = min(CHUNK, checkpoint - written)
                answers, clicks = generate(written, count)
                now = start + (written + count) / RATE
                started = time.perf_counter()
                paths = log.write(answers, clicks, now)
                export_seconds += time.perf_counter() - started
                rows_written += len(answers) + len(clicks)
                for reader in readers:
                    started = time.perf_counter()
                    reader.ingest(paths)
                    runs[reader.store].ingest_seconds += time.perf_counter() - started
                written += count
            now = start + written / RATE
            print(
                f"parquet: {_label(written)} requests, {rows_written:,} rows exported in "
                f"{export_seconds:.1f} s: {rows_written / export_seconds:,.0f} rows/s, "
                f"{log.size_bytes() / 1e6:,.0f} MB"
            )
            for reader in readers:
                run = runs[reader.store]
                run.ingest_rows = rows_written
                if reader.store == "chdb":
                    loaded = rows_written / (run.ingest_seconds + export_seconds)
                    print(
                        f"chdb: MergeTree loaded from the files in {run.ingest_seconds:.1f} s; "
                        f"with the export {loaded:,.0f} rows/s"
                    )
                reads = columnar_reads(reader, now)
                run.timings += timed_reads(reader.store, written, args.repeats, reads)
    for run in runs.values():
        run.ingest_seconds += export_seconds  # what a team pays to get the rows there
    return list(runs.values())


def fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least squares ``seconds = a + b * rows`` through ``(rows, seconds)``."""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    if len(set(xs)) < 2:
        return (0.0, ys[0] / xs[0] if xs[0] else 0.0)
    slope, intercept = statistics.linear_regression(xs, ys)
    return intercept, slope


def crossing(
    run: Run, prefix: str, budget: float, *, by_volume: bool = False, show: bool = True
) -> float:
    """Rows in the judge's window (``by_volume``: requests logged) at which ``prefix`` reads
    take ``budget`` seconds."""
    points = [
        (t.volume if by_volume else t.rows, t.seconds)
        for t in run.timings
        if t.query.startswith(prefix) and t.rows
    ]
    if not points:
        return float("inf")
    intercept, slope = fit(points)
    limit = (budget - intercept) / slope if slope > 0 else float("inf")
    unit = "requests logged" if by_volume else "rows in the window"
    if show:
        print(
            f"{run.store}: {prefix}: {intercept * 1000:.1f} ms + {slope * 1e6:.3f} µs a "
            f"{'request' if by_volume else 'row'}; {budget:g} s at ~{_volume(limit)} {unit}"
        )
    return limit


def _volume(count: float) -> str:
    """A crossing as a count: never (the read does not grow), 0 (over at every volume)."""
    return "never" if count == float("inf") else _label(max(int(count), 0))


def table(run: Run) -> None:
    """Each read's time at each volume, one line a read: how it grows with the table."""
    volumes = sorted({t.volume for t in run.timings})
    print(f"{run.store}: seconds at " + ", ".join(_label(v) for v in volumes) + " requests")
    for query in dict.fromkeys(t.query for t in run.timings):
        cells = [f"{t.seconds:.3f} ({t.rows:,})" for t in run.timings if t.query == query]
        print(f"  {query}: " + ", ".join(cells))


#: What each store is called in the summary.
TITLES = {
    "postgres": "PostgreSQL", "sqlite": "SQLite", "duckdb": "DuckDB over Parquet",
    "chdb-parquet": "ClickHouse (chDB) over Parquet", "chdb": "ClickHouse (chDB, MergeTree)",
}  # fmt: skip


def final(run: Run, query: str) -> float:
    """``query``'s time at the largest volume ``run`` measured."""
    return [t.seconds for t in run.timings if t.query == query][-1]


def summary(runs: dict[str, Run], rows: int, budget: float, skipped: dict[str, str]) -> str:
    """Issue #17's answer in one line: ingest and the judges' reads at ``rows`` per store, and
    which store a team should move to past which volume (the production store's crossings:
    the rate KPI's counts in the window, the pair join in the requests logged)."""
    ingest = ", ".join(f"{name} {run.rows_per_second:,.0f}" for name, run in runs.items())
    reads = "; ".join(
        f"{name} {final(run, 'KPI counts, 2 h'):.2f} + {final(run, 'shadow pairs, 2 h'):.2f} s"
        for name, run in runs.items()
    )
    line = f"ingest rows/s: {ingest}; at {_label(rows)}, KPI counts + pairs, 2 h: {reads}; "
    production = next((runs[name] for name in ROW_STORES if name in runs), None)
    columnar = [run for name, run in runs.items() if name not in ROW_STORES]
    if production is None:
        return line + "no row store ran to compare with"
    window = crossing(production, "KPI counts", budget, show=False)
    table = crossing(production, "shadow pairs", budget, by_volume=True, show=False)
    when = f"~{_volume(window)} answers in a step's window or ~{_volume(table)} requests logged"
    if not columnar:
        why = ", ".join(f"{name}: {reason}" for name, reason in skipped.items()) or "not run"
        return line + f"move to a columnar store past {when} (which one not measured: {why})"

    def cost(run: Run) -> float:
        return final(run, "KPI counts, 2 h") + final(run, "shadow pairs, 2 h")

    best = min(columnar, key=cost)
    if cost(best) >= cost(production):
        return line + f"stay on {TITLES[production.store]}: no columnar store read faster"
    return line + f"move the judges' reads to {TITLES[best.store]} past {when}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="logged requests")
    parser.add_argument(
        "--store", nargs="+", choices=(*STORES, "both", "all"), default=["all"],
        help="stores to measure (both: postgres and sqlite; all: every store)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=2, help="each read, best of")
    parser.add_argument("--event-pairs", type=int, default=1000)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds a judge's read may take")
    args = parser.parse_args()
    if args.rows < 10:
        parser.error("--rows must be at least 10")
    groups = {"both": ROW_STORES, "all": STORES}
    names = list(dict.fromkeys(n for name in args.store for n in groups.get(name, (name,))))
    skipped = {
        name: f"{package} is not installed"
        for name, package in columnar_stores.missing_packages(names).items()
    }
    for name, why in skipped.items():
        print(f"{name}: skipped, {why}: {columnar_stores.INSTALL}")
    runs: dict[str, Run] = {}
    with tempfile.TemporaryDirectory() as directory:
        for name in (n for n in names if n in ROW_STORES):
            with opened(name, Path(directory), args.rows) as (store, target):
                runs[name] = load_and_measure(store, name, target, args)
        columnar = [n for n in names if n in columnar_stores.COLUMNAR and n not in skipped]
        if columnar:
            for run in load_columnar(columnar, Path(directory), args):
                runs[run.store] = run
    for run in runs.values():
        table(run)
        for prefix in ("KPI rows", "KPI counts"):
            crossing(run, prefix, args.budget)
        crossing(run, "shadow pairs", args.budget, by_volume=True)
    events = {name: run.events_per_second for name, run in runs.items() if name in ROW_STORES}
    if events:
        print("/v1/events end to end: " + ", ".join(f"{n} {e:,.0f}/s" for n, e in events.items()))
    print(summary(runs, args.rows, args.budget, skipped))


if __name__ == "__main__":
    main()
