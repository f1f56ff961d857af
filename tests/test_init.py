"""`sluice init`: onboard a model Sluice did not train, and start a GitOps repository.

Against a real MLflow registry and real git remotes, through the installed CLI as a user runs
it; the results are rendered with `kubectl kustomize` and validated as `sluice propose` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from schemas import schema_errors
from support.gitops_repo import commit_to_remote, snapshot
from support.gitrepo import GitRemote, git
from support.registry_copy import copy_version

from controller.backends.mlflow_registry import MlflowRegistry
from controller.local.serving.pyfunc_model import PyfuncServable, Tensor
from controller.manifests.render import render_overlay, validate_rendered
from models.pinned_requirements import pinned

BRANCH = "sluice/local/{model}/init"


def sluice(tmp_path: Path, tracking_uri: str, remote: str, *args: str):
    environment = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "SLUICE_GIT_REMOTE": remote,
        "SLUICE_STATE_DIR": str(tmp_path / "state"),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [str(Path(sys.executable).with_name("sluice")), *args],
        capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=180, check=False,
    )  # fmt: skip


@pytest.fixture
def regressor(mlflow_tracking_uri: str, model: str, diabetes_v1: str) -> str:
    """``model`` registered as v1 by the diabetes example (plain MLflow and the helper): the
    session's training run, copied to a name of the test's own."""
    name = model.replace("fraud", "diabetes")
    copy_version(mlflow_tracking_uri, diabetes_v1, name)
    return name


def test_init_onboards_a_plain_mlflow_model_once(
    mlflow_tracking_uri: str, remote: GitRemote, regressor: str, tmp_path: Path
) -> None:
    """--dry-run shows the diff and pushes nothing; init commits the release to its init branch
    (base, pin, patches, release with its policy comment, request body), which renders and
    validates; a second run changes nothing; `local merge` lands it, and a third run says it is
    already there."""
    refs = snapshot(remote)
    dry = sluice(tmp_path, mlflow_tracking_uri, remote.url, "init", regressor, "--env", "local",
                 "--dry-run")  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert "Would onboard" in dry.stdout
    assert f"+  - {regressor}.yaml" in dry.stdout  # the base kustomization, in the diff
    assert f"manifests/base/{regressor}.request.json" in dry.stdout  # a new file, in the diff
    assert snapshot(remote) == refs

    first = sluice(tmp_path, mlflow_tracking_uri, remote.url, "init", regressor, "--env", "local")
    assert first.returncode == 0, first.stderr
    assert "modelFormat mlflow, runtime sluice-mlflow; 5 payload rows from its input example" in (
        first.stdout
    )
    assert f"sluice local merge {regressor} --env local" in first.stdout
    branch = BRANCH.format(model=regressor)
    tip = git("rev-parse", f"refs/heads/{branch}", cwd=remote.path)

    tree = tmp_path / "tree"
    git("clone", "--quiet", "--branch", branch, remote.url, tree)
    documents = validate_rendered(tree / "manifests" / "overlays" / "local")
    service = next(d for d in documents if d["metadata"]["name"] == regressor)
    assert service["metadata"]["namespace"] == "models-local"
    assert service["spec"]["predictor"]["model"]["modelFormat"] == {"name": "mlflow"}
    assert service["spec"]["predictor"]["model"]["runtime"] == "sluice-mlflow"
    environment = (tree / "manifests/overlays/local/sluice.yaml").read_text()
    assert f"# {regressor}: added by `sluice init` from v1 (flavours python_function," in (
        environment
    )
    assert f"  - model: {regressor}\n    inferenceService: {regressor}\n" in environment
    # Comments and order of the rest are kept: the file only grew.
    original = git("show", "main:manifests/overlays/local/sluice.yaml", cwd=remote.path)
    assert set(original.splitlines()) <= set(environment.splitlines())
    body = json.loads((tree / f"manifests/base/{regressor}.request.json").read_text())
    assert len(body["instances"]) == 3
    assert set(body["instances"][0]) == {"age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4",
                                         "s5", "s6"}  # fmt: skip

    again = sluice(tmp_path, mlflow_tracking_uri, remote.url, "init", regressor, "--env", "local")
    assert again.returncode == 0, again.stderr
    assert "Already onboarded (no new commit)" in again.stdout
    assert git("rev-parse", f"refs/heads/{branch}", cwd=remote.path) == tip

    merged = sluice(tmp_path, mlflow_tracking_uri, remote.url, "local", "merge", regressor,
                    "--env", "local")  # fmt: skip
    assert merged.returncode == 0, merged.stderr
    assert f"Merged {branch} into main" in merged.stdout
    refs = snapshot(remote)
    done = sluice(tmp_path, mlflow_tracking_uri, remote.url, "init", regressor, "--env", "local")
    assert done.returncode == 0, done.stderr
    assert "is already set up in local on main: nothing to do" in done.stdout
    assert snapshot(remote) == refs


def _register_directory(tracking_uri: str, name: str, mlmodel: str) -> None:
    """Register a model directory holding only ``mlmodel`` (a flavour Sluice cannot serve)."""
    mlflow.set_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run() as run:
        (Path(tmp) / "MLmodel").write_text(mlmodel)
        mlflow.log_artifacts(tmp, "model")
        mlflow.register_model(f"runs:/{run.info.run_id}/model", name)


class _Constant(mlflow.pyfunc.PythonModel):  # type: ignore[misc, name-defined]
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return [0.0] * len(model_input)


@pytest.mark.parametrize("case", ["unknown", "version", "flavour", "no-example", "different"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    mlflow_tracking_uri: str,
    remote: GitRemote,
    model: str,
    tmp_path: Path,
    case: str,
    diabetes_v1: str,
) -> None:
    """Unknown model or version, a flavour no runtime serves, no input example or signature,
    or a different release already there: one line naming it and the fix, exit 2, no push."""
    args = ["init", model, "--env", "local"]
    if case == "unknown":
        expected = f"model '{model}' is not in the registry"
    elif case == "version":
        copy_version(mlflow_tracking_uri, diabetes_v1, model)
        args += ["--version", "7"]
        expected = "7"
    elif case == "flavour":
        _register_directory(mlflow_tracking_uri, model, "flavors:\n  h2o:\n    data: model.h2o\n")
        expected = "has flavour(s) h2o, which no ServingRuntime in manifests/serving-runtime/ "
    elif case == "no-example":
        mlflow.set_tracking_uri(mlflow_tracking_uri)
        with mlflow.start_run():
            mlflow.pyfunc.log_model(
                name="model", python_model=_Constant(), registered_model_name=model,
                pip_requirements=pinned(),
            )  # fmt: skip
        expected = "logged neither an input example nor a column signature"
    else:
        copy_version(mlflow_tracking_uri, diabetes_v1, model)

        def other_release(tree: Path) -> None:
            path = tree / "manifests/overlays/local/sluice.yaml"
            text = path.read_text().replace(
                "releases:\n",
                f"releases:\n  - model: {model}\n    inferenceService: other\n"
                "    pin: other.yaml\n",
            )
            path.write_text(text)

        commit_to_remote(remote, tmp_path / "prep", "Another release", other_release)
        expected = f"local already has a release of {model} (inferenceService other"
    refs = snapshot(remote)
    result = sluice(tmp_path, mlflow_tracking_uri, remote.url, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert expected in line, line
    assert snapshot(remote) == refs


def test_the_registry_gives_rows_from_the_signature_when_there_is_no_example(
    mlflow_tracking_uri: str, model: str
) -> None:
    """A version logged with a column signature and no input example still has rows for the
    smoke and the load test: typed placeholders."""
    from mlflow.models import infer_signature

    frame = pd.DataFrame({"x": [1.5, 2.5], "n": [1, 2], "city": ["a", "b"]})
    mlflow.set_tracking_uri(mlflow_tracking_uri)
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model", python_model=_Constant(), registered_model_name=model,
            signature=infer_signature(frame, [0.0, 0.0]), pip_requirements=pinned(),
        )  # fmt: skip
    rows = MlflowRegistry(mlflow_tracking_uri).input_rows(model, 1, 10)
    assert rows[0] == {"x": 0.0, "n": 0, "city": ""}


def test_the_model_server_serves_the_regressor_over_v1_and_v2(
    mlflow_tracking_uri: str, regressor: str, tmp_path: Path
) -> None:
    """Sluice's model server loads the scikit-learn flavour (MLflow's default format) and
    answers V1 instances and a V2 tensor per column with one prediction per row."""
    registry = MlflowRegistry(mlflow_tracking_uri)
    rows = registry.input_rows(regressor, 1, 3)
    uri = registry.resolve(regressor, version=1).artifact_uri
    servable = PyfuncServable(uri, download_dir=tmp_path / "model")
    servable.load()
    v1 = servable.predictions(servable.predict(servable.frame_from_instances(rows)))
    assert len(v1) == 3
    assert all(isinstance(value, float) for value in v1)
    tensors = [Tensor(name, "FP64", [3], [row[name] for row in rows]) for name in rows[0]]
    ((_, values),) = servable.output_tensors(servable.predict(servable.frame_from_tensors(tensors)))
    assert values.shape == (3,)
    assert values.tolist() == pytest.approx(v1)


def test_init_repo_makes_an_empty_directory_a_gitops_repository(
    mlflow_tracking_uri: str, regressor: str, tmp_path: Path
) -> None:
    """The layout renders and validates (overlays, serving runtime, Argo CD's gitops/); a
    model onboards into it, and the onboarded overlay validates too; a non-empty directory is
    refused."""
    repo = tmp_path / "models-gitops"
    created = sluice(tmp_path, mlflow_tracking_uri, str(repo), "init", "--repo", str(repo),
                     "--repo-url", "https://git.example.com/team/models.git")  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert "Created the GitOps repository" in created.stdout
    assert git("log", "--format=%s", "main", cwd=repo).startswith("sluice init --repo")
    for env in ("local", "staging", "production"):
        assert validate_rendered(repo / "manifests/overlays" / env) == []
    runtime = render_overlay(repo / "manifests/serving-runtime")
    assert [d["kind"] for d in runtime] == ["ClusterServingRuntime"]
    argo = render_overlay(repo / "gitops")
    kinds = sorted(d["kind"] for d in argo)
    assert kinds == ["AppProject", "Application", "ApplicationSet", "Namespace", "Namespace"]
    appset = next(d for d in argo if d["kind"] == "ApplicationSet")
    elements = appset["spec"]["generators"][0]["list"]["elements"]
    assert elements == [{"environment": "staging"}, {"environment": "production"}]
    assert appset["spec"]["template"]["spec"]["source"]["repoURL"] == (
        "https://git.example.com/team/models.git"
    )
    assert [e for d in argo for e in schema_errors(d)] == []

    onboarded = sluice(tmp_path, mlflow_tracking_uri, str(repo), "init", regressor,
                       "--env", "staging")  # fmt: skip
    assert onboarded.returncode == 0, onboarded.stderr
    merged = sluice(tmp_path, mlflow_tracking_uri, str(repo), "local", "merge", regressor,
                    "--env", "staging")  # fmt: skip
    assert merged.returncode == 0, merged.stderr
    # The merge landed in the repository's own checkout (receive.denyCurrentBranch).
    (service,) = validate_rendered(repo / "manifests/overlays/staging")
    assert service["metadata"]["name"] == regressor

    again = sluice(tmp_path, mlflow_tracking_uri, str(repo), "init", "--repo", str(repo))
    assert again.returncode == 2
    assert "is not an empty directory" in again.stderr


def test_the_packaged_scaffold_is_the_repositorys_own() -> None:
    """`sluice init --repo` writes what the package ships (an installed Sluice has no source
    tree): the serving runtime and the environments' sluice.yaml, identical to manifests/."""
    from controller.scaffold import environment_file, serving_runtime_files

    root = Path(__file__).resolve().parents[1] / "manifests"
    runtime = {
        p.name: p.read_text(encoding="utf-8") for p in (root / "serving-runtime").glob("*.yaml")
    }
    assert serving_runtime_files() == runtime
    for overlay in (root / "overlays").iterdir():
        if (overlay / "sluice.yaml").is_file():
            assert environment_file(overlay.name) == (overlay / "sluice.yaml").read_text(
                encoding="utf-8"
            ), f"controller/scaffold/environments/{overlay.name}.yaml differs from {overlay}"
