"""What a rollout pass reports: the phase, the action in words, and when to pass again.

Pure: :class:`PassReport` is what the CLI, ``sluice status`` and the logs show of a pass
(:mod:`controller.rollout.reconcile`); :func:`phase_of` names the phase an action belongs to
(the ``sluice_rollout_phase`` label), :func:`describe_action` says what it did, and
:func:`wake_in` when the next pass has something to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.analysis_types import GateResult
from controller.errors import GitConflict
from controller.rollout.actions import (
    Abort,
    Action,
    Analyze,
    AnalyzeShadow,
    EndShadow,
    EndSmoke,
    Finish,
    FinishRestore,
    Hold,
    Outcome,
    Promote,
    Quarantine,
    RestorePrevious,
    SetChampion,
    SetWeight,
    Smoke,
    StartMirror,
    StartRollback,
    StopMirror,
    Wait,
    Watch,
)
from controller.rollout.observation import ReleaseObservation

__all__ = ["PassReport", "describe_action", "lost_race", "phase_of", "wake_in"]


@dataclass(frozen=True)
class PassReport:
    """What one pass saw and did, for the CLI, ``sluice status`` and the logs."""

    model: str
    environment: str
    phase: str
    action: str
    detail: str
    version: int | None
    canary_percent: int | None
    results: tuple[GateResult, ...] = ()
    commit: str | None = None
    outcome: Outcome | None = None
    #: Seconds until the next pass has something to do: 0 after a commit, the time to the
    #: next analysis while one is scheduled (the watch period, at most, while the canary is
    #: watched), the policy interval after a hold; None when the world has to move first (a
    #: sync, a revision loading) or the rollout ended.
    wake_in: float | None = None
    #: The controller that holds the release's lease, when it is another one (this pass only
    #: followed it).
    holder: str | None = None

    @property
    def finished(self) -> bool:
        """The rollout ended (promoted, rolled back, failed) or there is none."""
        return self.outcome is not None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {
            "model": self.model,
            "environment": self.environment,
            "phase": self.phase,
            "action": self.action,
            "detail": self.detail,
            "version": self.version,
            "canaryPercent": self.canary_percent,
            "commit": self.commit,
            "outcome": self.outcome.value if self.outcome else None,
            "leaseHolder": self.holder,
            "gates": [
                {"gate": r.gate, "verdict": r.verdict.value, "summary": r.summary}
                for r in self.results
            ],
        }


def phase_of(action: Action) -> str:
    """The rollout phase an action belongs to (the ``sluice_rollout_phase`` label)."""
    match action:
        case Wait() | Hold():
            return action.phase
        case AnalyzeShadow() | StartMirror():
            return "shadowing"
        case Smoke(shadow=False):
            return "smoke_testing"
        case Smoke():
            return "shadowing"
        case Analyze():
            return "analysing"
        case SetWeight() | EndShadow() | EndSmoke() | StopMirror():
            return "progressing"
        case Promote() | SetChampion():
            return "promoting"
        case StartRollback() | Quarantine() | Abort() | RestorePrevious() | FinishRestore():
            return "rolling_back"
        case Finish():
            return {
                Outcome.PROMOTED: "succeeded",
                Outcome.ROLLED_BACK: "rolled_back",
                Outcome.IDLE: "idle",
                Outcome.FAILED: "failed",
            }[action.outcome]
    return "progressing"


def describe_action(action: Action) -> str:
    """What a pass that decided ``action`` did, in words (a report's ``detail``)."""
    match action:
        case Wait():
            return action.reason
        case Hold():
            return f"holding: {action.reason}"
        case SetWeight():
            return f"canary {action.from_percent}% → {action.to_percent}%"
        case EndShadow():
            return f"shadow passed → canary {action.to_percent}%"
        case EndSmoke():
            return f"smoke passed → canary {action.to_percent}%"
        case Smoke():
            return "smoke-testing the new revision at 0%"
        case AnalyzeShadow():
            return "judging the challenger's mirrored answers"
        case StartMirror():
            return (
                f"mirroring {action.percent:g}% of {action.primary}'s requests to "
                f"{action.challenger}"
            )
        case StopMirror():
            return f"removing the shadow mirror: {action.reason}"
        case Promote():
            return f"canary {action.from_percent}% → 100%: promoted"
        case SetChampion():
            return f"champion alias → v{action.version}"
        case StartRollback() if action.verdict == "aborted":
            return f"aborting: {action.reason}"
        case StartRollback():
            return f"rolling back: {action.reason}"
        case Quarantine():
            return f"quarantined v{action.version}: {action.reason}"
        case Abort():
            return f"aborted v{action.version}'s rollout (not quarantined): {action.reason}"
        case RestorePrevious():
            return f"restored v{action.previous}"
        case FinishRestore():
            return f"v{action.version} serves alone again"
        case Finish():
            return action.reason
        case Analyze():
            return f"analysing canary at {action.step}%"
    return ""


def lost_race(obs: ReleaseObservation, action: Action, conflict: GitConflict) -> PassReport:
    """A push lost to a change it cannot build on: nothing was done, the next pass decides."""
    return PassReport(
        model=obs.model,
        environment=obs.environment,
        phase=phase_of(action),
        action="Wait",
        detail=f"lost a race, deciding again: {conflict.message}",
        version=obs.pin.version,
        canary_percent=obs.pin.canary_percent,
    )


def wake_in(action: Action, commit: str | None, interval: float) -> float | None:
    """When the next pass has something to do (see :attr:`PassReport.wake_in`)."""
    if isinstance(action, Finish):
        return None
    if commit is not None:
        return 0.0
    if isinstance(action, Watch):
        return max(0.0, min(action.period, action.retry_after or action.period))
    if isinstance(action, Wait):
        return None if action.retry_after is None else max(0.0, action.retry_after)
    if isinstance(action, Hold):
        return interval
    return 0.0 if isinstance(action, (Quarantine, Abort, SetChampion)) else None
