"""One local stack, two environments: what ``sluice local status``, ``url``, the stack's status
page and ``sluice serve --env ENV`` show and read of each, as a user runs them.

``sluice local up --env staging --env production`` runs in a checkout (the default state
directory, ``.sluice``, and the stack's own intervals); a version proposed and merged into both
environments serves in each from its own runtime and router. The stack's commands then show
both environments, ``sluice local url NAME --env ENV`` prints the router of either, and
``sluice serve --env production`` reads and writes the prediction log production's router
writes (``.sluice/local/environments/production/predictions.sqlite``), not the first
environment's. The last tests check where a command finds an environment's log without a stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.gitops_repo import commit_to_remote, seed_manifests
from support.gitrepo import GitRemote, create_git_remote
from support.registry import register_version

from controller.backends.git_repo import GitWorkspace
from controller.backends.mlflow_attestations import MlflowAttestations
from controller.backends.mlflow_evidence import MlflowEvidence
from controller.backends.mlflow_registry import MlflowRegistry
from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.commands.local_state import prediction_log_path
from controller.demo.gitops_remote import merge_branch
from controller.local.processes import free_port
from controller.local.state import REMOTE_FILE, read_json, write_json
from controller.null_ports import NoForge
from controller.proposals.propose import ProposalRequest, propose
from controller.settings import Settings

MODEL = "fraud-detector"
ENVIRONMENTS = ("staging", "production")
FEEDBACK_TOKEN = "feedback-token-for-tests"


def _environment(name: str) -> str:
    """An environment the local runtime serves (its model servers read MLflow's artifacts)."""
    return (
        "apiVersion: sluice.dev/v1alpha1\nkind: Environment\n"
        f"name: {name}\nbranch: main\ndeploymentMode: Serverless\n"
        "storage: {allowedSchemes: [mlflow-artifacts, file]}\n"
        f"releases:\n  - model: {MODEL}\n    inferenceService: {MODEL}\n"
        f"    pin: {MODEL}.yaml\n    alias: champion\n"
    )


def _local_environments(tree: Path) -> None:
    for name in ENVIRONMENTS:
        (tree / "manifests" / "overlays" / name / "sluice.yaml").write_text(_environment(name))


@dataclass
class Checkout:
    """A checkout with the stack running in it, and ``sluice`` as its user types it there."""

    root: Path
    remote: GitRemote

    @property
    def env(self) -> dict[str, str]:
        environment = dict(os.environ)
        for name in ("SLUICE_STATE_DIR", "SLUICE_GIT_REMOTE", "MLFLOW_TRACKING_URI"):
            environment.pop(name, None)  # the stack's, found from the checkout
        return {**environment, "COLUMNS": "200"}  # tables as wide as a terminal's

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "controller", *args],
            cwd=self.root, env={**self.env, **extra}, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip

    def __call__(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    @property
    def stack(self) -> Path:
        return self.root / ".sluice" / "local"

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self("local", "status", "--json")))


def _state_dir(checkout: Checkout, env: str) -> Path:
    """Where the runtime of ``env`` keeps its state and its routers' prediction log."""
    return checkout.stack if env == ENVIRONMENTS[0] else checkout.stack / "environments" / env


def _serving(checkout: Checkout, env: str) -> str | None:
    """The router of ``MODEL`` in ``env`` once a revision of it serves all of its traffic, as
    the environment's runtime saved it."""
    state_dir = _state_dir(checkout, env)
    entry = ((read_json(state_dir / "runtime.json") or {}).get("inferenceServices") or {}).get(
        MODEL
    ) or {}
    status = entry.get("object", {}).get("status", {})
    traffic = status.get("components", {}).get("predictor", {}).get("traffic")
    served = traffic and traffic[0].get("percent") == 100 and entry.get("url")
    return str(entry["url"]) if served else None


def _wait(what: str, check: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    return found


def _post(url: str, body: object, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 (http://127.0.0.1)
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=60) as response:
        return response.status, json.loads(response.read() or b"null")


def _get(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=60) as response:
        return str(response.read().decode())


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Checkout]:
    """``sluice local up --env staging --env production`` in a checkout, v1 serving in both."""
    root = tmp_path_factory.mktemp("local-environments")
    remote = create_git_remote(root)
    seed_manifests(remote, root / "seed", model=MODEL)
    commit_to_remote(remote, root / "policy", "Serve staging and production", _local_environments)
    checkout = Checkout(root / "checkout", remote)
    checkout.root.mkdir()
    up = ["local", "up", "--env", "staging", "--env", "production", "--repo", remote.url]
    try:
        checkout(*up)
        tracking_uri = str((read_json(checkout.stack / "stack.json") or {})["mlflow"]["url"])
        version = register_version(tracking_uri, MODEL, alias=None, input_example=True)
        for env in ENVIRONMENTS:
            result = propose(
                ProposalRequest(model=MODEL, environment=env, version=version),
                registry=MlflowRegistry(tracking_uri),
                workspace=GitWorkspace(remote.url, root / f"propose-{env}"),
                forge=NoForge(),
                attestations=MlflowAttestations(tracking_uri),
                evidence=MlflowEvidence(tracking_uri),
            )
            merge_branch(remote.path, result.branch)
        for env in ENVIRONMENTS:
            _wait(f"v{version} to serve in {env}", lambda env=env: _serving(checkout, env))
        yield checkout
    finally:
        checkout.run("local", "down")


@pytest.mark.slow
def test_status_shows_each_environment(checkout: Checkout) -> None:
    """``status --json`` keeps its first keys for staging (the first environment) and adds
    each environment's objects under ``environments``; the table shows both InferenceServices
    and production's runtime."""
    status = checkout.status()
    sections = status["environments"]
    assert list(sections) == ["staging", "production"]
    assert sections["production"]["stateDir"] == str(checkout.stack / "environments/production")
    assert {s["runtime"] for s in sections.values()} == {"running"}
    for env, section in sections.items():
        (obj,) = section["inferenceServices"]
        assert obj["metadata"]["name"] == MODEL
        assert section["applications"][0]["status"]["sync"]["status"] == "Synced", env
    assert status["inferenceServices"] == sections["staging"]["inferenceServices"]
    assert status["applications"] == sections["staging"]["applications"]
    table = checkout("local", "status")
    assert table.count(f"InferenceService {MODEL}") == 2
    environment_rows = [line for line in table.splitlines() if "│ environment" in line]
    assert [row.split("│")[2].strip() for row in environment_rows] == list(ENVIRONMENTS)
    for section in sections.values():
        (obj,) = section["inferenceServices"]
        serving = obj["status"]["components"]["predictor"]["latestRolledoutRevision"]
        assert f"{serving} 100%" in table
    assert "│ runtime production │ running" in table


@pytest.mark.slow
def test_url_takes_the_environment(checkout: Checkout) -> None:
    """``url NAME --env ENV`` prints each environment's router; without ``--env``, the first
    environment's; an environment the stack does not run is one line naming those it runs."""
    staging = checkout("local", "url", MODEL, "--env", "staging").strip()
    production = checkout("local", "url", MODEL, "--env", "production").strip()
    assert staging != production
    assert checkout("local", "url", MODEL).strip() == staging
    runtime = read_json(checkout.stack / "environments" / "production" / "runtime.json") or {}
    assert production == f"http://127.0.0.1:{runtime['ports'][MODEL]}"
    assert checkout("local", "url", "mlflow", "--env", "production").startswith("http://")
    refused = checkout.run("local", "url", MODEL, "--env", "qa")
    assert refused.returncode == 2
    assert refused.stderr.startswith(
        "sluice: error: the local stack does not run environment 'qa'; it runs staging, "
        "production: give one of them to --env"
    ), refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_up_again_prints_each_environments_router(checkout: Checkout) -> None:
    """``up`` run again reuses what runs and prints a router row per environment."""
    out = checkout("local", "up", "--env", "staging", "--env", "production", "--repo",
                   checkout.remote.url)  # fmt: skip
    assert "runtime production already running" in out
    rows = {line.split(maxsplit=2)[1]: line for line in out.splitlines() if "  Router (" in line}
    for env in ENVIRONMENTS:
        assert f"{_serving(checkout, env)} ({MODEL})" in rows[f"({env})"], out


@pytest.mark.slow
def test_status_page_shows_each_environment(checkout: Checkout) -> None:
    """The stack's status page has a release row for staging and one for production."""
    url = checkout("local", "url", "status-page").strip()
    page = _wait("the page to draw both", lambda: _page_with(f"{url}/", "<td>production</td>"))
    for env in ENVIRONMENTS:
        assert f"<h2>{MODEL} in {env}</h2>" in page
    health = json.loads(_get(f"{url}/healthz"))
    assert (health["environment"], health["environments"]) == ("staging", list(ENVIRONMENTS))


def _page_with(url: str, text: str) -> str | None:
    page = _get(url)
    return page if text in page else None


def _answered_in(checkout: Checkout, env: str) -> str:
    """A request answered by ``env``'s router, by its id."""
    request_id = f"{env}-{uuid.uuid4()}"
    status, _ = _post(
        f"{_serving(checkout, env)}/v1/models/{MODEL}:predict",
        {"instances": [{"amount": 70.0, "hour": 3}]},
        {"X-Request-Id": request_id},
    )
    assert status == 200
    return request_id


def _logged(checkout: Checkout, env: str, request_id: str) -> bool:
    log = SqlitePredictionLog(_state_dir(checkout, env) / "predictions.sqlite")
    return log.count_logged([request_id]) == 1


@pytest.mark.slow
def test_serve_for_production_takes_labels_into_productions_log(checkout: Checkout) -> None:
    """``sluice serve --env production`` stores the label of a request production's router
    answered beside that answer: ``not_in_log`` 0 (before, it wrote staging's log and said 1),
    and the label reads back from production's log."""
    production = _answered_in(checkout, "production")
    _wait("the answer to be logged", lambda: _logged(checkout, "production", production))
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "controller", "serve", "--forge", "local", "--env", "production",
         "--port", str(port), "--repo", checkout.remote.url],
        cwd=checkout.root, env={**checkout.env, "SLUICE_FEEDBACK_TOKEN": FEEDBACK_TOKEN},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _wait("sluice serve to answer", lambda: _healthy(f"{base}/healthz"), timeout=60)
        status, stored = _post(
            f"{base}/v1/feedback",
            {"labels": [{"request_id": production, "label": 1}]},
            {"Authorization": f"Bearer {FEEDBACK_TOKEN}"},
        )
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    assert (status, stored) == (200, {"stored": 1, "not_in_log": 0})
    log = SqlitePredictionLog(_state_dir(checkout, "production") / "predictions.sqlite")
    assert log.outcomes([production], "label") == {production: 1}


@pytest.mark.slow
def test_feedback_takes_the_environment(checkout: Checkout) -> None:
    """``sluice feedback FILE --env production`` writes beside production's answers; without
    ``--env``, into the first environment's log, which does not have them."""
    production = _answered_in(checkout, "production")
    _wait("the answer to be logged", lambda: _logged(checkout, "production", production))
    (checkout.root / "labels.csv").write_text(f"request_id,label\n{production},0\n")
    first = checkout("feedback", "labels.csv")
    assert first.strip() == "stored 1 labels (1 request ids not in the log)"
    out = checkout("feedback", "labels.csv", "--env", "production")
    assert out.strip() == "stored 1 labels (0 request ids not in the log)"
    log = SqlitePredictionLog(_state_dir(checkout, "production") / "predictions.sqlite")
    assert log.outcomes([production], "label") == {production: 0}


@pytest.mark.slow
def test_rollouts_read_each_environments_log(checkout: Checkout) -> None:
    """The reconciler ``sluice serve --rollouts local`` and ``sluice rollout`` build reads
    production's answers for production's shadow and KPI checks, staging's for staging's."""
    from controller.commands.rollout_backends import build_reconciler

    answered = {env: _answered_in(checkout, env) for env in ENVIRONMENTS}
    for env, request_id in answered.items():
        _wait(
            f"the answer in {env} to be logged", lambda e=env, r=request_id: _logged(checkout, e, r)
        )
    settings = Settings(state_dir=checkout.root / ".sluice")
    reconciler = build_reconciler(settings, target="local", remote=checkout.remote.url)
    assert reconciler.predictions is not None
    assert reconciler.analyzer.outcomes is not None
    for env, request_id in answered.items():
        shadow_log = reconciler.predictions(env)
        assert shadow_log is not None
        assert shadow_log.count_logged(answered.values()) == 1
        assert shadow_log.count_logged([request_id]) == 1
    kpi_log = reconciler.analyzer.outcomes("production")
    assert kpi_log is not None
    (obj,) = checkout.status()["environments"]["production"]["inferenceServices"]
    serving = obj["status"]["components"]["predictor"]["latestRolledoutRevision"]
    assert kpi_log.served_revisions(MODEL, time.time() - 600) == [serving]


def _healthy(url: str) -> bool:
    try:
        _get(url)
    except OSError:
        return False
    return True


def test_each_environment_has_its_own_log_by_default(tmp_path: Path) -> None:
    """The first environment's log is the stack's own; a further one's is in its directory;
    one the stack does not serve, and no environment at all, read the first's, as
    ``prediction_log_path`` overrides them all."""
    root = tmp_path / "local"
    write_json(root / REMOTE_FILE, {"remote": "r", "env": "staging", "environments": ENVIRONMENTS})
    settings = Settings(state_dir=tmp_path)
    assert prediction_log_path(settings, "staging") == root / "predictions.sqlite"
    production = root / "environments" / "production" / "predictions.sqlite"
    assert prediction_log_path(settings, "production") == production
    assert prediction_log_path(settings, "qa") == root / "predictions.sqlite"
    assert prediction_log_path(settings) == root / "predictions.sqlite"
    chosen = Settings(state_dir=tmp_path, prediction_log_path=tmp_path / "log.sqlite")
    assert prediction_log_path(chosen, "production") == tmp_path / "log.sqlite"


def test_a_stack_recorded_before_it_named_every_environment_has_its_first(tmp_path: Path) -> None:
    """A ``remote.json`` of an older ``up`` names one environment: its log is the stack's."""
    root = tmp_path / "local"
    write_json(root / REMOTE_FILE, {"remote": "r", "env": "local"})
    settings = Settings(state_dir=tmp_path)
    assert prediction_log_path(settings, "local") == root / "predictions.sqlite"


def test_feedback_refuses_an_environment_with_a_url(tmp_path: Path) -> None:
    """``--env`` picks a local log and ``--url`` a ``sluice serve``: both is one line, exit 2."""
    (tmp_path / "labels.csv").write_text("request_id,label\nr-1,1\n")
    done = subprocess.run(
        [sys.executable, "-m", "controller", "feedback", "labels.csv", "--env", "production",
         "--url", "http://127.0.0.1:8686"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith(
        "sluice: error: --env production picks a local prediction log, and --url sends"
    ), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
