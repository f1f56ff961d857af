"""The rollout verifies the pinned version's provenance again before each judgement: a merged
pin whose artifact is swapped afterwards is rolled back and quarantined, the rollback saying
which file changed.

A reconciler-level test: the GitOps remote, registry, cluster, metrics and Locust are the
in-memory fakes of :mod:`controller.testing`; the verification is the real one, over the
in-memory attestation store, with a key committed to the remote. The same story runs once end
to end on the local stack, through `sluice rollout` with real MLflow and signing
(``tests/test_rollout_local.py``); the cases (warn, an untouched artifact) stay here. The
decision's rule itself is tested on plain observations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from support.envelopes import CI_PUBLIC, FILES, envelope
from support.gitops_repo import manifest_files

from controller.manifests.manifest import ReleasePin, apply_release, dump_pin, load_pin
from controller.rollout.actions import Finish, Outcome, StartRollback
from controller.rollout.analysis import Analyzer
from controller.rollout.decide import decide
from controller.rollout.observation import ReleaseObservation
from controller.rollout.pass_report import PassReport
from controller.rollout.policy import RolloutPolicy
from controller.rollout.reconcile import Reconciler
from controller.target_types import TargetObservation
from controller.testing import (
    InstantCluster,
    ManualClock,
    MemoryRegistry,
    MemoryReleaseRepository,
    MemoryRemote,
    RecordingNotifier,
    ScriptedLoad,
    ScriptedMetrics,
)
from controller.testing.attestations import MemoryAttestations

MODEL = "fraud-detector"
ENV = "staging"
PIN = f"manifests/overlays/{ENV}/fraud-detector.yaml"
POLICY = "\nprovenance:\n  trustedKeys: [keys/ci.pub]\n"
ROW: dict[str, object] = {"amount": 12.5, "hour": 3}
SWAPPED = "v2: provenance subjects check failed: model.pkl has sha256"


def _pin(version: int, previous: int | None, canary: int | None) -> Callable[[Path], None]:
    def edit(tree: Path) -> None:
        document = load_pin((tree / PIN).read_text(), source=PIN)
        uri = f"s3://sluice-models/{MODEL}/{version}"
        apply_release(document, ReleasePin(MODEL, version, uri, None, previous, canary), source=PIN)
        (tree / PIN).write_text(dump_pin(document))

    return edit


class World:
    """v1 serves staging, which requires provenance; v2 (signed) was merged at its first
    step, 10 %."""

    def __init__(self, policy: str = POLICY) -> None:
        self.clock = ManualClock(1_750_000_000.0)
        files = manifest_files(MODEL)
        files[f"manifests/overlays/{ENV}/sluice.yaml"] += policy
        files["keys/ci.pub"] = CI_PUBLIC.decode()
        self.remote = MemoryRemote(files, clock=self.clock)
        self.cluster = InstantCluster(self.remote, ready_after=1, clock=self.clock)
        self.registry = MemoryRegistry()
        self.attestations = MemoryAttestations()
        for version in (1, 2):
            self.registry.register(
                MODEL, alias="champion" if version == 1 else "challenger", inputs=[ROW]
            )
            self.attestations.record(MODEL, version, FILES, envelope(MODEL, version))
        author = MemoryReleaseRepository(remote=self.remote, author="a person")
        author.sync()
        author.commit_and_push(branch="main", base="main", edit=_pin(1, None, None), message="v1")
        for _ in range(3):  # Argo CD syncs v1 and KServe makes its revision ready
            self.cluster.observe(ENV, "fraud-detector")
        self.clock.advance(60.0)
        author.sync()
        author.commit_and_push(branch="main", base="main", edit=_pin(2, 1, 10), message="v2")

    def reconciler(self) -> Reconciler:
        return Reconciler(
            workspace=MemoryReleaseRepository(remote=self.remote),
            registry=self.registry,
            target=self.cluster,
            analyzer=Analyzer(
                self.registry, ScriptedMetrics(self.cluster), ScriptedLoad(self.cluster),
                sleep=self.clock.sleep,
            ),
            notifier=RecordingNotifier(),
            clock=self.clock,
            attestations=self.attestations,
        )  # fmt: skip

    def run(self, until: Callable[[PassReport], bool], passes: int = 40) -> list[PassReport]:
        """Passes, 5 s apart, up to the first whose report ``until`` accepts."""
        reconciler, reports = self.reconciler(), []
        for _ in range(passes):
            reports.append(reconciler.reconcile(ENV, MODEL))
            self.clock.advance(5.0)
            if until(reports[-1]):
                return reports
        raise AssertionError(f"never reached: {[f'{r.action}: {r.detail}' for r in reports]}")


def test_an_artifact_swapped_after_the_merge_is_rolled_back_and_quarantined() -> None:
    world = World()
    world.attestations.tamper(MODEL, 2, "model.pkl", b"another model")
    reports = world.run(lambda r: r.finished)
    rollback = next(r for r in reports if r.action == "StartRollback")
    assert SWAPPED in rollback.detail
    assert not any(r.action == "Analyze" for r in reports)  # never judged, never advanced
    assert reports[-1].outcome is Outcome.ROLLED_BACK
    tags = world.registry.resolve(MODEL, version=2).tags
    assert SWAPPED in tags["sluice.quarantined"]
    assert "the artifact changed after it was signed" in tags["sluice.quarantined"]
    assert tags[f"sluice.provenance.{ENV}"].startswith("refused: model.pkl has sha256")
    (commit,) = [
        c for c in world.remote.log("main") if c.trailers.get("Sluice-Action") == "rollback"
    ]
    assert SWAPPED in commit.message  # the rollback commit says why, naming the file


def test_an_untouched_artifact_is_judged_as_usual() -> None:
    world = World()
    reports = world.run(lambda r: bool(r.results) or r.finished)
    assert "locust" in [g.gate for g in reports[-1].results]  # judged
    assert "StartRollback" not in [r.action for r in reports]
    assert "sluice.quarantined" not in world.registry.resolve(MODEL, version=2).tags


def test_under_warn_a_swapped_artifact_is_recorded_and_the_rollout_goes_on() -> None:
    world = World(POLICY + "  mode: warn\n")
    world.attestations.tamper(MODEL, 2, "model.pkl", b"another model")
    reports = world.run(lambda r: bool(r.results) or r.finished)
    assert "locust" in [g.gate for g in reports[-1].results]  # judged as usual
    tags = world.registry.resolve(MODEL, version=2).tags
    assert tags[f"sluice.provenance.{ENV}"].startswith("warned: model.pkl has sha256")
    assert "sluice.quarantined" not in tags


def _at_step(**changes: object) -> ReleaseObservation:
    from controller.manifests.manifest import PinnedRelease

    pin = PinnedRelease(
        model=MODEL, version=2, storage_uri="s3://m/2", run_id=None, previous_version=1,
        canary_percent=10,
    )  # fmt: skip
    obs = ReleaseObservation(
        model=MODEL, environment=ENV, inference_service=MODEL, pin=pin, head="h",
        pin_commit="h", pin_changed_at=0.0, target=TargetObservation(exists=True),
    )  # fmt: skip
    return replace(obs, **changes)  # type: ignore[arg-type]


def test_a_failed_verification_rolls_back_from_a_step_and_ends_a_first_deploy_failed() -> None:
    failure = f"{MODEL} {SWAPPED}"
    action = decide(_at_step(provenance_failure=failure), RolloutPolicy(), 100.0)
    assert action == StartRollback(failure)
    first = _at_step(provenance_failure=failure)
    first = replace(first, pin=replace(first.pin, previous_version=None, canary_percent=None))
    ended = decide(first, RolloutPolicy(), 100.0)
    assert isinstance(ended, Finish)
    assert ended.outcome is Outcome.FAILED
    assert ended.reason.startswith(failure)
    rolling_back = _at_step(provenance_failure=failure)
    rolling_back = replace(rolling_back, pin=replace(rolling_back.pin, canary_percent=0))
    assert not isinstance(decide(rolling_back, RolloutPolicy(), 100.0), StartRollback)
