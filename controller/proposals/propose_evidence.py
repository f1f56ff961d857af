"""A proposal to an environment with ``promotion:``: refused without the evidence, or forced by
hand past it with a reason that is itself recorded as signed evidence.

The proposal step asks :func:`~controller.proposals.evidence_gate.check_promotion` before
anything is written (the approval left out: it is given on the pull request itself). A version
whose evidence is incomplete is refused with :class:`GateFailed` (exit 1), one line naming
what is missing. ``--force`` with a reason records an ``override`` piece signed with the key of
whoever runs it (``SLUICE_EVIDENCE_KEY``), which must be one of the environment's
``evidence.controllerKeys`` (an override signed by any other key would not count, and would
poison the version's evidence as a broken piece); then the version is proposed. No override
lifts a quarantine or broken (forged, deleted) evidence. An override recorded before lets the
version through without ``--force``, as :func:`~controller.evidence.evaluate.evaluate` says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from controller.errors import ConfigError, GateFailed, InputError
from controller.evidence.keys import read_controller_keys
from controller.evidence.record import record_evidence
from controller.evidence.signing import EVIDENCE_KEY_ENV, EVIDENCE_KEY_FILE_ENV
from controller.evidence.statement import override_body
from controller.evidence.verify import EvidenceCheck
from controller.proposals.evidence_gate import PromotionCheck, check_promotion

if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner

    from controller.manifests.environment import EnvironmentConfig
    from controller.ports import AttestationStore, EvidenceStore, ModelRegistry, ReleaseRepository

__all__ = [
    "EVIDENCE_CONTEXT",
    "EvidenceStores",
    "Override",
    "evidence_lines",
    "evidence_status",
    "hold_proposal",
    "override_reason",
]

#: The commit status a proposal sets on its pull request's head.
EVIDENCE_CONTEXT = "sluice/evidence"


@dataclass(frozen=True)
class Override:
    """``sluice propose --force --reason``: who forces the proposal, and why."""

    by: str
    reason: str


@dataclass(frozen=True)
class EvidenceStores:
    """Where the gate reads the version's evidence and bytes, and who signs an override."""

    evidence: EvidenceStore
    attestations: AttestationStore
    signer: CryptoSigner | None = None


def _gate(
    stores: EvidenceStores,
    workspace: ReleaseRepository,
    registry: ModelRegistry,
    environment: str,
    model: str,
    version: int,
) -> PromotionCheck:
    check = check_promotion(
        workspace=workspace, registry=registry, evidence=stores.evidence,
        attestations=stores.attestations, model=model, version=version,
        environment=environment, before_pull_request=True,
    )  # fmt: skip
    assert check is not None  # the caller saw the environment's promotion:
    return check


def _signer_for(
    stores: EvidenceStores, workspace: ReleaseRepository, config: EnvironmentConfig
) -> CryptoSigner:
    """The override's signer, when it is one ``config`` trusts; a one-line fix otherwise."""
    signer = stores.signer
    if signer is None:
        raise ConfigError(
            f"--force records a signed override: set {EVIDENCE_KEY_ENV} (or "
            f"{EVIDENCE_KEY_FILE_ENV}) to an evidence key whose public half {config.name}'s "
            "evidence.controllerKeys lists (`sluice provenance keygen` writes a keypair)"
        )
    trusted = {key.keyid for key in read_controller_keys(workspace, [config])[config.name]}
    keyid = signer.public_key.keyid
    if keyid not in trusted:
        raise ConfigError(
            f"the key in {EVIDENCE_KEY_ENV} (key id {keyid[:12]}…) is not one of "
            f"{config.name}'s evidence.controllerKeys, so an override signed with it would not "
            f"count: sign with a key listed there, or commit its public half and list it"
        )
    return signer


def hold_proposal(
    config: EnvironmentConfig,
    *,
    model: str,
    version: int,
    workspace: ReleaseRepository,
    registry: ModelRegistry,
    stores: EvidenceStores | None,
    override: Override | None,
    dry_run: bool,
    now: float,
) -> PromotionCheck | None:
    """Hold the proposal of ``model`` v``version`` to ``config``'s ``promotion:`` (see the
    module doc); the check the pull request shows, None for an environment without one.
    Records the override unless ``dry_run``."""
    if config.promotion is None:
        if override is not None:
            raise InputError(
                f"--force goes past missing evidence, and {config.name} has no promotion: "
                "block asking for any; propose without --force"
            )
        return None
    if stores is None:
        raise ConfigError(
            f"{config.name} requires evidence (promotion:), but this proposal has no evidence "
            "store to check it in; propose through `sluice propose` or `sluice serve`"
        )
    check = _gate(stores, workspace, registry, config.name, model, version)
    verdict = check.verdict
    if verdict.complete:
        return check
    missing = "; ".join(verdict.lines())
    what = f"{model} v{version} lacks evidence for {config.name}: {missing}; nothing was proposed"
    if not verdict.overridable:
        raise GateFailed(f"{what} (no override lifts a quarantine or broken evidence)")
    if override is None:
        if verdict.allowed:  # an override recorded before
            return check
        raise GateFailed(
            f"{what} (to propose it anyway: sluice propose --force --reason TEXT, recorded as "
            "a signed override)"
        )
    reason = " ".join(override.reason.split())
    if not reason:
        raise InputError("--force needs --reason TEXT saying why (it is recorded, signed)")
    signer = _signer_for(stores, workspace, config)
    if dry_run:
        return check
    record_evidence(
        stores.evidence, stores.attestations, signer, kind="override",
        body=override_body(by=override.by, reason=reason[:500], missing=verdict.lines()),
        environment=config.name, model=model, version=version,
        controller=f"sluice propose --force ({override.by})", now=now,
    )  # fmt: skip
    return _gate(stores, workspace, registry, config.name, model, version)


def evidence_status(
    check: PromotionCheck,
) -> tuple[Literal["success", "pending", "failure"], str]:
    """The ``sluice/evidence`` commit status of a proposal held to ``check``: when an approval
    is required, pending until a verified ``approval`` piece is recorded here."""
    verdict = check.verdict
    if verdict.complete:
        upstream = ", ".join(check.policy.upstream)
        if not check.policy.approval.required:
            return "success", f"evidence from {upstream} complete"
        approval = next(
            (
                c
                for c in check.checks
                if c.verified and (c.environment, c.kind) == (check.environment, "approval")
            ),
            None,
        )
        if approval is None:
            return "pending", f"evidence from {upstream} complete; waiting for approval"
        body = approval.predicate.get("approval")
        approvers = body.get("approvers", []) if isinstance(body, Mapping) else []
        return "success", f"evidence from {upstream} complete; approved by {', '.join(approvers)}"
    missing = "; ".join(verdict.lines())
    if verdict.override is None:
        return "failure", f"incomplete: {missing}"
    reason = override_reason(verdict.override)
    return "failure", f"incomplete, proposed by hand: {reason}; missing: {missing}"


def evidence_lines(check: PromotionCheck) -> tuple[str, ...]:
    """What a proposal prints: each requirement met, the override it went through, each
    thing missing, one line each."""
    verdict = check.verdict
    override = verdict.override
    forced = [override.line()] if override is not None and not verdict.complete else []
    return (*verdict.met, *forced, *verdict.lines())


def override_reason(override: EvidenceCheck) -> str:
    """The reason a verified override piece records."""
    body = override.predicate.get("override")
    return str(body.get("reason", "")) if isinstance(body, Mapping) else ""
