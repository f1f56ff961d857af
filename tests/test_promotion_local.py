"""Issue #19's "done when" on the local target: staging → production by evidence, end to end.

One local stack serves two environments (``sluice local up --env staging --env production``:
a runtime each, one MLflow, one Prometheus) from a real Git remote, and each environment has
its own controller, a real ``sluice serve --forge local --rollouts local --env ENV`` with that
environment's evidence key, as a team runs them. The test is the person in between: it
proposes versions to staging and merges them, merges the production pull request (a branch
with ``--forge local``) the production controller opens by itself, and reads what a user
reads: Git, the registry, ``sluice evidence show|check`` and ``sluice propose``.

- a version whose smoke fails in staging is rolled back there and never proposed onward;
- a good version goes through the staging canary and a shortened soak, the production proposal
  opens by itself, and its merge rolls it out in production; every evidence envelope verifies
  with the in-toto library alone, and forging or deleting one makes ``sluice propose --env
  production`` exit 1 naming it;
- a version whose staging canary passes but whose soak sees a drift alert (posted to the
  staging controller's ``/hooks/alertmanager`` as Alertmanager posts it) waits: ``sluice
  evidence check --env production`` exits 1 naming the alert.

The tests run in this order on one module-scoped pipeline, and overlap what a laptop can: the
failing version's smoke runs while the good version soaks (at 0 % of the traffic it does not
interrupt the soak), and production's rollout of the good version runs while staging takes
the drifting one; the rollout is checked last.

The policies are cut to the bone to keep this file fast: the canary is one step at 50 % judged
by a one-second load test (no Prometheus gate, no judge), the smoke is ten requests and the
soak required by production is 10 s.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from in_toto.models.metadata import Envelope as InTotoEnvelope
from in_toto.models.metadata import Metadata
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from support.evidence_pipeline import (
    PRODUCTION_PRIVATE,
    PRODUCTION_PUBLIC,
    STAGING_PRIVATE,
    STAGING_PUBLIC,
)
from support.gitops_repo import commit_to_remote, seed_manifests
from support.gitrepo import GitRemote, create_git_remote, git
from support.registry import register_version

from controller.backends.git_repo import GitWorkspace
from controller.backends.mlflow_attestations import MlflowAttestations
from controller.backends.mlflow_evidence import MlflowEvidence
from controller.backends.mlflow_registry import MlflowRegistry
from controller.cli import main
from controller.demo.gitops_remote import merge_branch
from controller.local.processes import free_port
from controller.local.stack import StackRequest, down, up
from controller.local.state import environment_dir, read_json
from controller.manifests.manifest import load_pin, read_release
from controller.null_ports import NoForge
from controller.proposals.propose import ProposalRequest, propose
from controller.provenance.signing import load_public_key

pytestmark = pytest.mark.slow

MODEL = "fraud-detector"
TOKEN = "alertmanager-token-for-tests"
SOAK = "10s"
_QUICK_ROLLOUT = """\
rollout:
  steps: [50, 100]
  interval: 1
  failureLimit: 1
  progressDeadline: 60
  smoke: {requests: 10}
  gates:
    metrics: []
    judgeEnabled: false
    scrapeWait: 0
    loadTest: {users: 1, rps: 20, duration: 1, protocol: v1, minRequests: 1}
"""


def _environment(name: str, *, champion: str, extra: str) -> str:
    """An environment served by the local runtime (its model servers read MLflow's artifacts),
    with the quick rollout and ``extra`` (its evidence keys, soak and promotion)."""
    return (
        "apiVersion: sluice.dev/v1alpha1\nkind: Environment\n"
        f"name: {name}\nbranch: main\ndeploymentMode: Serverless\n"
        "storage: {allowedSchemes: [mlflow-artifacts, file]}\n"
        f"releases:\n  - model: {MODEL}\n    inferenceService: fraud-detector\n"
        f"    pin: fraud-detector.yaml\n    alias: challenger\n    championAlias: {champion}\n"
        f"{_QUICK_ROLLOUT}{extra}"
    )


def _pipeline(tree: Path) -> None:
    """Staging signs its evidence and soaks; production asks for staging's canary and soak."""
    overlays = tree / "manifests" / "overlays"
    (overlays / "staging" / "sluice.yaml").write_text(
        _environment(
            "staging",
            champion="staging-champion",
            extra="evidence: {controllerKeys: [keys/staging.pub]}\nsoak: {driftAlerts: true}\n",
        )
    )
    (overlays / "production" / "sluice.yaml").write_text(
        _environment(
            "production",
            champion="champion",
            extra=f"promotion: {{from: [staging], require: {{canary: true, soak: {SOAK}}}}}\n"
            "evidence: {controllerKeys: [keys/production.pub]}\n",
        )
    )
    (tree / "keys").mkdir()
    (tree / "keys" / "staging.pub").write_bytes(STAGING_PUBLIC)
    (tree / "keys" / "production.pub").write_bytes(PRODUCTION_PUBLIC)


@dataclass
class Pipeline:
    """The stack, the remote, the two controllers, and what a user runs beside them."""

    root: Path
    remote: GitRemote
    tracking_uri: str
    serve_ports: dict[str, int]
    serve_logs: dict[str, Path]
    #: Registers a version that fails every request (started early: it takes seconds).
    faulty: subprocess.Popen[str] | None = None
    #: Registered while v1 deploys: the version that earns production, the one that drifts.
    good: int = 0
    drifting: int = 0

    @property
    def state_dir(self) -> Path:
        return self.root / ".sluice"

    def env(self, **extra: str) -> dict[str, str]:
        """The user's environment: the stack's MLflow and state directory."""
        environment = {**os.environ, "MLFLOW_TRACKING_URI": self.tracking_uri}
        environment["SLUICE_STATE_DIR"] = str(self.state_dir)
        environment.pop("SLUICE_EVIDENCE_KEY", None)
        return {**environment, **extra}

    def propose_and_merge(self, version: int) -> None:
        """``sluice propose MODEL --env staging --version N`` and the merge of its branch."""
        result = propose(
            ProposalRequest(model=MODEL, environment="staging", version=version),
            registry=MlflowRegistry(self.tracking_uri),
            workspace=GitWorkspace(self.remote.url, self.root / "propose-git"),
            forge=NoForge(),
            attestations=MlflowAttestations(self.tracking_uri),
            evidence=MlflowEvidence(self.tracking_uri),
        )
        merge_branch(self.remote.path, result.branch)

    def pin(self, env: str) -> tuple[int | None, int | None]:
        path = f"manifests/overlays/{env}/fraud-detector.yaml"
        release = read_release(
            load_pin(git("show", f"main:{path}", cwd=self.remote.path), source=path)
        )
        return release.version, release.canary_percent

    def tags(self, version: int) -> dict[str, str]:
        return dict(MlflowClient(self.tracking_uri).get_model_version(MODEL, str(version)).tags)

    def champion(self, env: str) -> int | None:
        """The version the environment's last completed rollout promoted (its champion alias)."""
        alias = "champion" if env == "production" else f"{env}-champion"
        try:
            found = MlflowClient(self.tracking_uri).get_model_version_by_alias(MODEL, alias)
        except MlflowException:
            return None
        return int(found.version)

    def branches(self) -> list[str]:
        out = git("for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=self.remote.path)
        return out.splitlines()

    def served(self, env: str) -> dict[str, Any]:
        """The InferenceService as the environment's runtime last saved it."""
        stack = self.state_dir / "local"
        state_dir = stack if env == "staging" else environment_dir(stack, env)
        services = (read_json(state_dir / "runtime.json") or {}).get("inferenceServices") or {}
        return dict(services.get("fraud-detector") or {})

    def log(self, env: str) -> str:
        return self.serve_logs[env].read_text(errors="replace")

    def post_drift_alert(self, version: int) -> requests.Response:
        """What Alertmanager posts to the staging controller when the drift rule fires."""
        now = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        labels = {
            "alertname": "SluiceFeatureDrift",
            "model": MODEL,
            "environment": "staging",
            "namespace": "models-staging",
            "version": str(version),
            "severity": "warning",
        }
        alert = {
            "status": "firing",
            "labels": labels,
            "startsAt": now,
            "annotations": {"drifted_features": "amount"},
            "fingerprint": f"drift{version}",
        }
        body = {"version": "4", "status": "firing", "receiver": "sluice", "alerts": [alert]}
        return requests.post(
            f"http://127.0.0.1:{self.serve_ports['staging']}/hooks/alertmanager",
            json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10,
        )  # fmt: skip

    def wait(self, what: str, check: Any, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while not (found := check()):
            if time.monotonic() > deadline:
                tails = {env: self.log(env)[-3000:] for env in self.serve_logs}
                raise AssertionError(f"timed out waiting for {what}; serve logs: {tails}")
            time.sleep(0.25)
        return found


def _serve(pipeline: Pipeline, env: str, key: bytes) -> subprocess.Popen[bytes]:
    """``sluice serve --forge local --rollouts local --env ENV``, signing with ``key``."""
    extra = {
        "SLUICE_EVIDENCE_KEY": key.decode(),
        "SLUICE_ALERTMANAGER_TOKEN": TOKEN,
        "SLUICE_RETRAIN_COMMAND": json.dumps(["{python}", "-c", "pass"]),
        "SLUICE_RETRAIN_GROUP_SECONDS": "0",
        "SLUICE_ROLLOUT_POLL_INTERVAL_SECONDS": "0.5",
    }
    command = [sys.executable, "-m", "controller", "serve", "--forge", "local", "--rollouts",
               "local", "--env", env, "--port", str(pipeline.serve_ports[env]),
               "--poll-interval", "1", "--repo", pipeline.remote.url]  # fmt: skip
    with pipeline.serve_logs[env].open("wb") as log:
        return subprocess.Popen(
            command, env=pipeline.env(**extra), cwd=pipeline.root, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """Both environments served by one local stack, each with its controller running, and v1
    serving in staging (its first deploy)."""
    root = tmp_path_factory.mktemp("promotion")
    remote = create_git_remote(root)
    seed_manifests(remote, root / "seed", model=MODEL)
    commit_to_remote(remote, root / "policy", "Staging, then production by evidence", _pipeline)
    ports = {"staging": free_port(), "production": free_port()}
    stack = StackRequest(
        root=root / ".sluice" / "local", remote=remote.url, env="staging",
        more_envs=("production",), poll_interval=1.0,
        # Alertmanager posts drift alerts to staging's controller, as `sluice local up` wires it.
        webhook_url=f"http://127.0.0.1:{ports['staging']}/hooks/alertmanager", webhook_token=TOKEN,
    )  # fmt: skip
    serves: list[subprocess.Popen[bytes]] = []
    pipeline = None
    try:
        components = up(stack)
        pipeline = Pipeline(
            root, remote, str(components["mlflow"]["url"]), serve_ports=ports,
            serve_logs={env: root / f"serve-{env}.log" for env in ("staging", "production")},
        )  # fmt: skip
        serves += [_serve(pipeline, "staging", STAGING_PRIVATE)]
        serves += [_serve(pipeline, "production", PRODUCTION_PRIVATE)]
        first = register_version(pipeline.tracking_uri, MODEL, alias=None, input_example=True)
        pipeline.propose_and_merge(first)
        pipeline.faulty = subprocess.Popen(
            [sys.executable, "-m", "models.faulty.register", "--base-model", MODEL,
             "--base-version", str(first), "--error-rate", "1.0", "--latency-ms", "0"],
            env=pipeline.env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        pipeline.good, pipeline.drifting = (
            register_version(pipeline.tracking_uri, MODEL, alias=None, input_example=True)
            for _ in range(2)
        )
        pipeline.wait("v1 to serve in staging", lambda: pipeline.champion("staging") == first)
        yield pipeline
    finally:
        if pipeline is not None and pipeline.faulty is not None and pipeline.faulty.poll() is None:
            pipeline.faulty.kill()
        for process in serves:
            process.terminate()
        for process in serves:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        down(stack.root)


@dataclass
class User:
    """``sluice ...`` as the user runs it beside the stack: from its directory, with its MLflow
    and state directory in the environment (in this process: a command's start costs seconds)."""

    pipeline: Pipeline
    capsys: pytest.CaptureFixture[str]

    def __call__(self, *args: str) -> tuple[int, str]:
        """The command's exit code and what it printed (stdout, then stderr)."""
        self.capsys.readouterr()
        code = main([*args, "--repo", self.pipeline.remote.url])
        printed = self.capsys.readouterr()
        return code, printed.out + printed.err


@pytest.fixture
def sluice(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> User:
    monkeypatch.chdir(pipeline.root)
    for name, value in pipeline.env().items():
        if os.environ.get(name) != value:
            monkeypatch.setenv(name, value)
    monkeypatch.delenv("SLUICE_EVIDENCE_KEY", raising=False)
    return User(pipeline, capsys)


def _envelopes(pipeline: Pipeline, version: int) -> dict[str, Path]:
    """The version's evidence envelopes as MLflow keeps them, downloaded, by ENV/KIND."""
    client = MlflowClient(pipeline.tracking_uri)
    run_id = client.get_model_version(MODEL, str(version)).run_id
    local = Path(client.download_artifacts(run_id, "evidence", str(pipeline.root / f"ev{version}")))
    return {f"{p.parent.name}/{p.name}": p for p in sorted(local.glob("*/*.intoto.jsonl"))}


def _artifact(pipeline: Pipeline, version: int, name: str) -> Path:
    """Where the artifact store (the stack's MLflow, on disk) keeps ``evidence/NAME``."""
    run_id = MlflowClient(pipeline.tracking_uri).get_model_version(MODEL, str(version)).run_id
    artifacts = pipeline.state_dir / "local" / "mlflow" / "artifacts"
    (found,) = artifacts.glob(f"*/{run_id}/artifacts/evidence/{name}")
    return found


def _forged(line: bytes) -> bytes:
    """The envelope with its statement's predicate edited and the signature kept."""
    envelope = json.loads(line)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["forged"] = True
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return (json.dumps(envelope) + "\n").encode()


def test_a_version_that_fails_staging_is_never_proposed(pipeline: Pipeline, sluice: User) -> None:
    """A good version's staging canary passes (signed canary evidence) and it starts to soak.
    Meanwhile a version that fails every request is stopped by the staging smoke, at 0 % of the
    traffic (the good version still serves everything, so its soak goes on), rolled back and
    quarantined; production's controller never proposes it."""
    good = pipeline.good
    pipeline.propose_and_merge(good)
    pipeline.wait("the canary's promotion", lambda: pipeline.champion("staging") == good)
    assert "sluice.evidence.staging.canary" in pipeline.tags(good)
    assert pipeline.faulty is not None
    output, _ = pipeline.faulty.communicate(timeout=120)
    assert pipeline.faulty.returncode == 0
    faulty = int(output.strip().splitlines()[-1])
    serving, _ = pipeline.pin("staging")
    pipeline.propose_and_merge(faulty)
    pipeline.wait(
        "the faulty version's rollback",
        lambda: (
            pipeline.pin("staging") == (serving, None)
            and "sluice.quarantined" in pipeline.tags(faulty)
        ),
    )
    assert not any(
        f"v{faulty}" in branch for branch in pipeline.branches() if "production" in branch
    )
    code, said = sluice("evidence", "check", MODEL, "--env", "production", "--version", str(faulty))
    assert code == 1, said
    assert "canary in staging" in said


def test_a_version_earns_production_by_evidence(pipeline: Pipeline, sluice: User) -> None:
    """The good version's soak ends without an alert, and production's controller opens the
    production proposal by itself; a forged or deleted envelope makes `sluice propose --env
    production` refuse; every envelope verifies with in-toto alone. The merge's rollout is
    awaited last (:func:`test_the_merge_rolled_the_version_out_in_production`)."""
    version = pipeline.good
    branch = f"sluice/production/{MODEL}/v{version}"
    proposed = "sluice.promotion.proposed.production"  # the proposal's once-per-version mark
    pipeline.wait("the production proposal", lambda: proposed in pipeline.tags(version))
    assert branch in pipeline.branches()
    tags = pipeline.tags(version)
    assert {"sluice.evidence.staging.canary", "sluice.evidence.staging.soak"} <= set(tags)
    assert tags[proposed].startswith(f"{branch}@")
    assert f"{MODEL} v{version} → production: proposed" in pipeline.log("production")
    # The branch is the pull request of the local forge: its commit keeps the evidence.
    message = git("log", "-1", "--format=%B", branch, cwd=pipeline.remote.path)
    evidence = message.split("\nEvidence:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    canary, soak = evidence
    assert canary.startswith("- canary in staging: verified (signed by staging's key"), message
    # At least the soak asked for: it ends at the first pass past it, the rollback's after.
    assert re.fullmatch(rf"- soak in staging: \d+s of {SOAK}, clean", soak), message

    code, shown = sluice("evidence", "show", MODEL, "--version", str(version), "--json")
    assert code == 0, shown
    pieces = {(p["environment"], p["kind"]): p for p in json.loads(shown)["evidence"]}
    assert pieces[("staging", "canary")]["verified"], pieces
    assert pieces[("staging", "soak")]["verified"], pieces
    assert pieces[("staging", "soak")]["body"]["alerts"] == [], pieces

    # Every envelope, with the in-toto library alone and the key its environment trusts.
    keys = {"staging": STAGING_PUBLIC, "production": PRODUCTION_PUBLIC}
    envelopes = _envelopes(pipeline, version)
    assert {"staging/canary.intoto.jsonl", "staging/soak.intoto.jsonl"} <= set(envelopes)
    for name, path in envelopes.items():
        key = load_public_key(keys[name.split("/")[0]], name)
        loaded = Metadata.load(str(path))
        assert isinstance(loaded, InTotoEnvelope)
        loaded.verify_signature({"keyid": key.keyid, **key.to_dict()})
        assert json.loads(loaded.payload)["predicateType"] == "https://sluice.dev/evidence/v1"

    # Forged in the artifact store (the signature kept), then deleted there: refused each time.
    for name, change in (("soak", "forged"), ("canary", "deleted")):
        stored = _artifact(pipeline, version, f"staging/{name}.intoto.jsonl")
        original = stored.read_bytes()
        if change == "forged":
            stored.write_bytes(_forged(original))
        else:
            stored.unlink()
        code, refused = sluice("propose", MODEL, "--env", "production", "--version", str(version))
        stored.write_bytes(original)
        assert code == 1, (change, refused)
        assert f"{name} in staging" in refused, refused

    code, merged = sluice("local", "merge", MODEL, "--env", "production")
    assert code == 0, merged


def test_a_version_whose_soak_saw_a_drift_alert_waits(pipeline: Pipeline, sluice: User) -> None:
    """The staging canary passes (signed canary evidence), then a drift alert fires while the
    version soaks: the soak is recorded broken, naming the alert, and production waits."""
    version = pipeline.drifting
    pipeline.propose_and_merge(version)
    pipeline.wait("the canary's promotion", lambda: pipeline.champion("staging") == version)
    assert "sluice.evidence.staging.canary" in pipeline.tags(version)
    answer = pipeline.post_drift_alert(version)
    assert answer.status_code == 200, answer.text
    pipeline.wait(
        "the broken soak's evidence",
        lambda: "sluice.evidence.staging.soak" in pipeline.tags(version),
    )
    code, said = sluice(
        "evidence", "check", MODEL, "--env", "production", "--version", str(version)
    )
    assert code == 1, said
    assert "soak in staging" in said, said
    assert "with alert SluiceFeatureDrift" in said, said
    assert f"sluice/production/{MODEL}/v{version}" not in pipeline.branches()


def test_the_merge_rolled_the_version_out_in_production(pipeline: Pipeline) -> None:
    """The production pull request's merge (above) rolled the good version out in production,
    in production's own runtime, and moved production's champion alias."""
    version = pipeline.good
    production = [
        branch for branch in pipeline.branches() if branch.startswith("sluice/production")
    ]
    assert production == [f"sluice/production/{MODEL}/v{version}"]
    pipeline.wait("the production rollout", lambda: pipeline.champion("production") == version)
    assert pipeline.pin("production") == (version, None)
    status = pipeline.served("production")["object"]["status"]
    assert status["components"]["predictor"]["latestReadyRevision"]
