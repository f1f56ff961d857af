"""The rollout records signed evidence: a promotion's ``canary`` piece and a passed shadow
phase's ``shadow`` piece, each once, each verifying against the environment's controller key.

Reconciler-level: the GitOps remote, registry, cluster, metrics, Locust and the evidence store
are the in-memory fakes of :mod:`controller.testing`; signing and verification are the real
ones. A crash between the promotion's commit and its record is played by a store that dies
(a BaseException, as a killed process) and a fresh controller that carries on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from in_toto.models.metadata import Envelope as InTotoEnvelope
from in_toto.models.metadata import Metadata
from support.envelopes import FILES, envelope
from support.gitops_repo import manifest_files
from support.release_repositories import GitHarness

from controller.analysis_types import GateResult, Verdict
from controller.errors import ConfigError, RegistryUnavailable
from controller.evidence.record import check_evidence
from controller.evidence.signing import EVIDENCE_KEY_ENV, load_evidence_signer
from controller.evidence.statement import evidence_tag
from controller.lease import LeaseKeeper
from controller.manifests.manifest import (
    ReleasePin,
    apply_release,
    dump_pin,
    load_pin,
    set_shadow_annotations,
)
from controller.ports import ChangeInfo
from controller.provenance.signing import generate_keypair, load_public_key
from controller.rollout.act import Actuator
from controller.rollout.actions import EndShadow, Outcome, Promote
from controller.rollout.analysis import Analyzer
from controller.rollout.evidence_recorder import EvidenceRecorder, recorder_from_settings
from controller.rollout.evidence_trailer import (
    EVIDENCE_TRAILER,
    CarriedEvidence,
    carried_evidence,
    promotion_evidence,
    rollout_evidence,
)
from controller.rollout.messages import RolloutCommit, render_rollout_message
from controller.rollout.observe import load_release
from controller.rollout.pass_report import PassReport
from controller.rollout.reconcile import Reconciler
from controller.rollout.telemetry import RolloutMetrics
from controller.settings import load_settings
from controller.testing import (
    InstantCluster,
    ManualClock,
    MemoryLeaseStore,
    MemoryRegistry,
    MemoryReleaseRepository,
    MemoryRemote,
    RecordingNotifier,
    ScriptedLoad,
    ScriptedMetrics,
)
from controller.testing.attestations import MemoryAttestations
from controller.testing.evidence import MemoryEvidence

MODEL = "fraud-detector"
ENV = "staging"
PIN = f"manifests/overlays/{ENV}/fraud-detector.yaml"
EVIDENCE_POLICY = "\nevidence:\n  controllerKeys: [keys/staging-controller.pub]\n"
ROW: dict[str, object] = {"amount": 12.5, "hour": 3}
PRIVATE, PUBLIC = generate_keypair()
STEPS = [10, 50, 100]  # the staging overlay's rollout.steps


class Crash(BaseException):
    """The controller's process dies here (nothing in Sluice may catch it)."""


class Store(MemoryEvidence):
    """The in-memory evidence store, counting records; ``dying`` records die (a Crash) or
    fail (a SluiceError) before they are kept, one each, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[str, str]] = []
        self.dying: list[BaseException] = []

    def record(self, name: str, version: int, line: bytes, *, kind: str, environment: str) -> str:
        if self.dying:
            raise self.dying.pop(0)
        self.records.append((environment, kind))
        return super().record(name, version, line, kind=kind, environment=environment)


class DyingRegistry(MemoryRegistry):
    """The registry, whose first ``set_alias`` dies when ``die_at_alias`` is set."""

    die_at_alias = False

    def set_alias(self, name: str, alias: str, version: int) -> None:
        if self.die_at_alias:
            self.die_at_alias = False
            raise Crash("registry.set_alias (before)")
        super().set_alias(name, alias, version)


def _pin(
    version: int, previous: int | None, canary: int | None, *, uri: str = "", shadow: bool = False
) -> Callable[[Path], None]:
    def edit(tree: Path) -> None:
        document = load_pin((tree / PIN).read_text(), source=PIN)
        where = uri or f"s3://sluice-models/{MODEL}/{version}"
        release = ReleasePin(MODEL, version, where, None, previous, canary)
        apply_release(document, release, source=PIN)
        set_shadow_annotations(document, 100.0 if shadow else None)
        (tree / PIN).write_text(dump_pin(document))

    return edit


class World:
    """v1 serves staging, whose sluice.yaml names its controller's key; v2 (signed, its
    artifact in the attestation store) is merged at its first step (``uri`` makes it
    behave otherwise: a ``bad`` marker fails its gates), or in its shadow phase."""

    def __init__(
        self, *, uri: str = "", shadow: bool = False, policy: str = EVIDENCE_POLICY
    ) -> None:
        self.clock = ManualClock(1_750_000_000.0)
        files = manifest_files(MODEL)
        files[f"manifests/overlays/{ENV}/sluice.yaml"] += policy
        files["keys/staging-controller.pub"] = PUBLIC.decode()
        self.remote = MemoryRemote(files, clock=self.clock)
        self.cluster = InstantCluster(self.remote, ready_after=1, clock=self.clock)
        self.registry = DyingRegistry()
        self.attestations = MemoryAttestations()
        self.store = Store()
        self.leases = MemoryLeaseStore()
        for version in (1, 2):
            self.registry.register(
                MODEL, alias="champion" if version == 1 else "challenger", inputs=[ROW]
            )
            self.attestations.record(MODEL, version, FILES, envelope(MODEL, version))
            self.store.add_version(MODEL, version)
        author = MemoryReleaseRepository(remote=self.remote, author="a person")
        author.sync()
        author.commit_and_push(branch="main", base="main", edit=_pin(1, None, None), message="v1")
        for _ in range(3):  # Argo CD syncs v1 and KServe makes its revision ready
            self.cluster.observe(ENV, MODEL)
        self.clock.advance(60.0)
        author.sync()
        first = 0 if shadow else 10
        edit = _pin(2, 1, first, uri=uri, shadow=shadow)
        author.commit_and_push(branch="main", base="main", edit=edit, message="v2")

    def recorder(self) -> EvidenceRecorder:
        signer = load_evidence_signer({EVIDENCE_KEY_ENV: PRIVATE.decode()})
        assert signer is not None
        return EvidenceRecorder(self.store, self.attestations, signer, controller="staging-1")

    def reconciler(self, *, signs: bool = True, holder: str | None = None) -> Reconciler:
        """A fresh controller (its own clone of the remote), with the key unless ``signs`` is
        False, and a lease in the shared store when it is named ``holder``."""
        lease = None
        if holder is not None:
            lease = LeaseKeeper(self.leases, duration_seconds=30.0, holder=holder,
                                clock=self.clock)  # fmt: skip
        return Reconciler(
            workspace=MemoryReleaseRepository(remote=self.remote),
            registry=self.registry,
            target=self.cluster,
            analyzer=_analyzer(self),
            notifier=RecordingNotifier(),
            clock=self.clock,
            attestations=self.attestations,
            evidence=self.recorder() if signs else None,
            lease=lease,
        )

    def run(
        self,
        reconcilers: list[Reconciler],
        until: Callable[[PassReport], bool] = lambda r: r.finished,
        passes: int = 60,
    ) -> list[PassReport]:
        """Passes 5 s apart, taking turns among ``reconcilers``, up to the first report
        ``until`` accepts."""
        reports: list[PassReport] = []
        for turn in range(passes):
            reports.append(reconcilers[turn % len(reconcilers)].reconcile(ENV, MODEL))
            self.clock.advance(5.0)
            if until(reports[-1]):
                return reports
        raise AssertionError(f"never reached: {[f'{r.action}: {r.detail}' for r in reports]}")

    def checks(self) -> list[Any]:
        keys = {ENV: [load_public_key(PUBLIC, "staging-controller.pub")]}
        return check_evidence(
            self.store, self.attestations, model=MODEL, version=2, trusted_keys_by_env=keys
        )

    def commit_trailers(self, action: str) -> dict[str, str]:
        (commit,) = [c for c in self.remote.log("main") if c.trailers.get("Sluice-Action") == action
                     and EVIDENCE_TRAILER in c.trailers]  # fmt: skip
        return commit.trailers


def _analyzer(world: World) -> Analyzer:
    return Analyzer(
        world.registry, ScriptedMetrics(world.cluster), ScriptedLoad(world.cluster),
        sleep=world.clock.sleep,
    )  # fmt: skip


def _predicate(check: Any) -> dict[str, Any]:
    return dict(check.predicate)


def test_a_promotion_records_one_canary_piece_that_verifies(tmp_path: Path) -> None:
    world = World()
    reports = world.run([world.reconciler()])
    assert reports[-1].outcome is Outcome.PROMOTED
    assert world.store.records == [(ENV, "canary")]
    (check,) = world.checks()
    assert check.verified, check.line()
    predicate = _predicate(check)
    assert (predicate["model"], predicate["version"], predicate["environment"]) == (MODEL, 2, ENV)
    assert predicate["controller"]["id"] == "staging-1"
    canary = predicate["canary"]
    assert canary["steps"] == STEPS
    assert canary["promotedFrom"] == 50
    assert canary["looks"] >= 1
    assert {g["verdict"] for g in canary["gates"]} == {"pass"}
    assert "locust" in [g["name"] for g in canary["gates"]]
    # Git keeps what was signed: the promote commit's trailer holds the same body.
    carried = carried_evidence(world.commit_trailers("promote"))
    assert carried == CarriedEvidence("canary", canary)
    assert world.registry.resolve(MODEL, alias="champion").version == 2
    # The in-toto library alone verifies the logged envelope against the controller's key.
    (line,) = world.store.evidence(MODEL, 2)
    (tmp_path / "canary.intoto.jsonl").write_bytes(line)
    loaded = Metadata.load(str(tmp_path / "canary.intoto.jsonl"))
    assert isinstance(loaded, InTotoEnvelope)
    public = load_public_key(PUBLIC, "staging-controller.pub")
    loaded.verify_signature({"keyid": public.keyid, **public.to_dict()})
    assert json.loads(loaded.payload)["predicate"]["canary"] == canary


@pytest.mark.parametrize(
    "dies",
    ["at the record, after the promote commit", "when the store is down", "at the alias"],
)
def test_a_crash_between_the_promotion_and_its_record_still_records_it_once(dies: str) -> None:
    """Killed after the promote commit (before the record, or after it but before the alias
    moved), or with the store down at the promotion, a fresh controller records the piece
    from the commit: one record in all, and it verifies."""
    world = World()
    if dies == "at the alias":
        world.registry.die_at_alias = True
    elif dies == "when the store is down":
        world.store.dying.append(RegistryUnavailable("MLflow at http://mlflow did not answer"))
    else:
        world.store.dying.append(Crash("evidence.record (before)"))
    first = world.reconciler()
    try:
        world.run([first])
    except Crash:
        pass
    else:
        assert dies == "when the store is down"
    promote = world.commit_trailers("promote")
    assert promote  # the crash came after the promote commit
    reports = world.run([world.reconciler()])
    assert reports[-1].outcome is Outcome.PROMOTED
    assert world.store.records == [(ENV, "canary")]
    (check,) = world.checks()
    assert check.verified, check.line()
    assert carried_evidence(promote) == CarriedEvidence("canary", _predicate(check)["canary"])


def test_two_controllers_record_a_promotion_once_after_its_holder_died() -> None:
    """The lease's holder dies between the promote commit and the record; two controllers
    with the key then pass in turn: one takes the lapsed lease over and records, once."""
    world = World()
    world.store.dying.append(Crash("evidence.record (before)"))
    with pytest.raises(Crash):
        world.run([world.reconciler(holder="staging-1")])
    pair = [world.reconciler(holder="staging-2"), world.reconciler(holder="staging-3")]
    reports = world.run(pair)
    assert reports[-1].outcome is Outcome.PROMOTED
    assert "Follow" in [r.action for r in reports]  # one followed while the other acted
    assert world.store.records == [(ENV, "canary")]
    assert [check.verified for check in world.checks()] == [True]


def test_git_keeps_the_trailer_whole(tmp_path: Path) -> None:
    """Real Git reads the promote commit's Sluice-Evidence trailer back as it was written."""
    carried = CarriedEvidence(
        "canary",
        {"steps": STEPS, "promotedFrom": 50, "looks": 2, "gates": [
            {"name": "locust", "verdict": "pass", "summary": "locust: 0 of 50 failed — p99 41 ms",
             "values": {"p99_ms": 41.25, "failures": 0.0, "unmeasured": None}},
        ]},
    )  # fmt: skip
    message = render_rollout_message(
        RolloutCommit(MODEL, 2, ENV, "promote", "canary 50% → 100%, promoted", "Promoted.",
                      trailers=(carried.trailer(),))
    )  # fmt: skip
    harness = GitHarness(tmp_path)
    harness.push("main", {PIN: "pin"}, message)
    workspace = harness.workspace()
    workspace.sync()
    change = workspace.last_change("main", PIN)
    assert change is not None
    assert change.trailers["Sluice-Action"] == "promote"
    assert carried_evidence(change.trailers) == carried


def test_a_rollback_records_no_evidence() -> None:
    world = World(uri=f"s3://sluice-models/{MODEL}/bad-2")
    reports = world.run([world.reconciler()])
    assert reports[-1].outcome is Outcome.ROLLED_BACK
    assert world.store.records == []
    assert world.store.evidence_tags(MODEL, 2) == {}


def test_without_a_key_nothing_is_recorded_and_one_message_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World()
    with caplog.at_level(logging.WARNING, logger="sluice.rollout"):
        reports = world.run([world.reconciler(signs=False)])
    assert reports[-1].outcome is Outcome.PROMOTED
    assert world.store.records == []
    said = [r.detail for r in reports if "evidence is not recorded" in r.detail]
    assert len(said) == 1
    assert "SLUICE_EVIDENCE_KEY" in said[0]
    warned = [
        r.getMessage() for r in caplog.records if "evidence is not recorded" in r.getMessage()
    ]
    assert len(warned) == 1
    # The promotion's numbers are in Git all the same, for a controller with a key.
    assert carried_evidence(world.commit_trailers("promote")) is not None


def test_an_environment_without_evidence_keys_says_nothing_without_a_key() -> None:
    world = World(policy="")
    reports = world.run([world.reconciler(signs=False)])
    assert not any("evidence is not recorded" in r.detail for r in reports)


def test_no_report_or_log_line_quotes_the_key(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    with caplog.at_level(logging.DEBUG):
        reports = world.run([world.reconciler()])
    secret = PRIVATE.decode().splitlines()[1]
    assert not any(secret in json.dumps(r.as_dict()) for r in reports)
    assert secret not in caplog.text


SHADOW_CHECKS = (
    GateResult("shadow/errors", Verdict.PASS, "shadow/errors: 0 of 400 failed — pass",
               {"shadow_failures": 0.0}),
    GateResult("shadow/scores", Verdict.PASS, "shadow/scores: KS 0.03 (max 0.1) — pass",
               {"ks": 0.03, "p_value": 0.71}),
)  # fmt: skip


def _end_shadow(world: World, reconciler: Reconciler) -> None:
    """The shadow judge passed v2 on 400 mirrored requests: the first canary step."""
    obs = reconciler.observe(ENV, MODEL)
    assert obs.shadow_percent == 100.0
    ref = load_release(reconciler.workspace, ENV, MODEL)
    actuator = Actuator(
        ref, reconciler.workspace, world.registry, RecordingNotifier(), RolloutMetrics(),
        evidence=reconciler.evidence,
    )  # fmt: skip
    action = EndShadow(10, SHADOW_CHECKS, reason="every check passed", samples=400, labelled=120)
    assert actuator.act(action, obs, world.clock()).commit is not None


@pytest.mark.parametrize("dies", [False, True])
def test_a_passed_shadow_records_shadow_then_the_promotion_canary(dies: bool) -> None:
    """The shadow piece is recorded when the shadow phase's commit lands (or, killed before,
    when the version is promoted), once; the promotion adds its canary piece."""
    world = World(shadow=True)
    if dies:
        world.store.dying.append(Crash("evidence.record (before)"))
        with pytest.raises(Crash):
            _end_shadow(world, world.reconciler())
        assert world.store.records == []
    else:
        _end_shadow(world, world.reconciler())
        assert world.store.records == [(ENV, "shadow")]
    reports = world.run([world.reconciler()])
    assert reports[-1].outcome is Outcome.PROMOTED
    assert sorted(world.store.records) == [(ENV, "canary"), (ENV, "shadow")]
    checks = {check.kind: check for check in world.checks()}
    assert all(check.verified for check in checks.values()), [c.line() for c in checks.values()]
    shadow = _predicate(checks["shadow"])["shadow"]
    assert (shadow["verdict"], shadow["samples"], shadow["labelled"]) == ("pass", 400, 120)
    assert [c["values"] for c in shadow["checks"]] == [
        {"shadow_failures": 0.0},
        {"ks": 0.03, "p_value": 0.71},
    ]
    assert set(world.store.evidence_tags(MODEL, 2)) == {
        evidence_tag(ENV, "canary"),
        evidence_tag(ENV, "shadow"),
    }


def test_a_body_that_does_not_say_pass_is_never_signed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World()
    failing = GateResult("locust", Verdict.FAIL, "locust: 9 of 50 failed")
    bodies = [
        CarriedEvidence("canary", {"steps": STEPS, "promotedFrom": 50, "looks": 1, "gates": []}),
        CarriedEvidence("shadow", {"verdict": "fail", "reason": "x", "samples": 1,
                                   "labelled": 0, "checks": []}),
    ]  # fmt: skip
    obs = world.reconciler().observe(ENV, MODEL)
    bodies.append(promotion_evidence(Promote(50, (failing,)), obs, STEPS))
    with caplog.at_level(logging.ERROR, logger="sluice.rollout"):
        for evidence in bodies:
            assert (
                world.recorder().ensure(
                    evidence, environment=ENV, model=MODEL, version=2, now=world.clock()
                )
                is None
            )
    assert world.store.records == []
    assert "locust did not pass" in caplog.text


def test_only_the_rollouts_own_commits_are_read_back() -> None:
    """Walking back from the promotion, the evidence of this rollout's commits, to its
    proposal: an earlier rollout's evidence of the same version is not this one's."""

    def change(action: str | None, version: int, evidence: str | None = None) -> ChangeInfo:
        trailers = {"Sluice-Version": str(version)}
        if action:
            trailers["Sluice-Action"] = action
        if evidence:
            trailers[EVIDENCE_TRAILER] = evidence
        return ChangeInfo(sha=f"{action}{version}", time=0.0, trailers=trailers)

    changes = [
        change("promote", 2, 'canary {"n":2}'),
        change("step", 2),
        change("step", 2, 'shadow {"n":1}'),
        change(None, 2),  # the proposal
        change("promote", 2, 'canary {"n":0}'),  # an earlier rollout of v2
    ]
    assert rollout_evidence(changes, 2) == [
        CarriedEvidence("canary", {"n": 2}),
        CarriedEvidence("shadow", {"n": 1}),
    ]
    assert rollout_evidence(changes, 3) == []
    assert carried_evidence({EVIDENCE_TRAILER: "soak {}"}) is None
    assert carried_evidence({EVIDENCE_TRAILER: "canary [1]"}) is None
    assert carried_evidence({EVIDENCE_TRAILER: "canary {"}) is None


def test_a_key_the_environment_does_not_trust_is_said_once() -> None:
    """A controller whose key is not among evidence.controllerKeys records, and says once that
    what it records will not verify (naming its key id, never the key)."""
    world = World()
    other, _ = generate_keypair()
    reconciler = world.reconciler()
    signer = load_evidence_signer({EVIDENCE_KEY_ENV: other.decode()})
    assert signer is not None
    reconciler.evidence = EvidenceRecorder(world.store, world.attestations, signer, "staging-9")
    reports = world.run([reconciler])
    said = [r.detail for r in reports if "will not verify" in r.detail]
    assert len(said) == 1
    assert signer.public_key.keyid[:12] in said[0]
    (check,) = world.checks()
    assert check.failed == "signature"


def test_the_evidence_key_comes_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SLUICE_EVIDENCE_KEY (or a file SLUICE_EVIDENCE_KEY_FILE names) makes the recorder; none
    makes none; a bad key is one line naming the variable, never the key's text."""
    store, attestations = MemoryEvidence(), MemoryAttestations()

    def recorder() -> EvidenceRecorder | None:
        return recorder_from_settings(load_settings(), store, attestations, controller="c")

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SLUICE_EVIDENCE_KEY", raising=False)
    monkeypatch.delenv("SLUICE_EVIDENCE_KEY_FILE", raising=False)
    monkeypatch.delenv("SLUICE_CONFIG", raising=False)
    assert recorder() is None
    monkeypatch.setenv("SLUICE_EVIDENCE_KEY", PRIVATE.decode())
    made = recorder()
    assert made is not None
    assert made.keyid == load_public_key(PUBLIC, "pub").keyid
    monkeypatch.delenv("SLUICE_EVIDENCE_KEY")
    (tmp_path / "controller.pem").write_bytes(PRIVATE)
    monkeypatch.setenv("SLUICE_EVIDENCE_KEY_FILE", "controller.pem")
    made = recorder()
    assert made is not None
    assert made.keyid == load_public_key(PUBLIC, "pub").keyid
    monkeypatch.delenv("SLUICE_EVIDENCE_KEY_FILE")
    monkeypatch.setenv("SLUICE_EVIDENCE_KEY", "not a key: hunter2")
    with pytest.raises(ConfigError) as refused:
        recorder()
    assert "SLUICE_EVIDENCE_KEY" in refused.value.message
    assert "hunter2" not in refused.value.message
