"""The train and promote workflows, run step by step exactly as written, against real services.

GitHub Actions does not run here; :mod:`support.workflow_runner` runs each job's `run:` steps
with bash, with the expressions evaluated for the event, against a real MLflow server, a bare
Git remote standing in for the GitHub repository and the local GitHub REST server. Only what
a runner provides is set from outside: GITHUB_REPOSITORY, GITHUB_API_URL (as on GitHub
Enterprise), GITHUB_SERVER_URL and GITHUB_RUN_ID (the run's URL) and, because the checkout's
origin here is not GitHub, SLUICE_GIT_REMOTE.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from support.github_api import GitHubApiServer
from support.gitops_repo import ROOT, seed_manifests
from support.gitrepo import GitRemote, create_git_remote, git
from support.workflow_runner import JobRun, base_environ, run_job

from controller.backends.github_forge import GitHubForge
from controller.backends.mlflow_registry import MlflowRegistry
from controller.domain import RetrainRequest
from controller.local.services import MlflowService
from controller.retrain.forge_dispatch import ForgeRetrain, dispatch_payload
from controller.retrain.record import RetrainRecord
from controller.retrain.registry_state import RegistryCooldown
from controller.retrain.retrainer import Retrainer
from models.fraud_detector.data import NEWEST_WEEK

pytestmark = pytest.mark.slow

MODEL = "fraud-detector"
WORKFLOWS = ROOT / ".github" / "workflows"
TOKEN = "ghp_workflow_runs_token"


@dataclass
class Runner:
    remote: GitRemote
    github: GitHubApiServer
    tracking_uri: str
    workdir: Path

    def run(self, workflow: str, job: str, event: dict[str, object], name: str) -> JobRun:
        workdir = self.workdir / name
        workdir.mkdir()
        environ = {
            **base_environ(workdir),
            "GITHUB_REPOSITORY": "acme/models",
            "GITHUB_API_URL": self.github.api_url,
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_RUN_ID": str(sum(1 for _ in self.workdir.iterdir())),
            "SLUICE_GIT_REMOTE": self.remote.url,
            "SLUICE_STATE_DIR": str(workdir / "state"),
        }
        secrets = {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_TRACKING_TOKEN": "",
            "SLUICE_GITHUB_TOKEN": TOKEN,
        }
        return run_job(
            WORKFLOWS / workflow, job, event=event, secrets=secrets, cwd=ROOT,
            workdir=workdir, environ=environ,
        )  # fmt: skip


@pytest.fixture(scope="module")
def runner(
    mlflow_server: MlflowService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runner]:
    root = tmp_path_factory.mktemp("workflows")
    remote = create_git_remote(root)
    seed_manifests(remote, root / "seed", model=MODEL)
    with GitHubApiServer(TOKEN, {"acme/models": remote.path}) as github:
        yield Runner(remote, github, mlflow_server.tracking_uri, root)


def failure(run: JobRun) -> str:
    step = run.failed_step or ""
    return f"step {step!r} failed:\n{run.logs.get(step, '')[-3000:]}"


def test_a_drift_dispatch_trains_registers_and_opens_a_pull_request(runner: Runner) -> None:
    """repository_dispatch `retrain`, with the payload `sluice serve` sends, trains on the data
    since the drift began (the example's newest week, not week 0), registers, proposes to
    staging and summarises."""
    payload = dispatch_payload(
        RetrainRequest(MODEL, "staging", ("amount", "hour"), "2025-06-15T15:06:40Z")
    )
    run = runner.run(
        "train.yml", "train", {"action": "retrain", "client_payload": payload}, "train"
    )
    assert run.failed_step is None, failure(run)
    assert f"## {MODEL} v1: quality gate passed" in run.summary
    assert f"Trained on synthetic week {NEWEST_WEEK}" in run.summary
    # No SLUICE_SIGNING_KEY secret: the attestation is recorded, unsigned, and says so.
    assert "provenance: unsigned;" in run.summary
    assert "Retraining asked for by a drift alert on: amount, hour" in run.summary
    assert f"## Proposal: {MODEL} v1 → staging" in run.summary
    assert "Pull request: [#1](" in run.summary
    (created,) = runner.github.requests_to("POST", r"/repos/acme/models/pulls")
    assert created.body["head"] == f"sluice/staging/{MODEL}/v1"
    assert TOKEN not in "".join(run.logs.values())


def test_promote_proposes_the_champion_to_production(runner: Runner) -> None:
    """The promote workflow opens production's pull request for the champion, on S3 storage."""
    MlflowClient(runner.tracking_uri).set_registered_model_alias(MODEL, "champion", "1")
    run = runner.run("promote.yml", "promote", {"inputs": {"model": MODEL}}, "promote")
    assert run.failed_step is None, failure(run)
    assert f"## Promotion: {MODEL} v1 → production" in run.summary
    branch = f"sluice/production/{MODEL}/v1"
    pin = git("show", f"{branch}:manifests/overlays/production/fraud-detector.yaml",
              cwd=runner.remote.path)  # fmt: skip
    assert "storageUri: s3://sluice-models/mlflow-artifacts/" in pin


@pytest.mark.parametrize(
    "payload",
    [
        {"model": "x; touch /tmp/pwned", "environment": "staging"},
        {"model": MODEL, "environment": "staging", "since": "$(touch /tmp/pwned)"},
    ],
    ids=["model", "since"],
)
def test_an_unsafe_dispatch_payload_stops_before_anything_runs(
    runner: Runner, payload: dict[str, str]
) -> None:
    """A dispatch whose model is not a plain name, or whose since is not a time, fails the
    first step and runs nothing else."""
    event = {"client_payload": payload}
    run = runner.run("train.yml", "train", event, f"unsafe-{len(payload)}")
    assert run.failed_step == "Check the request"
    assert run.codes["Check the request"] == 2
    assert list(run.codes) == ["Check the request"]


def start_retraining(runner: Runner, environment: str) -> tuple[RetrainRecord, dict[str, object]]:
    """What `sluice serve --forge github` does on a drift alert: record `started` in the
    registry and send the dispatch; returns the record and the dispatch's payload."""
    registry = MlflowRegistry(runner.tracking_uri)
    forge = GitHubForge(
        api_url=runner.github.api_url, token=TOKEN, repository="acme/models", backoff_seconds=0
    )
    retrainer = Retrainer(ForgeRetrain(forge), RegistryCooldown(registry), cooldown_seconds=3600)
    request = RetrainRequest(
        MODEL, environment, ("amount",), "2025-06-15T15:06:40Z", alerts=("SluiceFeatureDrift",)
    )
    assert retrainer.request(request).result == "started"
    record = RegistryCooldown(registry).last_record(MODEL, environment)
    assert record is not None
    assert record.outcome == "started"
    return record, runner.github.dispatches[-1].client_payload


def last_retraining(runner: Runner, environment: str) -> RetrainRecord:
    record = RegistryCooldown(MlflowRegistry(runner.tracking_uri)).last_record(MODEL, environment)
    assert record is not None
    return record


def test_a_retraining_sluice_serve_started_reports_its_outcome(runner: Runner) -> None:
    """The dispatch `sluice serve`'s retrainer sends (with requested_at) runs train.yml to its
    last step, which finishes the registry's record: the training's outcome, the new challenger,
    the run's URL; the notice is in the run's log (no webhook secret)."""
    started, payload = start_retraining(runner, "staging")
    assert payload["requested_at"] == started.at
    run = runner.run("train.yml", "train", {"action": "retrain", "client_payload": payload},
                     "report-success")  # fmt: skip
    train = run.outputs["Train, validate, register"]
    outcome = {"0": "succeeded", "1": "gate-failed"}[train["status"]]
    stopped = None if outcome == "succeeded" else "Stop when training did not register a challenger"
    assert run.failed_step == stopped, failure(run)
    assert run.codes["Report the retraining's outcome"] == 0, failure(run)
    record = last_retraining(runner, "staging")
    assert (record.at, record.outcome) == (started.at, outcome)
    assert record.where.startswith("https://github.com/acme/models/actions/runs/")
    assert record.new_version == (int(train["version"]) if outcome == "succeeded" else None)
    assert record.finished_at
    assert "## Retraining reported" in run.summary
    assert f"{MODEL} in staging: {outcome}" in run.summary
    assert (
        f"notice: {MODEL}: retraining for staging {outcome}"
        in (run.logs["Report the retraining's outcome"])
    )
    assert TOKEN not in "".join(run.logs.values())


def test_a_retraining_that_fails_before_training_reports_failed(runner: Runner) -> None:
    """A run that stops early (here the second check: local is no cluster environment) still
    runs the report (`if: always()`), which records `failed` and why, with the run's URL."""
    started, payload = start_retraining(runner, "local")
    run = runner.run("train.yml", "train", {"action": "retrain", "client_payload": payload},
                     "report-failure")  # fmt: skip
    assert run.failed_step == "Check the model and environment exist"
    assert "Train, validate, register" not in run.codes
    assert run.codes["Report the retraining's outcome"] == 0, failure(run)
    record = last_retraining(runner, "local")
    assert (record.at, record.outcome, record.new_version) == (started.at, "failed", None)
    assert record.detail.startswith("the run stopped before training finished; https://")
    assert (
        f"notice: {MODEL}: retraining for local failed"
        in (run.logs["Report the retraining's outcome"])
    )
