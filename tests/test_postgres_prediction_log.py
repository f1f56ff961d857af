"""What only the PostgreSQL prediction store does, on a real server (the session's
``postgres_server``): several writers at once, a schema several processes create at once,
retention by time, its indexes, and its errors (an unreachable server, a wrong user or
database), none of which shows the URL's password; and ``sluice feedback`` into it as the
README shows. What it shares with SQLite's log and the fake is in
``tests/test_prediction_store_contract.py``."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests
from support.postgres_query import query
from support.prediction_answers import answer, both
from support.readme_blocks import console_commands

from controller.backends.postgres_prediction_log import PostgresPredictionLog
from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.cli import main
from controller.commands.feedback_route import build_feedback_route
from controller.commands.rollout_backends import _prediction_logs
from controller.errors import ConfigError, TransientError
from controller.local.postgres import PostgresService
from controller.local.processes import free_port
from controller.outcome_scores import OutcomeAnswer
from controller.serve.server import ServeMetrics, SluiceServer, sluice_routes
from controller.settings import Settings

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "pg-secret-4711-do-not-show"
DAY = 24 * 3600.0
TOKEN = "feedback-token-0123456789abcdef"


@pytest.fixture
def url(postgres_server: PostgresService) -> str:
    """A new, empty database of the session's server."""
    return postgres_server.create_database(f"store_{uuid.uuid4().hex[:12]}")


def with_password(url: str, user: str = "postgres") -> str:
    """The URL with a user and a password (the test server trusts any password)."""
    return url.replace("postgresql://postgres@", f"postgresql://{user}:{PASSWORD}@")


@pytest.fixture
def log(url: str) -> Iterator[PostgresPredictionLog]:
    with PostgresPredictionLog(url, retention=None, batch_size=50) as started:
        yield started


def in_threads(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(0..count-1)`` in threads released together; re-raise the first failure."""
    barrier = threading.Barrier(count)
    failures: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            work(index)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures


# -- several writers -----------------------------------------------------------------------------


def test_replicas_writing_the_same_request_ids_at_once_end_with_one_row_each(url: str) -> None:
    """Four writers (each its own connection, as four replicas) log the same 300 requests in
    different orders and label them at once: one row per request, model and role, every label
    there, nothing dropped and no deadlock."""
    ids = [f"tx-{i:03}" for i in range(300)]
    logs = [PostgresPredictionLog(url, retention=None, batch_size=40) for _ in range(4)]

    def replica(index: int) -> None:
        order = random.Random(index).sample(ids, len(ids)) if index % 2 else ids[::-1]
        with logs[index] as log:
            for request_id in order:
                both(log, request_id)
            assert log.flush(60)
            for start in range(0, len(order), 50):
                rows = [(rid, "label", float(index % 2)) for rid in order[start : start + 50]]
                assert log.record_outcomes(rows) == len(rows)

    in_threads(4, replica)
    assert [log.dropped for log in logs] == [0, 0, 0, 0]
    assert [log.written for log in logs] == [600, 600, 600, 600]
    reader = PostgresPredictionLog(url, retention=None)
    assert reader.row_count() == 600
    pairs = reader.pairs(labelled=True)
    assert sorted(p.request_id for p in pairs) == ids
    assert {p.label for p in pairs} <= {0.0, 1.0}
    assert query(url, "SELECT count(*) FROM sluice_feedback") == [(300,)]


def test_processes_creating_the_schema_at_once_all_find_it(url: str) -> None:
    """Eight processes open a new database at the same moment: one creates the schema under the
    advisory lock, none fails, and there is one schema row."""
    script = (
        "import sys, time\n"
        "from controller.backends.postgres_prediction_log import PostgresPredictionLog\n"
        "log = PostgresPredictionLog(sys.argv[1], retention=None)\n"
        "time.sleep(max(float(sys.argv[2]) - time.time(), 0))\n"
        "print(log.row_count())\n"
    )
    at = time.time() + 3.0  # every process imported by then, so they start together
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, url, str(at)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    results = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0] * 8, results
    assert {out for out, _ in results} == {"0\n"}
    assert query(url, "SELECT version FROM sluice_schema") == [(2,)]


def test_a_store_of_an_unknown_schema_version_is_refused_in_one_line(url: str) -> None:
    PostgresPredictionLog(url, retention=None).row_count()
    query(url, "UPDATE sluice_schema SET version = 99")
    with pytest.raises(ConfigError, match="has schema version 99, this Sluice knows 2") as caught:
        PostgresPredictionLog(url, retention=None).pairs()
    assert "\n" not in str(caught.value)


# -- retention -----------------------------------------------------------------------------------


def test_retention_deletes_rows_older_than_it_and_only_those(url: str) -> None:
    """With 30 days' retention, answers sent 40 days ago go, in batches, and answers of
    yesterday stay; outcomes are aged by when they arrived."""
    now = time.time()
    with PostgresPredictionLog(url, retention=None) as writer:
        for i in range(7):
            both(writer, f"old-{i}", when=now - 40 * DAY)
        both(writer, "new", when=now - DAY)
        assert writer.flush()
        writer.record_outcomes([("old-0", "label", 1.0), ("new", "label", "calm")])
    log = PostgresPredictionLog(url, retention=30 * DAY, retention_batch=3)
    assert log.delete_expired(now) == 14
    assert [p.request_id for p in log.pairs()] == ["new"]
    assert log.outcomes(["old-0", "new"], "label") == {"old-0": 1.0, "new": "calm"}
    assert log.delete_expired(now + 31 * DAY) == 2 + 2  # yesterday's answers and both outcomes
    assert (log.row_count(), log.outcomes(["old-0", "new"], "label")) == (0, {})


def test_a_started_store_deletes_expired_rows_by_itself(url: str) -> None:
    """The writer's process runs retention at start and every retention_interval after."""
    with PostgresPredictionLog(url, retention=None) as writer:
        both(writer, "old", when=time.time() - 40 * DAY)
        assert writer.flush()
    with PostgresPredictionLog(url, retention=30 * DAY, retention_interval=0.05) as log:
        both(log, "today", when=time.time())
        assert log.flush()
        deadline = time.monotonic() + 30
        while log.count_logged(["old"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.count_logged(["old", "today"]) == 1


def test_max_rows_bounds_the_store_by_count_as_well(url: str) -> None:
    with PostgresPredictionLog(url, retention=None, max_rows=10, batch_size=4) as log:
        for i in range(20):
            log.record(answer(f"id-{i:02}"))
        assert log.flush()
        assert log.row_count() == 10
    assert [r for (r,) in query(url, "SELECT request_id FROM sluice_predictions ORDER BY seq")] == [
        f"id-{i:02}" for i in range(10, 20)
    ]


# -- the graph's outcome series ----------------------------------------------------------------


def test_outcome_answers_read_as_from_sqlite(url: str, tmp_path: Path) -> None:
    """The graph router's read (a graph's members' primary answers since a time, each with
    every outcome of its request and the segment's value) gives SQLite's rows, numbers as
    numbers and class names as text, newest first up to the limit."""
    logs = (
        PostgresPredictionLog(url, retention=None), SqlitePredictionLog(tmp_path / "log.db")
    )  # fmt: skip
    for log in logs:
        with log:
            for i, (regime, when) in enumerate([("calm", 100.0), ("volatile", 1000.0)] * 3):
                rid = f"d{i}"
                decided = f'{{"predictions": [{{"regime": "{regime}"}}]}}'.encode()
                log.record(answer(rid, model="clf", when=when + i, output=decided))
                log.record(answer(rid, model=regime, when=when + i, score=i / 10))
                log.record(answer(rid, "shadow", model="clf", when=when + i))
            assert log.flush()
        log.record_outcomes(
            [("d0", "regime", "calm"), ("d1", "up", 1), ("d1", "regime", "black_swan"),
             ("d3", "up", 0.0), ("d4", "bucket", 2.0), ("d5", "regime", "volatile")]
        )  # fmt: skip

    def read(log: Any, **arguments: Any) -> list[OutcomeAnswer]:
        return log.outcome_answers(["clf", "calm", "volatile"], **arguments)  # type: ignore[no-any-return]

    for arguments in ({"since": 0.0}, {"since": 500.0, "segment": "regime"},
                      {"since": 0.0, "segment": "bucket"}):  # fmt: skip
        postgres, sqlite = (read(log, **arguments) for log in logs)
        assert postgres  # in either order within one answer's outcomes, as SQL leaves it
        assert sorted(postgres, key=repr) == sorted(sqlite, key=repr), arguments
    # The newest three: d5's two answers (one outcome each), then d3's newer answer.
    newest = read(logs[0], since=0.0, limit=3)
    assert newest == read(logs[1], since=0.0, limit=3)
    assert [(a.model, a.outcome, a.value) for a in newest] == [
        ("volatile", "regime", "volatile"), ("clf", "regime", "volatile"), ("volatile", "up", 0.0)
    ]  # fmt: skip


# -- indexes -------------------------------------------------------------------------------------


def test_the_judges_reads_have_their_indexes(log: PostgresPredictionLog, url: str) -> None:
    """The pair join finds a request's outcome by (request_id, outcome); a per-revision read
    (the KPI judge's) walks (model, revision, time); retention walks (time)."""
    names = {name for (name,) in query(url, "SELECT indexname FROM pg_indexes")}
    assert {
        "sluice_predictions_pkey", "sluice_feedback_pkey", "sluice_predictions_time_idx",
        "sluice_predictions_model_role_time_idx", "sluice_predictions_model_revision_time_idx",
        "sluice_feedback_time_idx",
    } <= names  # fmt: skip
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT count(*) FROM sluice_predictions"
            " WHERE model = 'fraud' AND revision = 'r2' AND time >= 0"
        )
        plan = " ".join(row[0] for row in cursor.fetchall())
        cursor.execute(
            "EXPLAIN SELECT value_text FROM sluice_feedback"
            " WHERE request_id = 'x' AND outcome = 'label'"
        )
        feedback_plan = " ".join(row[0] for row in cursor.fetchall())
    connection.close()
    assert "sluice_predictions_model_revision_time_idx" in plan
    assert "sluice_feedback_pkey" in feedback_plan


# -- errors --------------------------------------------------------------------------------------


def test_an_unreachable_server_is_transient_and_names_host_and_port_not_the_password() -> None:
    port = free_port()
    log = PostgresPredictionLog(
        f"postgresql://sluice:{PASSWORD}@127.0.0.1:{port}/sluice", retention=None
    )
    with pytest.raises(TransientError) as caught:
        log.record_feedback("tx-1", 1.0)
    message = str(caught.value)
    assert f"127.0.0.1:{port} is unreachable" in message
    assert PASSWORD not in message
    assert "\n" not in message


def test_a_missing_database_is_a_config_error_naming_the_fix(
    postgres_server: PostgresService,
) -> None:
    url = with_password(postgres_server.url("no_such_database"))
    with pytest.raises(ConfigError, match=r"createdb no_such_database") as caught:
        PostgresPredictionLog(url, retention=None).pairs()
    assert PASSWORD not in str(caught.value)


def test_an_unknown_user_is_a_config_error_naming_the_fix(url: str) -> None:
    with pytest.raises(ConfigError, match="fix the user and password") as caught:
        PostgresPredictionLog(with_password(url, user="nobody"), retention=None).count_logged(["x"])
    assert PASSWORD not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_writer_outlives_a_lost_connection(log: PostgresPredictionLog, url: str) -> None:
    """The server ends the writer's connection (a restart, a failover): the next batch opens
    another, and the answers after it land."""
    both(log, "before")
    assert log.flush()
    query(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'sluice' AND datname = current_database()",
    )
    for i in range(3):  # the first batch may be lost with the connection; the next reconnects
        both(log, f"after-{i}")
        assert log.flush()
    assert log.count_logged(["before", "after-2"]) == 2


# -- the command line ----------------------------------------------------------------------------


def test_sluice_feedback_writes_into_postgres_as_the_readme_shows(url: str, tmp_path: Path) -> None:
    """`sluice feedback regimes.csv` with SLUICE_PREDICTION_STORE_URL set, the README's
    commands in a subprocess of the real CLI: the labels land in PostgreSQL, and the output is
    the README's."""
    with PostgresPredictionLog(url, retention=None) as log:
        for request_id in ("day-1", "day-2", "day-3"):
            both(log, request_id)
        assert log.flush()
    commands = console_commands("## Late labels", containing="SLUICE_PREDICTION_STORE_URL")
    export, command = commands[0], commands[1]
    assert export.startswith("export SLUICE_PREDICTION_STORE_URL='postgresql://")
    (tmp_path / command.split()[2]).write_text(
        "request_id,label\nday-1,volatile\nday-2,calm\nday-3,black_swan\nday-9,calm\n",
        encoding="utf-8",
    )
    environment = {
        **os.environ, "SLUICE_PREDICTION_STORE_URL": with_password(url),
        "PYTHONPATH": str(ROOT),
    }  # fmt: skip
    for name in ("SLUICE_CONFIG", "SLUICE_PREDICTION_LOG_PATH", "SLUICE_STATE_DIR"):
        environment.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "controller", *command.split()[1:]],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "stored 4 labels (1 request ids not in the log)\n"
    assert PostgresPredictionLog(url, retention=None).outcomes(
        ["day-1", "day-2", "day-3", "day-9"], "label"
    ) == {"day-1": "volatile", "day-2": "calm", "day-3": "black_swan", "day-9": "calm"}
    assert not (tmp_path / ".sluice").exists()  # no SQLite log was made


def test_an_unreachable_store_is_exit_3_in_one_line_without_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    port = free_port()
    monkeypatch.setenv(
        "SLUICE_PREDICTION_STORE_URL", f"postgresql://sluice:{PASSWORD}@127.0.0.1:{port}/sluice"
    )
    (tmp_path / "labels.csv").write_text("request_id,label\ntx-1,1\n", encoding="utf-8")
    code = main(["feedback", "labels.csv"])
    err = capsys.readouterr().err
    assert code == 3
    assert err.startswith(f"sluice: error: the prediction store at 127.0.0.1:{port} is unreachable")
    assert err.count("\n") == 1
    assert PASSWORD not in err


def test_config_show_never_prints_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLUICE_PREDICTION_STORE_URL", f"postgresql://u:{PASSWORD}@db:5432/sluice")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "prediction_store_url" in out
    assert PASSWORD not in out


def test_two_serve_replicas_take_labels_into_one_store(url: str, tmp_path: Path) -> None:
    """`sluice serve`'s feedback route, built from the settings as `sluice serve` builds it, on
    two servers sharing one store: labels posted to either are in it, the latest winning."""
    with PostgresPredictionLog(url, retention=None) as log:
        both(log, "tx-1", when=time.time())  # within the retention the replicas run
        assert log.flush()
    settings = Settings(
        state_dir=tmp_path / "state", feedback_token=TOKEN, prediction_store_url=url
    )

    def replica() -> SluiceServer:
        metrics = ServeMetrics()
        feedback = build_feedback_route(settings, metrics=metrics)
        routes = sluice_routes(
            metrics=metrics, status=dict, mlflow_trigger=lambda model, alias: False,
            mlflow_webhook_secret=None, feedback=feedback,
        )  # fmt: skip
        return SluiceServer(routes)

    with replica() as first, replica() as second:
        for server, labels in ((first, [("tx-1", 0), ("tx-2", 1)]), (second, [("tx-1", 1)])):
            body = {"labels": [{"request_id": rid, "label": value} for rid, value in labels]}
            answered = requests.post(
                f"{server.url}/v1/feedback", json=body,
                headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30,
            )  # fmt: skip
            assert answered.status_code == 200, answered.text
    assert answered.json() == {"stored": 1, "not_in_log": 0}
    reader = PostgresPredictionLog(url, retention=None)
    assert reader.outcomes(["tx-1", "tx-2"], "label") == {"tx-1": 1.0, "tx-2": 1.0}
    assert not (tmp_path / "state").exists()  # no SQLite log was made


def test_the_shadow_phase_reads_the_configured_store_on_any_target(url: str) -> None:
    """With prediction_store_url set, a cluster target's shadow phase reads PostgreSQL (without
    it, a cluster has no prediction log)."""
    store = _prediction_logs(Settings(prediction_store_url=url), "kubernetes")("staging")
    assert isinstance(store, PostgresPredictionLog)
    assert store.path == url.replace("postgres@", "")
    assert _prediction_logs(Settings(), "kubernetes")("staging") is None


def test_serves_feedback_route_runs_the_retention(url: str, tmp_path: Path) -> None:
    """`sluice serve` takes labels but writes no answers: opening its feedback route on the
    store starts the retention, which deletes what is older than the setting's days."""
    with PostgresPredictionLog(url, retention=None) as writer:
        both(writer, "old", when=time.time() - 40 * DAY)
        both(writer, "new", when=time.time() - DAY)
        assert writer.flush()
    settings = Settings(
        state_dir=tmp_path / "state", feedback_token=TOKEN, prediction_store_url=url,
        prediction_store_retention_days=30,
    )  # fmt: skip
    assert build_feedback_route(settings, metrics=ServeMetrics()) is not None
    reader = PostgresPredictionLog(url, retention=None)
    deadline = time.monotonic() + 30
    while reader.count_logged(["old"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reader.count_logged(["old", "new"]) == 1


def test_kserves_logger_events_reach_postgres_and_the_kpi_read_joins_their_clicks(
    url: str, tmp_path: Path
) -> None:
    """The cluster's data path end to end: `sluice serve`'s `/v1/events`, built from the settings
    as `sluice serve` builds it with `SLUICE_PREDICTION_STORE_URL` set, takes the CloudEvents
    KServe's logger posts (binary mode, built with the cloudevents SDK), pairs each request with
    its answer into PostgreSQL under the revision Knative routed it to, leaves the load test's
    out, and the KPI checks' read finds each client answer with its click posted later."""
    from support.kserve_logger import kserve_event

    from controller.commands.events import build_events_route

    events_token = "events-token-0123456789abcdef"
    settings = Settings(
        state_dir=tmp_path / "state", events_token=events_token, prediction_store_url=url
    )
    metrics = ServeMetrics()
    built = build_events_route(settings, metrics=metrics)
    assert built is not None
    route, store = built
    routes = sluice_routes(
        metrics=metrics, status=dict, mlflow_trigger=lambda model, alias: False,
        mlflow_webhook_secret=None, events=route,
    )  # fmt: skip
    request, response = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}', b'{"predictions": [1]}'
    sent = [
        ("c-1", "iris-predictor-00001", False), ("c-2", "iris-predictor-00002", False),
        ("load-1", "iris-predictor-00002", True),
    ]  # fmt: skip
    with SluiceServer(routes) as server:
        for request_id, revision, synthetic in sent:
            metadata = {"Knative-Serving-Revision": [revision]}
            if synthetic:
                metadata["X-Sluice-Synthetic"] = ["load-test"]
            for kind, data in (("request", request), ("response", response)):
                headers, body = kserve_event(kind, request_id, data, metadata=metadata)
                answered = requests.post(
                    f"{server.url}/v1/events", data=body,
                    headers={**headers, "Authorization": f"Bearer {events_token}"}, timeout=30,
                )  # fmt: skip
                assert answered.status_code == 200, answered.text
    store.close()  # writes what is queued, as `sluice serve` does when it stops
    reader = PostgresPredictionLog(url, retention=None)
    reader.record_outcomes([("c-2", "click", 1)])
    served = reader.served_outcomes(
        "iris", ["iris-predictor-00001", "iris-predictor-00002"], "click", 0
    )
    assert [(s.request_id, s.revision, s.value) for s in served] == [
        ("c-1", "iris-predictor-00001", None), ("c-2", "iris-predictor-00002", 1.0),
    ]  # fmt: skip
    assert not (tmp_path / "state").exists()  # no SQLite log was made


def test_the_local_routers_log_into_the_store_the_environment_names(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`SLUICE_PREDICTION_STORE_URL=... sluice local up`: the runtime's routers log into that
    store, where `sluice rollout` and `sluice feedback` read; unset, into the state's file."""
    from controller.local.kserve_plane import routers_prediction_log

    monkeypatch.delenv("SLUICE_PREDICTION_STORE_URL", raising=False)
    local = routers_prediction_log(tmp_path)
    assert isinstance(local, SqlitePredictionLog)
    assert local.path == tmp_path / "predictions.sqlite"
    monkeypatch.setenv("SLUICE_PREDICTION_STORE_URL", url)
    store = routers_prediction_log(tmp_path)
    assert isinstance(store, PostgresPredictionLog)
    with store:
        both(store, "tx-local", when=time.time())
        assert store.flush()
    assert PostgresPredictionLog(url, retention=None).count_logged(["tx-local"]) == 1
    assert not (tmp_path / "predictions.sqlite").exists()
