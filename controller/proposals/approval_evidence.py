"""The ``approval`` evidence: who approved a proposal's pull request, recorded once, signed.

An environment whose ``promotion:`` sets ``approval: {required: true}`` takes a version only
once a person approved its pull request. The approval is the forge's (a review that approves
the pull request's current head, by a reviewer other than its author:
:meth:`~controller.ports.Forge.approvals`); the environment's own controller turns it into
evidence, as it does a canary or a soak: each pass of ``sluice serve``'s promotion thread looks,
for every release, at the version each upstream environment serves alone, finds the pull
request of its proposal branch (``sluice/ENV/MODEL/vN``, whether ``sluice serve`` or ``sluice
propose`` opened it), and once it is approved records an ``approval`` piece
(:func:`~controller.evidence.statement.approval_body`: the approvers, the pull request, when)
signed with the controller's key, then sets the ``sluice/evidence`` status on the pull
request's head anew from :func:`~controller.proposals.evidence_gate.check_promotion`, the
approval now held to, and puts the Evidence section of the pull request's body in step with it
(:func:`~controller.proposals.model_card_evidence.with_evidence_section`: the approval listed,
the rest of the body as it was). Once: the piece's tag on the version
(``sluice.evidence.ENV.approval``) means recorded, across restarts. A key that is not among
the environment's ``evidence.controllerKeys`` records nothing (the piece would not verify, and
broken evidence refuses a version): the pass says so instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from controller.evidence.keys import read_controller_keys
from controller.evidence.record import record_evidence
from controller.evidence.statement import approval_body, evidence_tag
from controller.proposals.evidence_gate import check_promotion, upstream_pins
from controller.proposals.model_card_evidence import evidence_section, with_evidence_section
from controller.proposals.propose_evidence import EVIDENCE_CONTEXT, evidence_status
from controller.text.commit_message import proposal_branch

if TYPE_CHECKING:
    from collections.abc import Callable

    from securesystemslib.signer import CryptoSigner

    from controller.manifests.environment import EnvironmentConfig
    from controller.ports import (
        AttestationStore,
        EvidenceStore,
        Forge,
        ModelRegistry,
        ReleaseRepository,
    )

__all__ = ["ApprovalOutcome", "ApprovalRecorder"]


@dataclass(frozen=True)
class ApprovalOutcome:
    """What one look at a release's pull request found: ``recorded``, ``waiting`` or
    ``idle``, and the line that says so."""

    state: str
    line: str
    version: int | None = None


class ApprovalRecorder:
    """Records the approval of each proposal's pull request into an environment that requires
    one (see the module doc); :meth:`release` is one look at one release."""

    def __init__(
        self,
        *,
        workspace: ReleaseRepository,
        registry: ModelRegistry,
        evidence: EvidenceStore,
        attestations: AttestationStore,
        forge: Forge,
        signer: CryptoSigner,
        clock: Callable[[], float],
    ) -> None:
        self._workspace = workspace
        self._registry = registry
        self._evidence = evidence
        self._attestations = attestations
        self._forge = forge
        self._signer = signer
        self._clock = clock

    def release(self, config: EnvironmentConfig, model: str) -> list[ApprovalOutcome]:
        """Look at the pull request of each version an upstream environment serves alone."""
        env = config.name
        versions = sorted(
            {v for v in upstream_pins(self._workspace, env, model).values() if v is not None}
        )
        if not versions:
            return [ApprovalOutcome("idle", f"{model} → {env}: no version to approve")]
        keyid = self._signer.public_key.keyid
        trusted = read_controller_keys(self._workspace, [config])[env]
        if keyid not in {key.keyid for key in trusted}:
            return [
                ApprovalOutcome(
                    "idle",
                    f"{model} → {env}: approvals are not recorded: the evidence key (key id "
                    f"{keyid[:12]}…) is not one of {env}'s evidence.controllerKeys",
                )
            ]
        return [self._version(config, model, version) for version in versions]

    def _version(self, config: EnvironmentConfig, model: str, version: int) -> ApprovalOutcome:
        env = config.name
        what = f"{model} v{version} → {env}"
        tag = evidence_tag(env, "approval")
        if tag in self._evidence.evidence_tags(model, version):
            return ApprovalOutcome("idle", f"{what}: approval recorded already", version)
        number = self._forge.find_pull_request(proposal_branch(env, model, version))
        if number is None:
            return ApprovalOutcome("idle", f"{what}: no pull request yet", version)
        found = self._forge.approvals(number)
        if not found.approvals:
            line = f"{what}: pull request #{number} waits for an approval"
            return ApprovalOutcome("waiting", line, version)
        record_evidence(
            self._evidence, self._attestations, self._signer, kind="approval",
            body=approval_body(
                approvers=found.approvers, number=number, url=found.url,
                approved_at=max(approval.at for approval in found.approvals),
            ),
            environment=env, model=model, version=version,
            controller=f"sluice serve ({env})", now=self._clock(),
        )  # fmt: skip
        check = check_promotion(
            workspace=self._workspace, registry=self._registry, evidence=self._evidence,
            attestations=self._attestations, model=model, version=version, environment=env,
        )  # fmt: skip
        if check is not None and found.state == "open":
            state, description = evidence_status(check)
            self._forge.report_status(
                found.head_sha, context=EVIDENCE_CONTEXT, state=state, description=description
            )
            section = evidence_section(env, check.checks, check.verdict)
            self._forge.rewrite_body(number, lambda body: with_evidence_section(body, section))
        approvers = ", ".join(found.approvers)
        line = f"{what}: pull request #{number} approved by {approvers}, recorded"
        return ApprovalOutcome("recorded", line, version)
