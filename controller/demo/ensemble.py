"""``sluice demo ensemble``: the market-regime graph on the embedded local stack.

The regime-aware example of ``models/market_regime/`` told as chapters, each run as a user and
CI would run it: the training step for each of the four models (``python -m
models.market_regime.train --model KIND``), ``sluice propose`` for each member into an
environment that serves ``models/market_regime/overlay/`` (the four InferenceServices and the
InferenceGraph that routes between them by regime), merges, and ``sluice rollout`` per member.

Then a seeded market moves calm → volatile → black swan through the graph, and the router's step
series show where each regime went; a better volatile specialist walks through its canary judged
on the volatile calls alone while calm traffic flows beside it; and, after a commit asks for a
shadow phase, a volatile specialist that is worse only in volatile markets (and better over all
rows) is judged on copies of the graph's volatile calls with the next day's direction as late
labels, and rolled back. Last, a challenger classifier that calls volatile days calm answers in
shadow (the classifier's release asks for it in the overlay): judged per regime on the regimes
that arrive late, and downstream, by the graph's answers when its decisions route the requests
(replayed through the graph's router) scored on the next day's direction; it is rolled back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.rule import Rule
from rich.syntax import Syntax
from rich.table import Table

from controller.backends.mlflow_registry import MlflowRegistry, configure_mlflow_http
from controller.commands.rollout import run_status
from controller.demo.checkout import example_module, require_checkout
from controller.demo.drift_chapter import wait_until
from controller.demo.ensemble_traffic import GraphClients, MarketRow, StepKey, step_calls
from controller.demo.gitops_remote import (
    commit_to_main,
    git_output,
    merge_branch,
    seed_gitops_remote,
)
from controller.demo.narration import (
    narrated_proposal,
    narrated_training,
    runtime_entry,
    stopped_at_exit,
    traffic_split,
)
from controller.demo.rollout_chapter import RolloutRun
from controller.demo.shadow_chapter import add_shadow_policy
from controller.errors import GateFailed
from controller.local.stack import StackRequest, up
from controller.local.state import PREDICTION_LOG_FILE
from controller.outcome_scores import Tally
from controller.proposals.propose import ProposalRequest, ProposalResult
from controller.rollout.actions import Outcome
from controller.rollout.pass_report import PassReport
from controller.settings import Settings
from controller.shadow.judge import GATE_PREFIX

__all__ = ["run_ensemble_demo"]

GRAPH = "market-regime"
KINDS = ("classifier", "calm", "volatile", "blend")
MODELS = {kind: f"market-regime-{kind}" for kind in KINDS}
OVERLAY = "manifests/overlays/local"
REPLAY_FILE = "loadtests/payloads/market-regime-black-swan.jsonl"
#: The live market the clients send: a later stretch than any model trained on.
LIVE_SEED = 99
#: Rows of each regime the stream of chapter 3 sends, in this order.
STREAM = {"calm": 120, "volatile": 120, "black_swan": 20}
#: Rows of each regime chapter 7 sends the challenger classifier's shadow: the judge needs
#: minPositives (20) labelled requests of each class, black swans too.
CLASSIFIER_STREAM = {"calm": 110, "volatile": 110, "black_swan": 30}
#: The late truth chapter 7 posts: each day's regime and the next day's direction.
TRUTH = ("regime", "up")

SHADOW_POLICY = """\
  # The next specialist answers copies of the graph's calls to it before it takes any: its
  # proposal is pinned at 0 % and the member's router mirrors each call. Labels (the next
  # day's direction) arrive a day later, by request id: the graph's router passes the
  # client's X-Request-Id on to the members.
  shadow:
    mirrorPercent: 100
    maxDuration: 300
    judge:
      # The next day's direction, sent as the outcome "up" (the classifier, which answers the
      # same request ids, reads "regime").
      outcome: up
      minSamples: 200
      minLabelled: 150
      minPositives: 20
      # Direction models are right 55-60 % of the time: two good retrainings disagree on a
      # third of the days and shift their scores, so agreement and score shift say nothing
      # here. The next day's direction decides (PR AUC and McNemar's test).
      minAgreement: 0
      maxScorePsi: 100
      maxScoreKs: 1
      # A challenger started seconds ago on a laptop's shared cores answers its first copies
      # several times slower than its warm champion (CI: p95 87 ms against 19 ms); the canary's
      # latency checks judge it on client traffic once it takes any.
      maxLatencyIncrease: 10
"""


def live_rows(repository: Path) -> dict[str, list[MarketRow]]:
    """The live market's rows by true regime, in time order within each."""
    market = example_module(repository, "models.market_regime.market")
    frame = market.market_frame(rows=4000, seed=LIVE_SEED)
    rows: dict[str, list[MarketRow]] = {regime: [] for regime in market.REGIMES}
    for record in frame.to_dict(orient="records"):
        features = {name: float(record[name]) for name in market.FEATURES}
        regime = str(record[market.REGIME])
        rows[regime].append(MarketRow(features, regime, int(record[market.NEXT_UP])))
    return rows


def _install_overlay(console: Console, repository: Path, remote: Path) -> None:
    """Replace the local overlay of the demo's GitOps remote with the market-regime one."""
    source = repository / "models" / "market_regime" / "overlay"

    def edit(worktree: Path) -> None:
        target = worktree / OVERLAY
        shutil.rmtree(target)
        shutil.copytree(source, target)
        # The blend's release replays these black swans (graphTraffic.replay).
        replay = worktree / REPLAY_FILE
        replay.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(repository / REPLAY_FILE, replay)

    subject = "local: serve the market-regime graph and its four members"
    sha, _ = commit_to_main(remote, subject, edit)
    console.print(f"Committed {sha[:12]} [bold]{subject}[/]: {OVERLAY} is now {source}:")
    graph = (source / "inference-graph.yaml").read_text()
    spec = graph[graph.index("apiVersion") :]
    console.print(Syntax(spec, "yaml", theme="ansi_dark", background_color="default"))


def _routing_table(
    title: str, before: Counter[StepKey], after: Counter[StepKey], answers: str
) -> Table:
    table = Table(title=title, caption=answers)
    for column in ("node", "step", "member", "calls"):
        table.add_column(column, justify="right" if column == "calls" else "left")
    for key in sorted(after):
        if calls := after[key] - before.get(key, 0):
            table.add_row(*key, f"{calls:,}")
    return table


class _Chapters:
    """The chapters after the stack is up, sharing its addresses."""

    def __init__(
        self, console: Console, *, root: Path, remote: Path, repository: Path, stack: Any
    ) -> None:
        self.console = console
        self.root = root
        self.remote = remote
        self.repository = repository
        self.tracking_uri = str(stack["mlflow"]["url"])
        self.prometheus_url = str(stack["prometheus"]["url"])
        self.rows = live_rows(repository)
        self.graph_url = ""

    def rollout(self, model: str) -> RolloutRun:
        return RolloutRun(
            self.console, root=self.root, remote=self.remote, tracking_uri=self.tracking_uri,
            prometheus_url=self.prometheus_url, model=model,
        )  # fmt: skip

    def propose(self, model: str, version: int | None = None) -> ProposalResult:
        request = ProposalRequest(model=model, environment="local", version=version)
        return narrated_proposal(
            self.console, self.tracking_uri, self.remote, self.root / "demo-git", request,
            show_diff=False,
        )  # fmt: skip

    def train(self, *args: str, expect_exit: int = 0) -> None:
        narrated_training(
            self.console, self.tracking_uri, "models.market_regime.train", list(args),
            expect_exit=expect_exit,
        )  # fmt: skip

    def newest_version(self, model: str) -> int:
        return max(ref.version for ref in MlflowRegistry(self.tracking_uri).versions(model))

    # -- 1-2 ----------------------------------------------------------------------------------

    def train_and_deploy(self) -> None:
        self.console.print(Rule("1. Train, judge per regime and register the four models"))
        for kind in KINDS:
            self.train("--model", kind)
        self.console.print(Rule("2. Propose each member, merge, roll each out; the graph serves"))
        for model in MODELS.values():
            merge_branch(self.remote, self.propose(model).branch)
        self.console.print("Merged the four proposals; the runtime syncs them as Argo CD would.")
        for model in MODELS.values():
            self.rollout(model)(expect=Outcome.PROMOTED)

        def healthy_graph() -> dict[str, Any] | None:
            entry = runtime_entry(self.root, "inferenceGraphs", GRAPH)
            return entry if entry.get("health", {}).get("status") == "Healthy" else None

        entry = wait_until(f"InferenceGraph {GRAPH} Healthy", healthy_graph)
        self.graph_url = str(entry["url"])
        self.console.print(f"InferenceGraph {GRAPH} is Ready at {self.graph_url}")

    # -- 3 ------------------------------------------------------------------------------------

    def stream_regimes(self) -> None:
        self.console.print(Rule("3. The market moves calm → volatile → black swan"))
        self.console.print(
            "Clients post one day's features a request to the graph. The classifier decides the "
            "regime; the Switch sends calm and volatile days to their specialist, and a black "
            "swan to the blend, after an Ensemble asks the classifier and both specialists."
        )
        for regime, count in STREAM.items():
            clients = GraphClients(self.graph_url)
            before = step_calls(self.graph_url)
            clients.send(self.rows[regime][:count], prefix=f"stream-{regime}")
            after = step_calls(self.graph_url)
            title = f"{count} {regime} days: the calls the graph made"
            self.console.print(_routing_table(title, before, after, clients.summary()))
            if clients.failed():
                raise GateFailed(f"demo: the graph failed requests: {clients.answers}")

    # -- 4 ------------------------------------------------------------------------------------

    def better_volatile(self) -> None:
        model = MODELS["volatile"]
        self.console.print(
            Rule("4. A better volatile specialist: a canary judged on volatile days")
        )
        self.train("--model", "volatile", "--rows", "40000")
        proposal = self.propose(model)
        # A volatile market with calm days among the volatile ones: three volatile rows to one
        # calm, from two clients, so the canary's half of the volatile calls gives the judge
        # its samples in two or three looks.
        volatile, calm = self.rows["volatile"], self.rows["calm"]
        market = [
            row for i, row in enumerate(volatile) for row in (row, calm[i])[: 2 - bool(i % 3)]
        ]
        clients = GraphClients(self.graph_url, pause_seconds=0.02)
        clients.start(market, prefix="canary", threads=2)
        try:
            merge_branch(self.remote, proposal.branch)
            self.console.print(
                f"Merged v{proposal.version}. Clients send calm and volatile days alike; the "
                "release's graphTraffic (by-regime/volatile) makes the gates and the judge "
                "compare the canary and the primary on the Switch's volatile calls alone."
            )
            self.rollout(model)(expect=Outcome.PROMOTED)
        finally:
            clients.stop()
        self.console.print(f"Clients saw {clients.summary()} during the rollout.")

    # -- 5-6 ----------------------------------------------------------------------------------

    def commit_shadow_policy(self) -> None:
        self.console.print(
            Rule("5. Before the next specialist takes traffic, it answers in shadow")
        )
        subject = "local: a shadow phase before a member's first canary step"

        def edit(worktree: Path) -> None:
            path = worktree / OVERLAY / "sluice.yaml"
            path.write_text(add_shadow_policy(path.read_text(), SHADOW_POLICY, where=str(path)))

        sha, diff = commit_to_main(self.remote, subject, edit)
        self.console.print(
            Syntax(diff, "diff", theme="ansi_dark", background_color="default", word_wrap=True)
        )
        self.console.print(f"Pushed {sha[:12]} to main.")

    def worse_volatile(self) -> None:
        model = MODELS["volatile"]
        self.console.print(
            Rule("6. A volatile specialist worse in volatile markets only: shadow, then rollback")
        )
        self.console.print(
            "Its training target is corrupted on volatile days (the direction flipped): over all "
            "holdout rows it looks better, and CI's gate fails it on volatile rows only. "
            "Someone proposes it anyway."
        )
        self.challenger_in_shadow("volatile")
        clients = GraphClients(self.graph_url)
        ids = clients.send(self.rows["volatile"][:320], prefix="shadow")
        self.console.print(
            f"Clients sent {clients.summary()}, each with its own X-Request-Id; the graph's "
            "volatile calls reached the champion, and a copy of each the challenger."
        )
        labels = self._outcomes_file(clients, set(ids), "volatile-next-day.csv", TRUTH)
        self._roll_back_from_shadow(model, labels, TRUTH, "the worse specialist")

    def challenger_in_shadow(self, kind: str) -> None:
        """Train ``kind`` worse on volatile days (its gate fails: exit 1), propose it anyway,
        merge, and wait until its router mirrors to it at 0 % beside the champion."""
        model = MODELS[kind]
        self.train("--model", kind, "--worse-in", "volatile", expect_exit=1)
        version = self.newest_version(model)
        merge_branch(self.remote, self.propose(model, version).branch)

        def beside_the_champion() -> dict[str, int] | None:
            split = traffic_split(self.root, model)
            return split if len(split) > 1 else None

        shadow = wait_until(f"{model}'s router mirroring to v{version}", beside_the_champion)
        self.console.print(f"Merged v{version}: pinned at 0 % beside {shadow}, mirrored.")

    def _roll_back_from_shadow(
        self, model: str, outcomes: Path, names: tuple[str, ...], who: str
    ) -> None:
        """Roll ``model`` out from its shadow phase, posting the ``outcomes`` file after the
        judge's first look (they arrive a day later); it must end rolled back."""
        posted = False

        def outcomes_after_first_look(report: PassReport) -> None:
            nonlocal posted
            judged = any(r.gate.startswith(f"{GATE_PREFIX}/") for r in report.results)
            if not posted and judged and not report.finished:
                posted = True
                self._post_outcomes(outcomes, names)

        report = self.rollout(model)(on_pass=outcomes_after_first_look)
        if report.outcome is not Outcome.ROLLED_BACK:
            raise GateFailed(f"demo: {who} ended {report.outcome}, not rolled back")
        subject = git_output(self.remote, "log", "-1", "--format=%s", "main")
        self.console.print(f"Committed: [bold]{subject}[/]")

    def _outcomes_file(
        self, clients: GraphClients, ids: set[str], name: str, columns: tuple[str, ...]
    ) -> Path:
        """The late truth of the rows sent: ``regime`` (the day's true regime) and/or ``up``
        (the next day's direction), by request id."""
        path = self.root.parent / "labels" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [",".join(("request_id", *columns))]
        for rid, regime, next_up in clients.sent:
            if rid in ids:
                truth = {"regime": regime, "up": str(next_up)}
                lines.append(",".join((rid, *(truth[c] for c in columns))))
        path.write_text("\n".join(lines) + "\n")
        return path

    def _post_outcomes(self, path: Path, names: tuple[str, ...]) -> None:
        self.console.print(
            "A day later each day's truth is known; it goes to the prediction log "
            f"({self.root / PREDICTION_LOG_FILE}) by request id:"
        )
        named = [arg for name in names for arg in ("--outcome", name)]
        self.console.print(f"[dim]$ sluice feedback {path} {' '.join(named)}[/]")
        done = subprocess.run(
            [sys.executable, "-m", "controller", "feedback", str(path), *named],
            env={**os.environ, "SLUICE_STATE_DIR": str(self.root.parent)},
            cwd=self.repository, capture_output=True, text=True, check=False,
        )  # fmt: skip
        self.console.print(done.stdout.strip(), markup=False, highlight=False)
        if done.returncode != 0:
            raise GateFailed(f"demo: sluice feedback exited {done.returncode}: {done.stderr}")

    # -- 7 ------------------------------------------------------------------------------------

    def worse_classifier(self) -> None:
        model = MODELS["classifier"]
        self.console.print(
            Rule("7. A challenger classifier in shadow: judged per regime and by where it routes")
        )
        self.console.print(
            "Its training labels call volatile days calm. In shadow it answers copies of the "
            "graph's classifier calls; the judge compares its decisions with the champion's on "
            "the regimes that arrive late, and replays each request through the graph with "
            "each classifier's answer: what clients would get if it routed them, scored on the "
            "next day's direction."
        )
        self.challenger_in_shadow("classifier")
        clients = GraphClients(self.graph_url)
        ids: list[str] = []
        for regime, count in CLASSIFIER_STREAM.items():
            rows = self.rows[regime][-count:]  # later days than chapter 3's
            ids += clients.send(rows, prefix=f"classify-{regime}")
        self.console.print(
            f"Clients sent {clients.summary()}; the champion routed each, and the challenger "
            "answered a copy of every classifier call."
        )
        outcomes = self._outcomes_file(clients, set(ids), "regimes-and-directions.csv", TRUTH)
        self._roll_back_from_shadow(model, outcomes, TRUTH, "the worse classifier")
        body = git_output(self.remote, "log", "-1", "--format=%B", "main~2")
        downstream = [line for line in body.splitlines() if "] shadow/downstream" in line]
        if downstream:
            self.console.print("Downstream, as the rollback commit records it:")
            for line in downstream:
                self.console.print(f"  {line.strip()}", markup=False, highlight=False)

    # -- 8 ------------------------------------------------------------------------------------

    def _task_metric_table(self) -> Table | None:
        """The members' share right per regime, once the outcome series carry both days'
        truths (None before: the router reads the log every few seconds)."""
        counts = _task_metric(self.prometheus_url)
        if not any(segment == "black_swan" for _, _, segment in counts):
            return None
        table = Table(
            title='sluice_graph_outcome_answers{outcome="up"}: share of answers right',
            caption="Over the days whose next-day direction and regime have arrived.",
        )
        for column in ("member", "revision", "regime", "right", "share right"):
            table.add_column(
                column, justify="right" if column in ("right", "share right") else "left"
            )
        for (member, revision, segment), answers in sorted(counts.items()):
            scored = answers.right + answers.wrong
            table.add_row(
                member, revision, segment, f"{answers.right}/{scored}",
                f"{answers.share_right or 0:.1%}",
            )  # fmt: skip
        return table

    def history(self) -> None:
        self.console.print(Rule("8. The task metric per member and regime, from Prometheus"))
        table = wait_until("the graph's outcome series in Prometheus", self._task_metric_table)
        self.console.print(table)
        self.console.print(Rule("What Git says happened"))
        self.console.print(git_output(self.remote, "log", "--format=%h %s", "-24", "main"))
        self.console.print(Rule("sluice status"))
        run_status(
            Settings(
                state_dir=self.root.parent, mlflow_tracking_uri=self.tracking_uri,
                git_remote=str(self.remote),
            ),
            environment="local", target="local", remote=str(self.remote), as_json=False,
            console=self.console,
        )  # fmt: skip


#: Share of each member revision's answers right about the next day's direction, per regime:
#: the graph router's outcome series, summed over its labels.
TASK_METRIC = (
    "sum by (service_name, kn_revision_name, segment, result) "
    '(sluice_graph_outcome_answers{{graph_name="{graph}", outcome="up"}})'
)


def _task_metric(prometheus_url: str) -> dict[tuple[str, str, str], Tally]:
    """``(member, revision, regime) -> right and wrong`` as Prometheus has them now."""
    counts: dict[tuple[str, str, str], Tally] = {}
    query = TASK_METRIC.format(graph=GRAPH)
    answer = requests.get(f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=5)
    answer.raise_for_status()
    for sample in answer.json()["data"]["result"]:
        labels = sample["metric"]
        key = (labels.get("service_name", ""), labels.get("kn_revision_name", ""),
               labels.get("segment", ""))  # fmt: skip
        n = int(float(sample["value"][1]))
        was = counts.get(key, Tally())
        right = labels.get("result") == "right"
        counts[key] = Tally(was.right + n * right, was.wrong + n * (not right))
    return counts


def run_ensemble_demo(*, workdir: Path, console: Console) -> None:
    """The market-regime graph on a fresh local stack under ``workdir``, told as chapters."""
    repository = require_checkout(
        "models/market_regime/overlay/inference-graph.yaml", "make demo-ensemble"
    )
    shutil.rmtree(workdir, ignore_errors=True)
    root = (workdir / "local").resolve()
    remote = seed_gitops_remote(repository, (workdir / "gitops.git").resolve())
    console.print(Rule("Sluice demo: a regime-aware ensemble"))
    _install_overlay(console, repository, remote)
    started = time.monotonic()
    configure_mlflow_http(retries=2, timeout_seconds=30)
    with stopped_at_exit(console, root, workdir):
        stack = up(
            StackRequest(
                root=root, remote=str(remote), env="local", poll_interval=1.0,
                # The members log their answers under the client's id, which late labels use.
                propagate_headers=("Authorization", "X-Request-Id"),
            )
        )  # fmt: skip
        console.print(
            f"Stack ready in {time.monotonic() - started:.1f} s; MLflow at {stack['mlflow']['url']}"
        )
        chapters = _Chapters(console, root=root, remote=remote, repository=repository, stack=stack)
        _run(chapters)


def _run(chapters: _Chapters, *, steps: tuple[Callable[[], None], ...] | None = None) -> None:
    for step in steps or (
        chapters.train_and_deploy,
        chapters.stream_regimes,
        chapters.better_volatile,
        chapters.commit_shadow_policy,
        chapters.worse_volatile,
        chapters.worse_classifier,
        chapters.history,
    ):
        step()
