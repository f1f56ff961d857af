"""``sluice lineage`` through the real command: a signed version trained against a real MLflow
server, proposed and merged into a real Git remote, served by the local target.

The served revision comes from a ``runtime.json`` written as the local runtime writes it, with
a stand-in process for the runtime (``tests/support/runtime_file.py``), so no model server
starts; one training run (4,000 rows) signs the version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from support.gitops_repo import ROOT, seed_manifests
from support.gitrepo import GitRemote, create_git_remote
from support.runtime_file import isvc_entry, ready, standin_runtime, write_runtime

from controller.cli import main
from controller.demo.gitops_remote import merge_branch
from controller.local.kserve_status import PredictorSpec
from controller.local.services import MlflowService

pytestmark = pytest.mark.slow  # a real MLflow server and a training run

ISVC = "fraud-detector"  # the local environment's InferenceService, whatever the model's name
PIN = "manifests/overlays/local/fraud-detector.yaml"


@dataclass(frozen=True)
class Release:
    model: str
    keys: Path
    remote: GitRemote
    state: Path
    pid: int
    merged: str
    storage_uri: str
    tracking_uri: str

    def serve(self, storage_uri: str) -> None:
        """The runtime's state: revision 00002 serves all traffic from ``storage_uri``."""
        entry = isvc_entry(
            ISVC, PredictorSpec(), ready(ISVC, 2), url="http://127.0.0.1:1",
            annotations={"sluice.dev/model-version": "1"},
        )  # fmt: skip
        entry["revisions"] = [
            {"name": f"{ISVC}-predictor-00001", "storage_uri": ""},
            {"name": f"{ISVC}-predictor-00002", "storage_uri": storage_uri},
        ]
        write_runtime(
            self.state / "local", pid=self.pid, env="local", remote=self.remote.url,
            synced=self.merged, isvcs={ISVC: entry},
        )  # fmt: skip


@pytest.fixture(scope="module")
def release(
    mlflow_server: MlflowService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    """One signed version of a model of its own, pinned in ``local`` and served."""
    root = tmp_path_factory.mktemp("lineage")
    keys, state = root / "keys", root / "state"
    assert main(["provenance", "keygen", "--out", str(keys), "--name", "ci"]) == 0
    assert main(["provenance", "keygen", "--out", str(keys), "--name", "other"]) == 0
    model = f"fraud-lineage-{uuid.uuid4().hex[:8]}"
    uri = mlflow_server.tracking_uri
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "SLUICE_SIGNING_KEY_FILE": str(keys / "ci.key"),
    }
    trained = subprocess.run(
        [sys.executable, "-m", "models.fraud_detector.train", "--rows", "4000",
         "--model-name", model],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    remote = create_git_remote(root)
    seed_manifests(remote, root / "seed", model=model)
    os.environ["SLUICE_STATE_DIR"] = str(state)
    try:
        proposed = main(["--mlflow-tracking-uri", uri, "propose", model, "--env", "local",
                         "--version", "1", "--repo", remote.url])  # fmt: skip
        assert proposed == 0
    finally:
        del os.environ["SLUICE_STATE_DIR"]
    merged = merge_branch(remote.path, f"sluice/local/{model}/v1")
    storage_uri = str(MlflowClient(uri).get_model_version_download_uri(model, "1"))
    (state / "local").mkdir(parents=True, exist_ok=True)
    with standin_runtime((state / "local").resolve()) as pid:
        yield Release(model, keys, remote, state, pid, merged, storage_uri, uri)


@pytest.fixture
def lineage(
    release: Release, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[int, str, str]]:
    """``sluice lineage MODEL --env local ARGS`` against the release's remote, registry and
    local target; returns the exit code, stdout and stderr."""
    monkeypatch.setenv("SLUICE_STATE_DIR", str(release.state))
    monkeypatch.setenv("COLUMNS", "200")
    release.serve(release.storage_uri)

    def run(*args: str, model: str | None = None, env: str = "local") -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([
            "--mlflow-tracking-uri", release.tracking_uri, "lineage", model or release.model,
            "--env", env, "--repo", release.remote.url, *args,
        ])  # fmt: skip
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_lineage_traces_the_served_revision_to_its_data(
    release: Release, lineage: Callable[..., tuple[int, str, str]]
) -> None:
    """Every link holds, the signature checked against the trusted key: the JSON's links run
    from the served revision to the signed attestation."""
    code, out, err = lineage("--key", str(release.keys / "ci.pub"), "--json")
    assert code == 0, err
    document = json.loads(out)
    assert (document["model"], document["environment"]) == (release.model, "local")
    links = document["links"]
    kinds = [link["kind"] for link in links]
    assert kinds == ["revision", "pin", "version", "run", "code", "dataset", "dataset",
                     "attestation"]  # fmt: skip
    assert all(link["verified"] is True for link in links), links
    assert links[0]["id"] == f"{ISVC}-predictor-00002"
    assert links[1]["id"] == release.merged[:12]  # the merge commit that set the pin
    assert links[2]["id"] == "v1"
    assert [link["detail"].split(":")[0] for link in links[5:7]] == ["train", "holdout"]
    assert links[-1]["detail"].startswith("signed by trusted key ")


def test_table_ends_with_the_summary_line(
    release: Release, lineage: Callable[..., tuple[int, str, str]]
) -> None:
    code, out, _ = lineage()
    assert code == 0
    assert f"Lineage: {release.model} v1 in local" in out
    summary = out.strip().splitlines()[-1]
    assert summary.startswith(
        f"{release.model} v1 in local: revision {ISVC}-predictor-00002 ← pin {release.merged[:12]}"
    )
    assert summary.endswith("✓")
    assert "← signed by key " in summary


def test_served_storage_uri_other_than_the_pin_exits_1(
    release: Release, lineage: Callable[..., tuple[int, str, str]]
) -> None:
    release.serve("mlflow-artifacts:/somewhere/else")
    code, _, err = lineage("--json")
    assert code == 1
    (line,) = err.strip().splitlines()
    assert f"{release.model} in local: the revision link is broken: storageUri mismatch" in line


def test_model_pkl_edited_in_the_artifact_store_exits_1(
    release: Release,
    mlflow_server: MlflowService,
    lineage: Callable[..., tuple[int, str, str]],
) -> None:
    pickle = (
        mlflow_server.artifacts_dir / release.storage_uri.removeprefix("mlflow-artifacts:/")
        / "model.pkl"
    )  # fmt: skip
    original = pickle.read_bytes()
    pickle.write_bytes(original + b"\x00")
    try:
        code, _, err = lineage("--key", str(release.keys / "ci.pub"), "--json")
    finally:
        pickle.write_bytes(original)
    assert code == 1
    (line,) = err.strip().splitlines()
    assert "the attestation link is broken: subjects check failed: model.pkl has sha256" in line


def test_wrong_key_exits_1(release: Release, lineage: Callable[..., tuple[int, str, str]]) -> None:
    code, _, err = lineage("--key", str(release.keys / "other.pub"), "--json")
    assert code == 1
    assert "the attestation link is broken: signature check failed: no trusted key" in err


def test_bad_input_exits_2(release: Release, lineage: Callable[..., tuple[int, str, str]]) -> None:
    code, _, err = lineage(env="nowhere")
    assert code == 2
    assert "unknown environment 'nowhere'" in err
    code, _, err = lineage(model="not-released-here")
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    code, _, err = lineage("--key", "missing.pub")
    assert code == 2
    assert "cannot read --key missing.pub" in err
