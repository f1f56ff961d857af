"""The evidence gate: may this version be proposed to an environment with ``promotion:``?

One call reads everything :func:`~controller.evidence.evaluate.evaluate` decides on: the
environments' ``sluice.yaml`` from the GitOps repository's default branch, every environment's
controller keys (:func:`~controller.evidence.keys.read_controller_keys`: a piece is checked
against the keys of the environment it names), the version's evidence checked against its
bytes as served now (:func:`~controller.evidence.record.check_evidence`), what each upstream
environment says of the version, and its provenance verification when the policy requires one.
``sluice propose``, ``sluice serve``'s auto-proposal, ``sluice evidence check`` and the
pipeline of ``sluice status`` all ask it, so they cannot disagree.

What an upstream environment says (:class:`~controller.evidence.evaluate.UpstreamState`) is
read, not remembered:

- *quarantined there*: the version's ``sluice.quarantined`` tag names that environment
  (a quarantine recorded anywhere else refuses the version too: the rollout would roll it
  straight back);
- *superseded there*: a later version has replaced it there. Its pin, on the branch that
  environment syncs from, names the later version serving alone (its canary done: no weight
  below 100 %, no shadow or smoke phase) and the later version is not quarantined. A later
  version still in its canary supersedes nothing yet: it may fail, and the version it would
  replace still serves;
- *had a shadow phase there*: a shadow verdict was recorded there (its registry tag, or its
  evidence, verified or not), or its pin names this version in its shadow phase now.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from controller.domain import QUARANTINE_TAG
from controller.errors import ConfigError, ManifestInvalid
from controller.evidence.evaluate import EvidenceVerdict, Missing, UpstreamState, evaluate
from controller.evidence.keys import read_controller_keys
from controller.evidence.policy import ApprovalRequirement, PromotionPolicy
from controller.evidence.record import check_evidence
from controller.evidence.verify import EvidenceCheck
from controller.manifests.environment import ENVIRONMENT_FILE, EnvironmentConfig, parse_environment
from controller.manifests.manifest import PinnedRelease, load_pin, read_release
from controller.provenance.policy import check_version, read_trusted_keys
from controller.rollout.record import shadow_tag
from controller.shadow.phase import PHASE_ANNOTATION, SHADOW_PHASE

if TYPE_CHECKING:
    from controller.ports import AttestationStore, EvidenceStore, ModelRegistry, ReleaseRepository
    from controller.provenance.verify import Verification

__all__ = [
    "PinState",
    "PromotionCheck",
    "check_promotion",
    "pinned",
    "pinned_version",
    "read_environments",
    "upstream_pins",
    "version_evidence",
]

_OVERLAYS = "manifests/overlays"


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
class PinState:
    """What an environment's pin of a model says on the branch it syncs from."""

    release: PinnedRelease
    #: The pin's ``sluice.dev/phase`` (``shadow``, ``smoke``), None outside such a phase.
    phase: str | None

    @property
    def serves_alone(self) -> bool:
        """The pinned version has replaced its predecessor: no canary weight below 100 %, no
        shadow or smoke phase."""
        percent = self.release.canary_percent
        return self.release.version is not None and percent in (None, 100) and not self.phase


def read_environments(
    workspace: ReleaseRepository, names: Sequence[str] | None = None
) -> list[EnvironmentConfig]:
    """The environments the default branch declares (an overlay with a ``sluice.yaml``), or
    those of ``names`` that it declares, in one read; a file that does not parse is a
    :class:`ConfigError` naming it."""
    default = workspace.default_branch()
    found = names if names is not None else sorted(workspace.list_dir(default, _OVERLAYS))
    paths = {name: f"{_OVERLAYS}/{name}/{ENVIRONMENT_FILE}" for name in found}
    texts = workspace.read_many(default, list(paths.values()))
    return [
        parse_environment(text, source=f"{paths[name]}@{default}", environment=name)
        for name in found
        if (text := texts[paths[name]]) is not None
    ]


def _named(
    configs: Sequence[EnvironmentConfig], name: str, named_by: str, default: str
) -> EnvironmentConfig:
    for config in configs:
        if config.name == name:
            return config
    path = f"{_OVERLAYS}/{name}/{ENVIRONMENT_FILE}"
    raise ConfigError(f"{named_by} names environment {name!r}, but {path} is not on {default}")


def pinned(workspace: ReleaseRepository, config: EnvironmentConfig, model: str) -> PinState | None:
    """What ``config``'s pin of ``model`` says on its branch; None when it serves no such
    model or its pin is absent or broken (the proposal there reports a broken pin itself)."""
    release = next((r for r in config.releases if r.model == model), None)
    if release is None:
        return None
    path = f"{_OVERLAYS}/{config.name}/{release.pin}"
    text = workspace.read(config.branch, path)
    return None if text is None else _read_pin(text)


@functools.lru_cache(maxsize=64)
def _read_pin(text: str) -> PinState | None:
    """A pin's text read (once per text: the gate, the auto-proposal and the pipeline read the
    same pins over and over, and parsing one is most of a check's time)."""
    try:
        document = load_pin(text, source="pin")
        found = read_release(document)
    except ManifestInvalid:
        return None
    annotations = (document.get("metadata") or {}).get("annotations") or {}
    phase = annotations.get(PHASE_ANNOTATION)
    return PinState(found, str(phase) if phase else None)


def pinned_version(
    workspace: ReleaseRepository, config: EnvironmentConfig, model: str
) -> int | None:
    """The version ``config``'s pin of ``model`` names on its branch (None: none, or no pin)."""
    pin = pinned(workspace, config, model)
    return pin.release.version if pin is not None else None


def upstream_pins(
    workspace: ReleaseRepository, environment: str, model: str
) -> dict[str, int | None]:
    """The version each upstream environment of ``environment`` has fully promoted for
    ``model`` (its pin serves it alone: :attr:`PinState.serves_alone`), None where it has none;
    empty when ``environment`` has no ``promotion:``. ``sluice serve`` proposes from these."""
    default = workspace.default_branch()
    configs = read_environments(workspace)
    config = _named(configs, environment, "the proposal", default)
    if config.promotion is None:
        return {}
    found: dict[str, int | None] = {}
    for name in config.promotion.upstream:
        upstream = _named(configs, name, f"{environment}'s promotion.from", default)
        pin = pinned(workspace, upstream, model)
        found[name] = pin.release.version if pin is not None and pin.serves_alone else None
    return found


def version_evidence(
    workspace: ReleaseRepository,
    evidence: EvidenceStore,
    attestations: AttestationStore,
    *,
    model: str,
    version: int,
    environments: Sequence[EnvironmentConfig] | None = None,
) -> list[EvidenceCheck]:
    """Every piece of the version's evidence, each checked against the controller keys of the
    environment it names (``environments``: every one the default branch declares)."""
    configs = read_environments(workspace) if environments is None else environments
    return check_evidence(
        evidence,
        attestations,
        model=model,
        version=version,
        trusted_keys_by_env=read_controller_keys(workspace, configs),
    )


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
    tags: Mapping[str, str],
    checks: Sequence[EvidenceCheck],
) -> UpstreamState:
    name = config.name
    pin = pinned(workspace, config, model)
    later = pin.release.version if pin is not None and pin.serves_alone else None
    superseded_by = None
    if later is not None and later > version:
        superseded_by = None if registry.resolve(model, version=later).quarantined else later
    shadow_ran = (
        shadow_tag(name) in tags
        or any((c.environment, c.kind) == (name, "shadow") for c in checks)
        or (pin is not None and pin.release.version == version and pin.phase == SHADOW_PHASE)
    )
    quarantine = _quarantine(tags)
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
    environments: Sequence[EnvironmentConfig] | None = None,
) -> PromotionCheck | None:
    """Hold ``model`` v``version`` to ``environment``'s ``promotion:`` (None: it has none, any
    version may be proposed there). The workspace is read as of its last sync;
    ``environments``, every environment it declares, when already read.

    ``before_pull_request`` leaves the approval out: it is given on the pull request, so a
    proposal cannot wait for it. A :class:`ConfigError` names an upstream environment or a
    key that is not on the default branch.
    """
    default = workspace.default_branch()
    configs = read_environments(workspace) if environments is None else environments
    config = _named(configs, environment, "the proposal", default)
    policy = config.promotion
    if policy is None:
        return None
    upstream = [
        _named(configs, name, f"{environment}'s promotion.from", default)
        for name in policy.upstream
    ]
    checks = version_evidence(
        workspace, evidence, attestations, model=model, version=version, environments=configs
    )
    tags = registry.resolve(model, version=version).tags
    states = [
        _upstream_state(
            workspace, registry, up, model=model, version=version, tags=tags, checks=checks
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
    quarantine = _quarantine(tags)
    if quarantine is not None and quarantine[0] not in policy.upstream:
        where = quarantine[0] or "an environment"
        elsewhere = Missing(
            "quarantined", where, f"{where} quarantined v{version}: {quarantine[1]}"
        )
        verdict = replace(verdict, missing=(*verdict.missing, elsewhere))
    return PromotionCheck(
        environment, model, version, policy, tuple(checks), tuple(states), verdict
    )
