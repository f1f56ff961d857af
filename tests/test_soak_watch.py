"""The soak watcher over in-memory ports: staging soaks what it serves at 100 % for the 24h
production requires, reading the promote commit's time from Git, the drift alerts from the
retraining records and the checks from Prometheus; it records the signed soak evidence once
(complete, or broken by an alert or a check), and the version mid-rollout, quarantined or
superseded does not soak. A new watcher (a restarted ``sluice serve``) finds the decision in
the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from support.gitops_repo import manifest_files

from controller.domain import QUARANTINE_TAG
from controller.evidence.evaluate import evaluate
from controller.evidence.policy import PromotionPolicy
from controller.evidence.record import check_evidence
from controller.manifests.manifest import ReleasePin, apply_release, dump_pin, load_pin
from controller.retrain.record import RetrainRecord, iso_time, last_retrain_tag
from controller.soak.watch import SoakWatcher
from controller.target_types import TargetObservation, TrafficEntry
from controller.testing import (
    AnsweredMetrics,
    ManualClock,
    MemoryRegistry,
    MemoryReleaseRepository,
)
from controller.testing.attestations import MemoryAttestations
from controller.testing.evidence import MemoryEvidence

MODEL = "fraud-detector"
HOUR = 3600.0
START = 1_796_000_000.0
PIN = "manifests/overlays/staging/fraud-detector.yaml"
REVISION = "fraud-detector-predictor-00007"
PROMOTION = "promotion:\n  from: [staging]\n  require:\n    soak: 24h\n"
PRODUCTION = PromotionPolicy.model_validate(
    {"from": ["staging"], "require": {"soak": "24h", "canary": False}}
)
SOAK = """\
soak:
  checks:
    - name: success-rate
      builtin: request-success-rate
      min: 99
      interval: 5m
"""


@dataclass
class FixedTarget:
    """A :class:`~controller.ports.Target` whose InferenceService serves one revision."""

    revision: str = REVISION
    looked: list[str] = field(default_factory=list)

    def observe(self, environment: str, inference_service: str) -> TargetObservation:
        self.looked.append(f"{environment}/{inference_service}")
        return TargetObservation(
            exists=True,
            namespace=environment,
            configuration=f"{inference_service}-predictor",
            traffic=(TrafficEntry(self.revision, 100, latest=True),),
        )


@dataclass
class Stack:
    clock: ManualClock
    workspace: MemoryReleaseRepository
    registry: MemoryRegistry
    evidence: MemoryEvidence
    attestations: MemoryAttestations
    metrics: AnsweredMetrics
    target: FixedTarget
    signer: CryptoSigner

    def watcher(self) -> SoakWatcher:
        """A watcher as a (re)started ``sluice serve`` builds it: nothing in memory."""
        return SoakWatcher(
            workspace=self.workspace.clone(),
            registry=self.registry,
            evidence=self.evidence,
            attestations=self.attestations,
            signer=self.signer,
            controller="sluice-serve@staging",
            metrics=self.metrics,
            target=self.target,
            clock=self.clock,
        )

    def pin(self, version: int, *, percent: int | None = None, action: str = "promote") -> None:
        """Commit the staging pin naming ``version`` (at ``percent``), with the trailers a
        rollout's commit carries, at the clock's time."""

        def edit(root: Path) -> None:
            path = root / PIN
            document = load_pin(path.read_text(), source=PIN)
            uri = f"s3://models/{version}"
            apply_release(document, ReleasePin(MODEL, version, uri, None, None, percent),
                          source=PIN)  # fmt: skip
            path.write_text(dump_pin(document))

        message = (
            f"{action} v{version}\n\nSluice-Model: {MODEL}\nSluice-Version: {version}\n"
            f"Sluice-Env: staging\nSluice-Action: {action}\n"
        )
        self.workspace.commit_and_push(branch="main", base="main", edit=edit, message=message)

    def evaluate(self, version: int = 7) -> list[str]:
        """What production's proposal says of the version's staging evidence."""
        checks = check_evidence(
            self.evidence,
            self.attestations,
            model=MODEL,
            version=version,
            trusted_keys_by_env={"staging": [self.signer.public_key]},
        )
        verdict = evaluate(PRODUCTION, checks, [], environment="production", version=version)
        return [*verdict.lines(), *verdict.met]


@pytest.fixture
def stack() -> Stack:
    clock = ManualClock(START)
    files = manifest_files(MODEL)
    files["manifests/overlays/production/sluice.yaml"] += PROMOTION
    files["manifests/overlays/staging/sluice.yaml"] += SOAK
    registry = MemoryRegistry()
    evidence = MemoryEvidence()
    attestations = MemoryAttestations()
    for _ in range(8):
        version = registry.register(MODEL)
        evidence.add_version(MODEL, version)
        attestations.record(MODEL, version, {"model.pkl": b"weights %d" % version}, None)
    return Stack(
        clock=clock,
        workspace=MemoryReleaseRepository(files, clock=clock),
        registry=registry,
        evidence=evidence,
        attestations=attestations,
        metrics=AnsweredMetrics({"kn_serving": 99.8}),
        target=FixedTarget(),
        signer=CryptoSigner.generate_ed25519(),
    )


def _line(stack: Stack) -> str:
    reports = stack.watcher().run_once()
    assert [(r.environment, r.model) for r in reports] == [("staging", MODEL)]
    return reports[0].line


def test_a_clean_soak_is_recorded_once_and_satisfies_production(stack: Stack) -> None:
    stack.pin(7, percent=10, action="step")
    stack.clock.advance(HOUR)
    assert _line(stack) == "not soaking: canary at 10%"
    stack.pin(7)
    promoted = stack.clock.now
    stack.clock.advance(6 * HOUR)
    assert _line(stack) == "soak 6h/1d"
    assert stack.evaluate() == ["soak in staging: none"]
    assert "[300s]" in stack.metrics.queries[-1]
    stack.clock.advance(18 * HOUR)
    line = _line(stack)
    assert line.startswith("soak complete: 1d, clean; recorded sha256:")
    assert "[86400s]" in stack.metrics.queries[-1]  # the whole window, for the evidence
    assert stack.evaluate() == ["soak in staging: 1d of 24h, clean"]
    (envelope,) = stack.evidence.evidence(MODEL, 7)
    assert b'"durationSeconds"' not in envelope  # signed: the statement is base64 inside
    checks = check_evidence(
        stack.evidence, stack.attestations, model=MODEL, version=7,
        trusted_keys_by_env={"staging": [stack.signer.public_key]},
    )  # fmt: skip
    body = checks[0].predicate["soak"]
    assert body["start"] == iso_time(promoted).replace("+00:00", "Z")
    assert body["queries"][0]["value"] == 99.8
    # A restarted controller finds the decision in the registry and records nothing again.
    queries = len(stack.metrics.queries)
    stack.clock.advance(HOUR)
    assert _line(stack).startswith("soak decided: sluice.evidence.staging.soak=sha256:")
    assert len(stack.evidence.evidence(MODEL, 7)) == 1
    assert len(stack.metrics.queries) == queries


def test_a_drift_alert_after_the_promotion_breaks_the_soak_for_good(stack: Stack) -> None:
    stack.pin(7)
    fired = stack.clock.now + 3 * HOUR
    stack.clock.advance(5 * HOUR)
    record = RetrainRecord(
        at=iso_time(fired + 60),
        outcome="started",
        detail="dispatched",
        alerts=("SluiceFeatureDrift",),
        since=iso_time(fired),
        drifted_version="7",
    )
    stack.registry.set_registered_model_tag(MODEL, last_retrain_tag("staging"), record.encode())
    line = _line(stack)
    assert line.startswith("soak broken at ")
    assert ": alert SluiceFeatureDrift; recorded sha256:" in line
    assert stack.evaluate() == ["soak in staging: 3h with alert SluiceFeatureDrift"]
    stack.clock.advance(30 * HOUR)  # the soak does not restart: the version waits
    assert _line(stack).startswith("soak decided:")
    assert stack.evaluate() == ["soak in staging: 3h with alert SluiceFeatureDrift"]


def test_an_alert_about_an_older_version_or_before_the_promotion_does_not_count(
    stack: Stack,
) -> None:
    before = RetrainRecord(at=iso_time(START), outcome="started", detail="", alerts=("A",))
    stack.registry.set_registered_model_tag(MODEL, last_retrain_tag("staging"), before.encode())
    stack.clock.advance(HOUR)
    stack.pin(7)
    stack.clock.advance(2 * HOUR)
    older = RetrainRecord(
        at=iso_time(stack.clock.now), outcome="cooldown", detail="", alerts=("B",),
        drifted_version="6",
    )  # fmt: skip
    stack.registry.set_registered_model_tag(
        MODEL, "sluice.retrain.staging.turned_away", older.encode()
    )
    assert _line(stack) == "soak 2h/1d"


def test_a_check_past_its_bound_breaks_the_soak(stack: Stack) -> None:
    stack.pin(7)
    stack.clock.advance(2 * HOUR)
    stack.metrics.answers["kn_serving"] = 97.0
    line = _line(stack)
    assert "check success-rate 97% over 300s (min 99%): out of bounds" in line
    assert stack.evaluate() == ["soak in staging: 2h with success-rate out of bounds"]


def test_an_unreachable_prometheus_holds_the_soak_past_its_duration(stack: Stack) -> None:
    stack.pin(7)
    stack.clock.advance(25 * HOUR)
    stack.metrics.outage = True
    assert _line(stack).startswith("soak 1d1h/1d, waiting on success-rate: Prometheus at ")
    assert stack.evaluate() == ["soak in staging: none"]
    stack.metrics.outage = False
    assert _line(stack).startswith("soak complete: 1d1h, clean; recorded ")


def test_a_quarantined_or_superseded_version_does_not_soak(stack: Stack) -> None:
    stack.pin(7)
    stack.clock.advance(HOUR)
    stack.registry.set_version_tags(MODEL, 7, {QUARANTINE_TAG: "error rate 4% (max 1%)"})
    assert _line(stack) == "not soaking: quarantined (error rate 4% (max 1%))"
    stack.pin(8, percent=10, action="step")
    stack.clock.advance(30 * HOUR)
    assert _line(stack) == "not soaking: canary at 10%"
    stack.pin(8)
    stack.clock.advance(HOUR)
    assert _line(stack) == "soak 1h/1d"
    assert stack.evidence.evidence(MODEL, 7) == []


def test_a_pin_without_a_promote_commit_does_not_soak(stack: Stack) -> None:
    stack.pin(7, action="propose")
    stack.clock.advance(30 * HOUR)
    assert _line(stack) == "not soaking: no promote commit of v7 on the pin"


def test_only_environments_another_takes_from_with_a_soak_are_watched(stack: Stack) -> None:
    files = manifest_files(MODEL)
    watcher = stack.watcher()
    watcher.workspace = MemoryReleaseRepository(files, clock=stack.clock)
    assert watcher.run_once() == []


def test_an_unreachable_registry_is_one_line_for_the_release_and_the_next_pass_goes_on(
    stack: Stack,
) -> None:
    stack.pin(7)
    stack.clock.advance(25 * HOUR)
    stack.registry.outage = True
    line = _line(stack)
    assert line.startswith("error: ")
    assert "\n" not in line
    assert stack.evidence.evidence(MODEL, 7) == []
    stack.registry.outage = False
    assert _line(stack).startswith("soak complete: 1d1h, clean; recorded ")
