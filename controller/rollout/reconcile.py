"""One rollout pass for one release: observe, decide, (analyse, conclude), act.

A pass holds no state between calls: it fetches Git, reads the registry and the target, and
derives everything from them. Killing the process at any line and running the pass again
therefore reaches the same end, and two passes never push the same commit twice (the pin
edits compare-and-swap on the version they expect).

With a :class:`~controller.lease.LeaseKeeper`, only the holder of a release's lease analyses and
acts: another controller's pass observes, reports who holds the lease and the commits it sees
land, and waits (see :mod:`controller.lease`). A push that loses a race to a change it cannot
build on (:class:`~controller.errors.GitConflict`) ends the pass, and the next decides again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from controller.analysis_types import GateResult, Verdict
from controller.errors import GitConflict, SluiceError
from controller.lease import LeaseKeeper, lease_name
from controller.notify import NullNotifier
from controller.null_ports import NoForge
from controller.ports import (
    Forge,
    Notifier,
    PredictionStore,
    ReleaseRepository,
    RolloutRegistry,
    SyncTrigger,
    Target,
)
from controller.rollout.act import ActResult, Actuator
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
from controller.rollout.analysis import Analyzer
from controller.rollout.decide import (
    conclude,
    conclude_shadow,
    conclude_smoke,
    conclude_watch,
    decide,
)
from controller.rollout.observation import ReleaseObservation
from controller.rollout.observe import ReleaseRef, load_release, observe
from controller.rollout.policy import RolloutPolicy, ShadowPhase
from controller.rollout.telemetry import RolloutMetrics
from controller.shadow.analysis import judge_mirrored

__all__ = ["PassReport", "Reconciler", "phase_of"]

_log = logging.getLogger("sluice.rollout")


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


@dataclass
class Reconciler:
    """Runs passes for releases against one Git remote, registry and target."""

    workspace: ReleaseRepository
    registry: RolloutRegistry
    target: Target
    analyzer: Analyzer
    notifier: Notifier = field(default_factory=NullNotifier)
    metrics: RolloutMetrics = field(default_factory=RolloutMetrics)
    forge: Forge = field(default_factory=NoForge)
    clock: Callable[[], float] = time.time
    #: Where the shadow phase reads the mirrored answers (None: shadows stay inconclusive).
    predictions: PredictionStore | None = None
    #: Who may act on a release (None: this controller always acts, alone by assumption).
    lease: LeaseKeeper | None = None
    _seen: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _landed: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)
    _following: set[str] = field(default_factory=set, init=False, repr=False)

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
        following = self._follow(ref, obs, action, now, first=True)
        if following is not None:
            return following
        results: tuple[GateResult, ...] = ()
        if isinstance(action, Analyze):
            results = tuple(
                self.analyzer.run(
                    obs,
                    action,
                    policy.gates,
                    now,
                    watch=self._watcher(obs, action, policy) if policy.watch.enabled else None,
                    watch_period=policy.watch.period_seconds,
                )
            )
            self.metrics.count_gates(results)
            now = self.clock()
            action = conclude(obs, policy, action, results, now)
        elif isinstance(action, Watch):
            watched = self.analyzer.watch(obs, action, policy.watch, policy.gates, now)
            if watched is not None and watched.verdict is Verdict.FAIL:
                results = (watched,)
                self.metrics.count_gates(results)
            action = conclude_watch(action, watched)
        elif isinstance(action, Smoke):
            smoked = self.analyzer.smoke(obs, action, policy.smoke, policy.gates)
            results = (smoked,)
            self.metrics.count_gates(results)
            now = self.clock()
            action = conclude_smoke(obs, policy, action, smoked, now)
        elif isinstance(action, AnalyzeShadow):
            judgement = judge_mirrored(self.predictions, obs, policy.shadow or ShadowPhase())
            results = judgement.results
            self.metrics.count_gates(results)
            now = self.clock()
            action = conclude_shadow(obs, policy, action, judgement, now)
        following = self._follow(ref, obs, action, now, first=False)
        if following is not None:
            return following  # the lease was lost while analysing: the holder acts
        actuator = Actuator(
            ref, self.workspace, self.registry, self.notifier, self.metrics, self.forge
        )
        try:
            done = actuator.act(action, obs, now)
        except GitConflict as conflict:
            return _lost_race(obs, action, conflict)
        if done.commit is not None:
            self._request_sync(environment)
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
            detail=_detail(action) + _done_note(done),
            version=obs.pin.version,
            canary_percent=obs.pin.canary_percent,
            results=results,
            commit=done.commit,
            outcome=action.outcome if isinstance(action, Finish) else None,
            wake_in=_wake_in(action, done.commit, policy.interval_seconds),
        )

    def _request_sync(self, environment: str) -> None:
        """Tell the target a commit landed, so it syncs now rather than at its next poll."""
        if not isinstance(self.target, SyncTrigger):
            return
        try:
            self.target.request_sync(environment)
        except SluiceError as exc:  # its poll still finds the commit
            _log.info("could not ask %s to sync now: %s", environment, exc.message)

    def _watcher(
        self, obs: ReleaseObservation, analysis: Analyze, policy: RolloutPolicy
    ) -> Callable[[], GateResult | None]:
        """The watch, looking while an analysis' load test runs."""
        looking = Watch("", "analysing", None, analysis.step, obs.pin_changed_at, 1.0)

        def watch() -> GateResult | None:
            return self.analyzer.watch(obs, looking, policy.watch, policy.gates, self.clock())

        return watch

    def _follow(
        self, ref: ReleaseRef, obs: ReleaseObservation, action: Action, now: float, *, first: bool
    ) -> PassReport | None:
        """None when this controller may analyse and act on the release; otherwise the report
        of a pass that follows the lease's holder. The end needs no lease (its holder releases
        it), nor does a plain wait of a controller that neither holds nor follows (its holder
        renews it while it waits)."""
        if self.lease is None:
            return None
        name = lease_name(ref.environment.name, ref.release.model)
        if first:
            self._landed[name] = [*self._landed.get(name, []), *self._commits_seen(ref, obs, name)]
        if isinstance(action, Finish):
            self.lease.release(name)
            if name not in self._following:
                return None
            # The end of a rollout another controller carried out: what landed last.
            self._following.discard(name)
            return PassReport(
                model=obs.model,
                environment=obs.environment,
                phase=phase_of(action),
                action="Finish",
                detail=_detail(action) + _landed_note(self._landed.pop(name, [])),
                version=obs.pin.version,
                canary_percent=obs.pin.canary_percent,
                outcome=action.outcome,
            )
        idle = type(action) is Wait and name not in self._following
        if idle and not self.lease.holding(name):
            return None
        held = self.lease.hold(name)
        if held.holder == self.lease.holder:
            self._following.discard(name)
            self._landed.pop(name, None)
            return None
        self._following.add(name)
        expires = time.strftime("%H:%M:%S", time.localtime(held.expires_at))
        detail = (
            f"{held.holder} holds this rollout's lease (until {expires} unless renewed): "
            "it analyses and acts, this controller follows"
        ) + _landed_note(self._landed.pop(name, []))
        return PassReport(
            model=obs.model,
            environment=obs.environment,
            phase=phase_of(action),
            action="Follow",
            detail=detail,
            version=obs.pin.version,
            canary_percent=obs.pin.canary_percent,
            holder=held.holder,
        )

    def _commits_seen(self, ref: ReleaseRef, obs: ReleaseObservation, name: str) -> list[str]:
        """Commits to the pin since this controller's previous pass (the last one, at first)."""
        before = self._seen.get(name)
        self._seen[name] = obs.pin_commit
        if not obs.pin_commit or before == obs.pin_commit:
            return []
        return self.workspace.log_subjects(ref.branch, before, obs.pin_commit, ref.pin_path)

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


def _landed_note(landed: list[str]) -> str:
    """The commits to the pin a follower saw land since its last report."""
    return f"; landed: {' | '.join(landed)}" if landed else ""


def _done_note(done: ActResult) -> str:
    return " (done already: nothing committed)" if done.already_done else ""


def _lost_race(obs: ReleaseObservation, action: Action, conflict: GitConflict) -> PassReport:
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


def _wake_in(action: Action, commit: str | None, interval: float) -> float | None:
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
