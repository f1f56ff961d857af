"""Start MLflow, Prometheus, Alertmanager and the status page on 127.0.0.1, each ready to use.

One launcher per service turns the facts of that server (its flags, its ready endpoint, how it
wants to be stopped) into a :class:`ManagedProcess`, and returns a small handle with the URLs a
client needs. ``sluice local up`` and the test fixtures call the same launchers. Everything
listens on 127.0.0.1 only, on a free port unless one is given. :class:`LocalService`, the handle
every launcher returns, lives here too; PostgreSQL, which needs more setup, is in
:mod:`controller.local.postgres`, and the config files are written by
:mod:`controller.local.configs`.
"""

from __future__ import annotations

import functools
import shutil
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from controller.errors import ConfigError, MetricsUnavailable, RegistryUnavailable, TransientError
from controller.local.processes import ManagedProcess, free_port, http_ok

__all__ = [
    "AlertmanagerService",
    "LocalService",
    "MlflowService",
    "PrometheusService",
    "start_alertmanager",
    "start_mlflow",
    "start_prometheus",
    "start_status_page",
]

_INSTALL_HINT = "run 'make setup' (installs it from Debian's packages) or apt-get install -y"


@dataclass
class LocalService:
    """A started server and the port it listens on; stopping it stops everything it forked."""

    process: ManagedProcess
    port: int

    @property
    def pid(self) -> int:
        """Process id of the server (also its process group id)."""
        return self.process.pid

    @property
    def ready_seconds(self) -> float | None:
        """How long the server took from start to its first passing ready check."""
        return self.process.ready_seconds

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down (idempotent)."""
        self.process.stop(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass
class MlflowService(LocalService):
    """An MLflow tracking server that proxies artifacts (``mlflow-artifacts:/`` URIs)."""

    backend_store_uri: str
    artifacts_dir: Path

    @property
    def tracking_uri(self) -> str:
        """The URI clients pass as ``MLFLOW_TRACKING_URI``."""
        return f"http://127.0.0.1:{self.port}"


@dataclass
class PrometheusService(LocalService):
    """A Prometheus server with the lifecycle API, so a changed config is applied by reload."""

    config_file: Path

    @property
    def url(self) -> str:
        """Base URL of the web UI and HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    def reload(self) -> None:
        """Re-read ``config_file``; new targets are picked up within about 5 s after this."""
        _post(f"{self.url}/-/reload", MetricsUnavailable)


@dataclass
class AlertmanagerService(LocalService):
    """An Alertmanager without clustering."""

    config_file: Path

    @property
    def url(self) -> str:
        """Base URL of the web UI and HTTP API (``/api/v2/alerts``)."""
        return f"http://127.0.0.1:{self.port}"


# -- MLflow -----------------------------------------------------------------------------------


def start_mlflow(
    *,
    backend_store_uri: str,
    artifacts_dir: Path,
    port: int | None = None,
    log_dir: Path,
    timeout: float = 120.0,
) -> MlflowService:
    """Start ``mlflow server`` from this Python environment with one worker, in one process.

    The job runner is off: by default the server starts four workers and a job runner, about
    2.5 GB and 20-30 s; with one worker and no jobs it is about 0.5 GB and 10 s. Its uvicorn
    runs in the command's own process (:mod:`controller.local.mlflow_server`), not in a second
    Python process that imports MLflow again.
    """
    port = port or free_port()
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        *(sys.executable, "-m", "controller.local.mlflow_server"),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        *("--backend-store-uri", backend_store_uri),
        *("--artifacts-destination", str(artifacts_dir.resolve())),
    ]
    env = {
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        # Registry webhooks are delivered to a receiver on localhost during the local loop.
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        # MLflow caches the webhook list for 60 s: a webhook created by `sluice serve` would
        # stay silent that long.
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
    }
    # cwd is the log directory so nothing (./mlruns, ./mlartifacts) lands in the checkout.
    process = ManagedProcess(
        argv, log_path=log_dir / "mlflow.log", env=env, cwd=log_dir, name="MLflow server"
    )
    service = MlflowService(process.start(), port, backend_store_uri, artifacts_dir)
    health = functools.partial(http_ok, f"{service.tracking_uri}/health")
    process.wait_ready(health, timeout, error=RegistryUnavailable)
    return service


# -- Prometheus and Alertmanager ----------------------------------------------------------------


def start_prometheus(
    *,
    config_file: Path,
    data_dir: Path,
    port: int | None = None,
    log_dir: Path,
    timeout: float = 60.0,
) -> PrometheusService:
    """Start Prometheus with the lifecycle API enabled (``POST /-/reload``)."""
    binary = _find_binary("prometheus", what="prometheus", package="prometheus")
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ]
    process = ManagedProcess(argv, log_path=log_dir / "prometheus.log", name="Prometheus")
    service = PrometheusService(process.start(), port, config_file)
    ready = functools.partial(http_ok, f"{service.url}/-/ready")
    process.wait_ready(ready, timeout, error=MetricsUnavailable)
    return service


def start_alertmanager(
    *,
    config_file: Path,
    data_dir: Path,
    port: int | None = None,
    log_dir: Path,
    timeout: float = 60.0,
) -> AlertmanagerService:
    """Start Alertmanager alone: an empty cluster address keeps it off 0.0.0.0:9094."""
    binary = _find_binary(
        "prometheus-alertmanager",
        "alertmanager",
        "/usr/bin/prometheus-alertmanager",
        what="alertmanager",
        package="prometheus-alertmanager",
    )
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        f"--config.file={config_file}",
        f"--storage.path={data_dir}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    process = ManagedProcess(argv, log_path=log_dir / "alertmanager.log", name="Alertmanager")
    service = AlertmanagerService(process.start(), port, config_file)
    ready = functools.partial(http_ok, f"{service.url}/-/ready")
    process.wait_ready(ready, timeout, error=TransientError)
    return service


# -- the status page ----------------------------------------------------------------------------


def start_status_page(
    *, argv: list[str], port: int, log_dir: Path, timeout: float = 60.0
) -> LocalService:
    """Start the read-only status page (``argv``, which listens on ``port``); ready once its
    ``/healthz`` answers, before the first page is drawn (that imports the rollout code)."""
    process = ManagedProcess(argv, log_path=log_dir / "status-page.log", name="status page")
    service = LocalService(process.start(), port)
    ready = functools.partial(http_ok, f"http://127.0.0.1:{port}/healthz")
    process.wait_ready(ready, timeout, error=TransientError)
    return service


# -- small pieces -------------------------------------------------------------------------------


def _find_binary(*names: str, what: str, package: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise ConfigError(f"{what} not found on PATH: {_INSTALL_HINT} {package}")


def _post(url: str, error: type[TransientError]) -> None:
    request = urllib.request.Request(url, method="POST")  # noqa: S310 (our own http:// URL)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            if response.status == 200:
                return
            status = str(response.status)
    except OSError as exc:
        status = str(exc)
    raise error(f"POST {url} failed: {status}; check the server's log")
