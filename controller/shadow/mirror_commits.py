"""The commits of a shadow phase's mirror on a cluster: what each edits and what it says.

On a cluster the copy of the primary's requests is Sluice's Istio VirtualService in the
environment's overlay (:mod:`controller.shadow.mirror`); the local router mirrors by itself and
needs none. Adding the mirror is a commit of its own, once the challenger's revision is ready.
Removing it rides on the commit that ends the shadow phase (the first canary step or the
rollback, through :func:`~controller.rollout.pin_edits.without_mirror`), so Git never holds a
mirror outside a shadow phase; one found there anyway (a pin edited by hand) is removed by a
commit of its own.
"""

from __future__ import annotations

from controller.rollout.actions import StartMirror, StopMirror
from controller.rollout.messages import RolloutCommit
from controller.rollout.observation import ReleaseObservation
from controller.rollout.observe import ReleaseRef
from controller.rollout.pin_edits import PinEdit, mirror_edit, unmirror_edit
from controller.shadow.mirror import SHADOW_FILE, mirror_virtual_service

__all__ = ["MIRROR_ACTION", "mirrored_from", "start_mirror", "stop_mirror", "unmirrored"]

#: ``Sluice-Action`` trailer of the commits that add or remove the mirror.
MIRROR_ACTION = "mirror"


def mirrored_from(obs: ReleaseObservation) -> str:
    """The version whose requests a shadow gets a copy of, as a commit names it."""
    return f"v{obs.pin.previous_version}" if obs.pin.previous_version else "the primary"


def unmirrored(obs: ReleaseObservation) -> str:
    """What a commit that ends the shadow phase says about the mirror it removes, if any."""
    if obs.shadow_mirror is None:
        return ""
    return f" The mirror ({SHADOW_FILE}) is removed in this commit."


def start_mirror(
    ref: ReleaseRef, obs: ReleaseObservation, action: StartMirror
) -> tuple[PinEdit, RolloutCommit]:
    """Write the VirtualService for the challenger's revision (:class:`InputError` on a name
    KServe would not have made)."""
    assert obs.pin.version is not None
    version, previous = obs.pin.version, mirrored_from(obs)
    document = mirror_virtual_service(
        obs.inference_service,
        obs.target.namespace,
        action.primary,
        action.challenger,
        action.percent,
    )
    commit = RolloutCommit(
        model=obs.model,
        version=version,
        environment=obs.environment,
        action=MIRROR_ACTION,
        headline=f"mirror {action.percent:g}% of {previous}'s requests",
        summary=(
            f"Shadow phase: {SHADOW_FILE}, an Istio VirtualService, sends every request for "
            f"{obs.inference_service} to {previous}'s revision {action.primary} and a copy of "
            f"{action.percent:g}% of them to v{version}'s revision {action.challenger}. "
            f"Clients only get {previous}'s answers; the shadow judge compares the two. The "
            "commit that starts the first canary step, or the rollback, removes the mirror."
        ),
    )
    return mirror_edit(ref.pin_path, version, ref.overlay, document), commit


def stop_mirror(
    ref: ReleaseRef, obs: ReleaseObservation, action: StopMirror
) -> tuple[PinEdit, RolloutCommit]:
    """Remove a VirtualService left outside a shadow phase."""
    assert obs.pin.version is not None
    commit = RolloutCommit(
        model=obs.model,
        version=obs.pin.version,
        environment=obs.environment,
        action=MIRROR_ACTION,
        headline="stop the shadow mirror",
        summary=(
            f"{SHADOW_FILE} was still in Git, but {action.reason}: the mirror is removed, so "
            f"that {obs.inference_service}'s traffic follows the InferenceService again."
        ),
    )
    return unmirror_edit(ref.pin_path, obs.pin.version, ref.overlay), commit
