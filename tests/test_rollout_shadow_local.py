"""Shadow phases end to end on the local target: real models, router, prediction log and Git.

A user's view of issue #8: the environment's policy asks for a shadow phase, so a merged
proposal pins the challenger at 0 % and the router mirrors every client request to it while
clients only ever get the champion's answers. Labels arrive after each batch of requests;
the rollout, run pass by pass, judges the mirrored pairs. A challenger trained on newer data
passes and becomes a 10 % canary; one trained on shuffled labels is stopped in shadow and
rolled back by the usual commits, without ever answering a client; the pull request that
proposed each one says why, with the judge's numbers.

Models are the example fraud detector on 12 000 rows and traffic is seeded week-1
transactions, so every verdict is reproducible. The module takes about two minutes on an idle
2-core machine, three when another test suite shares it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from support.github_api import GitHubApiServer
from support.gitops_repo import ROOT
from support.gitrepo import git
from support.rollout_stack import MODEL, PIN, Loop, quick_policy, started_stack, wait_for
from support.runtime_loop import split

from controller.backends.git_repo import GitWorkspace
from controller.backends.github_forge import GitHubForge
from controller.backends.locust_load import LocustLoadGenerator
from controller.backends.mlflow_registry import MlflowRegistry
from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.demo.gitops_remote import merge_branch
from controller.domain import QUARANTINE_TAG
from controller.local.state import PREDICTION_LOG_FILE, read_json
from controller.local.target import LocalTarget
from controller.proposals.propose import ProposalRequest, propose
from controller.rollout.actions import Outcome
from controller.rollout.analysis import Analyzer
from controller.rollout.pass_report import PassReport
from controller.rollout.reconcile import Reconciler
from controller.shadow.phase import MIRROR_PERCENT_ANNOTATION, PHASE_ANNOTATION
from models.fraud_detector.data import LABEL, generate_transactions

pytestmark = pytest.mark.slow

ROWS = "12000"  # 8 000 rows leave week 0's and week 1's scores ~0.1 apart in KS: borderline
SHADOW_TAG = "sluice.shadow.local"
CHECKS = ("errors", "score-shift", "agreement", "latency", "task-metric", "mcnemar")
BATCH = 100
# Clients pause between requests, as a service's clients do: in a tight loop the shadow's copy
# of request N would run against the primary's request N+1 on the same 2 cores and be timed
# several times slower than it is.
PAUSE = 0.02
# The judge's defaults but for the sample sizes, sized for a test, and two thresholds. The
# non-inferiority margin: a few hundred requests at 3 % fraud hold 10-30 positives. The better
# challenger below leads v1's PR AUC by 0.12-0.31, yet the paired bootstrap's 95 % bound on
# the difference ranges over -0.044..+0.051 across 300-800 requests, and a bound under
# -margin fails the check (it does not wait for labels): at a cluster's 0.02 the verdict would
# hang on which batch is judged first. 0.1 still fails a useless model five times over (its
# PR AUC is ~0.5 below). The latency increase: a freshly started challenger answers its first
# copies in 200-700 ms and then runs up to twice its warm primary's p95 on a loaded 2-core
# machine (+42 % and +89 % at 300 pairs in two runs); the local canary policy allows a 3x
# p99 for the same reason.
SHADOW_POLICY = """\
  shadow:
    mirrorPercent: 100
    maxDuration: 120
    judge:
      minSamples: 300
      minLabelled: 150
      minPositives: 5
      nonInferiorityMargin: 0.1
      maxLatencyIncrease: 3
"""


def shadow_policy(tree: Path) -> None:
    """The quick policy of ``test_rollout_local`` (``support.rollout_stack.quick_policy``)
    with a shadow phase before the first step."""
    quick_policy(tree)
    path = tree / "manifests" / "overlays" / "local" / "sluice.yaml"
    text = path.read_text()
    steps = "  steps: [10, 50, 100]\n"
    assert steps in text
    path.write_text(text.replace(steps, steps + SHADOW_POLICY))


def week_one(seed: int, rows: int = 8 * BATCH) -> pd.DataFrame:
    """Seeded week-1 transactions with their labels: clients' traffic."""
    return generate_transactions(week=1, rows=rows, seed=seed)


@dataclass
class ShadowStack:
    """The local stack, its GitOps remote and a rollout controller run pass by pass."""

    loop: Loop
    local: Path
    reconciler: Reconciler
    #: The GitHub API the proposals' pull requests live on.
    github: GitHubApiServer
    url: str = ""
    #: The challengers' versions, by name, as their training finishes.
    challengers: dict[str, Future[int]] = field(default_factory=dict)
    #: (revision, status) of every answer a client got in this module.
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def log(self) -> SqlitePredictionLog:
        """The router's prediction log, opened for reading and feedback."""
        return SqlitePredictionLog(self.local / PREDICTION_LOG_FILE)

    def train(self, *args: str) -> int:
        """Train and register a fraud-detector version as CI does; its number."""
        done = subprocess.run(
            [sys.executable, "-m", "models.fraud_detector.train", "--rows", ROWS, "--json", *args],
            env={**os.environ, "MLFLOW_TRACKING_URI": self.loop.tracking_uri},
            cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
        assert done.returncode in (0, 1), done.stderr  # 1: registered, but the gate failed
        return int(json.loads(done.stdout)["version"])

    def isvc(self) -> dict[str, Any]:
        """The runtime's entry for the InferenceService (``{}`` before it exists)."""
        services = (read_json(self.local / "runtime.json") or {}).get("inferenceServices") or {}
        return dict(services.get(MODEL) or {})

    def serving_alone(self) -> str | None:
        """The revision taking all traffic, if one does."""
        traffic = split(self.isvc()) if self.isvc() else {}
        return next((name for name, pct in traffic.items() if pct == 100), None)

    def mirror(self) -> dict[str, Any] | None:
        """The runtime's shadow (revision, percent, primary) while it mirrors."""
        shadow = self.isvc().get("shadow")
        return dict(shadow) if shadow else None

    def send(self, rows: pd.DataFrame) -> list[tuple[str, float]]:
        """One client request per row, each with its own ``X-Request-Id``; the labels the
        client will learn later, by request id."""
        records = json.loads(rows.drop(columns=[LABEL]).to_json(orient="records"))
        labels = []
        for record, label in zip(records, rows[LABEL], strict=True):
            request_id = f"shadow-e2e-{uuid.uuid4().hex}"
            answer = self.session.post(
                f"{self.url}/v1/models/{MODEL}:predict",
                json={"instances": [record]},
                headers={"X-Request-Id": request_id},
                timeout=10,
            )
            self.answers[(answer.headers.get("X-Sluice-Revision", "?"), answer.status_code)] += 1
            labels.append((request_id, float(label)))
            time.sleep(PAUSE)
        return labels

    def logged(self, ids: list[str]) -> None:
        """Wait until the router's log pairs ``ids``' answers, so a pass judges whole batches."""
        mirror = self.mirror()
        if mirror is None:
            return
        wanted = set(ids)

        def paired() -> bool:
            pairs = self.log.pairs(shadow_revision=mirror["revision"])
            return wanted <= {pair.request_id for pair in pairs}

        wait_for("the batch's pairs in the prediction log", paired, timeout=15)

    def drive(
        self, traffic: pd.DataFrame, until: Callable[[PassReport], bool], batch: int = BATCH
    ) -> PassReport:
        """Pass by pass, each after a batch of client requests; the labels of each batch are
        posted one batch late. Returns the first report ``until`` accepts."""
        late: list[tuple[str, float]] = []
        report = None
        for start in range(0, len(traffic), batch):
            labels = self.send(traffic.iloc[start : start + batch])
            self.log.record_feedback_batch(late)
            late = labels
            self.logged([request_id for request_id, _ in labels])
            report = self.reconciler.reconcile("local", MODEL)
            if until(report):
                return report
            assert not report.finished, report
        raise AssertionError(f"no verdict after {len(traffic)} requests: {report}")

    def merge_in_shadow(self, version: int) -> dict[str, Any]:
        """Propose and merge ``version``, check its pin is a shadow, wait for the mirror."""
        champion = self.serving_alone()
        assert champion is not None
        result = propose(
            ProposalRequest(model=MODEL, environment="local", version=version),
            registry=self.reconciler.registry,  # type: ignore[arg-type]
            workspace=GitWorkspace(self.loop.remote.url, self.loop.root / "propose-git"),
            forge=self.reconciler.forge,
        )
        merge_branch(self.loop.remote.path, result.branch)
        assert self.loop.pin() == (version, 0)
        assert f"{PHASE_ANNOTATION}: shadow" in self.pin_text()
        wait_for(f"v{version} mirrored", self.mirror)
        mirror = self.mirror()
        assert mirror is not None
        assert mirror["primary"] == champion
        return mirror

    def pin_text(self) -> str:
        """The pin as Git has it on main."""
        return git("show", f"main:{PIN}", cwd=self.loop.remote.path)

    def body(self, subject: str) -> str:
        """The message body of the newest commit on main with this subject."""
        log = git("log", "--format=%H %s", "main", cwd=self.loop.remote.path).splitlines()
        sha = next(line.split(" ", 1)[0] for line in log if line.split(" ", 1)[1] == subject)
        return git("log", "-1", "--format=%b", sha, cwd=self.loop.remote.path)

    def comment(self, headline: str) -> str:
        """The pull-request comment the rollout posted under this headline."""
        posted = self.github.requests_to("POST", r"/repos/acme/models/issues/\d+/comments")
        bodies = [str(c.body["body"]) for c in posted]
        found = [body for body in bodies if f"{MODEL} {headline} (local)" in body]
        assert len(found) == 1, bodies
        return found[0]

    def tags(self, version: int) -> dict[str, str]:
        """The version's tags in the registry."""
        client = MlflowClient(self.loop.tracking_uri)
        return dict(client.get_model_version(MODEL, str(version)).tags)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShadowStack]:
    """The local stack with a shadow-phase policy, serving v1 (week 0) as the champion."""
    root = tmp_path_factory.mktemp("rollout-shadow")
    policy = "A quick rollout policy with a shadow"
    with started_stack(root, shadow_policy, policy, local=root / "state" / "local") as loop:
        local = loop.stack.root
        training: ThreadPoolExecutor | None = None
        github = GitHubApiServer("ghp_shadow_e2e", {"acme/models": loop.remote.path})
        github.__enter__()
        try:
            registry = MlflowRegistry(loop.tracking_uri)
            forge = GitHubForge(
                api_url=github.api_url, token=github.token, repository="acme/models"
            )
            log = SqlitePredictionLog(local / PREDICTION_LOG_FILE)
            reconciler = Reconciler(
                workspace=GitWorkspace(loop.remote.url, root / "controller-git"),
                registry=registry,
                target=LocalTarget(local),
                # No canary step is analysed here (the tests end at the first one), but the
                # smoke, on by default, runs at the start of each shadow phase: Locust is real.
                analyzer=Analyzer(registry=registry, metrics=None, load=LocustLoadGenerator()),
                predictions=lambda _env: log,
                forge=forge,
            )
            stack = ShadowStack(loop, local, reconciler, github)
            v1 = stack.train("--week", "0")
            # A training takes 15-25 s on 2 shared cores: one worker trains the challengers in
            # order (so their versions are 2 and 3) while v1 rolls out and the first test runs.
            training = ThreadPoolExecutor(max_workers=1)
            for name, args in (("worse", ("--shuffle-labels",)), ("better", ())):
                stack.challengers[name] = training.submit(stack.train, "--week", "1", *args)
            loop.propose_and_merge(v1)
            assert loop.pin() == (v1, None)  # the first version has nothing to shadow
            first = reconciler.run("local", MODEL, poll_seconds=0.5)
            assert first.outcome is Outcome.PROMOTED, first
            stack.url = str(stack.isvc()["url"])
            yield stack
        finally:
            if training is not None:
                training.shutdown(cancel_futures=True)
            github.__exit__(None, None, None)


# The worse challenger runs first and the better one last: the rollback returns the stack to
# v1 alone, and the better one's canary step is simply left behind at teardown, which is
# cheaper than rolling it back or promoting it (both load another revision).


def test_worse_challenger_is_stopped_in_shadow(stack: ShadowStack) -> None:
    """A model trained on shuffled labels fails the shadow judge with numbers, never answers a
    client, is quarantined, and v1 serves alone again."""
    version = stack.challengers["worse"].result()
    champion = stack.serving_alone()
    mirror = stack.merge_in_shadow(version)
    stack.answers.clear()

    # Seed 1 brings 12 positives in the first 200 labels: the task metric is judged too.
    stack.drive(week_one(seed=1), until=lambda r: r.commit is not None)
    subject = f"rollback {MODEL} v{version}: stopped in shadow, v1 serves (local)"
    last = stack.loop.subjects()[0]
    assert last == subject, stack.body(last)
    body = stack.body(subject)
    assert re.search(r"- \[FAIL\] shadow/score-shift: .*PSI \d+\.\d+ \(max 0\.2\)", body), body
    assert re.search(r"- \[FAIL\] shadow/task-metric: .*PR AUC 0\.\d+ vs 0\.\d+", body), body
    assert f"v{version} never took client traffic" in body
    # The pull request that proposed it says why, with the same numbers.
    comment = stack.comment(f"v{version}: stopped in shadow, v1 serves")
    assert re.search(r"shadow/score-shift\W.*FAIL.*PSI \d+\.\d+ \(max 0\.2\)", comment), comment
    assert stack.tags(version)[SHADOW_TAG].startswith("fail: ")

    # The restored v1 loads a revision of its own: small batches, frequent passes.
    done = stack.drive(week_one(seed=6, rows=2000), until=lambda r: r.finished, batch=20)
    assert done.outcome is Outcome.ROLLED_BACK, done
    assert stack.loop.subjects()[:3] == [
        f"rollback {MODEL} v{version}: v1 serves alone again (local)",
        f"rollback {MODEL} v{version}: restore v1 (local)",
        subject,
    ]
    assert QUARANTINE_TAG in stack.tags(version)
    assert stack.loop.pin() == (1, None)
    restored = stack.serving_alone()
    assert restored not in (None, mirror["revision"])
    stack.send(week_one(seed=7).head(20))
    assert not [n for (revision, _), n in stack.answers.items() if revision == mirror["revision"]]
    assert set(stack.answers) == {(champion, 200), (restored, 200)}, stack.answers
    assert stack.answers[(restored, 200)] >= 20


def test_better_challenger_passes_shadow_and_enters_the_canary(stack: ShadowStack) -> None:
    """A challenger trained on week 1 passes every shadow check on week-1 traffic, clients
    seeing only v1's answers meanwhile, and takes 10 % in a commit listing the checks' numbers."""
    version = stack.challengers["better"].result()
    champion = stack.serving_alone()
    mirror = stack.merge_in_shadow(version)
    stack.answers.clear()

    # Seed 23: over its first 300-800 requests the challenger's PR AUC leads v1's by 0.12-0.31
    # (few positives make it vary), so the verdict does not hinge on the batch judged first.
    stack.drive(week_one(seed=23), until=lambda r: r.commit is not None)
    assert set(stack.answers) == {(champion, 200)}, stack.answers
    assert mirror["revision"] != champion

    subject = f"{MODEL} v{version}: shadow passed, canary 10% (local)"
    last = stack.loop.subjects()[0]
    assert last == subject, stack.body(last)
    body = stack.body(subject)
    for check in CHECKS:
        assert re.search(rf"- \[pass\] shadow/{check}: .*\d", body), (check, body)
    assert stack.loop.pin() == (version, 10)
    comment = stack.comment(f"v{version}: shadow passed, canary 10%")
    assert "**PASS**" in comment, comment
    assert re.search(r"\| task-metric \| pass \| PR AUC \d\.\d+", comment), comment
    pin = stack.pin_text()
    assert PHASE_ANNOTATION not in pin
    assert MIRROR_PERCENT_ANNOTATION not in pin
    assert stack.tags(version)[SHADOW_TAG].startswith("pass")
