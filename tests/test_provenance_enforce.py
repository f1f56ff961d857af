"""Production refuses versions without valid provenance: ``sluice propose`` run as the README
shows it, against the real MLflow server and a real Git remote whose production overlay
requires provenance (trusted key committed under keys/, the CI builder pattern).

The session's ``signed`` version (tests/support/signed_model.py) is the CI-built one; the
module's ``fraud_model``, trained without a key, is the unsigned one. The tamper case edits
``model.pkl`` in the artifact store and puts it back afterwards.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from ruamel.yaml import YAML
from support.fraud_model import Registered
from support.gitops_repo import commit_to_remote, seed_manifests, snapshot
from support.gitrepo import GitRemote, create_git_remote, git
from support.signed_model import BUILDERS, CI_ENV, Signed

from controller.cli import main
from controller.local.services import MlflowService

pytestmark = pytest.mark.slow  # a real MLflow server and a training run

POLICY = f"""
provenance:
  trustedKeys: [keys/ci.pub]
  builders: ["{BUILDERS}"]
"""


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def gitops_remote(root: Path, model: str, signed: Signed, policy: str, env: str) -> GitRemote:
    """A remote serving ``model`` whose ``env`` overlay has ``policy``; both public keys in
    keys/ on main."""
    remote = create_git_remote(root / "remote")
    seed_manifests(remote, root / "seed", model=model)

    def require(tree: Path) -> None:
        (tree / "keys").mkdir()
        for name in ("ci.pub", "other.pub"):
            shutil.copy(signed.keys / name, tree / "keys" / name)
        config = tree / "manifests" / "overlays" / env / "sluice.yaml"
        config.write_text(config.read_text() + policy)

    commit_to_remote(remote, root / "policy", "Require provenance", require)
    return remote


@pytest.fixture
def sluice(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Callable[..., Result]:
    """``sluice ARGS`` in this process (as the console script runs it) against a registry and
    a Git remote."""

    def run(tracking_uri: str, remote: GitRemote, *args: str) -> Result:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        monkeypatch.setenv("SLUICE_GIT_REMOTE", remote.url)
        monkeypatch.setenv("SLUICE_STATE_DIR", str(tmp_path / "state"))
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def tampered(signed: Signed, mlflow_server: MlflowService) -> Iterator[None]:
    """The signed version's model.pkl rewritten in the artifact store, for one test."""
    client = MlflowClient(signed.tracking_uri)
    uri = str(client.get_model_version_download_uri(signed.name, "1"))
    pickle = mlflow_server.artifacts_dir / uri.removeprefix("mlflow-artifacts:/") / "model.pkl"
    original = pickle.read_bytes()
    pickle.write_bytes(original + b"\x00")
    try:
        yield
    finally:
        pickle.write_bytes(original)


def _outcome_tag(tracking_uri: str, model: str, version: int, env: str) -> str:
    tags = MlflowClient(tracking_uri).get_model_version(model, str(version)).tags
    return str(tags.get(f"sluice.provenance.{env}", ""))


def _refused(result: Result, link: str, reason: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"provenance {link} check failed: {reason}" in line
    assert line.endswith("production requires verified provenance, so nothing was proposed")


@pytest.mark.parametrize(
    ("policy", "link", "reason"),
    [
        (POLICY.replace("ci.pub", "other.pub"), "signature", "no trusted key signed it"),
        (POLICY.replace(BUILDERS, "local"), "builder", "built by https://github.com/acme/models"),
    ],
    ids=["wrong-key", "wrong-builder"],
)
def test_production_refuses_a_wrongly_signed_or_built_version_with_the_remote_unchanged(
    signed: Signed, sluice: Callable[..., Result], tmp_path: Path, policy: str, link: str,
    reason: str,
) -> None:  # fmt: skip
    remote = gitops_remote(tmp_path, signed.name, signed, policy, "production")
    refs = snapshot(remote)
    result = sluice(
        signed.tracking_uri, remote, "propose", signed.name, "--env", "production", "--version", "1"
    )
    _refused(result, link, reason)
    assert snapshot(remote) == refs
    assert _outcome_tag(signed.tracking_uri, signed.name, 1, "production").startswith("refused: ")


def test_production_refuses_an_unsigned_version(
    fraud_model: Registered, signed: Signed, sluice: Callable[..., Result], tmp_path: Path
) -> None:
    remote = gitops_remote(tmp_path, fraud_model.name, signed, POLICY, "production")
    refs = snapshot(remote)
    result = sluice(
        fraud_model.tracking_uri, remote, "propose", fraud_model.name, "--env", "production",
        "--version", str(fraud_model.version),
    )  # fmt: skip
    _refused(result, "signature", "the attestation is unsigned")
    assert snapshot(remote) == refs


@pytest.mark.usefixtures("tampered")
def test_production_refuses_a_version_whose_model_pkl_was_edited_and_force_does_not_override(
    signed: Signed, sluice: Callable[..., Result], tmp_path: Path
) -> None:
    remote = gitops_remote(tmp_path, signed.name, signed, POLICY, "production")
    refs = snapshot(remote)
    args = ("propose", signed.name, "--env", "production", "--version", "1")
    result = sluice(signed.tracking_uri, remote, *args)
    _refused(result, "subjects", "model.pkl has sha256")
    assert "the artifact changed after it was signed" in result.stderr
    forced = sluice(signed.tracking_uri, remote, *args, "--force")
    assert forced.returncode == 2
    assert "a failed provenance check has no override" in forced.stderr
    assert "Proposed" not in forced.stdout
    assert snapshot(remote) == refs
    tag = _outcome_tag(signed.tracking_uri, signed.name, 1, "production")
    assert tag.startswith("refused: model.pkl has sha256")


def test_production_proposes_the_ci_built_version_with_its_provenance_annotations(
    signed: Signed, sluice: Callable[..., Result], tmp_path: Path
) -> None:
    remote = gitops_remote(tmp_path, signed.name, signed, POLICY, "production")
    result = sluice(
        signed.tracking_uri, remote, "propose", signed.name, "--env", "production", "--version", "1"
    )
    assert result.returncode == 0, result.stderr
    assert f"{signed.name} v1: provenance verified (" in result.stdout
    assert "built by https://github.com/acme/models/actions/runs/4242" in result.stdout
    branch = f"sluice/production/{signed.name}/v1"
    pin = git(
        "show", f"{branch}:manifests/overlays/production/fraud-detector.yaml", cwd=remote.path
    )
    annotations = YAML(typ="safe").load(pin)["metadata"]["annotations"]
    tags = MlflowClient(signed.tracking_uri).get_model_version(signed.name, "1").tags
    assert annotations["sluice.dev/provenance"] == tags["sluice.provenance"]
    assert annotations["sluice.dev/provenance"].startswith("sha256:")
    assert annotations["sluice.dev/dataset-digest"] == tags["sluice.dataset_digest"]
    assert annotations["sluice.dev/training-commit"] == CI_ENV["GITHUB_SHA"]
    assert tags["sluice.provenance.production"].startswith("verified: ")


def test_staging_in_warn_mode_proposes_an_unsigned_version_with_the_warning(
    fraud_model: Registered, signed: Signed, sluice: Callable[..., Result], tmp_path: Path
) -> None:
    remote = gitops_remote(tmp_path, fraud_model.name, signed, POLICY + "  mode: warn\n", "staging")
    result = sluice(
        fraud_model.tracking_uri, remote, "propose", fraud_model.name, "--env", "staging",
        "--version", str(fraud_model.version),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        f"Warning: {fraud_model.name} v{fraud_model.version}: provenance signature check failed: "
        "the attestation is unsigned"
    ) in result.stdout
    assert "only warns (mode: warn), so it is proposed anyway" in result.stdout
    assert "Proposed" in result.stdout
    branch = f"sluice/staging/{fraud_model.name}/v{fraud_model.version}"
    assert remote.head(branch)
