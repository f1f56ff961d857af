"""``sluice demo``: the loop on the embedded local stack, told as a timeline.

It runs what a user and CI run, as they run them: the local stack of ``sluice local up``
(MLflow, Prometheus, Alertmanager and the runtime that syncs Git as Argo CD would), the
training step as ``python -m models.fraud_detector.train`` in a subprocess, exactly as the
workflow calls it, and ``sluice propose`` against a GitOps remote of the demo's own. Later
chapters walk a better version through its canary steps to champion, and roll a faulty one
back; then a commit asks for a shadow phase, a later week's transactions raise the drift alert
that retrains the model through ``sluice serve``, and the retrained version answers copies of
live requests until the shadow judge, with late labels, lets it take its first canary step.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from controller.backends.mlflow_registry import MlflowRegistry, configure_mlflow_http
from controller.commands.lineage import lineage_of
from controller.commands.rollout import run_status
from controller.demo.checkout import example_module, require_checkout
from controller.demo.drift_chapter import DRIFT_WEEK, SluiceServe, run_drift_chapter
from controller.demo.gitops_remote import git_output, merge_branch, seed_gitops_remote
from controller.demo.narration import (
    narrated_proposal,
    narrated_training,
    runtime_entry,
    stopped_at_exit,
)
from controller.demo.rollout_chapter import ClientTraffic, RolloutRun, rows_for_clients
from controller.demo.shadow_chapter import ShadowChapter, commit_shadow_policy, run_shadow_chapter
from controller.domain import QUARANTINE_TAG
from controller.errors import GateFailed, SluiceError
from controller.local.processes import free_port
from controller.local.stack import StackRequest, up
from controller.local.state import PREDICTION_LOG_FILE, read_json
from controller.proposals.propose import ProposalRequest, ProposalResult
from controller.provenance.lineage import summary_line
from controller.rollout.actions import Outcome
from controller.rollout.observe import rollout_tag
from controller.rollout.record import shadow_tag
from controller.settings import Settings

__all__ = ["run_demo"]

MODEL = "fraud-detector"


def _train(console: Console, tracking_uri: str, args: list[str], *, expect_gate_pass: bool) -> None:
    narrated_training(
        console, tracking_uri, "models.fraud_detector.train", args,
        expect_exit=0 if expect_gate_pass else 1,
    )  # fmt: skip


def _show_registry(console: Console, tracking_uri: str) -> None:
    table = Table(title=f"MLflow registry: {MODEL} ({tracking_uri})")
    for column in ("version", "aliases", "quality gate", "trained on", "in local", "source"):
        table.add_column(column)
    for ref in MlflowRegistry(tracking_uri).versions(MODEL):
        table.add_row(
            str(ref.version),
            ", ".join(ref.aliases) or "-",
            ref.tags.get("sluice.gate", "?"),
            ref.tags.get("sluice.data", "?"),
            _rollout_note(ref.tags),
            ref.source,
        )
    console.print(table)


def _rollout_note(tags: Mapping[str, str]) -> str:
    """What the local rollouts left on a version: ``quarantined``, ``aborted``, ``shadow pass``,
    or ``-``."""
    notes = []
    if QUARANTINE_TAG in tags and tags.get(f"{QUARANTINE_TAG}.environment") == "local":
        notes.append("quarantined")
    if tags.get(rollout_tag("local")) == "aborted":
        notes.append("aborted")
    if verdict := tags.get(shadow_tag("local"), ""):
        notes.append(f"shadow {verdict.split(':', 1)[0]}")
    return ", ".join(notes) or "-"


def _propose(
    console: Console, tracking_uri: str, remote: Path, cache: Path, *, version: int | None = None
) -> ProposalResult:
    request = ProposalRequest(model=MODEL, environment="local", version=version)
    return narrated_proposal(console, tracking_uri, remote, cache, request)


def _wait_for_version(console: Console, root: Path, version: int, timeout: float = 180.0) -> str:
    """Wait until the runtime serves ``version`` (the manifest's newest revision) with all
    traffic; return the router URL. (Its revision is not the first: the unpinned manifest the
    stack started with made one, which failed for want of a model, as on a cluster.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = runtime_entry(root, "inferenceServices", MODEL)
        if entry:
            obj = entry["object"]
            annotations = obj.get("metadata", {}).get("annotations") or {}
            predictor = (obj.get("status") or {}).get("components", {}).get("predictor", {})
            newest = predictor.get("latestCreatedRevision")
            if annotations.get("sluice.dev/model-version") == str(version) and any(
                t.get("revisionName") == newest and t.get("percent") == 100
                for t in predictor.get("traffic") or []
            ):
                return str(entry["url"])
        time.sleep(0.5)
    raise GateFailed(
        f"demo: v{version} did not take all traffic within {timeout:g} s; see {root}/runtime.log"
    )


def _sample_rows(repository: Path) -> Any:
    """Five fresh transactions from the example model's own generator in the checkout."""
    data = example_module(repository, "models.fraud_detector.data")
    return data.generate_transactions(week=0, rows=5, seed=99).drop(columns=[data.LABEL])


def _client_rows(repository: Path, *, week: int = 1, rows: int = 200) -> list[dict[str, object]]:
    """Transactions of ``week`` for the demo's clients."""
    data = example_module(repository, "models.fraud_detector.data")
    frame = data.generate_transactions(week=week, rows=rows, seed=7).drop(columns=[data.LABEL])
    return rows_for_clients(frame.to_json(orient="records"))


def _register_faulty(console: Console, tracking_uri: str, *, base_version: int | None) -> int:
    args = ["--base-model", MODEL, "--base-version", str(base_version), "--error-rate", "0.2"]
    console.print(f"[dim]$ python -m models.faulty.register {' '.join(args)}[/]")
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    done = subprocess.run(
        [sys.executable, "-m", "models.faulty.register", *args],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise GateFailed(f"demo: registering the faulty model failed: {done.stderr.strip()}")
    version = int(done.stdout.strip().splitlines()[-1])
    console.print(f"Registered {MODEL} v{version}: v{base_version}'s predictions, 20% HTTP 500")
    return version


def _git_log(remote: Path) -> str:
    return git_output(remote, "log", "--format=%h %s", "-16", "main")


def _predict(console: Console, url: str, repository: Path) -> None:
    rows = _sample_rows(repository)
    payload = {"instances": json.loads(rows.to_json(orient="records"))}
    response = requests.post(f"{url}/v1/models/{MODEL}:predict", json=payload, timeout=30)
    response.raise_for_status()
    revision = response.headers.get("X-Sluice-Revision", "?")
    predictions = response.json()["predictions"]
    console.print(f"POST {url}/v1/models/{MODEL}:predict → served by [bold]{revision}[/]")
    for row, prediction in zip(rows.to_dict(orient="records"), predictions, strict=True):
        score = prediction[1] if isinstance(prediction, list) else prediction
        console.print(
            f"  amount {row['amount']:>8.2f}  {row['merchant_category']:<12} "
            f"fraud score {score:.3f}"
        )


def run_demo(*, workdir: Path, console: Console) -> None:
    """Train, register, propose, merge and serve on a fresh local stack under ``workdir``."""
    repository = require_checkout("models/fraud_detector/train.py", "make demo")
    shutil.rmtree(workdir, ignore_errors=True)
    root = (workdir / "local").resolve()
    remote = seed_gitops_remote(repository, (workdir / "gitops.git").resolve())
    console.print(Rule("Sluice demo"))
    console.print(
        "Starting the local stack (MLflow, Prometheus, Alertmanager, and the runtime that "
        f"syncs {remote} as Argo CD would) …"
    )
    started = time.monotonic()
    configure_mlflow_http(retries=2, timeout_seconds=30)
    # `sluice serve` of the drift and shadow chapters: Alertmanager posts to it with one token,
    # the case system's labels come with the other.
    hook = _Hook(
        port=free_port(), token=secrets.token_urlsafe(24), feedback=secrets.token_urlsafe(24)
    )
    with stopped_at_exit(console, root, workdir):
        stack = up(
            StackRequest(
                root=root, remote=str(remote), env="local", poll_interval=1.0,
                webhook_url=f"http://127.0.0.1:{hook.port}/hooks/alertmanager",
                webhook_token=hook.token,
                # The cluster's rules, but firing after 15 s of drift instead of 10 minutes.
                alert_for="15s", rule_interval="1s",
            )
        )  # fmt: skip
        tracking_uri = str(stack["mlflow"]["url"])
        console.print(
            f"Stack ready in {time.monotonic() - started:.1f} s; MLflow at {tracking_uri}"
        )
        _chapters(console, tracking_uri, remote, root, repository, hook)


@dataclass(frozen=True)
class _Hook:
    """Where the demo's ``sluice serve`` listens, and the bearer tokens of Alertmanager's
    alerts and of the case system's labels."""

    port: int
    token: str
    feedback: str


def _chapters(
    console: Console, tracking_uri: str, remote: Path, root: Path, repository: Path, hook: _Hook
) -> None:
    console.print(Rule("1. Week 0: train, validate, register"))
    _train(console, tracking_uri, ["--week", "0"], expect_gate_pass=True)
    console.print(Rule("2. Propose v1 to the local environment, merge, and watch it serve"))
    first = _propose(console, tracking_uri, remote, root / "demo-git")
    merged = merge_branch(remote, first.branch)
    console.print(f"Merged into main at {merged[:12]}; the runtime syncs it …")
    url = _wait_for_version(console, root, first.version)
    _predict(console, url, repository)
    console.print(Rule("3. Week 1: transactions have shifted; train again"))
    _train(console, tracking_uri, ["--week", "1"], expect_gate_pass=True)
    console.print(Rule("4. A weak model (2% of the data) is registered but not aliased"))
    _train(
        console, tracking_uri, ["--week", "1", "--train-fraction", "0.02"], expect_gate_pass=False
    )
    console.print(
        Rule("5. Propose the new challenger: at 0% for its smoke, then a canary beside v1")
    )
    second = _propose(console, tracking_uri, remote, root / "demo-git")
    rows = _client_rows(repository)
    prometheus_url = str((read_json(root / "stack.json") or {})["prometheus"]["url"])
    rollout = RolloutRun(
        console, root=root, remote=remote, tracking_uri=tracking_uri,
        prometheus_url=prometheus_url, model=MODEL,
    )  # fmt: skip
    rollout(expect=Outcome.PROMOTED)  # v1 serves everything: it becomes the champion
    settings = Settings(
        state_dir=root.parent, mlflow_tracking_uri=tracking_uri, git_remote=str(remote)
    )
    with ClientTraffic(url, MODEL, rows) as clients:
        console.print(Rule("6. Merge: the smoke at 0%, then the canary 10% → 50% → 100%"))
        console.print(
            "Clients keep sending transactions. Before v2 takes any of them, Locust sends its "
            "new revision the smoke on its tag route; once it passes, at each step Locust loads "
            "the canary and the primary through their tag routes, then Prometheus and the "
            "statistical judge compare the two revisions."
        )
        merge_branch(remote, second.branch)
        rollout(expect=Outcome.PROMOTED)
        _show_lineage(console, settings, remote, second.version)
        console.print(Rule("7. A faulty version (fails 20% of requests): stopped by the smoke"))
        faulty = _register_faulty(console, tracking_uri, base_version=second.version)
        third = _propose(console, tracking_uri, remote, root / "demo-git", version=faulty)
        merge_branch(remote, third.branch)
        rollout(expect=Outcome.ROLLED_BACK)
        if f"rollback {MODEL} v{faulty}: smoke failed" in _git_log(remote):
            console.print(f"v{faulty} failed the smoke at 0%: no client request reached it.")
        console.print(f"Clients saw {clients.summary()} over chapters 6 and 7.")
    console.print(Rule("8. Before the next challenger takes traffic, it answers in shadow"))
    console.print(
        "Gates on client traffic see errors and latency, not a model that answers quickly and "
        "wrongly. The team asks for a shadow phase in the local environment's policy:"
    )
    commit_shadow_policy(console, remote)
    console.print(Rule(f"9. Week {DRIFT_WEEK}: the inputs drift, the alert retrains, a proposal"))
    console.print(
        "The model server scores its window of live inputs against the training profile; the "
        "local Prometheus evaluates the cluster's alert rules and Alertmanager posts the alert "
        "to `sluice serve`, which retrains once (a cool-down turns repeats away)."
    )
    serve = SluiceServe(
        repository=repository, state_dir=root / "serve", remote=remote,
        tracking_uri=tracking_uri, port=hook.port, token=hook.token, week=DRIFT_WEEK,
        feedback_token=hook.feedback, prediction_log=root / PREDICTION_LOG_FILE,
    )  # fmt: skip
    with serve:
        retrained = run_drift_chapter(
            console, url=url, model=MODEL, prometheus_url=prometheus_url,
            tracking_uri=tracking_uri, remote=remote, serve=serve,
            rows=_client_rows(repository, week=DRIFT_WEEK, rows=2000),
        )  # fmt: skip
        console.print(
            Rule(f"10. v{retrained} in shadow: judged on copies of live requests, with late labels")
        )
        run_shadow_chapter(
            console,
            ShadowChapter(root, remote, repository, serve, rollout, MODEL, second.version),
            version=retrained, url=url, token=hook.feedback,
        )  # fmt: skip
    console.print(Rule("11. What Git says happened"))
    log = _git_log(remote)
    console.print(log)
    console.print(Rule("sluice status"))
    run_status(
        settings, environment="local", target="local", remote=str(remote), as_json=False,
        console=console,
    )  # fmt: skip
    console.print(Rule("Registry state"))
    _show_registry(console, tracking_uri)


def _show_lineage(console: Console, settings: Settings, remote: Path, version: int) -> None:
    """One line of ``sluice lineage`` for the version just promoted: what serves, back to its
    data. The demo trains without a signing key, so the chain ends ``unsigned`` (checked: the
    files match)."""
    console.print(f"v{version} is the champion. What serves, traced back to its data:")
    try:
        lineage = lineage_of(
            settings, model=MODEL, environment="local", target="local", remote=str(remote)
        )
    except SluiceError as exc:
        console.print(f"lineage: could not be read: {exc.message}", markup=False)
        return
    console.print(f"$ sluice lineage {MODEL} --env local", style="dim", markup=False)
    console.print(summary_line(lineage), soft_wrap=True, markup=False)
