"""Read one release's state from Git, the registry and the target into a ReleaseObservation.

The only place a rollout pass reads the world; the decision that follows is pure. The
environment's configuration and the pin are read from the remote branch as of one fetch, so
the observation is one consistent snapshot of Git.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controller.domain import QUARANTINE_TAG
from controller.errors import ConfigError, ManifestInvalid, ModelNotFound
from controller.gates.graph_replay import ReplayPayloads, parse_replay_payloads
from controller.manifests.environment import (
    ENVIRONMENT_FILE,
    EnvironmentConfig,
    ReleaseConfig,
    parse_environment,
)
from controller.manifests.manifest import load_pin, read_release
from controller.ports import ReleaseRepository, RolloutRegistry, Target
from controller.rollout.observation import ReleaseObservation
from controller.rollout.pin_edits import RESTORED_FROM, ROLLBACK_REASON, ROLLBACK_VERDICT
from controller.rollout.policy import RolloutPolicy
from controller.rollout.record import AnalysisRecord, analysis_tag
from controller.shadow.mirror import (
    KUSTOMIZATION_FILES,
    SHADOW_FILE,
    ShadowMirror,
    parse_shadow_mirror,
)
from controller.shadow.phase import PHASE_ANNOTATION, SMOKE_PHASE, shadow_request

__all__ = [
    "ReleaseRef",
    "load_environment_config",
    "load_release",
    "observe",
    "read_replay_payloads",
    "rollout_tag",
]


def rollout_tag(environment: str) -> str:
    """The version tag saying how its last rollout in ``environment`` ended when it did not
    end in a verdict on the model (``aborted``, with ``.reason``, ``.at``, ``.commit``)."""
    return f"sluice.rollout.{environment}"


@dataclass(frozen=True)
class ReleaseRef:
    """Where one model of one environment is configured and pinned."""

    environment: EnvironmentConfig
    release: ReleaseConfig

    @property
    def pin_path(self) -> str:
        """The pin file, relative to the repository root."""
        return f"manifests/overlays/{self.environment.name}/{self.release.pin}"

    @property
    def overlay(self) -> str:
        """The environment's overlay directory, relative to the repository root."""
        return f"manifests/overlays/{self.environment.name}"

    @property
    def branch(self) -> str:
        """The branch the environment syncs from."""
        return self.environment.branch

    @property
    def policy(self) -> RolloutPolicy:
        """The release's rollout policy: its own ``rollout`` merged over the environment's,
        or the environment's."""
        return self.environment.policy_for(self.release.model)


def load_release(workspace: ReleaseRepository, environment: str, model: str) -> ReleaseRef:
    """The environment's configuration (from the default branch) and the model's release."""
    config = load_environment_config(workspace, environment)
    return ReleaseRef(config, config.release(model))


def load_environment_config(workspace: ReleaseRepository, environment: str) -> EnvironmentConfig:
    """An environment's ``sluice.yaml`` as of the last fetch of the default branch."""
    default = workspace.default_branch()
    path = f"manifests/overlays/{environment}/{ENVIRONMENT_FILE}"
    text = workspace.read(default, path)
    if text is None:
        known = workspace.list_dir(default, "manifests/overlays")
        raise ConfigError(
            f"unknown environment {environment!r}: {path} is not on {default} "
            f"(known: {', '.join(sorted(known)) or 'none'})"
        )
    return parse_environment(text, source=f"{path}@{default}", environment=environment)


def observe(
    ref: ReleaseRef, workspace: ReleaseRepository, registry: RolloutRegistry, target: Target
) -> ReleaseObservation:
    """Git, registry and target, now (``workspace`` must have been synced by the caller)."""
    release, branch = ref.release, ref.branch
    head = workspace.remote_sha(branch)
    text = workspace.read(branch, ref.pin_path)
    if head is None or text is None:
        raise ManifestInvalid(
            f"{ref.pin_path} does not exist on {branch}; the environment names it as the pin"
        )
    document = load_pin(text, source=f"{ref.pin_path}@{branch}")
    pin = read_release(document)
    annotations = (document.get("metadata") or {}).get("annotations") or {}
    change = workspace.last_change(branch, ref.pin_path)
    quarantined: str | None = None
    aborted_commit: str | None = None
    aborted: str | None = None
    analysis: AnalysisRecord | None = None
    if pin.version is not None:
        try:
            version = registry.resolve(release.model, version=pin.version)
        except ModelNotFound:
            version = None
        if version is not None:
            quarantined = version.tags.get(QUARANTINE_TAG)
            rollout = rollout_tag(ref.environment.name)
            if version.tags.get(rollout) == "aborted":
                aborted_commit = version.tags.get(f"{rollout}.commit")
                aborted = version.tags.get(f"{rollout}.reason") or "aborted"
            analysis = AnalysisRecord.from_json(
                version.tags.get(analysis_tag(ref.environment.name))
            )
    champion = _alias_version(registry, release.model, release.champion_alias)
    mirror = _shadow_mirror(ref, workspace)
    mirror_change = (
        workspace.last_change(branch, f"{ref.overlay}/{SHADOW_FILE}") if mirror else None
    )
    return ReleaseObservation(
        model=release.model,
        environment=ref.environment.name,
        inference_service=release.inference_service,
        pin=pin,
        head=head,
        pin_commit=change.sha if change else head,
        pin_changed_at=change.time if change else 0.0,
        pin_action=(change.trailers.get("Sluice-Action") if change else None),
        target=target.observe(ref.environment.name, release.inference_service),
        champion=champion,
        quarantined=quarantined,
        analysis=analysis,
        rollback_reason=annotations.get(ROLLBACK_REASON),
        rollback_verdict=annotations.get(ROLLBACK_VERDICT),
        aborted_commit=aborted_commit,
        aborted=aborted,
        restored_from=_int(annotations.get(RESTORED_FROM)),
        shadow_percent=_shadow_percent(document),
        smoke=annotations.get(PHASE_ANNOTATION) == SMOKE_PHASE and pin.canary_percent == 0,
        shadow_mirror=mirror,
        shadow_mirror_changed_at=mirror_change.time if mirror_change else None,
        graph_traffic=release.graph_traffic,
        replay=read_replay_payloads(release, workspace),
    )


def read_replay_payloads(
    release: ReleaseConfig, workspace: ReleaseRepository
) -> ReplayPayloads | None:
    """The rows of the release's replay file, read from the default branch as its
    ``sluice.yaml`` is; a :class:`ConfigError` of one line naming the file and the fix when it
    is missing or unreadable, since the release cannot be judged as configured."""
    replay = release.graph_traffic.replay if release.graph_traffic is not None else None
    if replay is None:
        return None
    default = workspace.default_branch()
    text = workspace.read(default, replay.payloads)
    if text is None:
        raise ConfigError(
            f"{replay.payloads} is not on {default}, but release {release.model} replays it "
            "(graphTraffic.replay.payloads, a path from the repository's root); commit the "
            "file of the regime's requests or fix the path"
        )
    return parse_replay_payloads(text, source=f"{replay.payloads}@{default}")


def _alias_version(registry: RolloutRegistry, model: str, alias: str) -> int | None:
    try:
        return registry.resolve(model, alias=alias).version
    except ModelNotFound:
        return None


def _shadow_mirror(ref: ReleaseRef, workspace: ReleaseRepository) -> ShadowMirror | None:
    """Sluice's shadow VirtualService in the overlay on the branch, read in one round trip."""
    paths = [f"{ref.overlay}/{name}" for name in (*KUSTOMIZATION_FILES, SHADOW_FILE)]
    texts = workspace.read_many(ref.branch, paths)
    kustomization = next((texts[p] for p in paths[:-1] if texts[p] is not None), None)
    virtual_service = texts[paths[-1]]
    if kustomization is None:
        return None  # no overlay to hold one (rendering it fails the next commit, not this read)
    return parse_shadow_mirror(
        kustomization, virtual_service, overlay=f"{ref.overlay}@{ref.branch}"
    )


def _shadow_percent(document: Mapping[str, object]) -> float | None:
    """The mirrored share while the pin is in its shadow phase (weight 0), else None; a bad
    ``sluice.dev/mirror-percent`` is a :class:`ConfigError` naming the fix."""
    request = shadow_request(document)
    return request.percent if request is not None else None


def _int(value: object) -> int | None:
    try:
        return int(str(value)) if value not in (None, "") else None
    except ValueError:
        return None
