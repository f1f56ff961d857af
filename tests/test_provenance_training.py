"""Training records a signed attestation, and ``sluice provenance verify`` checks it against
the artifact the real MLflow server serves: the README's commands, run as written.

One fraud-detector training run (the session's ``signed``, tests/support/signed_model.py)
signs with a key ``sluice provenance keygen`` wrote, in a GitHub Actions-shaped environment;
the module's ``fraud_model`` (trained without a key, as every other test trains) is the
unsigned case.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from in_toto.models.metadata import Envelope, Metadata
from mlflow import MlflowClient
from support.fraud_model import Registered
from support.signed_model import BUILDERS, CI_ENV, Signed

from controller.cli import main
from controller.local.services import MlflowService

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow  # a real MLflow server and a training run


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def sluice(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    """``sluice ARGS`` in this process (as the console script runs it) against a registry."""
    monkeypatch.delenv("SLUICE_SIGNING_KEY", raising=False)

    def run(tracking_uri: str, *args: str) -> Result:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def test_keygen_writes_a_private_key_only_its_owner_reads(
    signed: Signed, sluice: Callable[..., Result]
) -> None:
    assert (signed.keys / "ci.key").stat().st_mode & 0o777 == 0o600
    assert (signed.keys / "ci.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    again = sluice(
        signed.tracking_uri, "provenance", "keygen", "--out", str(signed.keys), "--name", "ci"
    )
    assert again.returncode == 2
    assert "exists; remove it" in again.stderr


def test_version_is_tagged_and_in_toto_verifies_its_attestation(
    signed: Signed, tmp_path: Path
) -> None:
    """The envelope logged with the run verifies with the in-toto library and the public key;
    its subjects are the artifact's files, its builder the workflow run, and the version's
    tags name the envelope's digest, the datasets and the commit."""
    client = MlflowClient(signed.tracking_uri)
    version = client.get_model_version(signed.name, "1")
    path = Path(client.download_artifacts(version.run_id, "provenance.intoto.jsonl", tmp_path))
    assert version.tags["sluice.provenance"] == (
        f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"
    )
    assert version.tags["sluice.training_commit"] == CI_ENV["GITHUB_SHA"]
    assert version.tags["sluice.dataset_digest"].startswith("train=sha256:")
    assert ",holdout=sha256:" in version.tags["sluice.dataset_digest"]

    envelope = Metadata.load(str(path))
    assert isinstance(envelope, Envelope)
    from controller.provenance.signing import load_public_key

    key = load_public_key((signed.keys / "ci.pub").read_bytes(), "ci.pub")
    envelope.verify_signature({"keyid": key.keyid, **key.to_dict()})
    statement = json.loads(envelope.payload)
    assert {"MLmodel", "model.pkl"} <= {s["name"] for s in statement["subject"]}
    predicate = statement["predicate"]
    assert (
        predicate["runDetails"]["builder"]["id"]
        == "https://github.com/acme/models/actions/runs/4242"
    )
    roles = [d["name"] for d in predicate["buildDefinition"]["resolvedDependencies"]]
    assert roles == ["training code", "dataset:train", "dataset:holdout"]
    train = predicate["buildDefinition"]["resolvedDependencies"][1]
    assert train["annotations"]["dataContract"]["passed"] is True
    assert predicate["runDetails"]["byproducts"][0]["annotations"]["passed"] is True


def test_verify_passes_and_fails_on_wrong_key_and_builder(
    signed: Signed, sluice: Callable[..., Result]
) -> None:
    pub, other = str(signed.keys / "ci.pub"), str(signed.keys / "other.pub")
    base = ["provenance", "verify", signed.name, "--version", "1"]

    ok = sluice(signed.tracking_uri, *base, "--key", pub, "--builder", BUILDERS)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"{signed.name} v1: provenance verified (")

    wrong_key = sluice(signed.tracking_uri, *base, "--key", other)
    assert wrong_key.returncode == 1
    (line,) = wrong_key.stderr.strip().splitlines()
    assert "provenance signature check failed: no trusted key signed it" in line

    builder = sluice(signed.tracking_uri, *base, "--key", pub, "--builder", "local")
    assert builder.returncode == 1
    assert "builder check failed: built by https://github.com/acme/models" in builder.stderr


def test_bad_input_exits_2(signed: Signed, sluice: Callable[..., Result]) -> None:
    base = ["provenance", "verify", signed.name]
    missing = sluice(signed.tracking_uri, *base, "--version", "1", "--key", "nope.pub")
    assert missing.returncode == 2
    assert "cannot read --key nope.pub" in missing.stderr
    unknown = sluice(
        signed.tracking_uri, *base, "--version", "99", "--key", str(signed.keys / "ci.pub")
    )
    assert unknown.returncode == 2, unknown.stderr


def test_unsigned_version_fails(
    fraud_model: Registered, signed: Signed, sluice: Callable[..., Result]
) -> None:
    """A version trained without a key (every other test's) is recorded, unsigned."""
    client = MlflowClient(fraud_model.tracking_uri)
    assert client.get_model_version(fraud_model.name, "1").tags["sluice.provenance"] == "unsigned"
    result = sluice(
        fraud_model.tracking_uri, "provenance", "verify", fraud_model.name, "--version", "1",
        "--key", str(signed.keys / "ci.pub"),
    )  # fmt: skip
    assert result.returncode == 1
    assert "the attestation is unsigned" in result.stderr


def test_model_pkl_edited_in_the_artifact_store_fails_naming_it(
    signed: Signed, mlflow_server: MlflowService, sluice: Callable[..., Result]
) -> None:
    client = MlflowClient(signed.tracking_uri)
    uri = str(client.get_model_version_download_uri(signed.name, "1"))
    pickle = mlflow_server.artifacts_dir / uri.removeprefix("mlflow-artifacts:/") / "model.pkl"
    original = pickle.read_bytes()
    pickle.write_bytes(original + b"\x00")
    try:
        result = sluice(
            signed.tracking_uri, "provenance", "verify", signed.name, "--version", "1",
            "--key", str(signed.keys / "ci.pub"),
        )  # fmt: skip
    finally:
        pickle.write_bytes(original)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "provenance subjects check failed: model.pkl has sha256" in line
    assert "the artifact changed after it was signed" in line


@pytest.mark.parametrize(
    "trainer",
    [
        ["models.fraud_detector.train", "--rows", "2000"],
        # The plain-MLflow example checks the key itself (training.check_signing_key): it
        # used to find it unreadable only after registering, as a traceback.
        ["models.diabetes_regressor.train"],
    ],
    ids=["fraud", "diabetes"],
)
def test_unreadable_signing_key_stops_training_before_mlflow(
    mlflow_server: MlflowService, trainer: list[str]
) -> None:
    """A bad SLUICE_SIGNING_KEY is one line and exit 2, naming the variable and never its
    content, and leaves no run and no version."""
    model = f"badkey-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": mlflow_server.tracking_uri,
        "SLUICE_SIGNING_KEY": "-----BEGIN PRIVATE KEY-----\nSECRETBYTES\n-----END PRIVATE KEY-----",
    }
    trained = subprocess.run(
        [sys.executable, "-m", *trainer, "--model-name", model],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert trained.returncode == 2
    (line,) = trained.stderr.strip().splitlines()
    assert "SLUICE_SIGNING_KEY is not an unencrypted PEM private key" in line
    assert "SECRETBYTES" not in trained.stdout + trained.stderr
    client = MlflowClient(mlflow_server.tracking_uri)
    assert client.search_model_versions(f"name = '{model}'") == []
    assert client.get_experiment_by_name(model) is None
