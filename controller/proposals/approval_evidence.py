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

Exactly once among recorders too (two ``sluice serve`` replicas, or one and the Promote
workflow's ``sluice evidence record-approval``): as the rollout's evidence is recorded only by
the holder of its release's lease, an approval is recorded only under the lease
:func:`~controller.lease.approval_lease_name` (its own, so a rollout holding the release for
hours never holds an approval up), and the tag is read again once the lease is held, since
another recorder may have recorded and let go in between; the lease is let go at once after.
A recorder that finds it held says who holds it and records nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from controller.errors import ConfigError
from controller.evidence.keys import read_controller_keys
from controller.evidence.record import record_evidence
from controller.evidence.statement import approval_body, evidence_tag
from controller.lease import approval_lease_name
from controller.proposals.evidence_gate import check_promotion, upstream_pins
from controller.proposals.model_card_evidence import evidence_section, with_evidence_section
from controller.proposals.propose_evidence import EVIDENCE_CONTEXT, evidence_status
from controller.text.commit_message import proposal_branch

if TYPE_CHECKING:
    from collections.abc import Callable

    from securesystemslib.signer import CryptoSigner

    from controller.domain import PullRequestApprovals
    from controller.lease import LeaseKeeper
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
    """What one look at a release's pull request found: ``recorded``, ``waiting`` (for an
    approval), ``held`` (another recorder holds the lease and records it) or ``idle``, and
    the line that says so."""

    state: str
    line: str
    version: int | None = None


class ApprovalRecorder:
    """Records the approval of each proposal's pull request into an environment that requires
    one (see the module doc); :meth:`release` is one look at one release, :meth:`record` one
    look at one version's pull request."""

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
        lease: LeaseKeeper | None = None,
        controller: str = "sluice serve",
    ) -> None:
        self._workspace = workspace
        self._registry = registry
        self._evidence = evidence
        self._attestations = attestations
        self._forge = forge
        self._signer = signer
        self._clock = clock
        #: Who may record a release's approval now (None: this recorder, alone by assumption).
        self._lease = lease
        #: Who records (the predicate's ``controller.id`` is this and the environment).
        self._controller = controller

    def release(self, config: EnvironmentConfig, model: str) -> list[ApprovalOutcome]:
        """Look at the pull request of each version an upstream environment serves alone."""
        env = config.name
        versions = sorted(
            {v for v in upstream_pins(self._workspace, env, model).values() if v is not None}
        )
        if not versions:
            return [ApprovalOutcome("idle", f"{model} → {env}: no version to approve")]
        untrusted = self._untrusted(config, model)
        if untrusted is not None:
            return [ApprovalOutcome("idle", untrusted)]
        return [self._version(config, model, version) for version in versions]

    def record(self, config: EnvironmentConfig, model: str, version: int) -> ApprovalOutcome:
        """Look at the pull request of ``model`` v``version``'s proposal to ``config`` and
        record its approval if it has one and none is recorded yet (``sluice evidence
        record-approval``); :class:`ConfigError` when this key's evidence would not count."""
        untrusted = self._untrusted(config, model)
        if untrusted is not None:
            raise ConfigError(untrusted)
        return self._version(config, model, version)

    def _untrusted(self, config: EnvironmentConfig, model: str) -> str | None:
        """Why nothing is recorded with this key, when the environment does not trust it."""
        env = config.name
        keyid = self._signer.public_key.keyid
        trusted = read_controller_keys(self._workspace, [config])[env]
        if keyid in {key.keyid for key in trusted}:
            return None
        return (
            f"{model} → {env}: approvals are not recorded: the evidence key (key id "
            f"{keyid[:12]}…) is not one of {env}'s evidence.controllerKeys"
        )

    def _recorded(self, model: str, version: int, env: str) -> bool:
        return evidence_tag(env, "approval") in self._evidence.evidence_tags(model, version)

    def _version(self, config: EnvironmentConfig, model: str, version: int) -> ApprovalOutcome:
        env = config.name
        what = f"{model} v{version} → {env}"
        if self._recorded(model, version, env):
            return ApprovalOutcome("idle", f"{what}: approval recorded already", version)
        number = self._forge.find_pull_request(proposal_branch(env, model, version))
        if number is None:
            return ApprovalOutcome("idle", f"{what}: no pull request yet", version)
        found = self._forge.approvals(number)
        if not found.approvals:
            line = f"{what}: pull request #{number} waits for an approval"
            return ApprovalOutcome("waiting", line, version)
        if self._lease is None:
            return self._record(config, model, version, found)
        name = approval_lease_name(env, model)
        held = self._lease.hold(name)
        if held.holder != self._lease.holder:
            line = f"{what}: pull request #{number} approved; {held.holder} is recording it"
            return ApprovalOutcome("held", line, version)
        try:
            # Read again under the lease: another recorder may have recorded it and let go
            # since the first look.
            if self._recorded(model, version, env):
                return ApprovalOutcome("idle", f"{what}: approval recorded already", version)
            return self._record(config, model, version, found)
        finally:
            self._lease.release(name)

    def _record(
        self, config: EnvironmentConfig, model: str, version: int, found: PullRequestApprovals
    ) -> ApprovalOutcome:
        """Sign and keep the approval, then bring the pull request's status and body in step."""
        env, number = config.name, found.number
        record_evidence(
            self._evidence, self._attestations, self._signer, kind="approval",
            body=approval_body(
                approvers=found.approvers, number=number, url=found.url,
                approved_at=max(approval.at for approval in found.approvals),
            ),
            environment=env, model=model, version=version,
            controller=f"{self._controller} ({env})", now=self._clock(),
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
        line = (
            f"{model} v{version} → {env}: pull request #{number} approved by {approvers}, recorded"
        )
        return ApprovalOutcome("recorded", line, version)
