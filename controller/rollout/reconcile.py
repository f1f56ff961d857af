"""One rollout pass for one release: observe, decide, (analyse, conclude), act.

A pass holds no state between calls: it fetches Git, reads the registry and the target, and
derives everything from them. Killing the process at any line and running the pass again
therefore reaches the same end, and two passes never push the same commit twice (the pin
edits compare-and-swap on the version they expect).

With a :class:`~controller.lease.LeaseKeeper`, only the holder of a release's lease analyses and
acts: another controller's pass observes, reports who holds the lease and the commits it sees
land, and waits (see :mod:`controller.lease`). A push that loses a race to a change it cannot
build on (:class:`~controller.errors.GitConflict`) ends the pass, and the next decides again.

With an :class:`~controller.rollout.evidence_recorder.EvidenceRecorder`, the actuator signs a
promotion's and a passed shadow phase's evidence; without one, in an environment that names
its controller keys, the first pass that acts there says once that nothing is recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from controller.analysis_types import GateResult, Verdict
from controller.errors import GitConflict, SluiceError
from controller.evidence.keys import read_controller_keys
from controller.lease import LeaseKeeper, lease_name
from controller.notify import NullNotifier
from controller.null_ports import NoForge
from controller.ports import (
    AttestationStore,
    Forge,
    GraphReplay,
    Notifier,
    PredictionStore,
    ReleaseRepository,
    RolloutRegistry,
    SyncTrigger,
    Target,
)
from controller.provenance.policy import check_version, outcome_tag, read_trusted_keys
from controller.rollout.act import ActResult, Actuator
from controller.rollout.actions import (
    Action,
    Analyze,
    AnalyzeShadow,
    Finish,
    SetChampion,
    Smoke,
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
from controller.rollout.evidence_recorder import (
    EvidenceRecorder,
    unrecorded_note,
    untrusted_note,
)
from controller.rollout.observation import ReleaseObservation
from controller.rollout.observe import ReleaseRef, load_release, observe
from controller.rollout.pass_report import (
    PassReport,
    describe_action,
    lost_race,
    phase_of,
    wake_in,
)
from controller.rollout.policy import RolloutPolicy, ShadowPhase
from controller.rollout.telemetry import RolloutMetrics
from controller.shadow.analysis import judge_mirrored

__all__ = ["Reconciler"]

_log = logging.getLogger("sluice.rollout")


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
    #: Where the shadow phase reads the mirrored answers of an environment, by its name (the
    #: local stack keeps a log per environment; None, or None for it: shadows stay
    #: inconclusive).
    predictions: Callable[[str], PredictionStore | None] | None = None
    #: Where a classifier's downstream check replays an environment's graphs (None: nowhere,
    #: and a policy asking for it errs).
    graph_replay: Callable[[str], GraphReplay] | None = None
    #: Who may act on a release (None: this controller always acts, alone by assumption).
    lease: LeaseKeeper | None = None
    #: Where the pinned version's provenance is verified again before each judgement and the
    #: promotion, in an environment that requires provenance (None: not re-verified).
    attestations: AttestationStore | None = None
    #: Who signs the evidence of promotions and passed shadow phases (None: none is recorded,
    #: which a pass in an environment that names its controller keys says once).
    evidence: EvidenceRecorder | None = None
    _seen: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _landed: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)
    _following: set[str] = field(default_factory=set, init=False, repr=False)
    #: Releases this controller followed and then took the lease of (its holder finished or
    #: let it lapse): until the end, its reports still say what others landed.
    _took_over: set[str] = field(default_factory=set, init=False, repr=False)
    #: Environments whose evidence a pass checked could be recorded and verified (and said
    #: once if not).
    _evidence_checked: set[str] = field(default_factory=set, init=False, repr=False)

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
        policy = ref.policy
        now = self.clock()
        action = decide(obs, policy, now)
        if isinstance(action, _VERIFIED_FIRST):
            obs = self._reverify(ref, obs)
            action = decide(obs, policy, now) if obs.provenance_failure else action
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
            judgement = judge_mirrored(
                self.predictions(environment) if self.predictions else None,
                obs, policy.shadow or ShadowPhase(),
                self.graph_replay(environment) if self.graph_replay else None,
            )  # fmt: skip
            results = judgement.results
            self.metrics.count_gates(results)
            now = self.clock()
            action = conclude_shadow(obs, policy, action, judgement, now)
        following = self._follow(ref, obs, action, now, first=False)
        if following is not None:
            return following  # the lease was lost while analysing: the holder acts
        actuator = Actuator(
            ref, self.workspace, self.registry, self.notifier, self.metrics, self.forge,
            evidence=self.evidence,
        )  # fmt: skip
        try:
            done = actuator.act(action, obs, now)
        except GitConflict as conflict:
            return lost_race(obs, action, conflict)
        if done.commit is not None:
            self._request_sync(environment)
        landed = self._landed_by_others(ref, action, done)
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
            detail=describe_action(action) + _done_note(done) + landed + self._unrecorded(ref),
            version=obs.pin.version,
            canary_percent=obs.pin.canary_percent,
            results=results,
            commit=done.commit,
            outcome=action.outcome if isinstance(action, Finish) else None,
            wake_in=wake_in(action, done.commit, policy.interval_seconds),
        )

    def _reverify(self, ref: ReleaseRef, obs: ReleaseObservation) -> ReleaseObservation:
        """The observation with the pinned version's provenance checked again, as served now:
        a failure under an enforcing policy becomes ``provenance_failure`` (the decision
        rolls back); under warn it is logged and recorded on the version only."""
        policy, version = ref.environment.provenance_check, obs.pin.version
        if policy is None or self.attestations is None or version is None:
            return obs
        keys = read_trusted_keys(self.workspace, policy, obs.environment)
        outcome = check_version(
            self.attestations, policy, keys, environment=obs.environment, model=obs.model,
            version=version,
        )  # fmt: skip
        if outcome.verification.verified:
            return obs
        _log.warning("%s (rollout in %s)", outcome.line(), obs.environment)
        self.registry.set_version_tags(
            obs.model, version, {outcome_tag(obs.environment): outcome.tag_value()}
        )
        return replace(obs, provenance_failure=outcome.line()) if outcome.refused else obs

    def _unrecorded(self, ref: ReleaseRef) -> str:
        """Once per environment: that its evidence is not recorded, or would not verify, and
        why (also logged); empty otherwise."""
        environment = ref.environment
        if environment.name in self._evidence_checked:
            return ""
        self._evidence_checked.add(environment.name)
        if self.evidence is None:
            note = unrecorded_note(environment, None)
        else:
            try:
                keys = read_controller_keys(self.workspace, [environment])[environment.name]
            except SluiceError as exc:
                note = f"evidence recorded in {environment.name} will not verify: {exc.message}"
            else:
                note = untrusted_note(environment, self.evidence, keys)
        if note is None:
            return ""
        _log.warning("%s", note)
        return f"; {note}"

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
            if name not in self._following:  # the report says what landed, if taken over
                return None
            # The end of a rollout another controller carried out: what landed last.
            self._following.discard(name)
            return PassReport(
                model=obs.model,
                environment=obs.environment,
                phase=phase_of(action),
                action="Finish",
                detail=describe_action(action) + _landed_note(self._landed.pop(name, [])),
                version=obs.pin.version,
                canary_percent=obs.pin.canary_percent,
                outcome=action.outcome,
            )
        idle = type(action) is Wait and name not in self._following
        if idle and not self.lease.holding(name):
            return None
        held = self.lease.hold(name)
        if held.holder == self.lease.holder:
            if name in self._following:
                self._took_over.add(name)
            self._following.discard(name)
            if name not in self._took_over:
                self._landed.pop(name, None)  # its own commits
            return None
        self._following.add(name)
        self._took_over.discard(name)
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

    def _landed_by_others(self, ref: ReleaseRef, action: Action, done: ActResult) -> str:
        """The note of what others landed, on the report of a controller that took a rollout
        over from the holder it followed (its own commit is not among them); empty otherwise."""
        if self.lease is None:
            return ""
        name = lease_name(ref.environment.name, ref.release.model)
        if name not in self._took_over:
            return ""
        if done.commit is not None:
            self._seen[name] = done.commit
        if isinstance(action, Finish):
            self._took_over.discard(name)
        return _landed_note(self._landed.pop(name, []))

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


#: Decisions that judge or promote the pinned version: its provenance is verified again first.
_VERIFIED_FIRST = (Analyze, AnalyzeShadow, Smoke, SetChampion)


def _landed_note(landed: list[str]) -> str:
    """The commits to the pin a follower saw land since its last report."""
    return f"; landed: {' | '.join(landed)}" if landed else ""


def _done_note(done: ActResult) -> str:
    return " (done already: nothing committed)" if done.already_done else ""
