"""The evidence gate: may this version be proposed to an environment with ``promotion:``?

One call reads everything :func:`~controller.evidence.evaluate.evaluate` decides on: the
environments' ``sluice.yaml`` from the GitOps repository's default branch, their controller
keys (:func:`~controller.evidence.keys.read_controller_keys`), the version's evidence checked
against its bytes as served now (:func:`~controller.evidence.record.check_evidence`), what each
upstream environment says of the version, and its provenance verification when the policy
requires one. ``sluice propose``, ``sluice serve``'s auto-proposal and ``sluice status`` all
ask it, so they cannot disagree.

What an upstream environment says (:class:`~controller.evidence.evaluate.UpstreamState`) is
read, not remembered:

- *quarantined there*: the version's ``sluice.quarantined`` tag names that environment
  (a quarantine recorded anywhere else refuses the version too: the rollout would roll it
  straight back);
- *superseded there*: its pin, on the branch that environment syncs from, names a later
  version that is not quarantined (a later version that failed there supersedes nothing);
- *had a shadow phase there*: a shadow verdict was recorded there (verified or not), or its
  pin names this version in its shadow phase now.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from controller.errors import ConfigError, ManifestInvalid
from controller.evidence.evaluate import EvidenceVerdict, Missing, UpstreamState, evaluate
from controller.evidence.keys import read_controller_keys
from controller.evidence.policy import ApprovalRequirement, PromotionPolicy
from controller.evidence.record import check_evidence
from controller.evidence.verify import EvidenceCheck
from controller.manifests.environment import ENVIRONMENT_FILE, EnvironmentConfig, parse_environment
from controller.manifests.manifest import load_pin, read_release
from controller.proposals.quarantine import QUARANTINE_TAG
from controller.provenance.policy import check_version, read_trusted_keys
from controller.shadow.phase import PHASE_ANNOTATION, SHADOW_PHASE

if TYPE_CHECKING:
    from controller.ports import AttestationStore, EvidenceStore, ModelRegistry, ReleaseRepository
    from controller.provenance.verify import Verification

__all__ = ["PromotionCheck", "check_promotion", "pinned_version", "upstream_pins"]


@dataclass(frozen=True)
class PromotionCheck:
    """A version held to an environment's ``promotion:``: the verdict and what it was read from."""

    environment: str
    model: str
    version: int
    policy: PromotionPolicy
    #: Every piece of the version's evidence, checked (the pull request lists them all).
    checks: tuple[EvidenceCheck, ...]
    upstream: tuple[UpstreamState, ...]
    verdict: EvidenceVerdict


@dataclass(frozen=True)
class _Pin:
    version: int | None
    canary_percent: int | None
    phase: str | None


def _environment(
    workspace: ReleaseRepository, default: str, name: str, named_by: str
) -> EnvironmentConfig:
    path = f"manifests/overlays/{name}/{ENVIRONMENT_FILE}"
    text = workspace.read(default, path)
    if text is None:
        raise ConfigError(f"{named_by} names environment {name!r}, but {path} is not on {default}")
    return parse_environment(text, source=f"{path}@{default}", environment=name)


def _pin(workspace: ReleaseRepository, config: EnvironmentConfig, model: str) -> _Pin | None:
    """What ``config``'s pin of ``model`` names on its branch; None when it serves no such
    model or its pin is absent or broken (the proposal there reports a broken pin itself)."""
    release = next((r for r in config.releases if r.model == model), None)
    if release is None:
        return None
    path = f"manifests/overlays/{config.name}/{release.pin}"
    text = workspace.read(config.branch, path)
    if text is None:
        return None
    try:
        document = load_pin(text, source=f"{path}@{config.branch}")
        pinned = read_release(document)
    except ManifestInvalid:
        return None
    annotations = (document.get("metadata") or {}).get("annotations") or {}
    phase = annotations.get(PHASE_ANNOTATION)
    return _Pin(pinned.version, pinned.canary_percent, str(phase) if phase else None)


def pinned_version(
    workspace: ReleaseRepository, config: EnvironmentConfig, model: str
) -> int | None:
    """The version ``config``'s pin of ``model`` names on its branch (None: none, or no pin)."""
    pin = _pin(workspace, config, model)
    return pin.version if pin is not None else None


def upstream_pins(
    workspace: ReleaseRepository, environment: str, model: str
) -> dict[str, int | None]:
    """The version each upstream environment of ``environment`` has fully promoted for
    ``model`` (its pin at 100 %, no canary, shadow or smoke phase), None where it has none;
    empty when ``environment`` has no ``promotion:``. ``sluice serve`` proposes from these."""
    default = workspace.default_branch()
    config = _environment(workspace, default, environment, "the proposal")
    if config.promotion is None:
        return {}
    found: dict[str, int | None] = {}
    for name in config.promotion.upstream:
        upstream = _environment(workspace, default, name, f"{environment}'s promotion.from")
        pin = _pin(workspace, upstream, model)
        promoted = pin is not None and pin.canary_percent is None and pin.phase is None
        found[name] = pin.version if promoted and pin is not None else None
    return found


def _quarantine(tags: Mapping[str, str]) -> tuple[str, str] | None:
    """(environment, reason) of the version's quarantine; None when it has none."""
    if QUARANTINE_TAG not in tags:
        return None
    return str(tags.get(f"{QUARANTINE_TAG}.environment", "")), str(tags[QUARANTINE_TAG])


def _upstream_state(
    workspace: ReleaseRepository,
    registry: ModelRegistry,
    config: EnvironmentConfig,
    *,
    model: str,
    version: int,
    quarantine: tuple[str, str] | None,
    checks: Sequence[EvidenceCheck],
) -> UpstreamState:
    name = config.name
    pin = _pin(workspace, config, model)
    superseded_by = None
    if pin is not None and pin.version is not None and pin.version > version:
        later = registry.resolve(model, version=pin.version)
        superseded_by = None if later.quarantined else pin.version
    shadow_ran = any((c.environment, c.kind) == (name, "shadow") for c in checks) or (
        pin is not None and pin.version == version and pin.phase == SHADOW_PHASE
    )
    return UpstreamState(
        name,
        quarantined=quarantine[1] if quarantine and quarantine[0] == name else None,
        superseded_by=superseded_by,
        shadow_ran=shadow_ran,
    )


def _provenance(
    workspace: ReleaseRepository,
    attestations: AttestationStore,
    config: EnvironmentConfig,
    *,
    model: str,
    version: int,
) -> Verification | None:
    policy = config.provenance_check
    if policy is None:
        return None  # evaluate says "provenance: not verified"
    keys = read_trusted_keys(workspace, policy, config.name)
    return check_version(
        attestations, policy, keys, environment=config.name, model=model, version=version
    ).verification


def check_promotion(
    *,
    workspace: ReleaseRepository,
    registry: ModelRegistry,
    evidence: EvidenceStore,
    attestations: AttestationStore,
    model: str,
    version: int,
    environment: str,
    before_pull_request: bool = False,
) -> PromotionCheck | None:
    """Hold ``model`` v``version`` to ``environment``'s ``promotion:`` (None: it has none, any
    version may be proposed there). The workspace is read as of its last sync.

    ``before_pull_request`` leaves the approval out: it is given on the pull request, so a
    proposal cannot wait for it. A :class:`ConfigError` names an upstream environment or a
    key that is not on the default branch.
    """
    default = workspace.default_branch()
    config = _environment(workspace, default, environment, "the proposal")
    policy = config.promotion
    if policy is None:
        return None
    upstream = [
        _environment(workspace, default, name, f"{environment}'s promotion.from")
        for name in policy.upstream
    ]
    keys = read_controller_keys(workspace, [*upstream, config])
    checks = check_evidence(
        evidence, attestations, model=model, version=version, trusted_keys_by_env=keys
    )
    quarantine = _quarantine(registry.resolve(model, version=version).tags)
    states = [
        _upstream_state(
            workspace,
            registry,
            up,
            model=model,
            version=version,
            quarantine=quarantine,
            checks=checks,
        )
        for up in upstream
    ]
    provenance = (
        _provenance(workspace, attestations, config, model=model, version=version)
        if policy.require.provenance
        else None
    )
    held = (
        policy.model_copy(update={"approval": ApprovalRequirement(required=False)})
        if before_pull_request
        else policy
    )
    verdict = evaluate(
        held, checks, states, environment=environment, version=version, provenance=provenance
    )
    if quarantine is not None and quarantine[0] not in policy.upstream:
        where = quarantine[0] or "an environment"
        elsewhere = Missing(
            "quarantined", where, f"{where} quarantined v{version}: {quarantine[1]}"
        )
        verdict = replace(verdict, missing=(*verdict.missing, elsewhere))
    return PromotionCheck(
        environment, model, version, policy, tuple(checks), tuple(states), verdict
    )
