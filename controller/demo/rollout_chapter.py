"""The demo's rollout chapters: client traffic, and ``sluice rollout`` narrated pass by pass.

A canary is judged against the primary on live traffic, so the demo plays the clients too:
a thread posts fresh transactions from the example model's generator to the InferenceService's
main route, as an application would, while the rollout walks the canary through its steps.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
from rich.console import Console

from controller.backends.git_repo import GitWorkspace
from controller.backends.locust_load import LocustLoadGenerator
from controller.backends.mlflow_registry import MlflowRegistry
from controller.backends.prometheus import PrometheusSource
from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.errors import GateFailed
from controller.local.state import PREDICTION_LOG_FILE
from controller.local.target import LocalTarget
from controller.notify import NullNotifier
from controller.rollout.actions import Outcome
from controller.rollout.analysis import Analyzer
from controller.rollout.evidence_recorder import EvidenceRecorder
from controller.rollout.pass_report import PassReport
from controller.rollout.reconcile import Reconciler

__all__ = ["ClientTraffic", "RolloutRun", "rows_for_clients"]


class ClientTraffic:
    """Clients posting ``batch`` transactions at a time to ``url``, counting answers by status."""

    def __init__(
        self,
        url: str,
        model: str,
        rows: list[dict[str, object]],
        *,
        batch: int = 1,
        pause_seconds: float = 0.03,
    ) -> None:
        self.url = f"{url}/v1/models/{model}:predict"
        self.rows = rows
        self.batch = batch
        self.pause_seconds = pause_seconds
        self.answers: Counter[int] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="demo-clients")

    def __enter__(self) -> ClientTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        session = requests.Session()
        start = 0
        while not self._stop.is_set():
            chunk = [self.rows[(start + i) % len(self.rows)] for i in range(self.batch)]
            start += self.batch
            try:
                answer = session.post(self.url, json={"instances": chunk}, timeout=10)
                self.answers[answer.status_code] += 1
            except requests.RequestException:
                self.answers[0] += 1
            self._stop.wait(self.pause_seconds)

    @property
    def rows_sent(self) -> int:
        """Rows posted so far (requests times the batch)."""
        return sum(self.answers.values()) * self.batch

    def summary(self) -> str:
        """ "1,234 requests, 3 failed (0.24%)"."""
        total = sum(self.answers.values())
        failed = sum(n for code, n in self.answers.items() if code == 0 or code >= 500)
        share = 100 * failed / total if total else 0.0
        return f"{total:,} client requests, {failed} failed ({share:.2f}%)"


def rows_for_clients(frame_json: str) -> list[dict[str, object]]:
    """Records of a DataFrame's JSON (``orient="records"``)."""
    return list(json.loads(frame_json))


@dataclass(frozen=True)
class RolloutRun:
    """``sluice rollout MODEL --env local`` in-process, printing each pass as a timeline."""

    console: Console
    root: Path
    remote: Path
    tracking_uri: str
    prometheus_url: str
    model: str
    #: Who signs the evidence of a promotion and a passed shadow phase, as `sluice rollout`
    #: does with SLUICE_EVIDENCE_KEY (None: none is recorded).
    evidence: EvidenceRecorder | None = None

    def _reconciler(self) -> Reconciler:
        registry = MlflowRegistry(self.tracking_uri)
        target = LocalTarget(self.root)
        predictions = SqlitePredictionLog(self.root / PREDICTION_LOG_FILE)
        return Reconciler(
            workspace=GitWorkspace(str(self.remote), self.root / "rollout-git"),
            registry=registry,
            target=target,
            analyzer=Analyzer(
                registry=registry,
                metrics=PrometheusSource(self.prometheus_url),
                load=LocustLoadGenerator(),
                report_dir=self.root / "reports",
                counters=target,  # the watch reads the router's counts live, as `sluice rollout`
                outcomes=lambda _env: predictions,  # KPI checks read outcomes, as `sluice rollout`
            ),
            notifier=NullNotifier(),
            # Where a shadow phase finds the router's mirrored answers, as `sluice rollout` does.
            predictions=lambda _env: predictions,
            # Where a classifier's downstream check replays the graph, as `sluice rollout` does.
            graph_replay=target.graph_replay,
            evidence=self.evidence,
        )

    def __call__(
        self,
        *,
        expect: Outcome | None = None,
        until: Callable[[PassReport], bool] = lambda report: report.finished,
        on_pass: Callable[[PassReport], None] = lambda report: None,
    ) -> PassReport:
        """Pass until ``until`` accepts a report (by default: the rollout ended) and return it;
        ``on_pass`` sees every report after it is printed. With ``expect``, the rollout must
        end with that outcome."""
        reconciler = self._reconciler()
        self.console.print(f"[dim]$ sluice rollout {self.model} --env local[/]")
        narrate = _Timeline(self.console)
        while True:
            report = reconciler.reconcile("local", self.model)
            narrate(report)
            on_pass(report)
            if until(report) or report.finished:
                break
            if report.commit is None:
                time.sleep(1.0)
        if expect is not None and report.outcome is not expect:
            raise GateFailed(
                f"demo: the rollout ended {report.outcome}, expected {expect}; "
                "see the timeline above"
            )
        return report


class _Timeline:
    """Prints each pass with the seconds since the rollout started; a wait once per phase."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()
        self.last = ("", "")

    def __call__(self, report: PassReport) -> None:
        seen = (report.action, report.phase)
        if report.action == "Wait" and seen == self.last:
            return
        self.last = seen
        clock = f"{time.monotonic() - self.started:5.0f} s"
        weight = f" {report.canary_percent}%" if report.canary_percent is not None else ""
        self.console.print(
            f"[dim]{clock}[/] v{report.version}{weight} [bold]{report.phase}[/] {report.detail}"
        )
        for result in report.results:
            colour = {"pass": "green", "fail": "red"}.get(result.verdict.value, "yellow")
            self.console.print(f"        [{colour}]{result.verdict.value:<12}[/] {result.summary}")
