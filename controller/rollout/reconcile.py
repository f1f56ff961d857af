"""One rollout pass for one release: observe, decide, (analyse, conclude), act.

A pass holds no state between calls: it fetches Git, reads the registry and the target, and
derives everything from them. Killing the process at any line and running the pass again
therefore reaches the same end, and two passes never push the same commit twice (the pin
edits compare-and-swap on the version they expect).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from controller.analysis_types import GateResult
from controller.backends.git_repo import GitWorkspace
from controller.notify import NullNotifier
from controller.ports import Forge, Notifier, PredictionStore, RolloutRegistry, Target
from controller.rollout.act import Actuator
from controller.rollout.actions import (
    Abort,
    Action,
    Analyze,
    AnalyzeShadow,
    EndShadow,
    Finish,
    FinishRestore,
    Hold,
    Outcome,
    Promote,
    Quarantine,
    RestorePrevious,
    SetChampion,
    SetWeight,
    StartMirror,
    StartRollback,
    StopMirror,
    Wait,
)
from controller.rollout.analysis import Analyzer
from controller.rollout.decide import conclude, conclude_shadow, decide
from controller.rollout.observation import ReleaseObservation
from controller.rollout.observe import load_release, observe
from controller.rollout.policy import ShadowPhase
from controller.rollout.shadow_analysis import judge_mirrored
from controller.rollout.telemetry import RolloutMetrics

__all__ = ["PassReport", "Reconciler", "phase_of"]


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
    #: next analysis while one is scheduled, the policy interval after a hold; None when the
    #: world has to move first (a sync, a revision loading) or the rollout ended.
    wake_in: float | None = None

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
        case Analyze():
            return "analysing"
        case SetWeight() | EndShadow() | StopMirror():
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


def _detail(action: Action) -> str:
    match action:
        case Wait():
            return action.reason
        case Hold():
            return f"holding: {action.reason}"
        case SetWeight():
            return f"canary {action.from_percent}% → {action.to_percent}%"
        case EndShadow():
            return f"shadow passed → canary {action.to_percent}%"
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


@dataclass
class Reconciler:
    """Runs passes for releases against one Git remote, registry and target."""

    workspace: GitWorkspace
    registry: RolloutRegistry
    target: Target
    analyzer: Analyzer
    notifier: Notifier = field(default_factory=NullNotifier)
    metrics: RolloutMetrics = field(default_factory=RolloutMetrics)
    forge: Forge | None = None
    clock: Callable[[], float] = time.time
    #: Where the shadow phase reads the mirrored answers (None: shadows stay inconclusive).
    predictions: PredictionStore | None = None

    def observe(self, environment: str, model: str) -> ReleaseObservation:
        """Fetch and observe one release without acting (``sluice status``)."""
        self.workspace.sync()
        ref = load_release(self.workspace, environment, model)
        return observe(ref, self.workspace, self.registry, self.target)

    def reconcile(self, environment: str, model: str) -> PassReport:
        """One pass: observe, decide, analyse if due, act."""
        started = time.monotonic()
        self.workspace.sync()
        ref = load_release(self.workspace, environment, model)
        obs = observe(ref, self.workspace, self.registry, self.target)
        policy = ref.environment.rollout
        now = self.clock()
        action = decide(obs, policy, now)
        results: tuple[GateResult, ...] = ()
        if isinstance(action, Analyze):
            results = tuple(self.analyzer.run(obs, action, policy.gates, now))
            self.metrics.count_gates(results)
            now = self.clock()
            action = conclude(obs, policy, action, results, now)
        elif isinstance(action, AnalyzeShadow):
            judgement = judge_mirrored(self.predictions, obs, policy.shadow or ShadowPhase())
            results = judgement.results
            self.metrics.count_gates(results)
            now = self.clock()
            action = conclude_shadow(obs, policy, action, judgement, now)
        actuator = Actuator(
            ref, self.workspace, self.registry, self.notifier, self.metrics, self.forge
        )
        done = actuator.act(action, obs, now)
        phase = phase_of(action)
        self.metrics.set_phase(model, environment, phase)
        if obs.pin.canary_percent is not None and not isinstance(action, Finish):
            self.metrics.set_weight(model, environment, obs.pin.canary_percent)
        self.metrics.duration.labels(model, environment).observe(time.monotonic() - started)
        return PassReport(
            model=model,
            environment=environment,
            phase=phase,
            action=type(action).__name__,
            detail=_detail(action),
            version=obs.pin.version,
            canary_percent=obs.pin.canary_percent,
            results=results,
            commit=done.commit,
            outcome=action.outcome if isinstance(action, Finish) else None,
            wake_in=_wake_in(action, done.commit, policy.interval_seconds),
        )

    def run(
        self,
        environment: str,
        model: str,
        *,
        poll_seconds: float,
        on_pass: Callable[[PassReport], None] = lambda _: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> PassReport:
        """Pass until the rollout ends; returns the last report.

        The pace is the policy's, not the poll's: after a commit the next pass comes at once,
        while an analysis is scheduled the loop sleeps until it is due, and only waits with
        no known end (a sync, a revision loading) poll every ``poll_seconds``.
        """
        while True:
            report = self.reconcile(environment, model)
            on_pass(report)
            if report.finished:
                return report
            pause = poll_seconds if report.wake_in is None else report.wake_in
            if pause > 0:
                sleep(pause)


def _wake_in(action: Action, commit: str | None, interval: float) -> float | None:
    """When the next pass has something to do (see :attr:`PassReport.wake_in`)."""
    if isinstance(action, Finish):
        return None
    if commit is not None:
        return 0.0
    if isinstance(action, Wait):
        return None if action.retry_after is None else max(0.0, action.retry_after)
    if isinstance(action, Hold):
        return interval
    return 0.0 if isinstance(action, (Quarantine, Abort, SetChampion)) else None
