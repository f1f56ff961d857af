"""Concurrency: processes and controllers that share a state directory, a remote or a release.

Each test reproduces one finding of a concurrency probe and fails on the code before the fix:
parallel `sluice propose` runs sharing the default state directory (one clone) each land their
branch; a controller that loses a push race to the same decision commits nothing instead of a
second "all traffic back"; the lease lets one controller act per release; and a webhook
delivery replayed after `sluice serve` restarts is refused.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import requests
from mlflow import MlflowClient
from support.gitops_repo import ROOT, commit_to_remote, seed_manifests
from support.gitrepo import GitRemote, create_git_remote, git
from support.registry import register_version

from controller.backends.git_lease import GitLeaseStore
from controller.backends.git_repo import GitWorkspace
from controller.backends.mlflow_registry import MlflowRegistry
from controller.demo.gitops_remote import merge_branch
from controller.domain import QUARANTINE_TAG
from controller.errors import LeaseHeld
from controller.lease import Lease, LeaseKeeper
from controller.local.services import MlflowService
from controller.manifests.manifest import (
    ReleasePin,
    apply_release,
    dump_pin,
    load_pin,
    read_release,
)
from controller.null_ports import NoForge
from controller.ports import LoadGenerator, RolloutRegistry
from controller.proposals.propose import ProposalRequest, propose
from controller.rollout.actions import Outcome
from controller.rollout.analysis import Analyzer
from controller.rollout.pass_report import PassReport
from controller.rollout.pin_edits import (
    ROLLBACK_REASON,
    finish_restore_edit,
    restore_edit,
    weight_edit,
)
from controller.rollout.reconcile import Reconciler
from controller.serve.server import ServeMetrics, SluiceServer, sluice_routes
from controller.serve.webhooks import ReplayGuard, WebhookRejected, sign_mlflow_delivery
from controller.testing import (
    FAILING,
    Behaviours,
    InstantCluster,
    ManualClock,
    MemoryLeaseStore,
    RecordingNotifier,
    ScriptedLoad,
    ScriptedMetrics,
)

STAGING_PIN = "manifests/overlays/staging/fraud-detector.yaml"


def cheap_versions(tracking_uri: str, model: str, count: int) -> list[int]:
    """``count`` registered versions of a new model, from paths of one run (no artifacts)."""
    client = MlflowClient(tracking_uri)
    client.create_registered_model(model)
    experiment = client.create_experiment(model)
    run = client.create_run(experiment).info
    return [
        int(client.create_model_version(model, f"{run.artifact_uri}/m{i}", run.run_id).version)
        for i in range(count)
    ]


# -- 1. processes sharing a state directory -------------------------------------------------------


@pytest.mark.slow
def test_parallel_proposals_sharing_the_default_state_dir_each_land_their_branch(
    mlflow_server: MlflowService, git_remote: GitRemote, tmp_path: Path
) -> None:
    """Three `sluice propose --version N` at once, one default `.sluice`: three branches, each
    on the remote with its own version pinned (before the lock, the runs edited each other's
    work tree: all exited 0, some branches pointed at main unchanged or never existed)."""
    model = f"fraud-{uuid.uuid4().hex[:8]}"
    seed_manifests(git_remote, tmp_path / "seed", model=model)
    versions = cheap_versions(mlflow_server.tracking_uri, model, 3)
    work = tmp_path / "work"
    work.mkdir()
    # The clone exists already, as after any earlier command run from this directory.
    GitWorkspace(git_remote.url, work / ".sluice" / "git").sync()
    environment = {key: value for key, value in os.environ.items() if not key.startswith("SLUICE_")}
    environment.update(
        MLFLOW_TRACKING_URI=mlflow_server.tracking_uri, SLUICE_GIT_REMOTE=git_remote.url
    )
    sluice = str(Path(sys.executable).with_name("sluice"))
    processes = {
        version: subprocess.Popen(
            [sluice, "propose", model, "--env", "staging", "--version", str(version), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
            cwd=work,
        )
        for version in versions
    }
    outputs = {version: process.communicate(timeout=180) for version, process in processes.items()}
    for version, (stdout, stderr) in outputs.items():
        assert processes[version].returncode == 0, stderr
        assert json.loads(stdout)["status"] == "proposed", stdout
        branch = f"sluice/staging/{model}/v{version}"
        pinned = read_release(
            load_pin(git("show", f"{branch}:{STAGING_PIN}", cwd=git_remote.path), source=branch)
        )
        assert pinned.version == version, (branch, pinned)
        assert git("rev-list", "--count", f"main..{branch}", cwd=git_remote.path) == "1"


# -- 2. a lost push race to the same decision -----------------------------------------------------

LOCAL_PIN = "manifests/overlays/local/fraud-detector.yaml"


def _canary_at_10(tree: Path) -> None:
    """v2 takes 10 % beside v1, as a merged proposal leaves the local pin."""
    file = tree / LOCAL_PIN
    document = load_pin(file.read_text(), source=LOCAL_PIN)
    pin = ReleasePin(
        model="fraud-detector", version=2, storage_uri="file:///models/v2", run_id=None,
        previous_version=1, canary_percent=10,
    )  # fmt: skip
    apply_release(document, pin, source=LOCAL_PIN)
    file.write_text(dump_pin(document))


def test_a_controller_losing_the_race_to_the_same_rollback_commits_nothing(
    git_remote: GitRemote, tmp_path: Path
) -> None:
    """Two controllers observed v2 at 10 % and both decided to roll back, each with its own
    reason. The first commit wins; the loser's retry on the new tip finds the weight at 0
    already and commits nothing (it used to re-apply its edit, because 0 was a weight it
    accepted, and push a second "all traffic back" with its own annotation)."""
    seed_manifests(git_remote, tmp_path / "seed")
    commit_to_remote(git_remote, tmp_path / "merge", "v2 at 10%", _canary_at_10)
    first = GitWorkspace(git_remote.url, tmp_path / "a")
    second = GitWorkspace(git_remote.url, tmp_path / "b", backoff_seconds=0.0)
    first.sync()
    second.sync()  # both decided at 10 %

    def rollback(reason: str) -> Callable[[Path], None]:
        return weight_edit(LOCAL_PIN, 2, 0, reason=reason, verdict="failed", expect=10)

    won = first.commit_and_push(
        branch="main", base="main", edit=rollback("errors 20%"), message="rollback: errors"
    )
    lost = second.commit_and_push(
        branch="main", base="main", edit=rollback("p99 900 ms"), message="rollback: latency"
    )
    assert won.committed
    assert (lost.committed, lost.attempts, lost.sha) == (False, 2, won.sha)
    assert git("log", "--format=%s", "-2", "main", cwd=git_remote.path).splitlines() == [
        "rollback: errors",
        "v2 at 10%",
    ]
    pin = load_pin(git("show", f"main:{LOCAL_PIN}", cwd=git_remote.path), source=LOCAL_PIN)
    assert pin["metadata"]["annotations"][ROLLBACK_REASON] == "errors 20%"


def test_restores_done_already_change_nothing(tmp_path: Path) -> None:
    """The restore and its finish, applied to a pin another controller restored (or finished),
    change nothing instead of refusing, so the action reports itself done without a commit."""
    tree = tmp_path / "tree"
    (tree / Path(LOCAL_PIN).parent).mkdir(parents=True)
    (tree / LOCAL_PIN).write_text((ROOT / LOCAL_PIN).read_text())
    _canary_at_10(tree)
    previous = ReleasePin(
        model="fraud-detector", version=1, storage_uri="file:///models/v1", run_id=None,
        previous_version=None, canary_percent=None,
    )  # fmt: skip
    weight_edit(LOCAL_PIN, 2, 0, reason="bad", verdict="failed", expect=10)(tree)
    restore_edit(LOCAL_PIN, 2, previous)(tree)
    restored = (tree / LOCAL_PIN).read_text()
    restore_edit(LOCAL_PIN, 2, previous)(tree)
    assert (tree / LOCAL_PIN).read_text() == restored
    finish_restore_edit(LOCAL_PIN, 1, restored_from=2)(tree)
    finished = (tree / LOCAL_PIN).read_text()
    assert "canaryTrafficPercent" not in finished
    finish_restore_edit(LOCAL_PIN, 1, restored_from=2)(tree)
    restore_edit(LOCAL_PIN, 2, previous)(tree)
    assert (tree / LOCAL_PIN).read_text() == finished


# -- 3. two controllers and a person on one environment -------------------------------------------

ENV = "local"


#: What an analyzer does, each only for the lease's holder: analyse, smoke-test, watch.
ANALYSES = ("run", "smoke", "watch")


class Counting:
    """Forwards every call to ``inner`` and records the calls of ``methods`` as (who, method,
    args); ``load`` stands for the load generator's ``run``."""

    def __init__(self, inner: Any, who: str, methods: tuple[str, ...], calls: list[Any]) -> None:
        self._inner, self._who, self._methods, self._calls = inner, who, methods, calls

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._inner, attr)
        name = "load" if self._methods == ("load",) else attr
        if name not in self._methods:
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append((self._who, name, args))
            return value(*args, **kwargs)

        return call


@dataclass
class Stage:
    """One GitOps remote and registry, the fakes both controllers share, and what they did."""

    root: Path
    remote: GitRemote
    tracking_uri: str
    model: str
    cluster: InstantCluster
    load: ScriptedLoad
    notifier: RecordingNotifier = field(default_factory=RecordingNotifier)
    calls: list[Any] = field(default_factory=list)

    def controller(self, name: str) -> Reconciler:
        workspace = GitWorkspace(self.remote.url, self.root / name)
        registry = cast(
            RolloutRegistry,
            Counting(
                MlflowRegistry(self.tracking_uri),
                name,
                ("set_alias", "set_version_tags"),
                self.calls,
            ),
        )
        analyzer = Analyzer(
            registry=registry,
            metrics=ScriptedMetrics(self.cluster),
            load=cast(LoadGenerator, Counting(self.load, name, ("load",), self.calls)),
            sleep=lambda _: None,
        )
        return Reconciler(
            workspace=workspace,
            registry=registry,
            target=self.cluster,
            analyzer=cast(Analyzer, Counting(analyzer, name, ANALYSES, self.calls)),
            notifier=self.notifier,
            # Long enough that a holder starved of CPU on a loaded machine still renews in
            # time: a helper saw the follower take over a 10 s lease once at load 8, which is
            # the lease working, not a second writer; this test asserts one analysing holder.
            lease=LeaseKeeper(GitLeaseStore(workspace), name, duration_seconds=60),
        )

    def propose_and_merge(self, version: int) -> str:
        base = self.remote.head()
        result = propose(
            ProposalRequest(model=self.model, environment=ENV, version=version),
            registry=MlflowRegistry(self.tracking_uri),
            workspace=GitWorkspace(self.remote.url, self.root / "proposer"),
            forge=NoForge(),
        )
        merge_branch(self.remote.path, result.branch)
        return base

    def history(self, base: str) -> list[tuple[str, str]]:
        """(Sluice-Action or author, subject) of each commit on main after ``base``."""
        fmt = "%an%x1f%(trailers:key=Sluice-Action,valueonly,separator=)%x1f%s%x1e"
        out = git("log", "--first-parent", "--reverse", f"--format={fmt}", f"{base}..main",
                  cwd=self.remote.path)  # fmt: skip
        rows = [c.strip().split("\x1f") for c in out.split("\x1e") if c.strip()]
        return [(action or author, subject) for author, action, subject in rows]

    def roll_out(self, controllers: dict[str, Reconciler], *, human: bool) -> dict[str, Any]:
        """Both controllers run to the end at once; with ``human``, a person pushes an unrelated
        change to the environment's branch as soon as the first rollout commit lands."""
        start = threading.Barrier(len(controllers) + 1, timeout=60)
        reports: dict[str, list[PassReport]] = {name: [] for name in controllers}
        errors: list[BaseException] = []

        def run(name: str, reconciler: Reconciler) -> None:
            try:
                start.wait()
                reconciler.run(ENV, self.model, poll_seconds=0.05, on_pass=reports[name].append)
            except BaseException as exc:  # surfaced below
                errors.append(exc)
            finally:
                assert reconciler.lease is not None
                reconciler.lease.release_all()

        threads = [
            threading.Thread(target=run, args=item, daemon=True) for item in controllers.items()
        ]
        for thread in threads:
            thread.start()
        head = self.remote.head()
        start.wait()
        if human:
            deadline = time.monotonic() + 60
            while self.remote.head() == head and time.monotonic() < deadline:
                time.sleep(0.02)
            self.push_by_hand()
        for thread in threads:
            thread.join(120)
        assert not errors, errors
        assert not any(thread.is_alive() for thread in threads)
        return reports

    def push_by_hand(self) -> None:
        """A person's commit beside the pin, pushed after a rebase if a controller was first."""
        work = self.root / f"person-{uuid.uuid4().hex[:6]}"
        self.remote.clone(work)
        (work / "manifests/overlays/local/NOTES.md").write_text("on call: ada\n")
        git("add", "--all", cwd=work)
        git("commit", "--quiet", "-m", "Notes for the on-call person", cwd=work)
        for _ in range(20):
            try:
                git("push", "--quiet", "origin", "main", cwd=work)
                return
            except AssertionError:
                git("pull", "--quiet", "--rebase", "origin", "main", cwd=work)
        raise AssertionError("the person's push never landed")


@pytest.fixture
def stage(mlflow_server: MlflowService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Stage:
    """v1 real and good (its input example feeds every load test: the others borrow the
    primary's), v2 failing a fifth of its requests, v3 good; the local overlay's policy at a
    1 s interval, the cluster syncing at once."""
    for variable in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = mlflow_server.tracking_uri
    model = f"duo-{uuid.uuid4().hex[:8]}"
    register_version(uri, model, input_example=True)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(model)
    assert experiment is not None
    run = client.create_run(experiment.experiment_id).info
    for kind in ("bad-model", "good-model"):
        client.create_model_version(model, f"{run.artifact_uri}/{kind}", run.run_id)
    remote = create_git_remote(tmp_path)
    seed_manifests(remote, tmp_path / "seed", model=model)

    def fast_policy(tree: Path) -> None:
        config = tree / "manifests/overlays/local/sluice.yaml"
        config.write_text(config.read_text().replace("interval: 8", "interval: 1"))

    commit_to_remote(remote, tmp_path / "policy", "A fast policy for the test", fast_policy)
    cluster = InstantCluster(
        remote.path,
        behaviours=Behaviours({"/bad-model": FAILING}),
        sync_after=0,
        ready_after=0,
    )
    return Stage(tmp_path, remote, uri, model, cluster, ScriptedLoad(cluster))


@pytest.mark.slow
def test_two_controllers_and_a_person_make_each_commit_once(stage: Stage) -> None:
    """Two controllers run every rollout of one release at once, while a person pushes to the
    environment's branch: a good canary is promoted and a faulty one rolled back, each intended
    commit lands exactly once, each analysis runs one load test (by the lease's holder), and
    there is one verdict: one notification, one champion alias move, one quarantine."""
    controllers = {name: stage.controller(name) for name in ("ctl-a", "ctl-b")}
    m = re.escape(stage.model)
    stage.propose_and_merge(1)
    first = stage.roll_out(controllers, human=False)
    assert {reports[-1].outcome for reports in first.values()} == {Outcome.PROMOTED}
    del stage.calls[:]

    for version, human, outcome, intended in (
        # The smoke (on by default) stops the faulty v2 at weight 0, before any client request.
        (2, False, Outcome.ROLLED_BACK, [
            ("rollback", rf"rollback {m} v2: smoke failed, v1 serves \({ENV}"),
            ("restore", rf"rollback {m} v2: restore v1 \({ENV}"),
            ("restore", rf"rollback {m} v2: v1 serves alone again \({ENV}"),
        ]),
        (3, True, Outcome.PROMOTED, [
            ("step", rf"{m} v3: smoke passed, canary 10% \({ENV}"),
            ("step", rf"{m} v3: canary 10% → 50% \({ENV}"),
            ("promote", rf"{m} v3: canary 50% → 100%, promoted \({ENV}"),
        ]),
    ):  # fmt: skip
        plans, events = len(stage.load.plans), len(stage.notifier.events)
        base = stage.propose_and_merge(version)
        reports = stage.roll_out(controllers, human=human)
        context = {name: [f"{r.action}: {r.detail}" for r in rs] for name, rs in reports.items()}
        assert {rs[-1].outcome for rs in reports.values()} == {outcome}, context
        history = stage.history(base)
        own = [(action, subject) for action, subject in history if action != "Sluice Test"]
        assert own[0] == ("Sluice demo", f"Merge sluice/{ENV}/{stage.model}/v{version}")
        own = own[1:]
        # Each intended commit exactly once, in order, and nothing else of Sluice's.
        assert len(own) == len(intended), (own, context)
        for (action, subject), (want, pattern) in zip(own, intended, strict=True):
            assert action == want, (subject, context)
            assert re.match(pattern, subject), (subject, context)
        assert [s for a, s in history if a == "Sluice Test"] == (
            ["Notes for the on-call person"] if human else []
        )
        # One load test per analysis (canary and primary at once; a smoke test's own), every
        # analysis, smoke test, watch and load test by one controller: the lease's holder.
        analysing = [call for call in stage.calls if call[1] in (*ANALYSES, "load")]
        assert len({who for who, _, _ in analysing}) == 1, analysing
        holder = analysing[0][0]
        runs = sum(call[1] == "run" for call in analysing)
        smokes = sum(call[1] == "smoke" for call in analysing)
        loads = len(stage.load.plans) - plans
        assert loads == sum(call[1] == "load" for call in analysing)
        assert smokes == 1, analysing  # one smoke per rollout, by the holder
        assert 2 * runs <= loads <= 2 * runs + 2 * smokes, analysing
        assert runs >= (2 if outcome is Outcome.PROMOTED else 0), context
        follower = next(name for name in controllers if name != holder)
        # One verdict: one notification, one alias move (promotion) or quarantine (rollback).
        announced = stage.notifier.events[events:]
        assert len(announced) == 1, announced
        aliases = [call for call in stage.calls if call[1] == "set_alias"]
        quarantines = [
            call for call in stage.calls
            if call[1] == "set_version_tags" and QUARANTINE_TAG in call[2][2]
        ]  # fmt: skip
        assert (len(aliases), len(quarantines)) == (
            (1, 0) if outcome is Outcome.PROMOTED else (0, 1)
        ), stage.calls
        # The follower said who acted and what it committed.
        followed = [r for r in reports[follower] if r.action == "Follow"]
        assert followed, context
        assert all(r.holder == holder for r in followed), context
        assert any("landed: " in r.detail for r in followed), context
        # ... up to the holder's last commit, by the end.
        assert any(own[-1][1] in r.detail for r in reports[follower]), context
        del stage.calls[:]


# -- 4. webhook replays across a restart ----------------------------------------------------------

SECRET = "whsec-test-concurrency"


def signed_delivery(model: str) -> tuple[dict[str, str], bytes]:
    body = json.dumps(
        {
            "entity": "model_version_alias",
            "action": "created",
            "data": {"name": model, "alias": "champion", "version": "1"},
        }
    ).encode()
    delivery_id, timestamp = str(uuid.uuid4()), str(int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": timestamp,
        "X-MLflow-Signature": sign_mlflow_delivery(SECRET, delivery_id, timestamp, body),
    }, body


def test_a_delivery_replayed_after_sluice_serve_restarts_is_refused(tmp_path: Path) -> None:
    """The routes of `sluice serve`, started twice on one state directory: a delivery accepted
    by the first is refused (409) by the second, and triggers nothing (the ids lived in the
    process's memory, so a restart reopened the timestamp window to replays)."""
    memory = tmp_path / "state" / "webhooks" / "mlflow-deliveries.json"
    triggered: list[tuple[str, str]] = []

    def trigger(model: str, alias: str) -> bool:
        triggered.append((model, alias))
        return True

    def server() -> SluiceServer:
        routes = sluice_routes(
            metrics=ServeMetrics(),
            status=dict,
            mlflow_trigger=trigger,
            mlflow_webhook_secret=SECRET,
            replay_file=memory,
        )
        return SluiceServer(routes)

    headers, body = signed_delivery("fraud-detector")
    with server() as first:
        accepted = requests.post(
            f"{first.url}/hooks/mlflow", data=body, headers=headers, timeout=10
        )
    with server() as restarted:
        replayed = requests.post(
            f"{restarted.url}/hooks/mlflow", data=body, headers=headers, timeout=10
        )
    assert accepted.status_code == 200, accepted.text
    assert (replayed.status_code, replayed.json()) == (409, {"error": "delivery already received"})
    assert triggered == [("fraud-detector", "champion")]


def test_the_replay_memory_is_bounded_expires_and_survives_a_bad_file(tmp_path: Path) -> None:
    """The file holds at most ``max_entries`` ids, an id whose timestamp left the window is
    admitted again after a restart, and an unreadable file starts an empty memory."""
    path = tmp_path / "deliveries.json"
    now = 1_700_000_000.0
    guard = ReplayGuard(max_age_seconds=300, max_entries=2, path=path)
    for number in range(3):
        guard.admit(f"d-{number}", now, now=now)
    assert [key for key, _ in json.loads(path.read_text())["deliveries"]] == ["d-1", "d-2"]
    restarted = ReplayGuard(max_age_seconds=300, max_entries=2, path=path)
    with pytest.raises(WebhookRejected, match="409"):
        restarted.admit("d-2", now, now=now + 10)
    restarted.admit("d-1", now + 400, now=now + 400)  # d-1's first delivery left the window
    assert "d-2" not in restarted
    path.write_text("{not json")
    assert len(ReplayGuard(path=path)) == 0


# -- the lease itself ------------------------------------------------------------------------------


def test_a_lease_is_renewed_at_most_every_third_and_taken_over_once_it_expires() -> None:
    """The holder renews no more often than every 10 s of a 30 s lease; another controller
    follows while it is live, takes it over once it expired, and at once once released."""
    clock = ManualClock(1_000.0)
    store = MemoryLeaseStore()
    a = LeaseKeeper(store, "a", duration_seconds=30, clock=clock)
    b = LeaseKeeper(store, "b", duration_seconds=30, clock=clock)
    name = "local/fraud-detector"
    assert a.hold(name).holder == "a"
    clock.advance(9)
    assert a.hold(name).holder == "a"
    assert b.hold(name).holder == "a"
    assert store.swaps == [(name, "a")]  # nothing renewed within 10 s, nothing taken
    clock.advance(2)
    assert a.hold(name).renewed_at == 1_011.0
    clock.advance(29)
    assert b.hold(name).holder == "a"  # 29 s after the renewal: still live
    clock.advance(1)
    assert b.hold(name).holder == "b"  # a stopped renewing 30 s ago: taken over
    assert a.hold(name).holder == "b"
    assert not a.holding(name)
    b.release(name)
    assert a.hold(name).holder == "a"
    assert store.swaps == [(name, "a"), (name, "a"), (name, "b"), (name, None), (name, "a")]


def test_the_git_lease_is_a_compare_and_swap_on_a_ref_of_the_remote(
    git_remote: GitRemote, tmp_path: Path
) -> None:
    """Two controllers' stores: creating, replacing and deleting the ref each succeed only
    from the value last read; the branches are untouched."""
    first = GitLeaseStore(GitWorkspace(git_remote.url, tmp_path / "a"))
    second = GitLeaseStore(GitWorkspace(git_remote.url, tmp_path / "b"))
    name, heads = "staging/fraud-detector", git_remote.head()
    assert first.read(name) is None
    assert first.swap(name, None, Lease("a", 1.0, 1.0, 30.0))
    assert not second.swap(name, None, Lease("b", 2.0, 2.0, 30.0))
    found = second.read(name)
    assert found is not None
    assert found[0] == Lease("a", 1.0, 1.0, 30.0)
    assert second.swap(name, found[1], Lease("b", 3.0, 3.0, 30.0))
    assert not first.swap(name, found[1], Lease("a", 4.0, 4.0, 30.0))  # stale: b moved it
    taken = first.read(name)
    assert taken is not None
    assert taken[0].holder == "b"
    assert second.swap(name, taken[1], None)
    assert first.read(name) is None
    assert git_remote.head() == heads
    assert "refs/sluice" not in git("for-each-ref", cwd=git_remote.path)


def test_a_rollback_asks_for_the_lease_and_the_holder_hands_it_over_at_its_next_renewal() -> None:
    """`sluice rollback` (keeper r) finds a's live lease: it writes its request into the record
    and waits; a, at its next renewal, names r the holder instead of renewing, and follows. A
    request survives the Git record's text."""
    clock = ManualClock(1_000.0)
    store = MemoryLeaseStore()
    a = LeaseKeeper(store, "a", duration_seconds=30, clock=clock)
    r = LeaseKeeper(store, "rollback", duration_seconds=30, clock=clock)
    name = "staging/fraud-detector"
    assert a.hold(name).holder == "a"
    waits: list[Lease] = []

    def a_passes(seconds: float) -> None:
        """a's controller passes meanwhile, once a second (renewing every 10 s)."""
        clock.advance(seconds)
        a.hold(name)

    taken = r.acquire(name, wait_seconds=30, on_wait=waits.append, sleep=a_passes, poll_seconds=1)
    assert taken.holder == "rollback"
    assert waits[0].holder == "a"
    assert 1 <= len(waits) <= 11  # handed over at a's next renewal, within 10 s
    assert clock() <= 1_011.0
    assert a.hold(name).holder == "rollback"  # a follows now
    assert not a.holding(name)
    recorded = store.read(name)
    assert recorded is not None
    assert recorded[0].requested_by is None
    asked = Lease("a", 1.0, 2.0, 30.0, requested_by="rollback")
    assert Lease.from_text(asked.to_text(name)) == asked
    assert Lease.from_text(Lease("a", 1.0, 2.0, 30.0).to_text(name)) == Lease("a", 1.0, 2.0, 30.0)


def test_a_rollback_outwaits_a_busy_holder_and_gives_up_on_one_that_never_yields() -> None:
    """A holder busy in a long analysis renews nothing: its lease expires and the rollback
    takes it, at most one lease duration later. One that keeps renewing without handing over
    (a Sluice that knows no requests) is an error naming it, exit 3, after the wait."""
    clock = ManualClock(1_000.0)
    store = MemoryLeaseStore()
    busy = LeaseKeeper(store, "busy", duration_seconds=30, clock=clock)
    r = LeaseKeeper(store, "rollback", duration_seconds=30, clock=clock)
    name = "staging/fraud-detector"
    busy.hold(name)
    taken = r.acquire(name, wait_seconds=35, sleep=clock.advance, poll_seconds=1)
    assert (taken.holder, clock()) == ("rollback", 1_030.0)
    r.release(name)

    class Stubborn(MemoryLeaseStore):
        """Renews over any request, as an older controller would."""

        def read(self, name: str) -> tuple[Lease, str] | None:
            found = super().read(name)
            if found is None:
                return None
            return Lease(found[0].holder, found[0].acquired_at, clock(), 30.0), found[1]

    stubborn = Stubborn()
    LeaseKeeper(stubborn, "old", duration_seconds=30, clock=clock).hold(name)
    late = LeaseKeeper(stubborn, "rollback", duration_seconds=30, clock=clock)
    with pytest.raises(
        LeaseHeld, match=r"old still holds the lease on staging/fraud-detector after 5 s"
    ):
        late.acquire(name, wait_seconds=5, sleep=clock.advance, poll_seconds=1)
    assert LeaseHeld("x").exit_code == 3


class StaleView:
    """A workspace whose fetches are skipped: a controller that read the remote a moment before
    the holder's last commit (a pass slowed on a loaded machine), everything else as is."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def sync(self) -> None:
        pass

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


@pytest.mark.slow
def test_a_follower_that_takes_over_a_finished_rollout_still_says_what_the_holder_landed(
    stage: Stage,
) -> None:
    """CI failure of session 14: ctl-b rolled a faulty version back and released its lease while
    ctl-a, on a view read just before ctl-b's last commit, took the lease over; ctl-a then
    reported the end without the commit that ended it ("landed:" was dropped at the takeover)."""
    a, b = stage.controller("ctl-a"), stage.controller("ctl-b")
    stage.propose_and_merge(1)
    assert b.run(ENV, stage.model, poll_seconds=0.05).outcome is Outcome.PROMOTED
    base = stage.propose_and_merge(2)
    for _ in range(50):  # ctl-b holds the lease, smokes v2 and walks the rollback to its restore
        report = b.reconcile(ENV, stage.model)
        if report.action == "RestorePrevious":
            break
        time.sleep(0.05)
    else:
        raise AssertionError("ctl-b never restored v1")
    reports = [a.reconcile(ENV, stage.model)]
    assert reports[0].action == "Follow", reports[0]
    assert b.run(ENV, stage.model, poll_seconds=0.05).outcome is Outcome.ROLLED_BACK
    last = stage.history(base)[-1][1]
    assert "v1 serves alone again" in last

    fresh, a.workspace = a.workspace, cast(Any, StaleView(a.workspace))
    reports.append(a.reconcile(ENV, stage.model))  # the lease is free: ctl-a holds it now
    a.workspace = fresh
    reports.append(a.run(ENV, stage.model, poll_seconds=0.05))
    details = [f"{r.action}: {r.detail}" for r in reports]
    assert reports[-1].outcome is Outcome.ROLLED_BACK, details
    assert stage.history(base)[-1][1] == last, "ctl-a committed nothing of its own"
    assert any(last in r.detail for r in reports), details
