"""The shadow phase's mirror on a cluster: decided from plain values, committed into Git once,
removed by the commit that ends the phase, and never written for the local target."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient
from support.gitops_repo import ROOT, manifest_files
from support.rollout_values import in_shadow as shadow_observation

from controller.backends.kubernetes_target import observation_from
from controller.backends.mlflow_registry import MlflowRegistry
from controller.errors import GitConflict
from controller.local.services import MlflowService
from controller.manifests.environment import load_environment
from controller.manifests.manifest import (
    PinnedRelease,
    ReleasePin,
    apply_release,
    dump_pin,
    load_pin,
    set_shadow_annotations,
)
from controller.manifests.render import validate_rendered
from controller.rollout.act import Actuator
from controller.rollout.actions import (
    Action,
    AnalyzeShadow,
    EndShadow,
    Smoke,
    StartMirror,
    StartRollback,
    StopMirror,
    Wait,
)
from controller.rollout.analysis import Analyzer
from controller.rollout.decide import decide
from controller.rollout.messages import render_rollout_message
from controller.rollout.observation import ReleaseObservation
from controller.rollout.observe import ReleaseRef, load_release
from controller.rollout.pass_report import PassReport
from controller.rollout.pin_edits import mirror_edit, weight_edit, without_mirror
from controller.rollout.policy import RolloutPolicy
from controller.rollout.reconcile import Reconciler
from controller.rollout.telemetry import RolloutMetrics
from controller.shadow.mirror import (
    SHADOW_FILE,
    ShadowMirror,
    mirror_virtual_service,
    validate_virtual_service,
)
from controller.shadow.mirror_commits import start_mirror
from controller.target_types import TargetObservation, TrafficEntry
from controller.testing import (
    InstantCluster,
    ManualClock,
    MemoryReleaseRepository,
    MemoryRemote,
    RecordingNotifier,
    ScriptedLoad,
)

HEAD = "c" * 40
OLD, NEW = "fd-predictor-00001", "fd-predictor-00002"
#: KServe's tag routes with serving.kserve.io/enable-tag-routing (manifests/base does).
TAG_URL = "http://fd-predictor.models-staging.svc.cluster.local/_tag"
POLICY = RolloutPolicy.model_validate({"steps": [10, 50, 100], "interval": 30, "shadow": {}})


def cluster_target(*, ready: bool = True, mirrors: bool = False) -> TargetObservation:
    """KServe at canaryTrafficPercent 0 on a cluster: challenger at 0 %, primary at 100 %."""
    return TargetObservation(
        exists=True,
        synced_revision=HEAD,
        sync_status="Synced",
        namespace="models-staging",
        configuration="fd-predictor",
        latest_created=NEW,
        latest_ready=NEW if ready else OLD,
        latest_rolledout=OLD,
        traffic=(
            TrafficEntry(NEW if ready else OLD, 0, True, "latest", f"{TAG_URL}/latest"),
            TrafficEntry(OLD, 100, False, "prev", f"{TAG_URL}/prev"),
        ),
        mirrors_shadow=mirrors,
    )


def in_shadow(
    target: TargetObservation | None = None,
    *,
    mirror: ShadowMirror | None = None,
    smoked: bool = True,
) -> ReleaseObservation:
    """v2 in its shadow phase on a cluster (by default), with ``mirror`` in Git, after the smoke
    at the phase's start passed (``smoked=False``: before it)."""
    target = target or cluster_target()
    if smoked:
        return shadow_observation(target, mirror=mirror)
    return shadow_observation(target, mirror=mirror, analysis=None)


# -- the decision ----------------------------------------------------------------------------------


def test_the_default_smoke_comes_before_the_mirror() -> None:
    """The smoke (on by default) runs first, on the challenger's tag route: a challenger that
    errors is stopped before anything is mirrored to it, and its mirror is not committed."""
    action = decide(in_shadow(smoked=False), POLICY, 1005.0)
    assert isinstance(action, Smoke)
    assert action.record is not None
    assert action.record.smoke is None


def test_a_ready_challenger_on_a_cluster_gets_its_mirror_before_any_judgement() -> None:
    """With no mirror in Git, a ready challenger's next action is the mirror, even when due."""
    for now in (1005.0, 1031.0):
        assert decide(in_shadow(), POLICY, now) == StartMirror(OLD, NEW, 100.0)


def test_with_its_mirror_in_git_the_challenger_is_judged() -> None:
    """The mirror Git holds for this revision and share is not asked for again."""
    obs = in_shadow(mirror=ShadowMirror(NEW, 100.0))
    assert isinstance(decide(obs, POLICY, 1010.0), Wait)
    assert isinstance(decide(obs, POLICY, 1031.0), AnalyzeShadow)


@pytest.mark.parametrize(
    "mirror", [ShadowMirror("fd-predictor-00003", 100.0), ShadowMirror(NEW, 50.0)]
)
def test_a_mirror_for_another_revision_or_share_is_rewritten(mirror: ShadowMirror) -> None:
    """A mirror left for an earlier challenger, or another share, is replaced."""
    assert decide(in_shadow(mirror=mirror), POLICY, 1031.0) == StartMirror(OLD, NEW, 100.0)


def test_the_local_target_mirrors_by_itself() -> None:
    """A target that mirrors by itself never gets a mirror in Git: the challenger is judged."""
    assert isinstance(
        decide(in_shadow(cluster_target(mirrors=True)), POLICY, 1031.0), AnalyzeShadow
    )


def test_no_mirror_while_the_challenger_loads() -> None:
    """Before the challenger's revision is ready there is nothing to mirror to."""
    action = decide(in_shadow(cluster_target(ready=False)), POLICY, 1010.0)
    assert isinstance(action, Wait)
    assert "loading" in action.reason


def test_no_mirror_without_a_primary_at_100_percent() -> None:
    """The mirror waits for KServe's split, and rolls back once the deadline passed."""
    alone = replace(cluster_target(), traffic=(TrafficEntry(NEW, 100, True, "latest"),))
    assert isinstance(decide(in_shadow(alone), POLICY, 1010.0), Wait)
    late = decide(in_shadow(alone), POLICY, 1000.0 + POLICY.progress_deadline_seconds + 1)
    assert isinstance(late, StartRollback)
    assert "beside a primary at 100%" in late.reason


def test_the_mirror_commit_gets_its_own_time_to_sync() -> None:
    """A mirror committed near the deadline waits for its sync as long as a pin commit does."""
    deadline = POLICY.progress_deadline_seconds
    unsynced = replace(cluster_target(), synced_revision="d" * 40)
    obs = replace(
        in_shadow(unsynced, mirror=ShadowMirror(NEW, 100.0)),
        shadow_mirror_changed_at=1000.0 + deadline - 10,
    )
    assert isinstance(decide(obs, POLICY, 1000.0 + deadline + 60), Wait)
    late = decide(obs, POLICY, 1000.0 + 2 * deadline)
    assert isinstance(late, StartRollback)
    assert "did not sync" in late.reason


def test_a_mirror_outside_a_shadow_phase_is_removed() -> None:
    """Git never keeps a mirror once the pin left its shadow phase (an edit by hand)."""
    obs = replace(
        in_shadow(mirror=ShadowMirror(NEW, 100.0)),
        pin=PinnedRelease("fd", 2, "s3://m/2", "run", 1, 10),
        shadow_percent=None,
    )
    action = decide(obs, POLICY, 1031.0)
    assert isinstance(action, StopMirror)
    assert "not in a shadow phase" in action.reason


def at_first_step(*, requires_pruning: tuple[str, ...] = ()) -> ReleaseObservation:
    """v2 serving its first 10 % after the shadow phase, the Application reporting what it
    has not pruned."""
    target = replace(
        cluster_target(),
        traffic=(TrafficEntry(NEW, 10, True, "latest"), TrafficEntry(OLD, 90, False, "prev")),
        requires_pruning=requires_pruning,
    )
    return replace(
        in_shadow(target),
        pin=PinnedRelease("fd", 2, "s3://m/2", "run", 1, 10),
        shadow_percent=None,
    )


def test_a_mirror_the_cluster_still_runs_holds_the_canary_then_rolls_back() -> None:
    """Production's Application does not prune: the removed mirror stays live and sends every
    request to the primary, so the canary is not judged (its clients would never reach it);
    after the progress deadline it is rolled back, the reason naming the object and the fix."""
    obs = at_first_step(requires_pruning=("ConfigMap/other", "VirtualService/fd-shadow"))
    held = decide(obs, POLICY, 1031.0)
    assert isinstance(held, Wait)
    assert held.reason.startswith("VirtualService/fd-shadow left Git but is still live")
    assert "with prune" in held.reason
    late = decide(obs, POLICY, 1000.0 + POLICY.progress_deadline_seconds + 1)
    assert isinstance(late, StartRollback)
    assert "VirtualService/fd-shadow" in late.reason
    # Another object Argo CD has not pruned is not the rollout's business.
    other = decide(at_first_step(requires_pruning=("ConfigMap/other",)), POLICY, 1031.0)
    assert not isinstance(other, Wait | StartRollback)


def test_the_cluster_target_reports_what_argo_cd_has_not_pruned() -> None:
    """Argo CD lists live objects that Git no longer holds with ``requiresPruning``."""
    application = {
        "status": {
            "sync": {"status": "OutOfSync", "revision": HEAD},
            "resources": [
                {"kind": "InferenceService", "name": "fd", "status": "Synced"},
                {"kind": "VirtualService", "name": "fd-shadow", "requiresPruning": True},
            ],
        }
    }
    isvc = {"metadata": {"name": "fd", "namespace": "models-production"}, "status": {}}
    observed = observation_from(isvc, application)
    assert observed.requires_pruning == ("VirtualService/fd-shadow",)


@settings(max_examples=200, deadline=None)
@given(
    ready=st.booleans(),
    mirrors=st.booleans(),
    held=st.sampled_from([None, ShadowMirror(NEW, 100.0), ShadowMirror(NEW, 25.0)]),
    now=st.floats(min_value=1000.0, max_value=2000.0),
)
def test_the_mirror_is_asked_for_only_on_a_cluster_and_only_when_git_lacks_it(
    ready: bool, mirrors: bool, held: ShadowMirror | None, now: float
) -> None:
    """StartMirror comes only for a ready challenger, on a cluster, without its mirror in Git."""
    action = decide(
        in_shadow(cluster_target(ready=ready, mirrors=mirrors), mirror=held), POLICY, now
    )
    if isinstance(action, StartMirror):
        assert ready
        assert not mirrors
        assert held != ShadowMirror(NEW, 100.0)
    assert not isinstance(action, StopMirror)


# -- the commit and the edits ---------------------------------------------------------------------


def test_the_mirror_commit_says_what_is_copied_where() -> None:
    """Subject for Argo CD's UI, the revisions in the body, the mirror trailer."""
    environment = load_environment(ROOT, "production")
    release = environment.release("fraud-detector")
    obs = replace(
        in_shadow(replace(cluster_target(), namespace="models-production")),
        model="fraud-detector",
        environment="production",
        inference_service="fraud-detector",
        pin=PinnedRelease("fraud-detector", 3, "s3://m/3", "run", 2, 0),
    )
    primary, challenger = "fraud-detector-predictor-00004", "fraud-detector-predictor-00005"
    _, commit = start_mirror(
        ReleaseRef(environment, release), obs, StartMirror(primary, challenger, 100.0)
    )
    message = render_rollout_message(commit)
    assert message.splitlines()[0] == "fraud-detector v3: mirror 100% of v2's requests (production)"
    assert f"v2's revision {primary}" in message
    assert f"v3's revision {challenger}" in message
    assert "Sluice-Action: mirror" in message


PIN_TEXT = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: fraud-detector
  annotations:
    sluice.dev/model-version: "2"
spec:
  predictor:
    canaryTrafficPercent: {percent}
    model:
      storageUri: s3://m/2
"""


def overlay_tree(tmp_path: Path, *, shadow: bool) -> Path:
    """A copy of manifests/ whose staging pin holds v2, in its shadow phase or at 10 %."""
    shutil.copytree(ROOT / "manifests", tmp_path / "manifests")
    document = load_pin(PIN_TEXT.format(percent=0 if shadow else 10), source="pin")
    set_shadow_annotations(document, 100.0 if shadow else None)
    (tmp_path / "manifests/overlays/staging/fraud-detector.yaml").write_text(dump_pin(document))
    return tmp_path


def staging_mirror() -> dict[str, Any]:
    return mirror_virtual_service(
        "fraud-detector",
        "models-staging",
        "fraud-detector-predictor-00001",
        "fraud-detector-predictor-00002",
        100,
    )


def test_a_stale_mirror_decision_never_writes_after_the_phase_ended(tmp_path: Path) -> None:
    """The mirror edit compares and swaps: a pin out of its shadow phase refuses it."""
    tree = overlay_tree(tmp_path, shadow=False)
    overlay = "manifests/overlays/staging"
    with pytest.raises(GitConflict, match="no longer has v2 in its shadow phase"):
        mirror_edit(f"{overlay}/fraud-detector.yaml", 2, overlay, staging_mirror())(tree)
    assert not (tree / overlay / SHADOW_FILE).exists()


def test_ending_the_phase_removes_the_mirror_and_only_sluices(tmp_path: Path) -> None:
    """The pin edit and the removal land together; a file Sluice did not write stays."""
    tree = overlay_tree(tmp_path, shadow=True)
    overlay = "manifests/overlays/staging"
    pin = f"{overlay}/fraud-detector.yaml"
    kustomization = (tree / overlay / "kustomization.yaml").read_bytes()
    mirror_edit(pin, 2, overlay, staging_mirror())(tree)
    without_mirror(weight_edit(pin, 2, 10, expect=0), overlay)(tree)
    assert not (tree / overlay / SHADOW_FILE).exists()
    assert (tree / overlay / "kustomization.yaml").read_bytes() == kustomization
    assert "canaryTrafficPercent: 10" in (tree / pin).read_text()
    foreign = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: mine\n"
    (tree / overlay / SHADOW_FILE).write_text(foreign)  # unlisted: not Sluice's mirror
    without_mirror(weight_edit(pin, 2, 50, expect=10), overlay)(tree)
    assert (tree / overlay / SHADOW_FILE).read_text() == foreign


# -- through Git, with a cluster played by InstantCluster ------------------------------------------

ENV = "staging"
OVERLAY = f"manifests/overlays/{ENV}"
PIN = f"{OVERLAY}/fraud-detector.yaml"
MIRROR = f"{OVERLAY}/{SHADOW_FILE}"
ISVC = "fraud-detector"


class Crash(BaseException):
    """The controller's process dies here (nothing in Sluice may catch it)."""


def dying_workspace(remote: MemoryRemote, when: str | None) -> MemoryReleaseRepository:
    """A controller's workspace whose next commit kills it, before its push or after it."""
    workspace = MemoryReleaseRepository(remote=remote)

    def die(*_: str) -> None:
        raise Crash(str(when))

    if when == "before push":
        workspace.before_push = die
    elif when == "after push":
        workspace.after_push = die
    return workspace


class SelfMirroring:
    """The cluster as the local target reports it: its router mirrors by itself."""

    def __init__(self, inner: InstantCluster) -> None:
        self.inner = inner

    def observe(self, environment: str, inference_service: str) -> TargetObservation:
        return replace(self.inner.observe(environment, inference_service), mirrors_shadow=True)


@dataclass
class World:
    """A GitOps remote where v1 serves staging and v2 was just pinned in its shadow phase."""

    root: Path
    remote: MemoryRemote
    model: str
    registry: MlflowRegistry
    clock: ManualClock
    cluster: InstantCluster
    base: str = ""

    def reconciler(self, *, local: bool = False, dying: str | None = None) -> Reconciler:
        """A freshly started controller (a new clone of the remote)."""
        return Reconciler(
            workspace=dying_workspace(self.remote, dying),
            registry=self.registry,
            target=SelfMirroring(self.cluster) if local else self.cluster,
            # Locust played by the fake: the smoke at the phase's start (on by default) sends
            # the versions' input examples to the challenger's tag route.
            analyzer=Analyzer(
                self.registry, None, ScriptedLoad(self.cluster), sleep=self.clock.sleep
            ),
            notifier=RecordingNotifier(),
            clock=self.clock,
        )

    def run(
        self, reconciler: Reconciler, until: Callable[[PassReport], bool], passes: int = 20
    ) -> list[PassReport]:
        """Passes, 5 s apart, up to the first whose report ``until`` accepts."""
        reports: list[PassReport] = []
        for _ in range(passes):
            reports.append(reconciler.reconcile(ENV, self.model))
            self.clock.advance(5.0)
            if until(reports[-1]):
                return reports
        raise AssertionError(f"never reached: {[f'{r.action}: {r.detail}' for r in reports]}")

    def act(self, action: Action, *, dying: str | None = None) -> None:
        """Carry out ``action`` on a fresh observation, as a pass that decided it would."""
        reconciler = self.reconciler(dying=dying)
        obs = reconciler.observe(ENV, self.model)
        ref = load_release(reconciler.workspace, ENV, self.model)
        actuator = Actuator(
            ref, reconciler.workspace, self.registry, RecordingNotifier(), RolloutMetrics()
        )
        actuator.act(action, obs, self.clock())

    def commits(self) -> list[tuple[str, str]]:
        """(subject, Sluice-Action) of every commit since the shadow pin, oldest first."""
        log = self.remote.log("main")
        since = log[: [c.sha for c in log].index(self.base)]
        return [(c.subject, c.trailers.get("Sluice-Action", "")) for c in reversed(since)]

    def show(self, path: str, sha: str | None = None) -> str:
        """A file of main's tip (or of commit ``sha``)."""
        return self.remote.commits[sha or self.remote.branches["main"]].files[path]

    def changed(self) -> list[str]:
        """``status<TAB>path`` of each file the branch tip's commit changed."""
        tip = self.remote.log("main")[0]
        before = self.remote.commits[tip.parents[0]].files
        return [
            f"{'A' if path not in before else 'D' if path not in tip.files else 'M'}\t{path}"
            for path in sorted({*before, *tip.files})
            if before.get(path) != tip.files.get(path)
        ]


def pin_edit(
    model: str, version: int, previous: int | None, canary: int | None, *, shadow: bool
) -> Callable[[Path], None]:
    """Pin ``version`` the way a merged proposal does."""

    def edit(tree: Path) -> None:
        document = load_pin((tree / PIN).read_text(), source=PIN)
        uri = f"s3://sluice-models/{model}/{version}"
        apply_release(document, ReleasePin(model, version, uri, None, previous, canary), source=PIN)
        set_shadow_annotations(document, 100.0 if shadow else None)
        (tree / PIN).write_text(dump_pin(document))

    return edit


@pytest.fixture
def world(mlflow_server: MlflowService, tmp_path: Path) -> World:
    """v1 serving staging on the fake cluster, then v2 pinned in its shadow phase."""

    model = f"mirror-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(mlflow_server.tracking_uri)
    client.create_registered_model(model)
    run = client.create_run(client.create_experiment(model)).info
    example = {"columns": ["amount", "hour"], "data": [[12.5, 3], [80.0, 22]]}
    for version in (1, 2):
        # An input example, which the smoke sends, but no model: nothing here loads one.
        client.log_text(run.run_id, json.dumps(example), f"model-{version}/input_example.json")
        client.create_model_version(model, f"{run.artifact_uri}/model-{version}", run.run_id)
    clock = ManualClock(1_750_000_000.0)
    # Commits are dated by the fake clock, so the rollout's deadlines and intervals agree.
    remote = MemoryRemote(manifest_files(model), clock=clock)
    cluster = InstantCluster(remote, ready_after=1, clock=clock)
    world = World(
        tmp_path, remote, model, MlflowRegistry(mlflow_server.tracking_uri), clock, cluster
    )
    author = MemoryReleaseRepository(remote=remote, author="a person")
    author.sync()

    def serve_v1_with_a_shadow_policy(tree: Path) -> None:
        sluice = tree / OVERLAY / "sluice.yaml"
        sluice.write_text(sluice.read_text().replace("rollout:\n", "rollout:\n  shadow: {}\n", 1))
        pin_edit(model, 1, None, None, shadow=False)(tree)

    author.commit_and_push(
        branch="main", base="main", edit=serve_v1_with_a_shadow_policy, message="v1"
    )
    for _ in range(3):  # Argo CD syncs v1 and KServe makes its revision ready
        cluster.observe(ENV, ISVC)
    clock.advance(60.0)
    author.sync()
    outcome = author.commit_and_push(
        branch="main", base="main", edit=pin_edit(model, 2, 1, 0, shadow=True), message="v2 shadow"
    )
    world.base = outcome.sha
    return world


def judged(report: PassReport) -> bool:
    """The shadow judge looked (a Hold after the smoke is the smoke's, not a judgement)."""
    smoke = any(r.gate == "smoke" for r in report.results)
    return report.action == "AnalyzeShadow" or (report.action == "Hold" and not smoke)


def mirrored(world: World) -> list[PassReport]:
    """Passes until the smoke passed, the mirror is in Git, synced, and the challenger judged
    once."""
    return world.run(world.reconciler(), judged)


@pytest.mark.slow
def test_a_cluster_gets_the_mirror_in_one_commit_and_never_again(world: World) -> None:
    """The smoke passes on v2's tag route first (nothing mirrored to it yet), then one commit
    writes the VirtualService for v2's revision; later passes only judge."""
    reports = mirrored(world)
    assert [r.action for r in reports if r.commit] == ["StartMirror"]
    assert world.cluster.sync_requests == [ENV]  # the commit pushed, Argo CD is asked to sync
    steps = [(r.action, [g.gate for g in r.results]) for r in reports if r.action != "Wait"]
    assert steps[:2] == [("Hold", ["smoke"]), ("StartMirror", [])], steps
    assert reports[[r.action for r in reports].index("Hold")].results[0].verdict.value == "pass"
    more = [world.reconciler().reconcile(ENV, world.model) for _ in range(3)]
    assert all(r.commit is None for r in more)
    assert world.commits() == [
        (f"{world.model} v2: mirror 100% of v1's requests (staging)", "mirror")
    ]
    document = yaml.safe_load(world.show(MIRROR))
    assert document == mirror_virtual_service(
        ISVC, "models-staging", f"{ISVC}-predictor-00001", f"{ISVC}-predictor-00002", 100
    )
    assert f"  - {SHADOW_FILE}\n" in world.show(f"{OVERLAY}/kustomization.yaml")


@pytest.mark.slow
def test_the_overlay_with_the_mirror_renders_and_validates(world: World, tmp_path: Path) -> None:
    """`kubectl kustomize` of the committed overlay gives a valid InferenceService and mirror."""
    mirrored(world)
    clone = tmp_path / "check"
    for path, text in world.remote.files("main").items():
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        (clone / path).write_text(text)
    rendered = {d["kind"]: d for d in validate_rendered(clone / OVERLAY)}
    assert set(rendered) == {"InferenceService", "VirtualService"}
    validate_virtual_service(rendered["VirtualService"], source="rendered")
    assert rendered["VirtualService"]["metadata"]["namespace"] == "models-staging"


@pytest.mark.slow
def test_the_local_target_never_gets_a_mirror_in_git(world: World) -> None:
    """With a target that mirrors by itself, the challenger is judged and Git is untouched."""
    world.run(world.reconciler(local=True), judged)
    assert world.commits() == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("action", "kind"),
    [(EndShadow(10, ()), "step"), (StartRollback("shadow/errors: 3 of 400 failed"), "rollback")],
)
def test_the_commit_that_ends_the_shadow_removes_the_mirror(
    world: World, action: Action, kind: str
) -> None:
    """The first canary step and the rollback each remove the mirror in their own commit."""
    mirrored(world)
    kustomization = world.show(f"{OVERLAY}/kustomization.yaml", world.base)
    world.act(action)
    assert [a for _, a in world.commits()] == ["mirror", kind]
    assert sorted(world.changed()) == [
        f"D\t{MIRROR}",
        f"M\t{PIN}",
        f"M\t{OVERLAY}/kustomization.yaml",
    ]
    assert world.show(f"{OVERLAY}/kustomization.yaml") == kustomization
    assert "sluice.dev/phase" not in world.show(PIN)
    body = world.remote.log("main")[0].message
    assert f"The mirror ({SHADOW_FILE}) is removed in this commit." in body
    report = world.reconciler().reconcile(ENV, world.model)
    assert report.action != "StopMirror"


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before push", "after push"])
def test_a_crash_in_the_mirror_commit_resumes_to_one_commit(world: World, when: str) -> None:
    """Killed while committing the mirror, a restarted controller ends with it in Git once."""
    reconciler = world.reconciler(dying=when)
    with pytest.raises(Crash):
        world.run(reconciler, lambda r: False)
    mirrored(world)
    assert [a for _, a in world.commits()] == ["mirror"]
    assert yaml.safe_load(world.show(MIRROR))["metadata"]["annotations"] == {
        "sluice.dev/phase": "shadow",
        "sluice.dev/challenger": f"{ISVC}-predictor-00002",
    }


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before push", "after push"])
def test_a_crash_in_the_step_commit_resumes_without_a_mirror(world: World, when: str) -> None:
    """Killed while committing the first step, a rerun lands pin and removal once, together."""
    mirrored(world)
    with pytest.raises(Crash):
        world.act(EndShadow(10, ()), dying=when)
    if when == "before push":
        assert [a for _, a in world.commits()] == ["mirror"]
        world.act(EndShadow(10, ()))
    assert [a for _, a in world.commits()] == ["mirror", "step"]
    assert sorted(world.changed()) == [
        f"D\t{MIRROR}",
        f"M\t{PIN}",
        f"M\t{OVERLAY}/kustomization.yaml",
    ]
    report = world.reconciler().reconcile(ENV, world.model)
    assert report.action not in ("StartMirror", "StopMirror")
    assert report.commit is None
