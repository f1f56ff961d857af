"""Model servers forked warm from the fork server behave as the cold processes they replace.

Each test starts real model servers with :func:`start_model_server`, as the local runtime does;
the first one in this process starts the fork server (controller/local/forkserver.py).
"""

from __future__ import annotations

import json
import multiprocessing.forkserver
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import mlflow.sklearn
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

from controller.local import forkserver
from controller.local.forkserver import COLD_START_ENV
from controller.local.processes import _group_running
from controller.local.serving.launcher import ModelLoadFailed, start_model_server
from controller.local.state import pid_matches
from models.pinned_requirements import pinned

pytestmark = pytest.mark.slow

# A pyfunc model that answers with the values of the environment variables it is asked for.
ENV_MODEL = """
import os

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class EnvModel(PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        return [os.environ.get(name, "<unset>") for name in model_input["name"]]


mlflow.models.set_model(EnvModel())
"""


@pytest.fixture(scope="module")
def env_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("env-model")
    code = root / "env_model.py"
    code.write_text(ENV_MODEL)
    path = root / "model"
    example = pd.DataFrame({"name": ["HOME"]})
    mlflow.pyfunc.save_model(
        str(path),
        python_model=str(code),
        signature=infer_signature(example, ["value"]),
        input_example=example,
        pip_requirements=pinned(),
    )
    return path


@pytest.fixture(scope="module")
def sklearn_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]})
    model = LogisticRegression().fit(frame, [0, 0, 0, 1, 1, 1])
    path = tmp_path_factory.mktemp("sklearn-model") / "model"
    signature = infer_signature(frame, model.predict(frame))
    mlflow.sklearn.save_model(model, str(path), signature=signature, pip_requirements=pinned())
    return path


def predict(url: str, name: str, instances: list[dict[str, Any]]) -> list[Any]:
    body = json.dumps({"instances": instances}).encode()
    request = urllib.request.Request(  # noqa: S310 (our own http:// URL)
        f"{url}/v1/models/{name}:predict", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        return list(json.loads(answer.read())["predictions"])


def test_a_prewarmed_fork_server_is_the_one_the_first_server_forks_from(
    sklearn_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime starts the fork server as it starts (:func:`forkserver.prewarm`), so its
    imports load while the first sync runs: the first model server is then its child."""
    monkeypatch.delenv(COLD_START_ENV, raising=False)
    assert forkserver.prewarm()
    started = multiprocessing.forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    # multiprocessing forks it and returns without waiting for the exec: until then its
    # command line is still this process's (a loaded CI machine showed it).
    deadline = time.monotonic() + 30
    while not pid_matches(started, "multiprocessing.forkserver") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_matches(started, "multiprocessing.forkserver")
    handle = start_model_server(
        name="linear", storage_uri=str(sklearn_model), log_dir=tmp_path, env={}
    )
    try:
        stat = Path(f"/proc/{handle.pid}/stat").read_text()
        assert int(stat[stat.rfind(")") + 2 :].split()[1]) == started
    finally:
        handle.stop()


def test_server_that_cannot_load_reports_its_own_last_words(tmp_path: Path) -> None:
    """A bad storage URI fails the warm server with its own log line and a non-zero code."""
    missing = (tmp_path / "nothing").as_uri()
    with pytest.raises(ModelLoadFailed, match="exited with code 1 before it was ready") as failed:
        start_model_server(name="broken", storage_uri=missing, log_dir=tmp_path, env={})
    assert "not loadable: no model directory at" in str(failed.value)
    assert "(log " + str(tmp_path / "model-server.log") in str(failed.value)


def test_cold_start_escape_hatch_fails_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SLUICE_LOCAL_COLD_START=1 starts a new process, which fails with the same message."""
    monkeypatch.setenv(COLD_START_ENV, "1")
    missing = (tmp_path / "nothing").as_uri()
    with pytest.raises(ModelLoadFailed, match="exited with code 1 before it was ready") as failed:
        start_model_server(name="broken", storage_uri=missing, log_dir=tmp_path, env={})
    assert "not loadable: no model directory at" in str(failed.value)


def test_warm_server_is_its_own_group_and_stop_leaves_none_of_it(
    sklearn_model: Path, tmp_path: Path
) -> None:
    """pid == pgid, the state files' marker is on its command line, and stop() ends the group."""
    handle = start_model_server(
        name="linear", storage_uri=str(sklearn_model), log_dir=tmp_path, env={}
    )
    try:
        assert handle.process.started_warm
        assert os.getpgid(handle.pid) == handle.pid
        assert pid_matches(handle.pid, str(tmp_path / "model"))  # what `local down` checks
        # Forked from a single-threaded fork server (a fork copies only the calling thread).
        stat = Path(f"/proc/{handle.pid}/stat").read_text()
        parent = int(stat[stat.rfind(")") + 2 :].split()[1])
        assert pid_matches(parent, "multiprocessing.forkserver")
        assert len(list(Path(f"/proc/{parent}/task").iterdir())) == 1
        assert predict(handle.url, "linear", [{"x": 0.0}, {"x": 5.0}]) == [0, 1]
    finally:
        handle.stop()
    assert handle.process.returncode == 0  # kserve's clean shutdown on SIGTERM
    assert not _group_running(handle.pid)
    assert not handle.process.alive


def test_environment_is_the_one_a_new_process_would_get(
    env_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The env passed, this process's environment at start time, and nothing stale from when
    the fork server started (it is running after the first server)."""
    monkeypatch.setenv("SLUICE_TEST_EARLY", "early")
    first = start_model_server(
        name="env", storage_uri=str(env_model), log_dir=tmp_path / "first", env={}
    )
    first.stop()
    monkeypatch.delenv("SLUICE_TEST_EARLY")
    monkeypatch.setenv("SLUICE_TEST_LATE", "late")
    handle = start_model_server(
        name="env",
        storage_uri=str(env_model),
        log_dir=tmp_path / "second",
        env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
    )
    try:
        assert handle.process.started_warm
        names = ["MLFLOW_TRACKING_URI", "SLUICE_TEST_LATE", "SLUICE_TEST_EARLY", "OMP_NUM_THREADS"]
        answers = predict(handle.url, "env", [{"name": name} for name in names])
        assert answers == ["http://127.0.0.1:9", "late", "<unset>", "1"]
    finally:
        handle.stop()


def test_two_models_run_side_by_side(env_model: Path, sklearn_model: Path, tmp_path: Path) -> None:
    """Two revisions of different models, forked from the same fork server, each serve their
    own model, and one killed (its code: minus the signal) leaves the other serving."""
    env = start_model_server(
        name="env", storage_uri=str(env_model), log_dir=tmp_path / "env", env={}
    )
    linear = start_model_server(
        name="linear", storage_uri=str(sklearn_model), log_dir=tmp_path / "linear", env={}
    )
    try:
        assert env.process.started_warm
        assert linear.process.started_warm
        assert env.pid != linear.pid
        assert predict(env.url, "env", [{"name": "OMP_NUM_THREADS"}]) == ["1"]
        assert predict(linear.url, "linear", [{"x": 5.0}, {"x": 0.0}]) == [1, 0]
        assert env.state() == linear.state() == "ready"
        os.killpg(env.pid, signal.SIGKILL)  # one dies: the other keeps serving
        env.stop()
        assert env.process.returncode == -signal.SIGKILL
        assert env.state() == "failed"
        assert predict(linear.url, "linear", [{"x": 5.0}]) == [1]
        assert linear.state() == "ready"
    finally:
        env.stop()
        linear.stop()
    assert linear.state() == "failed"  # stopped: as a cold server reads


def test_an_untested_python_starts_cold(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fork server's protocol is private to multiprocessing: on a Python it was not tested
    against, a model server starts as a new process, never as a half-working fork."""
    argv = [forkserver._executable(), "-m", "controller.local.serving"]
    monkeypatch.delenv(forkserver.COLD_START_ENV, raising=False)
    monkeypatch.setattr(forkserver, "_broken", None)
    monkeypatch.setattr(forkserver, "WARM_PYTHONS", frozenset({(3, 11)}))
    monkeypatch.setattr(sys, "version_info", (3, 11, 7, "final", 0))
    assert forkserver.warm_start_possible(argv)
    monkeypatch.setattr(sys, "version_info", (3, 13, 0, "final", 0))
    assert not forkserver.warm_start_possible(argv)


def test_a_server_stopped_as_it_starts_ends_on_sigterm(sklearn_model: Path, tmp_path: Path) -> None:
    """A runtime may stop a revision a moment after starting it (it shuts down, or the revision
    is replaced). A warm server reaches kserve's start within a fraction of a second, and a
    SIGTERM that came after kserve's handlers but before uvicorn's was lost: the server ran on
    until SIGKILL, and a runtime stopping it past its own stop timeout leaked it. Stopped at
    several moments of its start, every server now ends on the SIGTERM, never the SIGKILL."""
    codes = []
    for attempt in range(13):
        handle = start_model_server(
            name="linear",
            storage_uri=str(sklearn_model),
            log_dir=tmp_path / str(attempt),
            env={},
            wait=False,
        )
        time.sleep(0.1 * attempt)  # a different moment of the start each time
        handle.stop()
        codes.append(handle.process.returncode)
    assert -signal.SIGKILL not in codes, codes


def test_the_fork_server_maps_the_installed_packages_its_servers_check_models_against(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The preload builds MLflow's modules-to-distributions map once (0.7 s of CPU that each
    forked server's first model load would otherwise spend); an MLflow without the map's
    builder would leave each server to build its own, and the preload would say so."""
    from mlflow.utils import requirements_utils

    from controller.local.serving import preload

    preload._map_installed_packages()
    assert capsys.readouterr().err == ""
    assert requirements_utils._MODULES_TO_PACKAGES
    assert "sklearn" in requirements_utils._MODULES_TO_PACKAGES
