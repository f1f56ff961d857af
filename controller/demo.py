"""``sluice demo``: the loop on the embedded local stack, told as a timeline.

It runs what a user and CI run, as they run them: the local stack of ``sluice local up``
(MLflow, Prometheus, Alertmanager and the runtime that syncs Git as Argo CD would), the
training step as ``python -m models.fraud_detector.train`` in a subprocess, exactly as the
workflow calls it, and ``sluice propose`` against a GitOps remote of the demo's own. Later
chapters (the canary rollout, drift) join as those parts land.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.rule import Rule
from rich.syntax import Syntax
from rich.table import Table

from controller.backends.git_repo import GitWorkspace
from controller.backends.mlflow_registry import MlflowRegistry, configure_mlflow_http
from controller.demo_gitops import merge_branch, seed_gitops_remote
from controller.errors import ConfigError, GateFailed
from controller.local.stack import StackRequest, down, up
from controller.local.state import read_json
from controller.propose import ProposalRequest, ProposalResult, propose

__all__ = ["run_demo"]

MODEL = "fraud-detector"


def _require_repository_root() -> Path:
    root = Path.cwd()
    if not (root / "models" / "fraud_detector" / "train.py").is_file():
        raise ConfigError(
            f"{root} is not a Sluice checkout (models/fraud_detector missing); "
            "run `make demo` from the repository root"
        )
    return root


def _train(console: Console, tracking_uri: str, args: list[str], *, expect_gate_pass: bool) -> None:
    command = [sys.executable, "-m", "models.fraud_detector.train", *args]
    console.print(f"[dim]$ python -m models.fraud_detector.train {' '.join(args)}[/]")
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "COLUMNS": str(console.width)}
    started = time.monotonic()
    result = subprocess.run(command, env=env, check=False)
    console.print(f"[dim]({time.monotonic() - started:.1f} s, exit {result.returncode})[/]")
    expected = 0 if expect_gate_pass else 1
    if result.returncode != expected:
        raise GateFailed(
            f"demo: training {' '.join(args)} exited {result.returncode}, expected {expected}; "
            "see its output above"
        )


def _show_registry(console: Console, tracking_uri: str) -> None:
    table = Table(title=f"MLflow registry: {MODEL} ({tracking_uri})")
    for column in ("version", "aliases", "quality gate", "trained on", "source"):
        table.add_column(column)
    for ref in MlflowRegistry(tracking_uri).versions(MODEL):
        table.add_row(
            str(ref.version),
            ", ".join(ref.aliases) or "-",
            ref.tags.get("sluice.gate", "?"),
            ref.tags.get("sluice.data", "?"),
            ref.source,
        )
    console.print(table)


def _propose(console: Console, tracking_uri: str, remote: Path, cache: Path) -> ProposalResult:
    console.print(f"[dim]$ sluice propose {MODEL} --env local[/]")
    result = propose(
        ProposalRequest(model=MODEL, environment="local"),
        registry=MlflowRegistry(tracking_uri),
        workspace=GitWorkspace(str(remote), cache),
        forge=None,
    )
    console.print(f"Proposed: [bold]{result.subject}[/] on branch {result.branch}")
    console.print(
        Syntax(result.diff, "diff", theme="ansi_dark", background_color="default", word_wrap=True)
    )
    return result


def _wait_for_revision(console: Console, root: Path, revision: str, timeout: float = 180.0) -> str:
    """Wait until the runtime serves ``revision`` with all traffic; return the router URL."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = ((read_json(root / "runtime.json") or {}).get("inferenceServices") or {}).get(MODEL)
        if entry:
            status = entry["object"].get("status") or {}
            traffic = (status.get("components") or {}).get("predictor", {}).get("traffic") or []
            if any(t.get("revisionName") == revision and t.get("percent") == 100 for t in traffic):
                return str(entry["url"])
        time.sleep(0.5)
    raise GateFailed(
        f"demo: {revision} did not take all traffic within {timeout:g} s; see {root}/runtime.log"
    )


def _sample_rows(repository: Path) -> Any:
    """Five fresh transactions from the example model's own generator in the checkout."""
    # The console script does not have the checkout on sys.path; the demo runs inside one.
    if str(repository) not in sys.path:
        sys.path.insert(0, str(repository))
    data = importlib.import_module("models.fraud_detector.data")
    return data.generate_transactions(week=0, rows=5, seed=99).drop(columns=[data.LABEL])


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
    repository = _require_repository_root()
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
    try:
        stack = up(StackRequest(root=root, remote=str(remote), env="local", poll_interval=1.0))
        tracking_uri = str(stack["mlflow"]["url"])
        console.print(
            f"Stack ready in {time.monotonic() - started:.1f} s; MLflow at {tracking_uri}"
        )
        _chapters(console, tracking_uri, remote, root, repository)
    finally:
        stopped = down(root)
        console.print(
            f"Stopped {', '.join(stopped) or 'nothing'}; the demo's data stays in {workdir}."
        )


def _chapters(
    console: Console, tracking_uri: str, remote: Path, root: Path, repository: Path
) -> None:
    console.print(Rule("1. Week 0: train, validate, register"))
    _train(console, tracking_uri, ["--week", "0"], expect_gate_pass=True)
    console.print(Rule("2. Propose v1 to the local environment, merge, and watch it serve"))
    first = _propose(console, tracking_uri, remote, root / "demo-git")
    merged = merge_branch(remote, first.branch)
    console.print(f"Merged into main at {merged[:12]}; the runtime syncs it …")
    url = _wait_for_revision(console, root, f"{MODEL}-predictor-00001")
    _predict(console, url, repository)
    console.print(Rule("3. Week 1: transactions have shifted; train again"))
    _train(console, tracking_uri, ["--week", "1"], expect_gate_pass=True)
    console.print(Rule("4. A weak model (2% of the data) is registered but not aliased"))
    _train(
        console, tracking_uri, ["--week", "1", "--train-fraction", "0.02"], expect_gate_pass=False
    )
    console.print(Rule("5. Propose the new challenger: a canary beside v1"))
    _propose(console, tracking_uri, remote, root / "demo-git")
    console.print(
        "Merging it starts the canary; walking it through its steps with load tests and "
        "Prometheus gates is the next part of Sluice to land."
    )
    console.print(Rule("Registry state"))
    _show_registry(console, tracking_uri)
