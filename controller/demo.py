"""``sluice demo``: the loop on the embedded local stack, told as a timeline.

It runs what a user and CI run, as they run them: a real MLflow server, and the training step
as ``python -m models.fraud_detector.train`` in a subprocess, exactly as the workflow calls it.
Later chapters (propose, rollout, drift) join as those parts land.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from controller.backends.mlflow_registry import MlflowRegistry
from controller.errors import ConfigError, GateFailed
from controller.local.services import MlflowService, start_mlflow

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


def _show_registry(console: Console, service: MlflowService) -> None:
    table = Table(title=f"MLflow registry: {MODEL} ({service.tracking_uri})")
    for column in ("version", "aliases", "quality gate", "trained on", "source"):
        table.add_column(column)
    for ref in MlflowRegistry(service.tracking_uri).versions(MODEL):
        table.add_row(
            str(ref.version),
            ", ".join(ref.aliases) or "-",
            ref.tags.get("sluice.gate", "?"),
            ref.tags.get("sluice.data", "?"),
            ref.source,
        )
    console.print(table)


def run_demo(*, workdir: Path, console: Console) -> None:
    """Start a fresh MLflow under ``workdir``, train and register three versions, show them."""
    _require_repository_root()
    mlflow_dir = workdir / "mlflow"
    shutil.rmtree(mlflow_dir, ignore_errors=True)
    console.print(Rule("Sluice demo: train → validate → register"))
    console.print("Starting an MLflow tracking server (SQLite, proxied artifacts) on 127.0.0.1 …")
    started = time.monotonic()
    with start_mlflow(
        backend_store_uri=f"sqlite:///{(mlflow_dir / 'mlflow.db').resolve()}",
        artifacts_dir=mlflow_dir / "artifacts",
        log_dir=mlflow_dir,
    ) as service:
        console.print(
            f"MLflow ready at {service.tracking_uri} in {time.monotonic() - started:.1f} s"
        )
        console.print(Rule("Week 0: the first model"))
        _train(console, service.tracking_uri, ["--week", "0"], expect_gate_pass=True)
        console.print(Rule("Week 1: transactions have shifted; train again"))
        _train(console, service.tracking_uri, ["--week", "1"], expect_gate_pass=True)
        console.print(Rule("A weak model (2% of the data) is registered but not aliased"))
        _train(
            console,
            service.tracking_uri,
            ["--week", "1", "--train-fraction", "0.02"],
            expect_gate_pass=False,
        )
        console.print(Rule("Registry state"))
        _show_registry(console, service)
    console.print(
        f"MLflow stopped; its data stays in {mlflow_dir}. Next (as later parts land): "
        "sluice proposes the challenger as a pull request, and the merge starts a canary."
    )
