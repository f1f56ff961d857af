"""Start a model server process for one revision on 127.0.0.1, and tell how it is doing.

On a cluster a revision is a pod whose container either becomes ready or crash-loops; here it
is a :class:`ManagedProcess` running ``python -m controller.local.serving``. The handle maps
the process onto the three states the KServe status logic understands (loading, ready,
failed) without blocking, so a sync loop can start a canary and keep reconciling while it
loads, and its failure message is the model server's own last words.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controller.errors import ModelLoadFailed
from controller.local.processes import ManagedProcess, free_port, http_ok
from controller.local.services import LocalService
from controller.local.serving.local_env import LOCAL_ENV

__all__ = ["ModelLoadFailed", "ModelServerHandle", "start_model_server"]

LOADING, READY, FAILED = "loading", "ready", "failed"


@dataclass
class ModelServerHandle(LocalService):
    """A model server process serving model ``name`` from ``storage_uri``."""

    name: str
    storage_uri: str
    _answered: bool = field(default=False, init=False, repr=False)

    @property
    def url(self) -> str:
        """Base URL of the V1 and V2 REST APIs."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ready_url(self) -> str:
        """KServe's per-model readiness endpoint (200 once the model is loaded)."""
        return f"{self.url}/v2/models/{self.name}/ready"

    def state(self) -> str:
        """``"loading"``, ``"ready"`` or ``"failed"`` (exited, or stopped), without waiting."""
        if not self.process.alive:
            return FAILED
        if not self._answered:
            self._answered = self.process.ready_seconds is not None or http_ok(
                self.ready_url, timeout=0.5
            )
        return READY if self._answered else LOADING

    def failure_message(self) -> str:
        """Why the process stopped, as Knative words a failed container."""
        code = self.process.returncode
        return f"Container failed with: exit code {code}: {self.process.log_tail(2)}"

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until the model answers; :class:`ModelLoadFailed` (process stopped) if not."""
        self.process.wait_ready(
            functools.partial(http_ok, self.ready_url), timeout, error=ModelLoadFailed
        )


def start_model_server(
    *,
    name: str,
    storage_uri: str,
    log_dir: Path,
    env: Mapping[str, str],
    port: int | None = None,
    wait: bool = True,
    timeout: float = 120.0,
    extra_args: Sequence[str] = (),
) -> ModelServerHandle:
    """Start serving model ``name`` from ``storage_uri``; by default wait until it is ready.

    ``env`` is added to this process's environment (``MLFLOW_TRACKING_URI`` for
    ``mlflow-artifacts:/`` and ``models:/`` URIs). The log is ``log_dir/model-server.log`` and
    remote models are downloaded under ``log_dir``, so give each revision its own directory.
    ``extra_args`` are more flags of ``python -m controller.local.serving`` (the drift monitor's,
    say). A cold start takes about 2.5 s of CPU, most of it importing MLflow and kserve; the
    process is forked warm from a fork server that has imported them
    (:mod:`controller.local.forkserver`, the first start pays for it) unless
    ``SLUICE_LOCAL_COLD_START=1``.
    """
    port = port or free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        *(sys.executable, "-m", "controller.local.serving"),
        *("--model-name", name, "--storage-uri", storage_uri),
        *("--http-port", str(port), "--host", "127.0.0.1"),
        *("--download-dir", str(log_dir / "model")),
        *extra_args,
    ]
    process = ManagedProcess(
        argv,
        log_path=log_dir / "model-server.log",
        env={**LOCAL_ENV, **env},
        cwd=log_dir,
        name=f"model server {name}",
        warm=True,
    )
    handle = ModelServerHandle(process.start(), port, name, storage_uri)
    if wait:
        handle.wait_ready(timeout)
    return handle
