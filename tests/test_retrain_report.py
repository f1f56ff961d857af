"""`sluice retrain report`: a retraining started through the forge reports its outcome (#14).

`sluice serve`'s retrainer sends the `retrain` dispatch (to the local GitHub REST server) and
records `started` in the real MLflow registry; the train workflow's last step then runs this
command, through the installed CLI as here, and the record says `succeeded → vN`,
`gate-failed` or `failed` with the run's URL, as the local path's does, and the configured
notifier (a Slack-compatible webhook, a real HTTP server here) gets the same notice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support.github_api import GitHubApiServer
from support.gitrepo import GitRemote
from support.readme_blocks import console_commands
from support.registry import register_version

from controller.backends.github_forge import GitHubForge
from controller.backends.mlflow_registry import MlflowRegistry
from controller.domain import RetrainRequest
from controller.errors import InputError
from controller.local.services import MlflowService
from controller.retrain.forge_dispatch import ForgeRetrain
from controller.retrain.record import RetrainRecord, last_retrain_tag
from controller.retrain.registry_state import RegistryCooldown
from controller.retrain.report import RetrainReport, report_outcome
from controller.retrain.retrainer import Retrainer

BIN = Path(sys.executable).parent
REPO = "acme/models"
TOKEN = "ghp_retrain_report_token"
RUN_URL = "https://github.com/acme/models/actions/runs/42"
SINCE = "2025-06-15T15:06:40+00:00"


class Webhook(ThreadingHTTPServer):
    """A Slack-compatible incoming webhook on 127.0.0.1 that keeps what it is sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.received: list[dict[str, Any]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}/hooks/T000/B000/secret"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def texts(self) -> list[str]:
        return [json.dumps(body) for body in self.received]


class _Hook(BaseHTTPRequestHandler):
    server: Webhook

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    server = Webhook()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def github(git_remote: GitRemote) -> Iterator[GitHubApiServer]:
    with GitHubApiServer(TOKEN, {REPO: git_remote.path}) as server:
        yield server


def start_retraining(tracking_uri: str, github: GitHubApiServer, model: str) -> RetrainRecord:
    """What `sluice serve --forge github` does on a drift alert: the dispatch, and the record."""
    registry = MlflowRegistry(tracking_uri)
    forge = GitHubForge(api_url=github.api_url, token=TOKEN, repository=REPO, backoff_seconds=0)
    retrainer = Retrainer(ForgeRetrain(forge), RegistryCooldown(registry), cooldown_seconds=3600)
    request = RetrainRequest(
        model, "staging", ("amount", "hour"), SINCE, alerts=("SluiceFeatureDrift",)
    )
    assert retrainer.request(request).result == "started"
    record = RegistryCooldown(registry).last_record(model, "staging")
    assert record is not None
    assert record.outcome == "started"
    dispatch = github.dispatches[-1]
    assert dispatch.client_payload["requested_at"] == record.at
    return record


def sluice(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "sluice"), *args], capture_output=True, text=True, cwd=cwd, timeout=120,
        check=False, env={**os.environ, "COLUMNS": "200", **env},
    )  # fmt: skip


def tag(tracking_uri: str, model: str) -> str | None:
    return (
        MlflowRegistry(tracking_uri).registered_model_tags(model).get(last_retrain_tag("staging"))
    )


def test_a_dispatched_retraining_reports_success_once(
    mlflow_tracking_uri: str, model: str, github: GitHubApiServer, webhook: Webhook,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The workflow's report finishes the record the dispatch started: succeeded → the
    challenger, when it finished, the run's URL as where it ran; the webhook gets the notice the
    local path sends. The same report again changes nothing and notifies nobody."""
    version = register_version(mlflow_tracking_uri, model)
    started = start_retraining(mlflow_tracking_uri, github, model)
    env = {
        "MLFLOW_TRACKING_URI": mlflow_tracking_uri,
        "SLUICE_STATE_DIR": str(tmp_path / "state"),
        "SLUICE_NOTIFY_WEBHOOK_URL": webhook.url,
    }
    args = ("retrain", "report", model, "--env", "staging", "--exit-code", "0",
            "--requested-at", started.at, "--run-url", RUN_URL)  # fmt: skip
    first = sluice(tmp_path, env, *args, "--json")
    assert first.returncode == 0, first.stderr
    shown = json.loads(first.stdout)
    assert shown["changed"] is True
    record = RetrainRecord.decode(tag(mlflow_tracking_uri, model))
    assert record is not None
    assert shown["retraining"] == record.to_json()
    assert (record.outcome, record.new_version, record.where) == ("succeeded", version, RUN_URL)
    assert record.detail == f"trained and registered as challenger; {RUN_URL}"
    assert (record.at, record.since, record.features) == (started.at, SINCE, ("amount", "hour"))
    assert record.finished_at
    (notice,) = webhook.received
    text = json.dumps(notice)
    assert f"{model}: retraining for staging succeeded" in text
    assert f"v{version} is the challenger" in text
    assert "SluiceFeatureDrift (drifted: amount, hour)" in text
    assert "secret" not in first.stdout + first.stderr  # the webhook's path is a secret

    stored = tag(mlflow_tracking_uri, model)
    again = sluice(tmp_path, env, *args)
    assert again.returncode == 0, again.stderr
    assert "Already recorded (nothing changed)" in again.stdout
    assert f"last retraining succeeded → v{version}" in again.stdout
    assert tag(mlflow_tracking_uri, model) == stored
    assert len(webhook.received) == 1


@pytest.mark.parametrize(
    ("args", "outcome", "detail"),
    [
        (("--exit-code", "1", "--version", "2"), "gate-failed",
         "the new version failed the quality gate (exit 1); v2 registered without the challenger "
         f"alias; {RUN_URL}"),
        (("--exit-code", "3"), "failed", f"the registry was unreachable (exit 3); {RUN_URL}"),
        (("--outcome", "failed", "--detail", "the run stopped before training finished"),
         "failed", f"the run stopped before training finished; {RUN_URL}"),
    ],
    ids=["gate-failed", "exit-3", "stopped"],
)  # fmt: skip
def test_a_failed_retraining_is_recorded_and_announced_as_an_error(
    mlflow_tracking_uri: str, model: str, github: GitHubApiServer, webhook: Webhook,
    tmp_path: Path, args: tuple[str, ...], outcome: str, detail: str,
) -> None:  # fmt: skip
    """A gate that failed, a training that failed, a run that stopped early: the record says so
    with no new version, `sluice status`'s line gives the detail, and the notice is sent."""
    register_version(mlflow_tracking_uri, model)
    register_version(mlflow_tracking_uri, model, alias=None)
    start_retraining(mlflow_tracking_uri, github, model)
    env = {"MLFLOW_TRACKING_URI": mlflow_tracking_uri, "SLUICE_NOTIFY_WEBHOOK_URL": webhook.url}
    done = sluice(tmp_path, env, "retrain", "report", model, "--env", "staging", *args,
                  "--run-url", RUN_URL)  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = RetrainRecord.decode(tag(mlflow_tracking_uri, model))
    assert record is not None
    assert (record.outcome, record.new_version, record.detail) == (outcome, None, detail)
    assert f"last retraining {outcome} (" in done.stdout
    (notice,) = webhook.received
    assert f"{model}: retraining for staging {outcome}" in json.dumps(notice)


@pytest.mark.parametrize(
    "case",
    ["unknown-model", "no-record", "bad-outcome", "both", "neither", "stale", "finished",
     "bad-url", "bad-time"],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    mlflow_tracking_uri: str, model: str, github: GitHubApiServer, webhook: Webhook,
    tmp_path: Path, case: str,
) -> None:  # fmt: skip
    """Each is one line on stderr naming what is wrong and the fix, exit 2; the record and the
    webhook are untouched."""
    register_version(mlflow_tracking_uri, model)
    started = None if case == "no-record" else start_retraining(mlflow_tracking_uri, github, model)
    env = {"MLFLOW_TRACKING_URI": mlflow_tracking_uri, "SLUICE_NOTIFY_WEBHOOK_URL": webhook.url}
    base = ("retrain", "report", model, "--env", "staging")
    if case == "finished":  # another run (or the local path) finished it already
        first = sluice(tmp_path, env, *base, "--exit-code", "0", "--run-url", RUN_URL)
        assert first.returncode == 0, first.stderr
        webhook.received.clear()
    before = tag(mlflow_tracking_uri, model)
    args: tuple[str, ...] = {
        "unknown-model": ("retrain", "report", f"{model}-gone", "--env", "staging",
                          "--exit-code", "0"),
        "no-record": (*base, "--exit-code", "0"),
        "bad-outcome": (*base, "--outcome", "passed"),
        "both": (*base, "--outcome", "failed", "--exit-code", "1"),
        "neither": base,
        "stale": (*base, "--exit-code", "0", "--requested-at", "2020-01-01T00:00:00+00:00"),
        "finished": (*base, "--exit-code", "1", "--run-url", f"{RUN_URL}9"),
        "bad-url": (*base, "--exit-code", "0", "--run-url", "javascript:alert(1)"),
        "bad-time": (*base, "--exit-code", "0", "--requested-at", "yesterday"),
    }[case]  # fmt: skip
    done = sluice(tmp_path, env, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    expected = {
        "unknown-model": f"{model}-gone",
        "no-record": f"no retraining of {model} for staging to report",
        "bad-outcome": "--outcome 'passed' is not one of succeeded, gate-failed, failed",
        "both": "--outcome succeeded|gate-failed|failed) or the training command's exit status",
        "neither": "--exit-code N), one of them",
        "stale": "requested at 2020-01-01T00:00:00+00:00 is not the last one",
        "finished": f"the last retraining of {model} for staging is not in progress",
        "bad-url": "--run-url 'javascript:alert(1)' is not an http(s) URL",
        "bad-time": "--requested-at 'yesterday' is not an ISO 8601 time",
    }[case]
    assert expected in line
    if started is not None and case in ("stale",):
        assert started.at in line
    assert tag(mlflow_tracking_uri, model) == before
    assert webhook.received == []


# -- the README, as written ----------------------------------------------------------------------


def test_the_readme_report_runs_as_written(
    own_mlflow: MlflowService, github: GitHubApiServer, tmp_path: Path
) -> None:
    """The README's command, as written, with default settings (no notifier: the notice is
    printed on stderr), finishes the retraining `sluice serve` started for fraud-detector, and
    prints the line `sluice status` shows."""
    # The retraining section's console block that reports back.
    (command,) = console_commands(
        "### From a drift alert to a retraining", containing="sluice retrain report"
    )
    assert command == (
        f"sluice retrain report fraud-detector --env staging --exit-code 0 --run-url {RUN_URL}"
    )
    register_version(own_mlflow.tracking_uri, "fraud-detector", alias=None)
    version = register_version(own_mlflow.tracking_uri, "fraud-detector")
    started = start_retraining(own_mlflow.tracking_uri, github, "fraud-detector")
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "COLUMNS": "200",
        "MLFLOW_TRACKING_URI": own_mlflow.tracking_uri,
    }
    done = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(
        f"Recorded: fraud-detector in staging: last retraining succeeded → v{version} ("
    )
    assert f"SluiceFeatureDrift: amount, hour; data since {SINCE})" in done.stdout
    assert "notice: fraud-detector: retraining for staging succeeded: " in done.stderr
    record = RetrainRecord.decode(
        MlflowRegistry(own_mlflow.tracking_uri)
        .registered_model_tags("fraud-detector")
        .get(last_retrain_tag("staging"))
    )
    assert record is not None
    assert (record.at, record.outcome, record.new_version) == (started.at, "succeeded", version)
    assert record.where == RUN_URL


class Notices:
    """A notifier that keeps what it is told (the webhook's content, without HTTP)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def notify(self, title: str, text: str, *, severity: str = "info") -> None:
        self.sent.append((title, text, severity))


def test_a_rerun_of_the_job_may_change_the_outcome_another_run_may_not(
    mlflow_tracking_uri: str, model: str, github: GitHubApiServer
) -> None:
    """A re-run attempt of the same workflow run (one run URL) that ends otherwise updates the
    record and notifies again; a report from another run is refused once the record finished."""
    register_version(mlflow_tracking_uri, model)
    started = start_retraining(mlflow_tracking_uri, github, model)
    cooldown = RegistryCooldown(MlflowRegistry(mlflow_tracking_uri))
    notices = Notices()

    def report(outcome: str, where: str) -> tuple[RetrainRecord, bool]:
        return report_outcome(
            cooldown, notices,
            RetrainReport(model, "staging", outcome, outcome, where=where,  # type: ignore[arg-type]
                          requested_at=started.at),
            now=time.time(),
        )  # fmt: skip

    failed, changed = report("failed", RUN_URL)
    assert (failed.outcome, changed) == ("failed", True)
    assert report("failed", RUN_URL) == (failed, False)
    succeeded, changed = report("succeeded", RUN_URL)
    assert (succeeded.outcome, changed) == ("succeeded", True)
    assert [severity for _, _, severity in notices.sent] == ["error", "success"]
    with pytest.raises(InputError, match="is not in progress: it is succeeded since"):
        report("failed", f"{RUN_URL}0")
    assert cooldown.last_record(model, "staging") == succeeded
