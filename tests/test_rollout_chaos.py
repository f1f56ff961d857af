"""Chaos: the rollout controller is killed at random points of many rollouts and run again.

The README promises that a pass killed at any line and run again reaches the same end without
a duplicate or missing commit. Here each seed drives a chain of rollouts of one model through
real Git (a bare remote) and the real MLflow registry, with the cluster, Prometheus and Locust
played by the fakes of :mod:`controller.testing`. The controller's collaborators (Git
workspace, registry, target, analyzer) are wrapped so that a chosen call dies before, during
(half a write) or after it, as a killed pod would; a fresh controller, sometimes on a fresh
disk, then carries on. Every rollout must end as its version deserves, and Git must hold each
of its commits exactly once.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from mlflow import MlflowClient
from support.gitops_repo import seed_manifests
from support.gitrepo import GitRemote, create_git_remote, git
from support.registry import register_version

from controller.backends.git_repo import GitWorkspace
from controller.backends.mlflow_registry import MlflowRegistry
from controller.demo.gitops_remote import merge_branch
from controller.domain import QUARANTINE_TAG
from controller.local.services import MlflowService
from controller.manifests.manifest import PinnedRelease, load_pin, read_release
from controller.null_ports import NoForge
from controller.ports import RolloutRegistry, Target
from controller.proposals.propose import ProposalRequest, propose
from controller.rollout.actions import Outcome
from controller.rollout.analysis import Analyzer
from controller.rollout.pass_report import PassReport
from controller.rollout.reconcile import Reconciler
from controller.testing import (
    Behaviour,
    Behaviours,
    InstantCluster,
    ManualClock,
    RecordingNotifier,
    ScriptedLoad,
    ScriptedMetrics,
)

pytestmark = pytest.mark.slow

ENV = "local"
PIN = f"manifests/overlays/{ENV}/fraud-detector.yaml"
INTERVAL = 8.0  # the local overlay's rollout.interval
SEEDS = range(3)
ROLLOUTS_PER_SEED = 6
MAX_PASSES = 80
#: Crash points at the writes, the interesting kind: (method, when, nth call of it). Each kind
#: of rollout cycles through those it reaches, most telling first; a rollout makes two commits.
_COMMIT, _TAGS, _ALIAS = (
    "workspace.commit_and_push",
    "registry.set_version_tags",
    "registry.set_alias",
)
CYCLES = {
    "first": (("workspace.sync", "during", 1), (_ALIAS, "before", 1), (_ALIAS, "after", 1),
              (_TAGS, "during", 1), (_TAGS, "after", 1)),
    "good": ((_ALIAS, "before", 1), (_COMMIT, "after", 2), (_TAGS, "during", 1),
             (_COMMIT, "unpushed", 1), (_COMMIT, "during", 1), (_COMMIT, "after", 1),
             (_ALIAS, "after", 1), (_COMMIT, "before", 2), (_TAGS, "after", 1),
             (_COMMIT, "during", 2), (_COMMIT, "before", 1)),
    "rollback": ((_COMMIT, "after", 2), (_TAGS, "during", 1), (_COMMIT, "unpushed", 2),
                 (_COMMIT, "during", 1), (_COMMIT, "after", 1), (_COMMIT, "before", 2),
                 (_TAGS, "after", 1), (_COMMIT, "during", 2), (_COMMIT, "before", 1)),
}  # fmt: skip
WRITES = (_COMMIT, _TAGS, _ALIAS)
#: The ways a call can die halfway: see :class:`Crashing`.
HALFWAY = ("during", "unpushed")
CRASHES: Counter[str] = Counter()


class Crash(BaseException):
    """The controller's process dies here (a BaseException: nothing in Sluice may catch it)."""


# -- crash injection -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CrashPoint:
    """Die at the ``nth`` call of ``method`` (or of any method) since the rollout began."""

    method: str | None
    nth: int
    when: str  # before, after, or halfway: during, unpushed


@dataclass
class CrashPlan:
    """The points one rollout dies at, each counting its calls, and those that fired."""

    pending: list[CrashPoint]
    counts: Counter[CrashPoint] = field(default_factory=Counter)
    fired: list[str] = field(default_factory=list)

    def check(self, method: str, *, splittable: bool) -> str | None:
        """When, if at all, the call of ``method`` now starting dies.

        A point that dies halfway through a named method counts only the calls that can
        (``splittable``), so that it does not fall back to dying before.
        """
        due = None
        for point in list(self.pending):
            if point.method not in (None, method):
                continue
            if point.method is not None and point.when in HALFWAY and not splittable:
                continue
            self.counts[point] += 1
            if self.counts[point] == point.nth:
                self.pending.remove(point)
                due = due or point.when
        return due

    def crash(self, where: str) -> None:
        self.fired.append(where)
        CRASHES[where] += 1
        raise Crash(where)


class WriteCycle:
    """The write each rollout's first crash point aims at, in turn among those it reaches."""

    def __init__(self) -> None:
        self._cycles = {kind: itertools.cycle(points) for kind, points in CYCLES.items()}

    def next(self, kind: str) -> tuple[str, str, int]:
        return next(self._cycles[kind if kind in self._cycles else "rollback"])


def crash_plan(rng: random.Random, writes: WriteCycle, kind: str) -> CrashPlan:
    """0-3 crash points: the first at the next write in turn, the others at any call or write."""
    count = rng.choice((0, 1, 1, 2, 2, 3))
    points = []
    if count:
        method, when, nth = writes.next(kind)
        points.append(CrashPoint(method, nth, when))
    for _ in range(count - len(points)):
        when = rng.choice(("before", "during", "after"))
        if rng.random() < 0.5:
            points.append(CrashPoint(None, rng.randint(1, 80), when))
        else:
            method = rng.choice(WRITES)
            if method == _ALIAS and when == "during":
                when = "after"  # an alias is one call: it cannot die halfway
            points.append(CrashPoint(method, rng.randint(1, 2), when))
    return CrashPlan(points)


class Crashing:
    """Forwards every method call to ``inner``; the plan's chosen calls die around it.

    Halfway is ``during`` a commit whose work tree was edited but not committed, a commit made
    but never pushed (``unpushed``), the first of several registry tags set, or a first clone
    killed while it fetched; for any other call, halfway dies before.
    """

    def __init__(self, inner: Any, name: str, plan: CrashPlan) -> None:
        self._inner, self._name, self._plan = inner, name, plan

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._inner, attr)
        if not callable(value):
            return value
        method = f"{self._name}.{attr}"

        def call(*args: Any, **kwargs: Any) -> Any:
            halfway = self._halfway(attr, args, kwargs)
            when = self._plan.check(method, splittable=halfway is not None)
            if when in HALFWAY and halfway is not None:
                args, kwargs = halfway(when, f"{method} ({when})")
            elif when in ("before", *HALFWAY):
                self._plan.crash(f"{method} (before)")
            result = value(*args, **kwargs)
            if when == "after":
                self._plan.crash(f"{method} (after)")
            return result

        return call

    def _halfway(self, attr: str, args: Any, kwargs: Any) -> Callable[[str, str], Any] | None:
        """How the call dies halfway, if it can: returns the arguments to call it with."""
        inner, crash = self._inner, self._plan.crash
        if attr == "commit_and_push":

            def die_before_the_commit_or_push(when: str, where: str) -> Any:
                if when == "unpushed":
                    inner.repo.git = _NoPush(inner.repo.git, lambda: crash(where))
                    return args, kwargs
                edit = kwargs["edit"]

                def edit_then_die(worktree: Path) -> None:
                    edit(worktree)
                    crash(where)

                return args, {**kwargs, "edit": edit_then_die}

            return die_before_the_commit_or_push
        if attr == "set_version_tags" and len(args) > 2 and len(args[2]) > 1:

            def die_after_one_tag(when: str, where: str) -> Any:
                inner.set_version_tags(args[0], args[1], dict(list(args[2].items())[:1]))
                crash(where)

            return die_after_one_tag
        if attr == "sync" and not (inner.path / ".git").exists():

            def die_while_cloning(when: str, where: str) -> Any:
                # What `git clone` has done when it is killed while fetching.
                git("init", "--quiet", inner.path)
                git("remote", "add", "origin", inner.remote_url, cwd=inner.path)
                crash(where)

            return die_while_cloning
        return None


class _NoPush:
    """A repository's git command runner whose ``push`` kills the process instead."""

    def __init__(self, runner: Any, die: Callable[[], None]) -> None:
        self._runner, self._die = runner, die

    def __getattr__(self, name: str) -> Any:
        if name == "push":
            return lambda *args, **kwargs: self._die()
        return getattr(self._runner, name)


# -- the world -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Versions:
    """The registered versions of one model, shared by every seed."""

    tracking_uri: str
    model: str
    good: tuple[int, ...]
    failing: int
    unloadable: int
    behaviours: Behaviours


@pytest.fixture(scope="module")
def versions(mlflow_server: MlflowService) -> Versions:
    """Two good versions (the second cold at first), one failing, one that never loads.

    v1 is a real model with an input example: the load tests send its rows. Nothing here loads
    a model, so the others need no model artifacts (only the input example each logs, which
    the smoke and the load tests send) and are registered, in a fraction of the time, from
    paths of a run whose names say what they do; the fakes' default markers read ``bad`` and
    ``unloadable``.
    """
    uri = mlflow_server.tracking_uri
    model = f"chaos-{uuid.uuid4().hex[:8]}"
    first = register_version(uri, model, input_example=True)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(model)
    assert experiment is not None
    run = client.create_run(experiment.experiment_id).info
    example = {"columns": ["amount", "hour"], "data": [[12.5, 3], [80.0, 22]]}
    for kind in ("cold-model", "bad-model", "unloadable-model"):
        # The input example each version logs, which its smoke sends (nothing loads a model).
        client.log_text(run.run_id, json.dumps(example), f"{kind}/input_example.json")
    second, failing, unloadable = (
        int(client.create_model_version(model, f"{run.artifact_uri}/{kind}", run.run_id).version)
        for kind in ("cold-model", "bad-model", "unloadable-model")
    )
    behaviours = Behaviours().with_marker("/cold-model", Behaviour(cold_runs=1))
    return Versions(uri, model, (first, second), failing, unloadable, behaviours)


@dataclass(frozen=True)
class Scenario:
    """One rollout: ``candidate`` proposed over ``serving``; ``outage``: Prometheus is down."""

    kind: str
    candidate: int
    serving: int | None
    outage: bool = False

    @property
    def promoted(self) -> bool:
        return self.kind in ("first", "good")


@dataclass
class World:
    """One seed's remote, cluster, fakes, clock, and the controllers it starts."""

    root: Path
    remote: GitRemote
    versions: Versions
    clock: ManualClock
    rng: random.Random
    cluster: InstantCluster = field(init=False)
    metrics: ScriptedMetrics = field(init=False)
    load: ScriptedLoad = field(init=False)
    notifier: RecordingNotifier = field(default_factory=RecordingNotifier)
    disks: int = 0

    def __post_init__(self) -> None:
        self.cluster = InstantCluster(
            self.remote.path,
            behaviours=self.versions.behaviours,
            sync_after=self.rng.choice((0, 1)),
            ready_after=self.rng.choice((0, 1)),
            clock=self.clock,
        )
        self.metrics = ScriptedMetrics(self.cluster)
        self.load = ScriptedLoad(self.cluster)

    @property
    def model(self) -> str:
        return self.versions.model

    def controller(self, plan: CrashPlan, *, new_disk: bool) -> Reconciler:
        """A controller as a (re)started pod runs it: nothing in memory, maybe a new disk."""
        if new_disk:
            self.disks += 1
        workspace = GitWorkspace(self.remote.url, self.root / f"disk-{self.disks}")
        registry = Crashing(MlflowRegistry(self.versions.tracking_uri), "registry", plan)
        analyzer = Analyzer(
            registry=cast(RolloutRegistry, registry),
            metrics=self.metrics,
            load=self.load,
            sleep=self.clock.sleep,
        )
        return Reconciler(
            workspace=cast(GitWorkspace, Crashing(workspace, "workspace", plan)),
            registry=cast(RolloutRegistry, registry),
            target=cast(Target, Crashing(self.cluster, "target", plan)),
            analyzer=cast(Analyzer, Crashing(analyzer, "analyzer", plan)),
            notifier=self.notifier,
            clock=self.clock,
        )

    def propose_and_merge(self, version: int) -> str:
        """Propose ``version`` (un-quarantined first), merge it, delete the branch; old main."""
        self.unquarantine(version)
        base = self.remote.head()
        result = propose(
            ProposalRequest(model=self.model, environment=ENV, version=version),
            registry=MlflowRegistry(self.versions.tracking_uri),
            workspace=GitWorkspace(self.remote.url, self.root / "proposer"),
            forge=NoForge(),
        )
        merge_branch(self.remote.path, result.branch)
        git("update-ref", "-d", f"refs/heads/{result.branch}", cwd=self.remote.path)
        return base

    def unquarantine(self, version: int) -> None:
        client = MlflowClient(self.versions.tracking_uri)
        tags = client.get_model_version(self.model, str(version)).tags
        for key in tags:
            if key.startswith(QUARANTINE_TAG):
                client.delete_model_version_tag(self.model, str(version), key)

    def roll_out(self, plan: CrashPlan) -> tuple[PassReport, list[str]]:
        """Pass until the rollout ends, restarting the controller after every crash."""
        reconciler = self.controller(plan, new_disk=False)
        seen: list[str] = []
        for _ in range(MAX_PASSES):
            try:
                report = reconciler.reconcile(ENV, self.model)
            except Crash as crash:
                seen.append(f"CRASH at {crash}")
                self.clock.advance(5.0)  # the pod restarts
                # A half-made clone stays on its disk: the next controller must cope with it.
                half_cloned = str(crash) == "workspace.sync (during)"
                reconciler = self.controller(
                    plan, new_disk=not half_cloned and self.rng.random() < 0.5
                )
                continue
            seen.append(f"{report.action}: {report.detail}")
            if report.finished:
                return report, seen
            waiting = report.action == "Wait" and report.phase == "analysing"
            self.clock.advance(INTERVAL if waiting else 1.0)
        raise AssertionError("the rollout never ended:\n" + "\n".join(seen[-25:]))

    # -- what the user sees ------------------------------------------------------------------

    def pin(self) -> tuple[int | None, int | None, int | None]:
        release = self.release()
        return release.version, release.canary_percent, release.previous_version

    def release(self) -> PinnedRelease:
        text = git("show", f"main:{PIN}", cwd=self.remote.path)
        return read_release(load_pin(text, source=PIN))

    def history(self, base: str) -> list[dict[str, str]]:
        """Every commit since ``base`` on main's first-parent line, oldest first."""
        fmt = "%an%x1f%s%x1f%(trailers:key=Sluice-Action,valueonly,separator=)%x1f%P%x1e"
        out = git("log", "--first-parent", "--reverse", f"--format={fmt}", f"{base}..main",
                  cwd=self.remote.path)  # fmt: skip
        keys = ("author", "subject", "action", "parents")
        return [dict(zip(keys, c.strip().split("\x1f"), strict=True)) for c in out.split("\x1e")
                if c.strip()]  # fmt: skip

    def authors(self, base: str) -> Counter[str]:
        """Authors of every commit since ``base``, merged branches included."""
        out = git("log", "--format=%an", f"{base}..main", cwd=self.remote.path)
        return Counter(out.splitlines())

    def tags(self, version: int) -> Mapping[str, str]:
        client = MlflowClient(self.versions.tracking_uri)
        return dict(client.get_model_version(self.model, str(version)).tags)

    def champion(self) -> int:
        client = MlflowClient(self.versions.tracking_uri)
        return int(client.get_model_version_by_alias(self.model, "champion").version)


def expected_commits(world: World, s: Scenario) -> list[tuple[str, str]]:
    """(Sluice-Action, subject pattern) of the rollout's own commits, in order."""
    m, c = re.escape(world.model), s.candidate
    if s.kind == "first":
        return []
    # The smoke (on by default) runs first: a version that answers it (Prometheus plays no
    # part) takes its first step in one commit; one that fails it, or cannot load, never does.
    smoked = ("step", rf"{m} v{c}: smoke passed, canary 10% \({ENV}")
    restores = [
        ("restore", rf"rollback {m} v{c}: restore v{s.serving} \({ENV}"),
        ("restore", rf"rollback {m} v{c}: v{s.serving} serves alone again \({ENV}"),
    ]
    if s.promoted:
        return [
            smoked,
            ("step", rf"{m} v{c}: canary 10% → 50% \({ENV}"),
            ("promote", rf"{m} v{c}: canary 50% → 100%, promoted \({ENV}"),
        ]
    if s.outage:
        # Prometheus never answering is a broken tool, not a verdict: the rollout is aborted.
        rollback = rf"rollback {m} v{c}: aborted, all traffic back to v{s.serving}\b"
        return [smoked, ("rollback", rollback), *restores]
    return [("rollback", rf"rollback {m} v{c}: smoke failed, v{s.serving} serves\b"), *restores]


def scenarios(rng: random.Random, versions: Versions) -> Iterator[Scenario]:
    """A first deploy, then a random chain of good, failing, unloadable and outage rollouts."""
    serving = rng.choice(versions.good)
    yield Scenario("first", serving, None)
    for _ in range(ROLLOUTS_PER_SEED):
        kind = rng.choice(("good", "good", "failing", "unloadable", "outage"))
        other = next(v for v in versions.good if v != serving)
        if kind == "good":
            yield Scenario(kind, other, serving)
            serving = other
        elif kind == "outage":
            yield Scenario(kind, other, serving, outage=True)
        else:
            yield Scenario(kind, getattr(versions, kind), serving)


def check(
    world: World, s: Scenario, base: str, report: PassReport, plan: CrashPlan, events: int
) -> None:
    """The rollout ended as it should; Git holds each of its commits exactly once."""
    assert report.outcome is (Outcome.PROMOTED if s.promoted else Outcome.ROLLED_BACK)
    history = world.history(base)
    merge, own = history[0], history[1:]
    assert merge["author"] == "Sluice demo"
    assert merge["subject"] == f"Merge sluice/{ENV}/{world.model}/v{s.candidate}"
    assert len(merge["parents"].split()) == 2
    expected = expected_commits(world, s)
    assert [c["action"] for c in own] == [action for action, _ in expected], own
    for commit, (_, pattern) in zip(own, expected, strict=True):
        assert commit["author"] == "Sluice"
        assert re.match(pattern, commit["subject"]), (commit["subject"], pattern)
    # The proposal commit, the merge and the rollout's own: nobody else's, nothing twice.
    assert world.authors(base) == Counter({"Sluice": 1 + len(own), "Sluice demo": 1})
    if s.promoted:
        assert world.pin()[:2] == (s.candidate, None)
        assert world.champion() == s.candidate
        assert QUARANTINE_TAG not in world.tags(s.candidate)
    elif s.outage:  # aborted: traffic went back, but nothing condemned the model
        assert world.pin() == (s.serving, None, None)
        assert world.champion() == s.serving
        assert QUARANTINE_TAG not in world.tags(s.candidate)
        assert world.tags(s.candidate)[f"sluice.rollout.{ENV}"] == "aborted"
    else:
        assert world.pin() == (s.serving, None, None)
        assert world.champion() == s.serving
        assert QUARANTINE_TAG in world.tags(s.candidate)
    # What serves: the pinned version, alone.
    assert world.cluster.split(ENV, "fraud-detector") == {world.release().storage_uri: 100}
    announced = world.notifier.events[events:]
    expected_events = 0 if s.kind == "first" else 1
    # Notifications are best-effort: a crash right after a push may lose one, never repeat it.
    if plan.fired:
        assert len(announced) <= expected_events, announced
    else:
        assert len(announced) == expected_events, announced


def run_seed(
    seed: int, versions: Versions, root: Path, writes: WriteCycle, monkeypatch: pytest.MonkeyPatch
) -> int:
    """One seed's chain of rollouts; the number of crashes that fired."""

    def git_dates(now: float) -> None:
        # Commits are dated by the fake clock, so the rollout's deadlines and intervals agree.
        for variable in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"):
            monkeypatch.setenv(variable, f"@{int(now)} +0000")

    # Drawn up front, so that what the code under test does cannot change what is drawn.
    rng = random.Random(seed)
    runs = [(s, crash_plan(rng, writes, s.kind)) for s in scenarios(rng, versions)]
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    root.mkdir()
    remote = create_git_remote(root)
    seed_manifests(remote, root / "seed", model=versions.model)
    clock = ManualClock(1_700_000_000.0 + seed * 1_000_000, on_change=git_dates)
    world = World(root, remote, versions, clock, random.Random(f"restarts-{seed}"))
    fired = 0
    for number, (scenario, plan) in enumerate(runs):
        points = list(plan.pending)
        world.metrics.outage = scenario.outage
        base = world.propose_and_merge(scenario.candidate)
        events = len(world.notifier.events)
        report, passes = world.roll_out(plan)
        fired += len(plan.fired)
        try:
            check(world, scenario, base, report, plan, events)
        except AssertionError as exc:
            lines = "\n".join(passes)
            raise AssertionError(
                f"seed {seed}, rollout {number}: {scenario}\ncrash points {points}\n{lines}\n{exc}"
            ) from None
    return fired


def test_every_rollout_ends_as_it_should_however_often_the_controller_dies(
    versions: Versions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seeded rollouts with 0-3 crashes each end promoted or rolled back, each commit once."""
    CRASHES.clear()
    failures, fired, writes = [], 0, WriteCycle()
    for seed in SEEDS:
        try:
            fired += run_seed(seed, versions, tmp_path / f"seed-{seed}", writes, monkeypatch)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)
    summary = ", ".join(f"{where}: {n}" for where, n in sorted(CRASHES.items()))
    print(f"\n{len(SEEDS)} seeds, {fired} crashes: {summary}")
    # The crashes must have hit the writes, else the test could not notice a lost commit.
    aimed = {f"{method} ({when})" for points in CYCLES.values() for method, when, _ in points}
    assert aimed <= set(CRASHES), summary
