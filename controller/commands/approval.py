"""``sluice evidence record-approval``: the approval of a production pull request, recorded as
``sluice serve`` records it, for teams that run no ``sluice serve``.

The Promote workflow runs it when a review approves a pull request of a proposal branch
(``sluice/ENV/MODEL/vN``). It reads the pull request's branch and reviews through the
:class:`~controller.ports.Forge`, then hands the version to the same
:class:`~controller.proposals.approval_evidence.ApprovalRecorder` the serve loop uses: the
approvals that count are GitHub's rule, the piece is signed with the environment's evidence key
and kept once (the tag on the version means recorded, so a second run records nothing), the
``sluice/evidence`` status and the body's Evidence section are brought in step, and the
recorder's lease (:func:`~controller.lease.approval_lease_name`, a ref in the GitOps remote)
keeps a ``sluice serve`` and this command from both recording it. Where another recorder holds
that lease, this command waits for it (one lease duration at most) and looks again, so a run
ends knowing whether the approval is recorded. Exit 0 recorded (now or before), 1 when no
approval counts yet, 2 on bad input, 3 when GitHub, Git or MLflow does not answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Console

from controller.commands.evidence import EvidenceSources, environment_config
from controller.errors import ConfigError, GateFailed, InputError
from controller.evidence.signing import EVIDENCE_KEY_ENV, EVIDENCE_KEY_FILE_ENV
from controller.lease import Lease, LeaseKeeper, approval_lease_name
from controller.proposals.approval_evidence import ApprovalOutcome, ApprovalRecorder
from controller.proposals.evidence_gate import read_environments
from controller.text.commit_message import proposal_of_branch

if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner

    from controller.ports import Forge
    from controller.settings import Settings

__all__ = ["ApprovalSources", "approval_sources", "run_record_approval"]

#: Who records, as the predicate's ``controller.id`` names it (with the environment).
RECORDER = "sluice evidence record-approval"


@dataclass(frozen=True)
class ApprovalSources:
    """What recording an approval reads and writes through: the evidence's ports, the forge,
    the recorders' lease and the environment's evidence key (None: not configured)."""

    evidence: EvidenceSources
    forge: Forge
    lease: LeaseKeeper
    signer: CryptoSigner | None


def approval_sources(settings: Settings, remote: str | None) -> ApprovalSources:
    """The GitOps remote's clone (and its lease refs), MLflow, GitHub and the evidence key."""
    from controller.backends.mlflow_attestations import MlflowAttestations
    from controller.backends.mlflow_evidence import MlflowEvidence
    from controller.backends.mlflow_registry import MlflowRegistry, configure_mlflow_http
    from controller.commands.propose import build_forge, gitops_workspace
    from controller.commands.rollout_backends import approval_lease
    from controller.rollout.evidence_recorder import signer_from_settings

    configure_mlflow_http(
        retries=settings.registry_request_retries,
        timeout_seconds=settings.registry_request_timeout_seconds,
    )
    uri = settings.mlflow_tracking_uri
    workspace = gitops_workspace(settings, remote)
    evidence = EvidenceSources(
        workspace=workspace,
        registry=MlflowRegistry(uri),
        attestations=MlflowAttestations(uri),
        evidence=MlflowEvidence(uri),
    )
    return ApprovalSources(
        evidence=evidence,
        forge=build_forge(settings, "github"),
        lease=approval_lease(settings, workspace),
        signer=signer_from_settings(settings),
    )


def _say(console: Console, text: str) -> None:
    console.print(text, soft_wrap=True, markup=False, highlight=False)


def run_record_approval(
    sources: ApprovalSources,
    *,
    environment: str,
    number: int,
    console: Console,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> ApprovalOutcome:
    """Record the approval of pull request ``number``, a proposal to ``environment`` (see the
    module doc); prints one line saying what happened and returns it, or raises
    :class:`GateFailed` (exit 1) when no approval counts yet."""
    found = sources.evidence
    found.workspace.sync()
    config = environment_config(read_environments(found.workspace), environment)
    policy = config.promotion
    if policy is None or not policy.approval.required:
        line = (
            f"{environment} requires no approval (its promotion.approval.required is not "
            f"set): nothing recorded for pull request #{number}"
        )
        _say(console, line)
        return ApprovalOutcome("idle", line)
    if sources.signer is None:
        raise ConfigError(
            f"recording the approval of pull request #{number} signs it: set "
            f"{EVIDENCE_KEY_ENV} (or {EVIDENCE_KEY_FILE_ENV}) to {environment}'s evidence key, "
            "one whose public half its evidence.controllerKeys lists"
        )
    branch = sources.forge.approvals(number).branch
    proposal = proposal_of_branch(branch)
    if proposal is None or proposal[0] != environment:
        raise InputError(
            f"pull request #{number} is not a proposal to {environment}: its branch "
            f"{branch!r} is not sluice/{environment}/MODEL/vN; give the number of a pull "
            f"request `sluice propose --env {environment}` or `sluice serve` opened"
        )
    _, model, version = proposal
    recorder = ApprovalRecorder(
        workspace=found.workspace, registry=found.registry, evidence=found.evidence,
        attestations=found.attestations, forge=sources.forge, signer=sources.signer,
        clock=clock, lease=sources.lease, controller=RECORDER,
    )  # fmt: skip
    outcome = recorder.record(config, model, version)
    if outcome.state == "held":
        _say(console, outcome.line)
        name = approval_lease_name(environment, model)
        lease = sources.lease

        def waiting(held: Lease) -> None:
            _say(console, f"waiting for {held.holder} to record it or let its lease go")

        lease.acquire(name, wait_seconds=lease.duration_seconds, on_wait=waiting, sleep=sleep)
        try:
            outcome = recorder.record(config, model, version)
        finally:
            lease.release(name)
    if outcome.state == "waiting":
        raise GateFailed(
            f"{outcome.line}: nothing recorded (an approval counts when it is the reviewer's "
            "latest deciding review, approves the pull request's current head and is not its "
            "author's)"
        )
    _say(console, outcome.line)
    return outcome
