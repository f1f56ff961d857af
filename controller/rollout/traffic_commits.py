"""The commits that move a rollout's traffic: what each edits in the pin and what it says.

One function per action that commits (a canary step, the end of a shadow phase or of a smoke
test, a promotion, both halves of a rollback): each returns the pin's edit and the
:class:`~controller.rollout.messages.RolloutCommit` whose message and pull-request comment
say why, and changes nothing itself. The actuator (:mod:`controller.rollout.act`) commits
them; the shadow phase's mirror commits are :mod:`controller.shadow.mirror_commits`.
"""

from __future__ import annotations

from controller.manifests.manifest import ReleasePin
from controller.rollout.actions import (
    EndShadow,
    EndSmoke,
    FinishRestore,
    Promote,
    RestorePrevious,
    SetWeight,
    StartRollback,
)
from controller.rollout.evidence_trailer import promotion_evidence, shadow_evidence
from controller.rollout.messages import RolloutCommit
from controller.rollout.observation import ReleaseObservation
from controller.rollout.observe import ReleaseRef
from controller.rollout.pin_edits import (
    PinEdit,
    finish_restore_edit,
    promote_edit,
    restore_edit,
    weight_edit,
    without_mirror,
)
from controller.shadow.mirror_commits import mirrored_from, unmirrored

__all__ = [
    "end_shadow",
    "end_smoke",
    "finish_restore",
    "pinned_version",
    "promote",
    "restore_previous",
    "start_rollback",
    "step",
]


def pinned_version(obs: ReleaseObservation) -> int:
    """The version the pin holds (an action that commits is decided only for one)."""
    assert obs.pin.version is not None
    return obs.pin.version


def step(
    ref: ReleaseRef, action: SetWeight, obs: ReleaseObservation
) -> tuple[PinEdit, RolloutCommit]:
    """A canary step: every gate passed at ``from_percent``, the canary takes ``to_percent``."""
    version = pinned_version(obs)
    return (
        weight_edit(ref.pin_path, version, action.to_percent, expect=obs.pin.canary_percent),
        RolloutCommit(
            model=obs.model,
            version=version,
            environment=obs.environment,
            action="step",
            headline=f"canary {action.from_percent}% → {action.to_percent}%",
            summary=(
                f"Every gate passed at {action.from_percent}%: v{version} now takes "
                f"{action.to_percent}% of {obs.environment}'s traffic"
                + (f" beside v{obs.pin.previous_version}." if obs.pin.previous_version else ".")
            ),
            results=action.results,
        ),
    )


def end_shadow(
    ref: ReleaseRef, action: EndShadow, obs: ReleaseObservation
) -> tuple[PinEdit, RolloutCommit]:
    """The shadow judge passed: the first canary step, and the mirror (if any) removed."""
    version = pinned_version(obs)
    previous = mirrored_from(obs)
    return (
        without_mirror(
            weight_edit(ref.pin_path, version, action.to_percent, expect=0),
            ref.overlay,
        ),
        RolloutCommit(
            model=obs.model,
            version=version,
            environment=obs.environment,
            action="step",
            headline=f"shadow passed, canary {action.to_percent}%",
            summary=(
                f"The shadow judge passed v{version} on the requests mirrored from "
                f"{previous}: it now takes {action.to_percent}% of {obs.environment}'s "
                f"client traffic, and the canary's gates take over.{unmirrored(obs)}"
            ),
            results=action.results,
            report=action.report,
            details=action.details,
            trailers=(shadow_evidence(action).trailer(),),
        ),
    )


def end_smoke(
    ref: ReleaseRef, action: EndSmoke, obs: ReleaseObservation
) -> tuple[PinEdit, RolloutCommit]:
    """The smoke test at 0 % passed: the first canary step."""
    version = pinned_version(obs)
    return (
        weight_edit(ref.pin_path, version, action.to_percent, expect=0),
        RolloutCommit(
            model=obs.model,
            version=version,
            environment=obs.environment,
            action="step",
            headline=f"smoke passed, canary {action.to_percent}%",
            summary=(
                f"v{version} answered the smoke test at 0% of the traffic: it now takes "
                f"{action.to_percent}% of {obs.environment}'s client traffic, and the "
                "canary's gates take over."
            ),
            results=action.results,
        ),
    )


def promote(
    ref: ReleaseRef, action: Promote, obs: ReleaseObservation
) -> tuple[PinEdit, RolloutCommit]:
    """Every gate passed at every step: the canary takes all traffic."""
    version = pinned_version(obs)
    return (
        promote_edit(ref.pin_path, version, expect=obs.pin.canary_percent),
        RolloutCommit(
            model=obs.model,
            version=version,
            environment=obs.environment,
            action="promote",
            headline=f"canary {action.from_percent}% → 100%, promoted",
            summary=(
                f"Every gate passed at every step: v{version} takes all of "
                f"{obs.environment}'s traffic; {_field_removed(obs)}."
            ),
            results=action.results,
            trailers=(promotion_evidence(action, obs, ref.policy.steps).trailer(),),
        ),
    )


def start_rollback(
    ref: ReleaseRef, action: StartRollback, obs: ReleaseObservation
) -> tuple[PinEdit, RolloutCommit]:
    """The first half of a rollback (or an abort): the canary's weight to 0 and the mirror
    (if any) removed, worded for the phase it stopped in."""
    version = pinned_version(obs)
    previous = obs.pin.previous_version
    back_to = f"v{previous}" if previous else "the previous revision"
    aborted = action.verdict == "aborted"
    fate = (
        f"v{version} is not quarantined: nothing judged the model, so it may be proposed "
        "again once the cause is fixed."
        if aborted
        else f"v{version} is quarantined: proposals skip it until "
        f"`sluice quarantine lift {obs.model} {version}`."
    )
    if obs.shadow_percent is not None:
        headline = f"{'aborted' if aborted else 'stopped'} in shadow, {back_to} serves"
        summary = (
            f"{'Aborted' if aborted else 'Stopped'} in shadow: {action.reason}.\n\n"
            f"v{version} never took client traffic; the next commit restores {back_to}'s "
            f"pin.{unmirrored(obs)} {fate}"
        )
    elif obs.smoke:
        headline = f"smoke {'aborted' if aborted else 'failed'}, {back_to} serves"
        summary = (
            f"{'Aborted' if aborted else 'Stopped'} before any client traffic: "
            f"{action.reason}.\n\nv{version} was at 0% and never took a client request; "
            f"the next commit restores {back_to}'s pin. {fate}"
        )
    else:
        headline = f"{'aborted, ' if aborted else ''}all traffic back to {back_to}"
        summary = (
            f"{'Aborted' if aborted else 'Rolled back'}: {action.reason}.\n\n"
            f"{_weight_zero(obs)} sends every request to the previous version at once; "
            f"the next commit restores {back_to}'s pin once this one is synced. {fate}"
        )
    return (
        without_mirror(
            weight_edit(
                ref.pin_path,
                version,
                0,
                reason=action.reason,
                verdict=action.verdict,
                expect=obs.pin.canary_percent,
            ),
            ref.overlay,
        ),
        RolloutCommit(
            model=obs.model,
            version=version,
            environment=obs.environment,
            action="rollback",
            headline=headline,
            summary=summary,
            results=action.results,
            details=action.details,
        ),
    )


def restore_previous(
    ref: ReleaseRef, action: RestorePrevious, obs: ReleaseObservation, pin: ReleasePin
) -> tuple[PinEdit, RolloutCommit]:
    """The second half of a rollback: ``pin``, the previous version's, written back."""
    fate = (
        f"v{action.version} is not quarantined: it may be proposed again."
        if action.verdict == "aborted"
        else f"v{action.version} is quarantined: proposals skip it until "
        f"`sluice quarantine lift {obs.model} {action.version}`."
    )
    if obs.pin.canary_percent != 0:  # undoing a promotion: nothing has moved yet
        summary = (
            f"The promotion of v{action.version} is undone ({action.reason}): "
            f"v{action.previous}, the champion it replaced, is pinned again. "
            f"v{action.version} keeps serving until v{action.previous}'s revision is ready, "
            f"then v{action.previous} takes all traffic. {fate}"
        )
    else:
        summary = (
            f"v{action.version} was {_ended(action.verdict)} ({action.reason}); traffic "
            f"already reaches v{action.previous}. Its pin is restored so that Git says what "
            f"serves, and {fate}"
        )
    return (
        restore_edit(ref.pin_path, action.version, pin),
        RolloutCommit(
            model=obs.model,
            version=action.version,
            environment=obs.environment,
            action="restore",
            headline=f"restore v{action.previous}",
            summary=summary,
        ),
    )


def finish_restore(
    ref: ReleaseRef, action: FinishRestore, obs: ReleaseObservation
) -> tuple[PinEdit, RolloutCommit]:
    """The restored version's revision is ready: it serves alone again."""
    return (
        finish_restore_edit(ref.pin_path, action.version, action.restored_from),
        RolloutCommit(
            model=obs.model,
            version=action.restored_from,
            environment=obs.environment,
            action="restore",
            headline=f"v{action.version} serves alone again",
            summary=(
                f"The restored v{action.version} is ready, so canaryTrafficPercent is "
                f"removed: it takes all traffic. Until now v{action.version}'s previous "
                "rollout served everything, so the rolled-back revision never took traffic "
                "while the restored one loaded."
            ),
        ),
    )


def _ended(verdict: str) -> str:
    return "aborted" if verdict == "aborted" else "rolled back"


def _field_removed(obs: ReleaseObservation) -> str:
    if obs.pin.mode == "RawDeployment":
        return "the canary becomes spec.predictor and spec.canary is removed"
    return "canaryTrafficPercent is removed"


def _weight_zero(obs: ReleaseObservation) -> str:
    if obs.pin.mode == "RawDeployment":
        return "The canary's trafficPercent 0"
    return "canaryTrafficPercent 0"
