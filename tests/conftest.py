"""Fixtures that start real services on free ports of 127.0.0.1 and stop them afterwards.

They use the launchers of ``sluice local up`` (:mod:`controller.local.services`,
:mod:`controller.local.postgres`, :mod:`controller.local.configs`), so the tests run what a user
runs. A start that fails names the service's log file in the error.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support.gitops_repo import seed_manifests
from support.gitrepo import GitRemote, create_git_remote

from controller.local.configs import write_alertmanager_config, write_prometheus_config
from controller.local.postgres import PostgresService, start_postgres
from controller.local.services import (
    AlertmanagerService,
    MlflowService,
    PrometheusService,
    start_alertmanager,
    start_mlflow,
    start_prometheus,
)

if TYPE_CHECKING:
    from support.fraud_model import Registered
    from support.signed_model import Signed

#: Test files that take minutes, longest first. They are collected first, so `make test`'s two
#: workers (`--dist loadfile --no-loadscope-reorder` hands out files in collection order) start
#: the demo at once instead of last and alone (xdist orders files by test count otherwise; CI
#: measured the demo starting 19 minutes in). After the demo come files that mostly wait on
#: subprocesses, so the demo's canary is not judged while another file runs load tests.
_LONGEST_FIRST = (
    "test_demo.py",
    "test_demo_recommender.py",
    "test_propose.py",
    "test_train.py",
    "test_demo_ensemble.py",
    "test_rollout_local.py",
    "test_by_hand.py",
    "test_own_model.py",
    "test_local_commands.py",
    "test_rollout_shadow_local.py",
    "test_local_shadow.py",
    "test_rollout_chaos.py",
    "test_promotion_local.py",
    "test_local_runtime.py",
    "test_local_runtime_raw.py",
    "test_drift_command.py",
    "test_local_serving.py",
    "test_drift_alert_e2e.py",
    "test_serve_command.py",
    "test_workflow_runs.py",
    "test_recommender.py",
    "test_provenance_training.py",
    "test_lineage_cli.py",
    "test_local_environments.py",
    "test_record_approval.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the longest files first; every other file keeps its place after them."""
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


#: The session's MLflow servers, so a failing test's report can say when one has died.
_SESSION_SERVERS: list[MlflowService] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report carries the log tail of any session MLflow server that has
    exited: CI saw the session server vanish mid-suite three times, and the tests that failed
    next said only "connection refused"."""
    report = yield
    if getattr(report, "failed", False):
        for service in _SESSION_SERVERS:
            code = service.process.returncode
            if code is not None:
                log = service.process.log_path
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
                title = f"session MLflow server (pid {service.pid}) exited with {code}"
                report.sections.append((title, f"{log}:\n{tail}"))
    return report


def _sqlite_mlflow(root: Path) -> MlflowService:
    """An MLflow server on SQLite with proxied artifacts, all under ``root``."""
    return start_mlflow(
        backend_store_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifacts_dir=root / "artifacts",
        log_dir=root,
    )


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowService]:
    """One MLflow server on SQLite with proxied artifacts for the whole session."""
    with _sqlite_mlflow(tmp_path_factory.mktemp("mlflow")) as service:
        _SESSION_SERVERS.append(service)
        yield service
        _SESSION_SERVERS.remove(service)


@pytest.fixture(scope="module")
def own_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowService]:
    """An MLflow server of the requesting module's own, for tests that run the README's
    commands as written: those name their models (diabetes-regressor, fraud-detector), and no
    other test may share the session's server with them."""
    with _sqlite_mlflow(tmp_path_factory.mktemp("mlflow-own")) as service:
        yield service


@pytest.fixture(autouse=True)
def _mlflow_tracking_uri_stays_in_its_test() -> Iterator[None]:
    """Unset MLflow's process-wide tracking URI after every test that set one (in-process
    training, ``register_version``, ``mlflow.set_tracking_uri``): it outranks the
    ``MLFLOW_TRACKING_URI`` a later test sets, and CI saw a later test's in-process model
    download go to an earlier test's server (404). ``set_tracking_uri(None)`` also unsets the
    variable, which is put back as it was before the test."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if utils is None or getattr(utils, "_tracking_uri", None) is None:
        return
    import mlflow

    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  (None unsets it, as at start)
    if before is not None:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture
def mlflow_tracking_uri(mlflow_server: MlflowService, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point ``MLFLOW_TRACKING_URI`` at the session's MLflow server for one test, and MLflow's
    process-wide tracking URI too (the autouse fixture above unsets it afterwards). The
    registry URI is left alone: set process-wide, it outranks even a client's own
    ``tracking_uri`` in later tests."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mlflow.set_tracking_uri(mlflow_server.tracking_uri)
    return mlflow_server.tracking_uri


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresService]:
    """One PostgreSQL server (fsync off) for the whole session."""
    # As root, PostgreSQL runs as the postgres user, which cannot enter pytest's private
    # tmp directory; its data lives in a directory of its own under /tmp instead.
    data_root = Path(tempfile.mkdtemp(prefix="sluice-test-pg-"))
    data_root.chmod(0o711)
    try:
        with start_postgres(
            data_dir=data_root / "data",
            log_dir=tmp_path_factory.mktemp("postgres"),
            fsync=False,
        ) as service:
            yield service
    finally:
        shutil.rmtree(data_root, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_postgres_server(
    postgres_server: PostgresService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowService]:
    """One MLflow server on a PostgreSQL database for the whole session."""
    root = tmp_path_factory.mktemp("mlflow-postgres")
    postgres_server.create_database("mlflow")
    with start_mlflow(
        backend_store_uri=postgres_server.sqlalchemy_url("mlflow"),
        artifacts_dir=root / "artifacts",
        log_dir=root,
    ) as service:
        yield service


@pytest.fixture(scope="module")
def fraud_model(mlflow_server: MlflowService) -> Registered:
    """A fraud-detector version trained on 4,000 rows and registered in the session's MLflow,
    one per module that asks for it (tests/support/fraud_model.py serves it)."""
    # Imported here: the model server's launcher and MLflow's client take a second to import,
    # which the many files that never ask for a model should not pay.
    from support.fraud_model import register_fraud_model

    return register_fraud_model(mlflow_server)


@pytest.fixture(scope="session")
def diabetes_v1(mlflow_server: MlflowService) -> str:
    """The diabetes example's v1, trained once per session as its plain MLflow script does
    (which infers its pip requirements: about 5 CPU-s in all); tests give it names of their own
    with :func:`support.registry_copy.copy_version`."""
    import mlflow

    from models.diabetes_regressor import train as diabetes

    name = f"diabetes-{uuid.uuid4().hex[:8]}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_server.tracking_uri)
    try:
        assert diabetes.main(["--model-name", name]) == 0
    finally:
        mlflow.set_tracking_uri(previous)
    return name


@pytest.fixture(scope="session")
def signed(mlflow_server: MlflowService, tmp_path_factory: pytest.TempPathFactory) -> Signed:
    """One fraud-detector version trained in a CI-shaped environment with a signing key, per
    session (tests/support/signed_model.py); a test that edits its artifact restores it."""
    from support.signed_model import train_signed

    return train_signed(mlflow_server, tmp_path_factory.mktemp("keys"))


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[Callable[..., PrometheusService]]:
    """Start Prometheus from ``write_prometheus_config``'s keyword arguments; stopped after."""
    started: list[PrometheusService] = []

    def start(
        *,
        scrape_targets: dict[str, list[str]] | None = None,
        alertmanager_url: str | None = None,
        rule_files: list[Path] | None = None,
    ) -> PrometheusService:
        root = tmp_path / f"prometheus-{len(started)}"
        config = write_prometheus_config(
            root / "prometheus.yml",
            scrape_targets=scrape_targets or {},
            alertmanager_url=alertmanager_url,
            rule_files=rule_files or [],
        )
        started.append(start_prometheus(config_file=config, data_dir=root / "data", log_dir=root))
        return started[-1]

    yield start
    for service in reversed(started):
        service.stop()


@pytest.fixture
def alertmanager_server(tmp_path: Path) -> Iterator[Callable[..., AlertmanagerService]]:
    """Start Alertmanager sending every alert to ``webhook_url``; stopped after the test.

    Further keyword arguments (``repeat_interval="2s"``) go to ``write_alertmanager_config``.
    """
    started: list[AlertmanagerService] = []

    def start(
        *, webhook_url: str, bearer_token: str | None = None, **timings: str
    ) -> AlertmanagerService:
        root = tmp_path / f"alertmanager-{len(started)}"
        config = write_alertmanager_config(
            root / "alertmanager.yml",
            webhook_url=webhook_url,
            bearer_token=bearer_token,
            **timings,
        )
        started.append(start_alertmanager(config_file=config, data_dir=root / "data", log_dir=root))
        return started[-1]

    yield start
    for service in reversed(started):
        service.stop()


@pytest.fixture
def git_remote(tmp_path: Path) -> GitRemote:
    """A bare repository at ``tmp_path/remote.git`` with one commit on ``main``."""
    return create_git_remote(tmp_path)


@pytest.fixture
def model() -> str:
    """A registered model name of the test's own: the session shares one MLflow server."""
    return f"fraud-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def remote(git_remote: GitRemote, tmp_path: Path, model: str) -> GitRemote:
    """The bare GitOps remote seeded with this repository's manifests, serving ``model``."""
    seed_manifests(git_remote, tmp_path / "seed", model=model)
    return git_remote
