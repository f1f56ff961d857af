"""Gathering a version's evidence verdict through the ports: what ``sluice evidence check`` and
the pipeline in ``sluice status`` hold a version to.

The decision is :func:`controller.evidence.evaluate.evaluate`, pure; this module reads what it
needs: every environment's ``sluice.yaml`` and controller keys from the GitOps repository's
default branch, the version's evidence checked against its bytes as served now
(:func:`~controller.evidence.record.check_evidence`), what each upstream environment says of it
(its quarantine, a later version promoted there, a shadow phase there) and, when the policy
asks, its provenance under the environment's own provenance policy.

A proposal's gate does the same gathering; when the propose gate's own module lands, this one
gives way to it (:func:`gather_verdict` is the one call the commands make).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from controller.errors import ConfigError, ManifestInvalid
from controller.evidence.evaluate import EvidenceVerdict, UpstreamState, evaluate
from controller.evidence.keys import read_controller_keys
from controller.evidence.policy import ApprovalRequirement, PromotionPolicy
from controller.evidence.record import check_evidence
from controller.evidence.verify import EvidenceCheck
from controller.manifests.environment import ENVIRONMENT_FILE, EnvironmentConfig, parse_environment
from controller.manifests.manifest import PinnedRelease, load_pin, read_release
from controller.ports import AttestationStore, EvidenceStore, ModelRegistry, ReleaseRepository
from controller.provenance.policy import check_version, read_trusted_keys
from controller.provenance.verify import Verification
from controller.rollout.observe import QUARANTINE_TAG
from controller.rollout.record import shadow_tag

__all__ = [
    "EvidenceSources",
    "gather_verdict",
    "pinned_release",
    "proposal_policy",
    "read_environments",
    "upstream_state",
    "upstream_states",
    "version_checks",
]


@dataclass(frozen=True)
class EvidenceSources:
    """The ports a verdict is read through."""

    workspace: ReleaseRepository
    registry: ModelRegistry
    attestations: AttestationStore
    evidence: EvidenceStore


def read_environments(workspace: ReleaseRepository) -> list[EnvironmentConfig]:
    """Every environment the default branch declares (an overlay with a ``sluice.yaml``), by
    name; one whose file does not parse is a :class:`ConfigError` naming it."""
    default = workspace.default_branch()
    configs = []
    for name in sorted(workspace.list_dir(default, "manifests/overlays")):
        path = f"manifests/overlays/{name}/{ENVIRONMENT_FILE}"
        text = workspace.read(default, path)
        if text is not None:
            configs.append(parse_environment(text, source=f"{path}@{default}", environment=name))
    return configs


def version_checks(
    sources: EvidenceSources, model: str, version: int, environments: Sequence[EnvironmentConfig]
) -> list[EvidenceCheck]:
    """Every piece of the version's evidence, each checked against the controller keys of the
    environment it names."""
    keys = read_controller_keys(sources.workspace, environments)
    return check_evidence(
        sources.evidence,
        sources.attestations,
        model=model,
        version=version,
        trusted_keys_by_env=keys,
    )


def pinned_release(
    workspace: ReleaseRepository, environment: EnvironmentConfig, model: str
) -> PinnedRelease | None:
    """What ``environment``'s pin of ``model`` says on the branch it syncs from; None when the
    environment does not serve the model or its pin is not there yet."""
    release = next((r for r in environment.releases if r.model == model), None)
    if release is None:
        return None
    path = f"manifests/overlays/{environment.name}/{release.pin}"
    text = workspace.read(environment.branch, path)
    if text is None:
        return None
    try:
        return read_release(load_pin(text, source=f"{path}@{environment.branch}"))
    except ManifestInvalid:
        return None


def upstream_state(
    name: str, version: int, tags: Mapping[str, str], pin: PinnedRelease | None
) -> UpstreamState:
    """What environment ``name`` says of the version: its quarantine (recorded on the version,
    with where), a later version promoted to 100 % there since (``pin``, its pin of the
    model), a shadow verdict there."""
    quarantined = tags.get(QUARANTINE_TAG)
    where = tags.get(f"{QUARANTINE_TAG}.environment")
    if quarantined is not None and where and where != name:
        quarantined = f"{quarantined} (in {where})"
    promoted = pin.version if pin is not None and pin.canary_percent in (None, 100) else None
    superseded = promoted if promoted is not None and promoted > version else None
    return UpstreamState(
        environment=name,
        quarantined=quarantined,
        superseded_by=superseded,
        shadow_ran=shadow_tag(name) in tags,
    )


def upstream_states(
    sources: EvidenceSources,
    policy: PromotionPolicy,
    model: str,
    version: int,
    environments: Sequence[EnvironmentConfig],
) -> list[UpstreamState]:
    """What each environment of the policy's ``from`` says of the version."""
    by_name = {config.name: config for config in environments}
    tags = sources.registry.resolve(model, version=version).tags
    states = []
    for name in policy.upstream:
        config = by_name.get(name)
        pin = pinned_release(sources.workspace, config, model) if config is not None else None
        states.append(upstream_state(name, version, tags, pin))
    return states


def proposal_policy(policy: PromotionPolicy) -> PromotionPolicy:
    """The policy a proposal is held to: the approval is the pull request's, earned after it
    is opened, so it is left out."""
    return policy.model_copy(update={"approval": ApprovalRequirement(required=False)})


def _provenance(
    sources: EvidenceSources, environment: EnvironmentConfig, model: str, version: int
) -> Verification | None:
    check = environment.provenance_check
    if check is None:
        return None
    keys = read_trusted_keys(sources.workspace, check, environment.name)
    outcome = check_version(
        sources.attestations, check, keys, environment=environment.name, model=model,
        version=version,
    )  # fmt: skip
    return outcome.verification


def gather_verdict(
    sources: EvidenceSources,
    environment: EnvironmentConfig,
    model: str,
    version: int,
    *,
    environments: Sequence[EnvironmentConfig],
    checks: Sequence[EvidenceCheck] | None = None,
    upstream: Sequence[UpstreamState] | None = None,
    with_approval: bool = False,
) -> EvidenceVerdict:
    """``model`` v``version`` held to ``environment``'s ``promotion:`` (a :class:`ConfigError`
    when it has none). ``environments`` are every environment declared (their keys and
    pins); ``checks`` the version's checked evidence and ``upstream`` what the upstream
    environments say of it, when already read. Without ``with_approval`` the verdict is a
    proposal's: the approval is not asked for."""
    policy = environment.promotion
    if policy is None:
        raise ConfigError(
            f"{environment.name} has no promotion: block in its {ENVIRONMENT_FILE}, so no "
            "evidence is required there; add one (see the README's Promotion by evidence)"
        )
    if checks is None:
        checks = version_checks(sources, model, version, environments)
    if upstream is None:
        upstream = upstream_states(sources, policy, model, version, environments)
    provenance = (
        _provenance(sources, environment, model, version) if policy.require.provenance else None
    )
    return evaluate(
        policy if with_approval else proposal_policy(policy),
        checks,
        upstream,
        environment=environment.name,
        version=version,
        provenance=provenance,
    )
