"""``sluice demo recommender``: the holiday story on the embedded local stack, gated on CTR.

The recommender example of ``models/recommender/`` told as chapters, each run as a user and CI
would run it: the training step (``python -m models.recommender.train``), ``sluice serve``
proposing each version whose ``challenger`` alias moved into an environment that serves
``models/recommender/overlay/``, merges, and ``sluice rollout``. Clients post slates (one V1
instance per candidate item, each request with its own ``X-Request-Id``), show the item with
the highest ``p_click``, and their users' clicks arrive later through ``sluice serve``'s
``POST /v1/feedback`` (:mod:`controller.demo.recommender_traffic`).

1. a model trained on normal weeks becomes the champion;
2. normal weeks' traffic, then the holiday's: the champion's CTR, read from the prediction log
   with its clicks, drops; ``sluice drift --by user_segment`` shows the inputs moved;
3. a model retrained on the holiday weeks walks a 5 % canary judged on CTR (``kpi/ctr``) beside
   errors and latency, and is promoted;
4. a popularity model fitted on the normal weeks, faster but blind to the user and to the
   holiday, registered past its gate (``--skip-gate``), is rolled back on ``kpi/ctr`` alone,
   its errors and latency passing.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from controller.backends.mlflow_registry import configure_mlflow_http
from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.demo.checkout import example_module, require_checkout
from controller.demo.drift_chapter import SluiceServe, wait_until
from controller.demo.gitops_remote import (
    commit_to_main,
    git_output,
    merge_branch,
    seed_gitops_remote,
)
from controller.demo.narration import narrated_training, runtime_entry, stopped_at_exit
from controller.demo.recommender_traffic import (
    DELAY_COMPRESSION,
    ClickSender,
    Shown,
    Slate,
    SlateClients,
)
from controller.demo.rollout_chapter import RolloutRun
from controller.errors import GateFailed
from controller.local.processes import free_port
from controller.local.stack import StackRequest, up
from controller.local.state import PREDICTION_LOG_FILE
from controller.rollout.actions import Outcome
from controller.rollout.pass_report import PassReport

__all__ = ["run_recommender_demo"]

MODEL = "recommender"
OVERLAY = "manifests/overlays/local"
#: The live traffic's seed: training uses 7, so the clients' users are new to every model.
LIVE_SEED = 11
#: Requests of each period chapter 2 sends: 400 holiday requests are 2,400 items, at least 648
#: of each segment, over the 500 rows ``sluice drift --by user_segment`` judges a slice on; the
#: normal weeks only give the CTR the holiday is compared with.
NORMAL_REQUESTS = 200
HOLIDAY_REQUESTS = 400
#: Seconds a request waits before its click counts: the overlay's ``outcomeDelay``.
OUTCOME_DELAY = 4.0
#: Pause between a client's requests, and clients at once: ~70 requests a second solo.
PAUSE_SECONDS = 0.02
THREADS = 3


def slates(sessions: Any, period: str, requests: int, seed: int = LIVE_SEED) -> list[Slate]:
    """``requests`` requests of ``period``, each its candidate items' features."""
    frame = sessions.generate_impressions(period, requests=requests, seed=seed)
    out = []
    for slate_id, rows in frame.groupby(sessions.SLATE, sort=True):
        records = rows[sessions.FEATURES].to_dict(orient="records")
        # The seed in the id: each chapter's requests are its own, so a click joins only them.
        request_id = f"{period}-s{seed}-{slate_id:05d}"
        out.append(Slate(request_id, str(records[0]["user_segment"]), records))
    return out


def _outcomes(sessions: Any) -> Callable[[Sequence[Shown]], list[tuple[int, float, float]]]:
    """What each user does with the item shown: the example's truth, per request id."""
    import pandas as pd

    def draw(shown: Sequence[Shown]) -> list[tuple[int, float, float]]:
        frame = pd.DataFrame([dict(item.item) for item in shown])
        frame[sessions.REQUEST_ID] = [item.request_id for item in shown]
        drawn = sessions.shown_outcomes(frame, seed=LIVE_SEED)
        return [
            (int(c), float(r), float(d))
            for c, r, d in zip(
                drawn[sessions.CLICK], drawn[sessions.REVENUE], drawn["delay_seconds"], strict=True
            )
        ]

    return draw


def _install_overlay(console: Console, repository: Path, remote: Path) -> None:
    """Replace the local overlay of the demo's GitOps remote with the recommender's."""
    source = repository / "models" / "recommender" / "overlay"

    def edit(worktree: Path) -> None:
        target = worktree / OVERLAY
        shutil.rmtree(target)
        shutil.copytree(source, target)

    subject = "local: serve the recommender, its canaries judged on CTR"
    sha, _ = commit_to_main(remote, subject, edit)
    console.print(f"Committed {sha[:12]} [bold]{subject}[/]: {OVERLAY} is now {source}.")
    policy = (source / "sluice.yaml").read_text()
    kpis = policy[policy.index("    kpis:") :]
    console.print("Its KPI check (rollout.gates.kpis):")
    console.print("\n".join(line for line in kpis.splitlines() if not line.strip().startswith("#")))


class _Chapters:
    """The chapters after the stack and ``sluice serve`` are up, sharing their addresses."""

    def __init__(
        self,
        console: Console,
        *,
        root: Path,
        remote: Path,
        repository: Path,
        stack: Any,
        serve: SluiceServe,
        clicks: ClickSender,
    ) -> None:
        self.console = console
        self.root = root
        self.remote = remote
        self.repository = repository
        self.tracking_uri = str(stack["mlflow"]["url"])
        self.prometheus_url = str(stack["prometheus"]["url"])
        self.serve = serve
        self.clicks = clicks
        self.sessions = example_module(repository, "models.recommender.sessions")
        self.log = SqlitePredictionLog(root / PREDICTION_LOG_FILE)
        self.url = ""

    def rollout(self) -> RolloutRun:
        return RolloutRun(
            self.console, root=self.root, remote=self.remote, tracking_uri=self.tracking_uri,
            prometheus_url=self.prometheus_url, model=MODEL,
        )  # fmt: skip

    def train(self, *args: str) -> None:
        narrated_training(
            self.console, self.tracking_uri, "models.recommender.train", list(args),
            expect_exit=0,
        )  # fmt: skip

    def merge_proposal(self, version: int) -> None:
        """Wait for ``sluice serve`` to propose ``version`` (its alias moved), then merge it."""
        branch = f"sluice/local/{MODEL}/v{version}"
        wait_until(f"sluice serve proposing v{version}", lambda: _has_branch(self.remote, branch))
        subject = git_output(self.remote, "log", "-1", "--format=%s", branch)
        self.console.print(f"sluice serve proposed: [bold]{subject}[/] on {branch}")
        merge_branch(self.remote, branch)
        self.console.print(f"Merged {branch}; the runtime syncs it as Argo CD would.")

    def clients(self) -> SlateClients:
        return SlateClients(self.url, MODEL, self.clicks, pause_seconds=PAUSE_SECONDS)

    # -- 1 ------------------------------------------------------------------------------------

    def champion(self) -> None:
        self.console.print(Rule("1. Train on normal weeks; sluice serve proposes; roll out"))
        self.train()
        self.merge_proposal(1)
        self.rollout()(expect=Outcome.PROMOTED)
        entry = wait_until(
            f"InferenceService {MODEL} serving",
            lambda: runtime_entry(self.root, "inferenceServices", MODEL).get("url"),
        )
        self.url = str(entry)
        self.console.print(f"recommender v1 is the champion, at {self.url}")

    # -- 2 ------------------------------------------------------------------------------------

    def holiday_shift(self) -> None:
        self.console.print(Rule("2. The holiday comes: the champion's CTR drops"))
        self.console.print(
            "Clients post each request's 6 candidate items with its own X-Request-Id and show "
            "the one with the highest p_click; each user's click (or none) reaches sluice "
            f"serve's POST /v1/feedback after its delay (the example's, {DELAY_COMPRESSION:g} "
            "times shorter) as the outcomes click and revenue."
        )
        periods = {}
        for period, count in (("normal", NORMAL_REQUESTS), ("holiday", HOLIDAY_REQUESTS)):
            clients = self.clients()
            since = time.time()
            clients.send(slates(self.sessions, period, count), threads=THREADS)
            if clients.failed():
                raise GateFailed(f"demo: the recommender failed requests: {clients.summary()}")
            periods[period] = (since, clients.shown)
            self.console.print(f"{period} weeks: {clients.summary()}")
        time.sleep(OUTCOME_DELAY)  # the last requests' clicks, as the KPI check waits for them
        self.clicks.flush(time.time())
        table = Table(
            title="The champion's CTR, from the prediction log and its clicks",
            caption=f"Requests counted {OUTCOME_DELAY:g} s after their answer (outcomeDelay); "
            "a request without a click by then counts as none.",
        )
        for column in ("period", "segment", "requests", "clicks", "CTR"):
            table.add_column(column, justify="left" if column in ("period", "segment") else "right")
        ctr = {}
        for period, (since, shown) in periods.items():
            by_segment = self._ctr(since, shown)
            for segment, (n, clicked) in sorted(by_segment.items()):
                table.add_row(period, segment, f"{n:,}", f"{clicked:,}", f"{clicked / n:.1%}")
            n = sum(v[0] for v in by_segment.values())
            clicked = sum(v[1] for v in by_segment.values())
            ctr[period] = clicked / n
            table.add_row(period, "all", f"{n:,}", f"{clicked:,}", f"[bold]{clicked / n:.1%}[/]")
        self.console.print(table)
        if not ctr["holiday"] < ctr["normal"] - 0.05:
            raise GateFailed(
                f"demo: the champion's CTR did not drop after the holiday shift ({ctr})"
            )
        self.console.print(
            f"The champion's CTR fell from {ctr['normal']:.1%} to {ctr['holiday']:.1%}. (The "
            "table reads the prediction log as the KPI check does; sluice serve exports the "
            "same per revision as sluice_kpi on its /metrics, refreshed every 15 s.)"
        )
        self._drift_by_segment()

    def _ctr(self, since: float, shown: Sequence[Shown]) -> dict[str, tuple[int, int]]:
        """Requests and clicks per segment among ``shown``, as the prediction log has them."""
        segment = {item.request_id: item.segment for item in shown}
        revisions = sorted({item.revision for item in shown})
        counts: Counter[tuple[str, str]] = Counter()
        for row in self.log.served_outcomes(MODEL, revisions, "click", since - 1):
            if row.request_id in segment:
                counts[(segment[row.request_id], "n")] += 1
                counts[(segment[row.request_id], "clicks")] += int(float(row.value or 0))
        return {s: (counts[(s, "n")], counts[(s, "clicks")]) for s in set(segment.values())}

    def _drift_by_segment(self) -> None:
        """``sluice drift --by user_segment --outcome click`` on the holiday items the clients
        sent, each with whether its user would click it (the generator's truth)."""
        frame = self.sessions.generate_impressions("holiday", HOLIDAY_REQUESTS, seed=LIVE_SEED)
        path = self.root.parent / "holiday-traffic.csv"
        frame[[*self.sessions.FEATURES, self.sessions.CLICK]].to_csv(path, index=False)
        argv = [
            "drift",
            MODEL,
            "--alias",
            "champion",
            "--current",
            str(path),
            "--by",
            "user_segment",
            "--outcome",
            self.sessions.CLICK,
        ]
        self.console.print(f"[dim]$ sluice {' '.join(argv)}[/]  (every item the clients sent)")
        done = subprocess.run(
            [sys.executable, "-m", "controller", *argv],
            env=_env(self.tracking_uri, self.console.width),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        self.console.print(done.stdout.rstrip(), markup=False, highlight=False)
        drifted = [
            line for line in done.stdout.splitlines() if "days_to_holiday" in line and "yes" in line
        ]
        if done.returncode not in (0, 1) or not drifted:
            raise GateFailed(
                f"demo: sluice drift --by user_segment exited {done.returncode} without "
                f"days_to_holiday drifting: {done.stderr.strip()[-300:]}"
            )
        self.console.print(
            "The inputs move little: against the champion's training rows, the calendar "
            "(days_to_holiday) and the mix of users (user_segment) drift, and no segment reaches "
            "the drift share. What the users click moved much more (the click rate by segment, "
            "against each segment's training rows), and only the clicks show it: the KPI check "
            "below judges each canary on them."
        )

    # -- 3 ------------------------------------------------------------------------------------

    def retrained(self) -> None:
        self.console.print(
            Rule("3. Retrained on the holiday weeks: a 5 % canary judged on CTR, promoted")
        )
        self.train("--period", "holiday")
        report = self._canary(2, Outcome.PROMOTED)
        self.console.print(f"v2 {report.phase}: {report.detail}")
        self._kpi_lines(2)

    # -- 4 ------------------------------------------------------------------------------------

    def popularity(self) -> None:
        self.console.print(Rule("4. Faster but recommends worse: rolled back on CTR alone"))
        self.console.print(
            "A popularity model fitted on the normal weeks' clicks: it ranks by the item alone, "
            "blind to the user, the context and the holiday, and answers faster; CI's gate "
            "refuses it, and someone registers it anyway."
        )
        self.train("--period", "normal", "--variant", "popularity", "--skip-gate")
        self._canary(3, Outcome.ROLLED_BACK)
        (body,) = self._commit_bodies(3, "rollback")[-1:] or ("",)
        gates = [line for line in body.splitlines() if line.startswith("- [")]
        self.console.print("The rollback commit's reason and gates:")
        for line in body.splitlines():
            if line.startswith(("Rolled back:", "- [")):
                self.console.print(line, markup=False, highlight=False)
        # kpi/ctr failed it and no other gate did (the judge may not have decided on errors
        # yet when the clicks already have); or no gate failed and kpi/ctr alone held it over
        # all its looks (the rollout was aborted).
        failed = [line for line in gates if line.startswith("- [FAIL]")]
        deciding = failed or [line for line in gates if not line.startswith("- [pass]")]
        if not deciding or any("kpi/ctr" not in line for line in deciding):
            raise GateFailed(f"demo: v3 was not rolled back on kpi/ctr alone: {gates or body}")

    def _canary(self, version: int, expect: Outcome) -> PassReport:
        """Roll ``version`` out with clients sending holiday traffic from its first canary
        step on (its smoke at 0 % needs none) until the rollout ends."""
        clients = self.clients()
        traffic = slates(self.sessions, "holiday", 2000, seed=LIVE_SEED + version)

        def start_at_the_first_step(report: PassReport) -> None:
            if report.canary_percent and not clients.running:
                clients.start(traffic, threads=THREADS)

        try:
            self.merge_proposal(version)
            report = self.rollout()(expect=expect, on_pass=start_at_the_first_step)
        finally:
            clients.stop()
        self.console.print(f"Clients saw {clients.summary()} during the rollout.")
        return report

    def _commit_bodies(self, version: int, *actions: str) -> list[str]:
        """Subject and body of ``version``'s rollout commits whose Sluice-Action is one of
        ``actions``, oldest first."""
        log = git_output(self.remote, "log", "--reverse", "--format=%B%x00", "main")
        return [
            body.strip()
            for body in log.split("\0")
            if f"Sluice-Version: {version}\n" in body
            and any(f"Sluice-Action: {action}" in body for action in actions)
        ]

    def _kpi_lines(self, version: int) -> None:
        """The kpi gate lines of ``version``'s step commits."""
        self.console.print(f"The kpi/ctr gate of v{version}'s step commits:")
        for body in self._commit_bodies(version, "step", "promote"):
            kpi = [line for line in body.splitlines() if "kpi/" in line]
            if kpi:
                self.console.print(body.splitlines()[0], style="bold", highlight=False)
                self.console.print("\n".join(kpi), markup=False, highlight=False)

    def history(self) -> None:
        self.console.print(Rule("What Git says happened"))
        self.console.print(git_output(self.remote, "log", "--format=%h %s", "-16", "main"))


def _has_branch(remote: Path, branch: str) -> bool:
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
        cwd=remote, capture_output=True, check=False,
    )  # fmt: skip
    return done.returncode == 0


def _env(tracking_uri: str, width: int) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "COLUMNS": str(width)}


def run_recommender_demo(*, workdir: Path, console: Console) -> None:
    """The holiday story on a fresh local stack under ``workdir``, told as chapters."""
    repository = require_checkout("models/recommender/overlay/sluice.yaml", "make demo-recommender")
    shutil.rmtree(workdir, ignore_errors=True)
    root = (workdir / "local").resolve()
    remote = seed_gitops_remote(repository, (workdir / "gitops.git").resolve())
    console.print(Rule("Sluice demo: a recommender through the holiday, gated on CTR"))
    _install_overlay(console, repository, remote)
    started = time.monotonic()
    configure_mlflow_http(retries=2, timeout_seconds=30)
    feedback_token = secrets.token_urlsafe(24)
    with stopped_at_exit(console, root, workdir):
        stack = up(StackRequest(root=root, remote=str(remote), env="local", poll_interval=1.0))
        tracking_uri = str(stack["mlflow"]["url"])
        console.print(
            f"Stack ready in {time.monotonic() - started:.1f} s; MLflow at {tracking_uri}"
        )
        serve = SluiceServe(
            repository=repository, state_dir=root / "serve", remote=remote,
            tracking_uri=tracking_uri, port=free_port(), token=secrets.token_urlsafe(24),
            week=None, feedback_token=feedback_token, prediction_log=root / PREDICTION_LOG_FILE,
        )  # fmt: skip
        console.print(
            f"[dim]$ sluice serve --forge local --env local --repo {remote}[/] (proposes each "
            f"version whose challenger alias moves; POST /v1/feedback takes the clicks)"
        )
        with serve:
            sessions = example_module(repository, "models.recommender.sessions")
            with ClickSender(serve.url, feedback_token, _outcomes(sessions)) as clicks:
                chapters = _Chapters(
                    console, root=root, remote=remote, repository=repository, stack=stack,
                    serve=serve, clicks=clicks,
                )  # fmt: skip
                for number, chapter in enumerate(
                    (
                        chapters.champion,
                        chapters.holiday_shift,
                        chapters.retrained,
                        chapters.popularity,
                    ),
                    start=1,
                ):
                    began = time.monotonic()
                    chapter()
                    console.print(f"[dim]Chapter {number}: {time.monotonic() - began:.0f} s.[/]")
                chapters.history()
                if clicks.failures:
                    raise GateFailed(f"demo: posting clicks failed: {clicks.failures[:3]}")
