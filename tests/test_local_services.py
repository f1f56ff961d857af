"""Real MLflow, PostgreSQL, Prometheus and Alertmanager, started as `sluice local up` does."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from mlflow import MlflowClient
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from support.gitrepo import GitRemote, create_git_remote, git

from controller.errors import ConfigError, MetricsUnavailable, TransientError
from controller.local.configs import (
    StaticConfig,
    write_alertmanager_config,
    write_prometheus_config,
)
from controller.local.postgres import PostgresService, start_postgres
from controller.local.processes import ManagedProcess, free_port, http_ok
from controller.local.services import (
    AlertmanagerService,
    MlflowService,
    PrometheusService,
    start_prometheus,
)

# -- helpers ------------------------------------------------------------------------------------


def _eventually(probe: Callable[[], Any], timeout: float) -> Any:
    """Return the first truthy result of ``probe`` within ``timeout`` seconds, else fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"nothing after {timeout}s from {probe}")


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (an orphan zombie waiting for init to reap it does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def _children(pid: int) -> list[int]:
    """Running processes whose parent is ``pid``."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = entry.joinpath("stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if fields[1] == str(pid) and fields[0] not in "ZX":
                children.append(int(entry.name))
    return children


def _can_listen(port: int) -> bool:
    """Whether a server could listen on ``port`` now (SO_REUSEADDR, as servers set it)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
        return True


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (http://127.0.0.1)
        return json.load(response)


class _WebhookReceiver(BaseHTTPRequestHandler):
    """Records each POST as (Authorization header, JSON body) on the server's queue."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.put((self.headers.get("Authorization"), json.loads(body)))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WebhookReceiver)
    server.received = queue.Queue()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# -- ManagedProcess -----------------------------------------------------------------------------


def test_stop_also_stops_what_the_process_forked(tmp_path: Path) -> None:
    """Stopping a process stops the children it started, not only the process itself."""
    child_pid = tmp_path / "child.pid"
    script = f"sleep 300 & echo $! > {child_pid}; wait"
    process = ManagedProcess(["sh", "-c", script], log_path=tmp_path / "sh.log").start()
    process.wait_ready(child_pid.exists, timeout=5)
    child = int(_eventually(lambda: child_pid.read_text().strip(), timeout=5))
    assert _running(child)

    process.stop()

    assert not process.alive
    assert not _running(process.pid)
    assert not _running(child)


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    """A process that ignores SIGTERM is killed when the stop timeout runs out."""
    log = tmp_path / "stubborn.log"
    script = "trap '' TERM; echo started; while :; do sleep 0.1; done"
    process = ManagedProcess(["sh", "-c", script], log_path=log).start()
    process.wait_ready(lambda: "started" in log.read_text(), timeout=5)

    started = time.monotonic()
    process.stop(timeout=0.5)

    assert process.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 5
    process.stop()  # a second stop does nothing


def test_wait_ready_times_out_with_the_log_tail_and_stops_the_process(tmp_path: Path) -> None:
    """A process that never gets ready fails at the timeout, quoting its log, and is stopped."""
    script = "echo still warming up; exec sleep 300"
    process = ManagedProcess(["sh", "-c", script], log_path=tmp_path / "slow.log", name="slow")
    process.start()
    with pytest.raises(TransientError, match=r"slow did not become ready within 0.5s.*warming up"):
        process.wait_ready(lambda: False, timeout=0.5)
    assert not process.alive


# -- MLflow -------------------------------------------------------------------------------------


def test_mlflow_answers_health_on_localhost(mlflow_server: MlflowService) -> None:
    """The MLflow server listens on 127.0.0.1 and answers /health."""
    assert mlflow_server.tracking_uri == f"http://127.0.0.1:{mlflow_server.port}"
    assert http_ok(f"{mlflow_server.tracking_uri}/health")


def test_mlflow_serves_from_the_one_process_it_started(mlflow_server: MlflowService) -> None:
    """The tracking server is one Python process, which imports MLflow once: `mlflow server`
    would start uvicorn in a second one (about 280 MB and 2.5 s of CPU more per stack)."""
    group = subprocess.run(
        ["ps", "-o", "pid=", "-g", str(mlflow_server.pid)],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert group == [str(mlflow_server.pid)]
    assert http_ok(f"{mlflow_server.tracking_uri}/health")


def test_mlflow_registers_a_model(mlflow_server: MlflowService) -> None:
    """A registered model created through MlflowClient reads back with its description."""
    client = MlflowClient(tracking_uri=mlflow_server.tracking_uri)
    name = f"sluice-test-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name, description="round trip")
    assert client.get_registered_model(name).description == "round trip"


def test_mlflow_proxies_artifacts_to_its_artifacts_dir(
    mlflow_server: MlflowService, mlflow_tracking_uri: str
) -> None:
    """An artifact logged through the server gets an mlflow-artifacts URI and lands on its disk."""
    assert os.environ["MLFLOW_TRACKING_URI"] == mlflow_tracking_uri
    client = MlflowClient()
    run = client.create_run(client.create_experiment(f"proxy-{uuid.uuid4().hex[:8]}"))
    client.log_text(run.info.run_id, "hello from the test", "notes/hello.txt")

    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    stored = list(mlflow_server.artifacts_dir.rglob(f"{run.info.run_id}/**/hello.txt"))
    assert [path.read_text() for path in stored] == ["hello from the test"]


# -- PostgreSQL ---------------------------------------------------------------------------------


@pytest.mark.postgres
def test_mlflow_on_postgres_stores_a_model_version(
    mlflow_postgres_server: MlflowService, postgres_server: PostgresService
) -> None:
    """A model version registered through MLflow on PostgreSQL reads back and is in PostgreSQL."""
    client = MlflowClient(tracking_uri=mlflow_postgres_server.tracking_uri)
    name = f"sluice-test-{uuid.uuid4().hex[:8]}"
    run = client.create_run(client.create_experiment(name))
    source = f"{run.info.artifact_uri}/model"
    client.create_registered_model(name)
    created = client.create_model_version(name, source=source, run_id=run.info.run_id)

    read = client.get_model_version(name, created.version)
    assert (read.name, read.version, read.source, read.run_id) == (
        name,
        "1",
        source,
        run.info.run_id,
    )
    conn = psycopg2.connect(postgres_server.url("mlflow"))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT version, source FROM model_versions WHERE name = %s", (name,))
            assert cur.fetchall() == [(1, source)]
    finally:
        conn.close()


@pytest.mark.postgres
def test_postgres_creates_a_database_once(postgres_server: PostgresService) -> None:
    """create_database makes the database, and a second call returns the same URL."""
    url = postgres_server.create_database("sluice_extra")
    assert postgres_server.create_database("sluice_extra") == url
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_database(), inet_server_addr()::text")
            assert cur.fetchone() == ("sluice_extra", "127.0.0.1/32")
    finally:
        conn.close()


@pytest.mark.postgres
def test_stopping_postgres_leaves_no_server_process(tmp_path: Path) -> None:
    """Stopping PostgreSQL with a client connected ends the postmaster and all its children."""
    data_root = Path(tempfile.mkdtemp(prefix="sluice-test-pg-"))
    data_root.chmod(0o711)
    try:
        with start_postgres(data_dir=data_root / "data", log_dir=tmp_path, fsync=False) as service:
            conn = psycopg2.connect(service.url())
            # PostgreSQL puts each child in a session of its own, so look for them by parent.
            children = _children(service.pid)
            assert len(children) > 2  # checkpointer, writers, launchers and our backend

            service.stop()
            conn.close()

            assert [pid for pid in [service.pid, *children] if _running(pid)] == []
            assert _can_listen(service.port)
            assert not service.socket_dir.exists()
    finally:
        shutil.rmtree(data_root, ignore_errors=True)


# -- Prometheus and Alertmanager ------------------------------------------------------------------


def test_prometheus_scrapes_a_target(prometheus_server: Callable[..., PrometheusService]) -> None:
    """Prometheus scrapes an exporter and /api/v1/query returns the scraped value."""
    registry = CollectorRegistry()
    Gauge("sluice_test_value", "A value for Prometheus to scrape", registry=registry).set(42)
    port = free_port()
    exporter, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        prometheus = prometheus_server(scrape_targets={"exporter": [f"127.0.0.1:{port}"]})
        query = urllib.parse.urlencode({"query": "sluice_test_value"})

        def sample() -> Any:
            return _get_json(f"{prometheus.url}/api/v1/query?{query}")["data"]["result"]

        [result] = _eventually(sample, timeout=30)
    finally:
        exporter.shutdown()
    assert result["metric"]["job"] == "exporter"
    assert result["value"][1] == "42"


def test_alertmanager_delivers_an_alert_with_the_bearer_token(
    alertmanager_server: Callable[..., AlertmanagerService], webhook: ThreadingHTTPServer
) -> None:
    """An alert posted to Alertmanager reaches the webhook, authenticated with the bearer token."""
    alertmanager = alertmanager_server(
        webhook_url=f"http://127.0.0.1:{webhook.server_port}/alerts",
        bearer_token="sluice-test-token",
    )
    alert = [{"labels": {"alertname": "SluiceFeatureDrift", "model": "fraud-detector"}}]
    request = urllib.request.Request(  # noqa: S310 (http://127.0.0.1)
        f"{alertmanager.url}/api/v2/alerts",
        data=json.dumps(alert).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        assert response.status == 200

    authorization, payload = webhook.received.get(timeout=30)  # type: ignore[attr-defined]
    assert authorization == "Bearer sluice-test-token"
    assert [a["labels"] for a in payload["alerts"]] == [alert[0]["labels"]]


@pytest.mark.parametrize("kind", ["prometheus", "alertmanager"])
def test_stopping_a_service_frees_its_port_and_leaves_no_process(
    kind: str,
    prometheus_server: Callable[..., PrometheusService],
    alertmanager_server: Callable[..., AlertmanagerService],
) -> None:
    """After stop the service's process is gone and its port can be listened on again."""
    service = (
        prometheus_server()
        if kind == "prometheus"
        else alertmanager_server(webhook_url="http://127.0.0.1:9/")
    )
    assert not _can_listen(service.port)

    service.stop()
    service.stop()

    with pytest.raises(ProcessLookupError):
        os.kill(service.pid, 0)
    assert _can_listen(service.port)


def test_prometheus_with_a_bad_config_fails_fast_with_its_log(tmp_path: Path) -> None:
    """A config Prometheus rejects fails the start at once, quoting Prometheus's own error."""
    config = tmp_path / "prometheus.yml"
    config.write_text("scrape_configs: [\nnot: valid: yaml\n")
    started = time.monotonic()
    with pytest.raises(
        MetricsUnavailable, match=r"Prometheus exited.*Error loading config"
    ) as info:
        start_prometheus(config_file=config, data_dir=tmp_path / "data", log_dir=tmp_path)
    assert time.monotonic() - started < 10
    assert str(tmp_path / "prometheus.log") in str(info.value)


def test_a_missing_prometheus_binary_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without prometheus on PATH the start fails with the command that installs it."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="prometheus not found on PATH: run 'make setup'"):
        start_prometheus(config_file=tmp_path / "p.yml", data_dir=tmp_path, log_dir=tmp_path)


def test_written_configs_pass_promtool_and_amtool(tmp_path: Path) -> None:
    """The config writers produce files that Prometheus's and Alertmanager's checkers accept."""
    rules = tmp_path / "rules.yml"
    rules.write_text(
        json.dumps({"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0"}]}]})
    )
    labelled = StaticConfig(("127.0.0.1:8081",), {"revision_name": "fraud-predictor-00001"})
    prometheus = write_prometheus_config(
        tmp_path / "prometheus.yml",
        scrape_targets={"model": ["127.0.0.1:8080"], "servers": ["127.0.0.1:8082", labelled]},
        alertmanager_url="http://127.0.0.1:9093",
        rule_files=[rules],
    )
    alertmanager = write_alertmanager_config(
        tmp_path / "alertmanager.yml",
        webhook_url="http://127.0.0.1:8000/hook",
        bearer_token="t0ken",
    )
    checks = [["promtool", "check", "config", prometheus], ["amtool", "check-config", alertmanager]]
    for argv in checks:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    assert alertmanager.stat().st_mode & 0o077 == 0  # it holds the token
    servers = json.loads(prometheus.read_text())["scrape_configs"][1]["static_configs"]
    assert servers == [
        {"targets": ["127.0.0.1:8082"]},
        {"targets": ["127.0.0.1:8081"], "labels": {"revision_name": "fraud-predictor-00001"}},
    ]


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=SluiceFeatureDrift", "model=fraud", "environment=staging"], "sluice"),
        (["alertname=SluicePredictionDrift"], "sluice"),
        (["alertname=SluiceCanaryFailed", "model=fraud", "environment=staging"], "drop"),
        (["alertname=SluiceControllerDown"], "drop"),
        (["alertname=SluiceFeatureDriftTest"], "drop"),  # the matcher is anchored
    ],
)
def test_only_the_retrain_alerts_reach_the_webhook(
    tmp_path: Path, labels: list[str], receiver: str
) -> None:
    """Alertmanager routes the drift alerts to the webhook and every other alert to nobody."""
    config = write_alertmanager_config(
        tmp_path / "alertmanager.yml", webhook_url="http://127.0.0.1:8000/hook", bearer_token=None
    )
    argv = ["amtool", "config", "routes", "test", f"--config.file={config}", *labels]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, receiver), done.stderr
    (sluice,) = json.loads(config.read_text())["route"]["routes"]
    assert sluice["group_by"] == ["alertname", "model", "environment"]


@pytest.mark.parametrize("alertnames", [(), ("SluiceFeatureDrift", "a|b")])
def test_alert_names_that_cannot_be_routed_are_a_config_error(
    tmp_path: Path, alertnames: tuple[str, ...]
) -> None:
    """No alert name, or one that is not a plain name, fails before any file is written."""
    with pytest.raises(ConfigError, match="alert name"):
        write_alertmanager_config(
            tmp_path / "alertmanager.yml",
            webhook_url="http://127.0.0.1:8000/hook",
            bearer_token=None,
            alertnames=alertnames,
        )
    assert not (tmp_path / "alertmanager.yml").exists()


@pytest.mark.parametrize("label", ["revision-name", "__address__", "1st"])
def test_a_label_prometheus_would_reject_is_a_config_error(tmp_path: Path, label: str) -> None:
    """A target label that is not a Prometheus label name fails before any file is written."""
    group = StaticConfig(("127.0.0.1:8081",), {label: "x"})
    with pytest.raises(ConfigError, match=f"label '{label}' of job 'servers'"):
        write_prometheus_config(
            tmp_path / "prometheus.yml",
            scrape_targets={"servers": [group]},
            alertmanager_url=None,
            rule_files=[],
        )
    assert not (tmp_path / "prometheus.yml").exists()


# -- git -----------------------------------------------------------------------------------------


def test_git_remote_serves_a_deterministic_main(git_remote: GitRemote, tmp_path: Path) -> None:
    """A clone starts at the same seed commit every time, and a push from it reaches the remote."""
    work = git_remote.clone(tmp_path / "work")
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=work) == "main"
    assert git("rev-parse", "HEAD", cwd=work) == git_remote.initial_commit
    assert create_git_remote(tmp_path / "again").initial_commit == git_remote.initial_commit

    (work / "model.yaml").write_text("version: 2\n")
    git("add", "model.yaml", cwd=work)
    git("commit", "-m", "Bump model", cwd=work)
    git("push", "origin", "main", cwd=work)
    assert git_remote.head() == git("rev-parse", "HEAD", cwd=work) != git_remote.initial_commit


def test_stopping_an_exited_server_never_signals_the_process_that_took_its_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that exited on its own leaves its pid to the kernel, which hands it out again
    (32,768 pids go by in minutes of a test suite). Stopping it later must not signal the
    group of whatever holds the number now: once a session MLflow server of another test."""
    from controller.local import processes

    server = ManagedProcess(["true"], log_path=tmp_path / "true.log", name="short-lived").start()
    while server.alive:
        time.sleep(0.05)
    pid = server.pid
    real_kill = os.kill
    signalled: list[tuple[int, int]] = []

    def kill(target: int, sig: int) -> None:  # the number now belongs to a live process
        if target == pid and sig == 0:
            return
        real_kill(target, sig)

    monkeypatch.setattr(processes.os, "kill", kill)
    monkeypatch.setattr(processes.os, "killpg", lambda group, sig: signalled.append((group, sig)))
    monkeypatch.setattr(processes, "_group_running", lambda group: group == pid)
    server.stop(timeout=0.2)
    assert signalled == []
