"""Propose: an approved registry version becomes a reviewed change to an environment's pin.

Kargo-style small steps, each idempotent so a rerun (or a crash and a rerun) converges: read
the environment from Git, resolve the version in the registry, verify its provenance when the
environment requires it, map its storage URI, edit the pin, validate the rendered overlay,
commit and push a deterministic branch, open or adopt the pull request. Nothing is pushed when
validation fails, nothing is written at all when the provenance check refuses the version
(:mod:`controller.provenance.policy`) or the environment's ``promotion:`` finds its evidence
incomplete (:mod:`controller.proposals.propose_evidence`), and nothing is committed when
nothing would change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from controller.domain import QUARANTINE_TAG, ChangeRequest, ModelVersion, RunSummary
from controller.errors import ConfigError, GateFailed, GitConflict, InputError, ManifestInvalid
from controller.manifests.deployment_mode import DeploymentMode
from controller.manifests.environment import ENVIRONMENT_FILE, EnvironmentConfig, parse_environment
from controller.manifests.inference_logger import set_inference_logger
from controller.manifests.manifest import (
    PinnedRelease,
    ReleasePin,
    apply_release,
    dump_pin,
    load_pin,
    read_release,
    set_annotations,
    set_shadow_annotations,
    set_smoke_annotation,
)
from controller.manifests.render import validate_rendered
from controller.manifests.storage_uri import map_storage_uri
from controller.ports import AttestationStore, Forge, ProposalRegistry, ReleaseRepository
from controller.proposals.evidence_gate import PromotionCheck
from controller.proposals.model_card import ModelCard, render_model_card
from controller.proposals.model_card_evidence import evidence_section
from controller.proposals.propose_evidence import (
    EVIDENCE_CONTEXT,
    EvidenceStores,
    Override,
    evidence_lines,
    evidence_status,
    hold_proposal,
)
from controller.provenance.policy import (
    PolicyOutcome,
    check_version,
    outcome_tag,
    pin_annotations,
    read_trusted_keys,
)
from controller.quality.data_profile import DataProfile
from controller.rollout.policy import needs_prediction_log
from controller.text.commit_message import ProposalMessage, proposal_branch, render_proposal_message

if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner

    from controller.ports import EvidenceStore

__all__ = ["ProposalRequest", "ProposalResult", "propose", "read_environment"]

Status = Literal["proposed", "unchanged", "already-serving", "dry-run"]


@dataclass(frozen=True)
class ProposalRequest:
    """What the user asked for."""

    model: str
    environment: str
    version: int | None = None
    alias: str | None = None
    dry_run: bool = False
    #: Propose again a version whose earlier proposal branch was merged and then undone (a
    #: rollback or an aborted rollout): the branch starts again from the base. A person's
    #: ``sluice propose`` asks for this; the ``sluice serve`` loop does not, so an alias that
    #: still names a rolled-back version is not proposed on every pass.
    restart_merged: bool = False
    #: ``--force --reason``: propose past missing evidence of an environment with
    #: ``promotion:``, recorded as a signed override (never past a quarantine or forgery).
    override: Override | None = None


@dataclass(frozen=True)
class ProposalResult:
    """What happened, as ``--json`` prints it."""

    status: Status
    model: str
    environment: str
    version: int
    previous_version: int | None
    canary_percent: int | None
    storage_uri: str
    branch: str
    base: str
    commit: str | None
    subject: str
    diff: str
    pull_request: int | None = None
    pull_request_url: str | None = None
    superseded: tuple[int, ...] = ()
    merge_command: str | None = None
    #: What the proposal left out and why, said once (an inference logger without eventsUrl).
    notes: tuple[str, ...] = ()
    #: The provenance check's line when the environment requires one (verified, or failed
    #: under a policy that only warns); None when it requires none.
    provenance: str | None = None
    #: What a reviewer must know before merging: a provenance check that failed under warn.
    warnings: tuple[str, ...] = ()
    #: For an environment with ``promotion:``: the ``sluice/evidence`` state (success,
    #: pending, failure) and one line per requirement met or missing; None and () otherwise.
    evidence_state: str | None = None
    evidence: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def read_environment(workspace: ReleaseRepository, name: str) -> EnvironmentConfig:
    """The environment ``name`` as the remote's default branch declares it (its
    ``sluice.yaml``); :class:`ConfigError` naming the known ones when it declares none."""
    default = workspace.default_branch()
    path = f"manifests/overlays/{name}/{ENVIRONMENT_FILE}"
    text = workspace.read(default, path)
    if text is None:
        known = workspace.list_dir(default, "manifests/overlays")
        raise ConfigError(
            f"unknown environment {name!r}: {path} is not on {default} "
            f"(known: {', '.join(sorted(known)) or 'none'})"
        )
    return parse_environment(text, source=f"{path}@{default}", environment=name)


def _pinned(workspace: ReleaseRepository, base: str, pin_path: str) -> PinnedRelease:
    text = workspace.read(base, pin_path)
    if text is None:
        raise ManifestInvalid(
            f"{pin_path} does not exist on {base}; the environment names it as the pin"
        )
    return read_release(load_pin(text, source=f"{pin_path}@{base}"))


def _edit(
    pin_path: str,
    overlay: str,
    pin: ReleasePin,
    mode: DeploymentMode,
    shadow_percent: float | None = None,
    smoke: bool = False,
    events_url: str | None = None,
    annotations: Mapping[str, str | None] | None = None,
) -> Callable[[Path], None]:
    def edit(worktree: Path) -> None:
        path = worktree / pin_path
        document = load_pin(path.read_text(encoding="utf-8"), source=pin_path)
        # The environment says how KServe canaries there (spec.canary in RawDeployment).
        apply_release(document, pin, source=pin_path, mode=mode)
        set_shadow_annotations(document, shadow_percent)
        if smoke:
            set_smoke_annotation(document)
        if events_url is not None:
            set_inference_logger(document, events_url, source=pin_path)
        if annotations:
            set_annotations(document, annotations)
        path.write_text(dump_pin(document), encoding="utf-8")
        # Validate what Argo CD would apply, before anything is committed.
        validate_rendered(worktree / overlay, tree=worktree)

    return edit


def _resolve(registry: ProposalRegistry, request: ProposalRequest, alias: str) -> ModelVersion:
    if request.version is not None:
        version = registry.resolve(request.model, version=request.version)
    else:
        version = registry.resolve(request.model, alias=request.alias or alias)
    if version.quarantined:
        # --force does not override this: the rollout would roll the version straight back.
        reason = version.tags.get(QUARANTINE_TAG, "")
        raise InputError(
            f"{request.model} v{version.version} is quarantined ({reason}); if it should roll "
            f"out after all, lift the quarantine first: sluice quarantine lift {request.model} "
            f"{version.version} --reason '...'"
        )
    return version


@dataclass(frozen=True)
class _Plan:
    """Everything decided before Git is touched."""

    config: EnvironmentConfig
    version: ModelVersion
    run: RunSummary | None
    pin_path: str
    edit: Callable[[Path], None]
    message: str
    draft: ProposalResult
    #: The pre-traffic smoke's requests when the pin starts in the smoke phase, else None.
    smoke_requests: int | None = None
    #: The provenance check under the environment's policy; None when it requires none.
    provenance: PolicyOutcome | None = None
    #: The evidence held to the environment's promotion:; None when it has none.
    promotion: PromotionCheck | None = None


def _plan(
    request: ProposalRequest, registry: ProposalRegistry, workspace: ReleaseRepository
) -> _Plan:
    config = read_environment(workspace, request.environment)
    release, policy = config.release(request.model), config.policy_for(request.model)
    version = _resolve(registry, request, release.alias)
    storage_uri = map_storage_uri(version.artifact_uri, config.storage, environment=config.name)
    overlay = f"manifests/overlays/{config.name}"
    pin_path = f"{overlay}/{release.pin}"
    current = _pinned(workspace, config.branch, pin_path)
    serving = current.storage_uri is not None and current.version is not None
    previous = current.version if serving else None
    first_step = policy.steps[0]
    canary = first_step if previous is not None and first_step < 100 else None
    same_version = serving and current.version == version.version
    if same_version:
        # Re-pinning what serves (its storage mapping changed) keeps its rollout state.
        previous, canary = current.previous_version, current.canary_percent
    elif config.deployment_mode == "RawDeployment" and current.canary_percent is not None:
        previous, canary = _replace_raw_canary(current, version.version, first_step)
    shadow_percent = None
    if policy.shadow is not None and canary is not None and not same_version:
        # Weight 0: the new revision exists and gets a mirrored copy of the live requests.
        canary, shadow_percent = 0, policy.shadow.mirror_percent
    smoke_then = None
    if policy.smoke.enabled and shadow_percent is None and canary and not same_version:
        # Weight 0 first: KServe gives a ready revision its share at once, and the smoke must
        # come before any client request (the shadow phase runs it at its own start).
        canary, smoke_then = 0, canary
    run = registry.run_summary(version.run_id) if version.run_id else None
    message = render_proposal_message(
        ProposalMessage(
            model=request.model, version=version.version, environment=config.name,
            previous_version=previous, canary_percent=canary, storage_uri=storage_uri,
            run_id=version.run_id, run_url=run.url if run else None,
            metrics=run.metrics if run else {}, shadow_percent=shadow_percent,
            smoke_then=smoke_then,
        )
    )  # fmt: skip
    pin = ReleasePin(
        model=request.model, version=version.version, storage_uri=storage_uri,
        run_id=version.run_id, previous_version=previous, canary_percent=canary,
    )  # fmt: skip
    draft = ProposalResult(
        status="already-serving", model=request.model, environment=config.name,
        version=version.version, previous_version=previous, canary_percent=canary,
        storage_uri=storage_uri, base=config.branch, commit=None,
        branch=proposal_branch(config.name, request.model, version.version),
        subject=message.splitlines()[0], diff="",
    )  # fmt: skip
    if not (same_version and current.storage_uri == storage_uri):
        draft = replace(draft, status="proposed")
    events_url, notes = _inference_logger(config, request.model)
    draft = replace(draft, notes=notes)
    edit = _edit(
        pin_path, overlay, pin, config.deployment_mode, shadow_percent, smoke_then is not None,
        events_url, pin_annotations(version.tags),
    )  # fmt: skip
    smoke_requests = policy.smoke.requests if smoke_then is not None else None
    return _Plan(config, version, run, pin_path, edit, message, draft, smoke_requests)


def _check_provenance(
    plan: _Plan,
    request: ProposalRequest,
    registry: ProposalRegistry,
    workspace: ReleaseRepository,
    attestations: AttestationStore | None,
) -> _Plan:
    """Verify the version under the environment's provenance policy, before anything is
    written; record the outcome on the version (not on a dry run) and refuse a failure the
    policy enforces with :class:`GateFailed`. ``--force`` has no say here: it overrides no
    forgery."""
    policy, environment = plan.config.provenance_check, plan.config.name
    if policy is None:
        return plan
    if attestations is None:
        raise ConfigError(
            f"{environment} requires provenance, but this proposal has no attestation store to "
            "verify it with; propose through `sluice propose` or `sluice serve`"
        )
    keys = read_trusted_keys(workspace, policy, environment)
    version = plan.version.version
    outcome = check_version(
        attestations, policy, keys, environment=environment, model=request.model, version=version
    )
    if not request.dry_run:
        registry.set_version_tags(
            request.model, version, {outcome_tag(environment): outcome.tag_value()}
        )
    if outcome.refused:
        raise GateFailed(
            f"{outcome.line()}; {environment} requires verified provenance, so nothing was proposed"
        )
    draft = replace(plan.draft, provenance=outcome.line())
    if outcome.warned:
        warning = (
            f"{outcome.line()}; {environment}'s provenance policy only warns (mode: warn), so "
            "it is proposed anyway"
        )
        draft = replace(draft, warnings=(*draft.warnings, warning))
    return replace(plan, draft=draft, provenance=outcome)


def _check_evidence(
    plan: _Plan,
    request: ProposalRequest,
    registry: ProposalRegistry,
    workspace: ReleaseRepository,
    stores: EvidenceStores | None,
    now: float,
) -> _Plan:
    """Hold the version to the environment's ``promotion:`` before anything is written
    (:func:`~controller.proposals.propose_evidence.hold_proposal`)."""
    check = hold_proposal(
        plan.config, model=request.model, version=plan.version.version, workspace=workspace,
        registry=registry, stores=stores, override=request.override, dry_run=request.dry_run,
        now=now,
    )  # fmt: skip
    if check is None:
        return plan
    state, _ = evidence_status(check)
    draft = replace(plan.draft, evidence_state=state, evidence=evidence_lines(check))
    return replace(plan, draft=draft, promotion=check)


def _inference_logger(config: EnvironmentConfig, model: str) -> tuple[str | None, tuple[str, ...]]:
    """The URL the pin's inference logger posts to when the release's policy judges its
    answers (:func:`~controller.rollout.policy.needs_prediction_log`), and a note when it
    would but the environment gives no ``eventsUrl``."""
    if not needs_prediction_log(config.policy_for(model)):
        return None, ()
    if config.events_url is None:
        return None, (
            f"{model}'s policy in {config.name} judges its answers (a shadow phase or KPIs), but "
            f"{config.name}'s {ENVIRONMENT_FILE} sets no eventsUrl: the InferenceService gets "
            "no inference logger, so the cluster's answers do not reach sluice serve's "
            "prediction log; set eventsUrl to sluice serve's /v1/events",
        )
    return config.events_url, ()


def _replace_raw_canary(
    current: PinnedRelease, version: int, first_step: int
) -> tuple[int | None, int | None]:
    """(previous, canary percent) of a version proposed while a RawDeployment canary runs.

    The primary still serves ``current.previous_version``: the new version replaces the canary
    beside it at the first step, and the primary's own version ends the canary instead.
    """
    primary = current.previous_version
    if primary is None or primary == version:
        return None, None
    return primary, first_step if first_step < 100 else None


def _profile(registry: ProposalRegistry, run_id: str | None) -> DataProfile | None:
    """The card shows the profile when there is one it can read, and leaves it out otherwise."""
    if run_id is None:
        return None
    try:
        return registry.reference_profile(run_id)
    except InputError:
        return None


def _open_pull_request(
    plan: _Plan, result: ProposalResult, registry: ProposalRegistry, forge: Forge
) -> ProposalResult:
    champion = registry.version_by_alias(result.model, "champion")
    card = ModelCard(
        model=result.model, environment=result.environment, version=plan.version,
        previous_version=result.previous_version, run=plan.run or RunSummary(run_id="-", url="-"),
        registry_url=registry.version_url(result.model, result.version),
        storage_uri=result.storage_uri, champion_version=champion.version if champion else None,
        canary_steps=plan.config.policy_for(result.model).steps,
        gates=("request-success-rate", "request-latency", "load-test"), diff=result.diff,
        profile=_profile(registry, plan.version.run_id), smoke_requests=plan.smoke_requests,
        provenance=_card_provenance(plan), evidence=_card_evidence(plan),
    )  # fmt: skip
    assert result.commit is not None
    pull = forge.open_or_update(
        ChangeRequest(
            branch=result.branch, base=result.base, title=result.subject,
            body=render_model_card(card),
            labels=("sluice", f"model:{result.model}", f"env:{result.environment}"),
            head_sha=result.commit,
            supersedes_prefix=f"sluice/{result.environment}/{result.model}/",
        )
    )  # fmt: skip
    forge.report_status(
        result.commit, context="sluice/validate", state="success",
        description="Rendered overlay validates against KServe's InferenceService schema",
    )  # fmt: skip
    if plan.promotion is not None:
        state, description = evidence_status(plan.promotion)
        forge.report_status(
            result.commit, context=EVIDENCE_CONTEXT, state=state, description=description
        )
    return replace(
        result, pull_request=pull.number, pull_request_url=pull.url, superseded=pull.superseded
    )


def _card_evidence(plan: _Plan) -> str | None:
    check = plan.promotion
    if check is None:
        return None
    return evidence_section(check.environment, check.checks, check.verdict)


def _card_provenance(plan: _Plan) -> str:
    """The card's verification result: the check's outcome, or that the environment asks none."""
    outcome = plan.provenance
    if outcome is None:
        return f"not checked ({plan.config.name} requires no provenance)"
    if outcome.verification.verified:
        return f"verified for {outcome.environment}: {outcome.verification.reason}"
    return (
        f"⚠️ {outcome.verification.failed} check failed: {outcome.verification.reason} "
        f"({outcome.environment}'s policy only warns)"
    )


def _check_landed(workspace: ReleaseRepository, draft: ProposalResult, pin_path: str) -> None:
    """Success is only ever reported for a branch that is on the remote with the change: fetch
    again and read the pin there (a :class:`GitConflict` otherwise, and nothing is reported)."""
    workspace.sync()
    text = workspace.read(draft.branch, pin_path)
    pinned = None if text is None else read_release(load_pin(text, source=pin_path))
    if pinned is None or (pinned.version, pinned.storage_uri) != (
        draft.version,
        draft.storage_uri,
    ):
        found = "does not exist" if pinned is None else f"pins v{pinned.version}"
        raise GitConflict(
            f"after the push, {draft.branch} on the remote {found}, not v{draft.version} at "
            f"{draft.storage_uri}; another writer moved it: run again"
        )


def _tip(workspace: ReleaseRepository, branch: str) -> str:
    """The branch's tip as of the last sync (after a push, the base the diff is shown from)."""
    sha = workspace.remote_sha(branch)
    if sha is None:
        raise GitConflict(f"{branch} no longer exists on the remote; another writer deleted it")
    return sha


def propose(
    request: ProposalRequest,
    *,
    registry: ProposalRegistry,
    workspace: ReleaseRepository,
    forge: Forge,
    attestations: AttestationStore | None = None,
    evidence: EvidenceStore | None = None,
    evidence_signer: CryptoSigner | None = None,
    clock: Callable[[], float] = time.time,
) -> ProposalResult:
    """Run the proposal steps; see the module docstring for their order and guarantees.

    ``attestations`` verifies versions for an environment whose policy requires provenance
    (:class:`ConfigError` when it does and none is given); with ``evidence`` too, it checks
    the evidence an environment with ``promotion:`` requires, and ``evidence_signer`` signs
    the override of ``request.override``.

    The Git half (fetch, read, edit, commit, push, check) holds the workspace's lock, so that
    processes sharing a state directory never edit each other's work tree.
    """
    with workspace.locked():
        workspace.sync()
        plan = _plan(request, registry, workspace)
        draft = plan.draft
        if draft.status == "already-serving":
            return replace(draft, commit=workspace.remote_sha(draft.base))
        plan = _check_provenance(plan, request, registry, workspace, attestations)
        stores = (
            EvidenceStores(evidence, attestations, evidence_signer)
            if evidence is not None and attestations is not None
            else None
        )
        plan = _check_evidence(plan, request, registry, workspace, stores, clock())
        draft = plan.draft
        if request.dry_run:
            diff = workspace.preview(
                branch=draft.branch, base=draft.base, edit=plan.edit, path=plan.pin_path,
                restart_merged=request.restart_merged,
            )  # fmt: skip
            return replace(draft, status="dry-run", diff=diff)
        forge.check_access()
        outcome = workspace.commit_and_push(
            branch=draft.branch, base=draft.base, edit=plan.edit, message=plan.message,
            restart_merged=request.restart_merged,
        )  # fmt: skip
        _check_landed(workspace, draft, plan.pin_path)
        result = replace(
            draft,
            status="proposed" if outcome.committed else "unchanged",
            commit=outcome.sha,
            diff=workspace.diff(_tip(workspace, draft.base), outcome.sha, plan.pin_path),
        )
    if not forge.opens_pull_requests:  # the model card's registry reads would be for nothing
        return replace(
            result,
            merge_command=(
                f"git fetch origin && git checkout {draft.base} && "
                f"git merge --no-ff origin/{draft.branch} && git push origin {draft.base}"
            ),
        )
    return _open_pull_request(plan, result, registry, forge)
