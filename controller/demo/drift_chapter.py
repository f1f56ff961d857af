"""The demo's drift chapter: a shifted week's traffic, the alert, one retraining, a proposal.

Every hop is the real one. Clients send transactions of a later week to the InferenceService;
the model server's drift monitor scores its window against the training profile and exports
the gauges; the local Prometheus evaluates the same alert rules a cluster's does
(``manifests/monitoring/prometheus-rules.yaml``, with a shorter ``for``); Alertmanager posts
the firing alert to ``sluice serve``'s ``/hooks/alertmanager``; ``sluice serve`` starts one
retraining (the training module on the newest week) and, when the new version's ``challenger``
alias moves, proposes it like any other. The chapter only watches and narrates.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from rich.console import Console

from controller.backends.mlflow_registry import MlflowRegistry
from controller.demo.rollout_chapter import ClientTraffic
from controller.errors import GateFailed
from controller.local.processes import ManagedProcess
from controller.retrain.record import cooldown_tag

__all__ = ["DRIFT_WEEK", "SluiceServe", "retrain_command", "run_drift_chapter", "wait_until"]

#: The week the drift chapter's clients come from: 4 of the 6 features drift against week 1.
DRIFT_WEEK = 6
_WAIT_SECONDS = 180.0


def retrain_command(week: int) -> list[str]:
    """``retrain_command`` for the demo: the example's training module on ``week``'s data."""
    return ["{python}", "-m", "{module}", "--model-name", "{model}", "--week", str(week)]


class SluiceServe:
    """``sluice serve --forge local --env local`` as a process, as a team runs it: Alertmanager
    posts drift alerts to it, and the case system posts late labels to its ``/v1/feedback``,
    which it writes to the router's prediction log."""

    def __init__(
        self,
        *,
        repository: Path,
        state_dir: Path,
        remote: Path,
        tracking_uri: str,
        port: int,
        token: str,
        week: int | None,
        feedback_token: str,
        prediction_log: Path,
    ) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = state_dir / "serve.log"
        argv = [
            *(sys.executable, "-m", "controller", "serve", "--forge", "local", "--env", "local"),
            *("--repo", str(remote), "--port", str(port), "--poll-interval", "1"),
        ]
        env = {
            "SLUICE_STATE_DIR": str(state_dir),
            "MLFLOW_TRACKING_URI": tracking_uri,
            "SLUICE_ALERTMANAGER_TOKEN": token,
            "SLUICE_FEEDBACK_TOKEN": feedback_token,
            "SLUICE_PREDICTION_LOG_PATH": str(prediction_log),
        }
        # ``week``: what a drift alert retrains the fraud detector on; None: no retraining.
        if week is not None:
            env["SLUICE_RETRAIN_COMMAND"] = json.dumps(retrain_command(week))
        self.process = ManagedProcess(
            argv, log_path=self.log_path, name="sluice serve", cwd=repository, env=env
        )

    def __enter__(self) -> SluiceServe:
        self.process.start()
        self.process.wait_ready(self._healthy, 60.0)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.process.stop()

    def _healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def log_lines(self, needle: str) -> list[str]:
        """The lines of its log that contain ``needle``."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if needle in line]


def wait_until(what: str, probe: Callable[[], Any], timeout: float = _WAIT_SECONDS) -> Any:
    """``probe()``'s first truthy value; a one-line error naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    raise GateFailed(f"demo: {what} did not happen within {timeout:g} s")


def _alert_state(prometheus_url: str, alertname: str, model: str) -> str:
    """``pending``, ``firing`` or ``""`` for the model's alert in Prometheus's /api/v1/alerts."""
    try:
        answer = requests.get(f"{prometheus_url}/api/v1/alerts", timeout=5)
        alerts = answer.json()["data"]["alerts"]
    except (requests.RequestException, ValueError, KeyError):
        return ""
    states = {
        alert.get("state", "")
        for alert in alerts
        if alert.get("labels", {}).get("alertname") == alertname
        and alert.get("labels", {}).get("model") == model
    }
    return "firing" if "firing" in states else "pending" if "pending" in states else ""


def _drift_gauges(prometheus_url: str, model: str) -> str:
    """``60% of features drift over 1,000 rows`` from the model server's gauges."""

    def value(query: str) -> float | None:
        try:
            answer = requests.get(
                f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=5
            )
            result = answer.json()["data"]["result"]
        except (requests.RequestException, ValueError, KeyError):
            return None
        return float(result[0]["value"][1]) if result else None

    share = value(f'max(sluice_dataset_drift_share{{model="{model}"}})')
    rows = value(f'max(sluice_drift_window_rows{{model="{model}"}})')
    if share is None or rows is None:
        return ""
    return f"{share:.0%} of the features drift over a window of {rows:,.0f} rows"


def _newest_version(registry: MlflowRegistry, model: str, *, above: int) -> int:
    """The newest version of ``model`` if it is newer than ``above``, else 0."""
    newest = max((ref.version for ref in registry.versions(model)), default=0)
    return newest if newest > above else 0


def _remote_branch(remote: Path, branch: str) -> str:
    done = subprocess.run(
        ["git", "ls-remote", "--heads", str(remote), branch],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout.strip()


def run_drift_chapter(
    console: Console,
    *,
    url: str,
    model: str,
    rows: list[dict[str, object]],
    prometheus_url: str,
    tracking_uri: str,
    remote: Path,
    serve: SluiceServe,
) -> int:
    """Send drifted traffic until the alert fires and a retrained version is proposed.

    Returns the proposed version.
    """
    registry = MlflowRegistry(tracking_uri)
    known = max(ref.version for ref in registry.versions(model))
    started = time.monotonic()

    def clock() -> str:
        return f"[dim]{time.monotonic() - started:5.0f} s[/]"

    console.print(
        f"[dim]$ sluice serve --forge local --env local --repo {remote}[/] "
        f"(listening on {serve.url}, retrain_command trains on week {DRIFT_WEEK})"
    )
    with ClientTraffic(url, model, rows, batch=20, pause_seconds=0.1) as clients:
        console.print(f"{clock()} clients send week-{DRIFT_WEEK} transactions to {url}")
        wait_until(
            "the drift alert turning pending",
            lambda: _alert_state(prometheus_url, "SluiceFeatureDrift", model),
        )
        gauges = _drift_gauges(prometheus_url, model)
        console.print(f"{clock()} Prometheus: SluiceFeatureDrift pending; {gauges}")
        wait_until(
            "the drift alert firing",
            lambda: _alert_state(prometheus_url, "SluiceFeatureDrift", model) == "firing",
        )
        console.print(f"{clock()} Prometheus: SluiceFeatureDrift [bold]firing[/] → Alertmanager")
        lines = wait_until(
            "sluice serve receiving the alert", lambda: serve.log_lines("POST /hooks/alertmanager")
        )
        for line in lines:
            console.print(f"{clock()} sluice serve: {line.split(': ', 1)[-1]}")
        console.print(f"{clock()} clients sent {clients.rows_sent:,} rows: {clients.summary()}")
    tag = registry.registered_model_tags(model).get(cooldown_tag("local"), "")
    console.print(
        f"{clock()} the cool-down tag {cooldown_tag('local')}={tag} keeps further alerts from "
        "starting another retraining"
    )
    version = int(
        wait_until(
            "the retrained version registering",
            lambda: _newest_version(registry, model, above=known),
        )
    )
    console.print(f"{clock()} the retraining registered {model} v{version} (week {DRIFT_WEEK})")
    branch = f"sluice/local/{model}/v{version}"
    wait_until(f"the proposal of v{version}", lambda: _remote_branch(remote, branch))
    subject = subprocess.run(
        ["git", "log", "-1", "--format=%s", branch],
        cwd=remote, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    console.print(f"{clock()} sluice serve proposed it: [bold]{subject}[/] on {branch}")
    retrains = [line for line in serve.log_lines(": retrain ") if "): started" in line]
    if len(retrains) != 1:
        raise GateFailed(f"demo: expected one retraining, sluice serve started {len(retrains)}")
    return version
