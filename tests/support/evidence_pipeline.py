"""Two environments in memory for the evidence gate's tests: staging, whose controller signs
its evidence, and production, whose ``promotion:`` asks for it; the in-memory Git remote,
registry, evidence and attestation stores and forge, and the real signing and verification."""

from __future__ import annotations

from typing import Any

from controller.evidence.record import record_evidence
from controller.evidence.signing import EVIDENCE_KEY_ENV, load_evidence_signer
from controller.evidence.statement import canary_body, shadow_body, soak_body
from controller.manifests.manifest import ReleasePin, apply_release, dump_pin, load_pin
from controller.provenance.signing import generate_keypair
from controller.testing import MemoryRegistry, MemoryReleaseRepository
from controller.testing.attestations import MemoryAttestations
from controller.testing.evidence import MemoryEvidence
from controller.testing.forge import MemoryForge
from support.envelopes import FILES
from support.gitops_repo import manifest_files

__all__ = [
    "MODEL",
    "NOW",
    "PRODUCTION_PRIVATE",
    "PRODUCTION_PUBLIC",
    "PROMOTION",
    "STAGING_PRIVATE",
    "STAGING_PUBLIC",
    "STRANGER_PRIVATE",
    "Pipeline",
    "pin_text",
]

MODEL = "fraud-detector"
NOW = 1_796_000_000.0
CONFIG = "manifests/overlays/{env}/sluice.yaml"
PIN = "manifests/overlays/{env}/fraud-detector.yaml"
PROMOTION = "promotion: {from: [staging], require: {soak: 24h}, autoPropose: true}"
_STAGING_PRIVATE, _STAGING_PUBLIC = generate_keypair()
_PRODUCTION_PRIVATE, _PRODUCTION_PUBLIC = generate_keypair()
#: A key no environment trusts (a forger's, or a person's not listed in controllerKeys).
STRANGER_PRIVATE, _ = generate_keypair()
PRODUCTION_PRIVATE = _PRODUCTION_PRIVATE
STAGING_PRIVATE, STAGING_PUBLIC, PRODUCTION_PUBLIC = (
    _STAGING_PRIVATE,
    _STAGING_PUBLIC,
    _PRODUCTION_PUBLIC,
)


def pin_text(
    base: str, version: int, *, canary: int | None = None, previous: int | None = None
) -> str:
    """The pin ``base`` naming ``version`` (at ``canary`` % beside ``previous``)."""
    document = load_pin(base, source="pin")
    pin = ReleasePin(
        model=MODEL, version=version, storage_uri=f"s3://sluice-models/v{version}",
        run_id=None, previous_version=previous, canary_percent=canary,
    )  # fmt: skip
    apply_release(document, pin, source="pin")
    return dump_pin(document)


class Pipeline:
    """Staging serving ``staging_version`` (``versions`` registered), production with
    ``promotion`` (:data:`PROMOTION` by default) and nothing pinned yet."""

    def __init__(
        self, *, versions: int = 1, staging_version: int | None = 1, promotion: str = PROMOTION
    ) -> None:
        files = manifest_files(MODEL)
        files[CONFIG.format(env="staging")] += "evidence: {controllerKeys: [keys/staging.pub]}\n"
        files[CONFIG.format(env="production")] += (
            f"{promotion}\nevidence: {{controllerKeys: [keys/production.pub]}}\n"
        )
        files["keys/staging.pub"] = _STAGING_PUBLIC.decode()
        files["keys/production.pub"] = _PRODUCTION_PUBLIC.decode()
        staging_pin = PIN.format(env="staging")
        if staging_version is not None:
            files[staging_pin] = pin_text(files[staging_pin], staging_version)
        self.workspace = MemoryReleaseRepository(files)
        self.workspace.sync()
        self.registry = MemoryRegistry()
        self.evidence = MemoryEvidence()
        self.attestations = MemoryAttestations()
        self.forge = MemoryForge()
        for _ in range(versions):
            self.register()
        self.staging = load_evidence_signer({EVIDENCE_KEY_ENV: _STAGING_PRIVATE.decode()})
        assert self.staging is not None

    def register(self) -> int:
        version = self.registry.register(MODEL)
        self.evidence.add_version(MODEL, version)
        self.attestations.record(MODEL, version, FILES, None)
        return version

    def set_pin(self, env: str, version: int, **pin: Any) -> None:
        path = PIN.format(env=env)
        base = self.workspace.remote.files("main")[path]
        self.workspace.remote.commit("main", {path: pin_text(base, version, **pin)}, "pin")
        self.workspace.sync()

    def earn(self, kind: str, version: int = 1, **body: Any) -> str:
        """Record staging's ``kind`` evidence of ``version``, signed by staging's key."""
        bodies: dict[str, Any] = {
            "canary": lambda: canary_body(
                steps=(10, 50, 100), promoted_from=50, results=(), record=None
            ),
            "soak": lambda: soak_body(
                start=NOW - body.get("hours", 25) * 3600, end=NOW, queries=[], alerts=[]
            ),
            "shadow": lambda: shadow_body(
                verdict="pass", reason="no check failed", samples=900, labelled=600, results=()
            ),
        }
        assert self.staging is not None
        return record_evidence(
            self.evidence, self.attestations, self.staging, kind=kind,  # type: ignore[arg-type]
            body=bodies[kind](), environment="staging", model=MODEL, version=version,
            controller="sluice serve (staging)", now=NOW,
        )  # fmt: skip

    def earn_all(self, version: int = 1) -> None:
        self.earn("canary", version)
        self.earn("soak", version)
