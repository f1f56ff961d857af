"""One pass of a graph's rollout, and the passes until it ends: observe, decide, act by a commit.

``sluice graph rollout`` walks a merged graph change (its canary form) as ``sluice rollout``
walks a model version: each pass reads Git and the target (:mod:`.graph_observe`), the pure
decision picks one action (:mod:`.graph_decide`), an analysis runs the model's checks on the
graph's branch series (:mod:`.graph_analysis`), and every traffic change is one commit of
:func:`~controller.proposals.graph_walk.walk_graph`, compare-and-swap on the canary it was
decided on: the next weight, the promotion, or the rollback whose message names the failed
check and its numbers. Git holds the state; only the count of held analyses of the current
step lives in this process (a restart counts the step's holds again, so it may hold longer,
never pass sooner).

With a :class:`~controller.lease.LeaseKeeper`, only the holder of the graph's lease
(:func:`~controller.lease.graph_lease_name`) analyses and commits, as in ``sluice rollout``
(:mod:`controller.rollout.reconcile`): the lease is taken before an analysis or a commit,
renewed by the passes, checked again after an analysis (lost meanwhile, the holder acts, and
this pass commits nothing), and released when the walk ends. Another walker's pass observes
and reports who holds the lease and until when; a dead walker's lease is taken over once it
expires.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from controller.analysis_types import GateResult
from controller.errors import SluiceError, TransientError
from controller.lease import LeaseKeeper, graph_lease_name
from controller.ports import GraphInventory, MetricsSource, ReleaseRepository, SyncTrigger
from controller.proposals.graph_walk import GraphWalk, walk_graph
from controller.rollout.actions import (
    Analyze,
    Finish,
    Hold,
    Outcome,
    Promote,
    SetWeight,
    StartRollback,
    Wait,
)
from controller.rollout.graph_analysis import analyse_graph, step_window
from controller.rollout.graph_decide import (
    GraphAction,
    GraphObservation,
    conclude_graph,
    decide_graph,
)
from controller.rollout.graph_observe import GraphSnapshot, observe_graph
from controller.rollout.graph_policy import graph_checks
from controller.rollout.record import AnalysisRecord

__all__ = ["GraphPassReport", "GraphRollout"]

_log = logging.getLogger("sluice.rollout.graph")


@dataclass(frozen=True)
class GraphPassReport:
    """What one pass saw and did, for the console and ``--json``."""

    graph: str
    environment: str
    #: The canary's weight when the pass began (None: no canary form).
    weight: int | None
    phase: str
    #: The action taken: wait, hold, step, promote, rollback, finish, retry.
    action: str
    detail: str
    results: tuple[GateResult, ...] = ()
    commit: str | None = None
    outcome: Outcome | None = None
    #: Seconds until the next pass has something to do (None: poll).
    wake_in: float | None = None
    #: Another walker that holds the graph's lease (action ``follow``), and until when it
    #: binds unless renewed (epoch seconds).
    holder: str | None = None
    lease_until: float | None = None

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["results"] = [
            {"gate": r.gate, "verdict": r.verdict.value, "summary": r.summary} for r in self.results
        ]
        data["outcome"] = None if self.outcome is None else self.outcome.value
        return data


@dataclass
class GraphRollout:
    """The backends of a graph rollout: Git, the target that serves the graph, Prometheus."""

    workspace: ReleaseRepository
    target: GraphInventory | None
    metrics: MetricsSource | None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    #: Held analyses of each graph's current step, by (environment, graph).
    records: dict[tuple[str, str], AnalysisRecord] = field(default_factory=dict)
    #: Who may walk a graph (None: this walker always acts, alone by assumption).
    lease: LeaseKeeper | None = None
    _following: set[str] = field(default_factory=set, init=False, repr=False)

    def reconcile(self, environment: str, graph: str) -> GraphPassReport:
        """One pass: observe, decide, analyse if due, act."""
        snapshot = observe_graph(self.workspace, self.target, environment, graph)
        obs, config = snapshot.observation, snapshot.config
        policy = config.graph_rollout
        key = (obs.environment, graph)
        action = decide_graph(obs, policy, self.clock(), self.records.get(key))
        following = self._follow(obs, key, action)
        if following is not None:
            return following
        if isinstance(action, Analyze):
            results = self._analyse(snapshot)
            action = conclude_graph(policy, action, results, self.clock())
            following = self._follow(obs, key, action)
            if following is not None:
                return following  # the lease was lost while analysing: the holder acts
        return self._act(snapshot, key, action)

    def run(
        self,
        environment: str,
        graph: str,
        *,
        poll_seconds: float,
        on_pass: Callable[[GraphPassReport], None] = lambda report: None,
    ) -> GraphPassReport:
        """Passes until the graph is promoted or rolled back (or has no canary); a pass that
        a dependency failed (Git, the target, a lost race) is reported and tried again."""
        while True:
            try:
                report = self.reconcile(environment, graph)
            except TransientError as exc:
                report = GraphPassReport(
                    graph, environment, None, "retrying", "retry",
                    f"{exc.message}; trying again in {poll_seconds:g} s",
                )  # fmt: skip
            on_pass(report)
            if report.finished:
                return report
            self.sleep(poll_seconds if report.wake_in is None else max(0.0, report.wake_in))

    def _follow(
        self, obs: GraphObservation, key: tuple[str, str], action: GraphAction
    ) -> GraphPassReport | None:
        """None when this walker may analyse and commit; otherwise the report of a pass that
        follows the lease's holder. The end needs no lease (it is released), nor does a plain
        wait of a walker that neither holds nor follows (the holder renews it while it
        waits)."""
        if self.lease is None:
            return None
        name = graph_lease_name(obs.environment, obs.graph)
        if isinstance(action, Finish):
            self.lease.release(name)
            self._following.discard(name)
            return None
        idle = isinstance(action, Wait) and name not in self._following
        if idle and not self.lease.holding(name):
            return None
        held = self.lease.hold(name)
        if held.holder == self.lease.holder:
            self._following.discard(name)
            return None
        self._following.add(name)
        # The holder counts the step's analyses; taken over, this walker counts anew.
        self.records.pop(key, None)
        until = time.strftime("%H:%M:%S", time.localtime(held.expires_at))
        return _report(
            obs, _phase(action), "follow",
            f"{held.holder} holds this graph's lease (until {until} unless renewed): it "
            "analyses and commits, this walker follows",
            holder=held.holder, lease_until=held.expires_at,
        )  # fmt: skip

    def _analyse(self, snapshot: GraphSnapshot) -> tuple[GateResult, ...]:
        obs, config = snapshot.observation, snapshot.config
        gates = config.rollout.gates
        results = analyse_graph(
            self.metrics,
            graph_checks(config.graph_rollout, gates),
            graph=obs.graph,
            namespace=snapshot.namespace,
            profile=gates.profile,
            window_seconds=step_window(obs.changed_at, self.clock()),
        )
        return tuple(results)

    def _act(
        self,
        snapshot: GraphSnapshot,
        key: tuple[str, str],
        action: GraphAction,
    ) -> GraphPassReport:
        obs = snapshot.observation
        if isinstance(action, Finish):
            self.records.pop(key, None)
            return _report(obs, "finished", "finish", action.reason, outcome=action.outcome)
        if isinstance(action, Wait):
            return _report(obs, action.phase, "wait", action.reason, wake_in=action.retry_after)
        if isinstance(action, Hold):
            self.records[key] = action.record
            interval = snapshot.config.graph_rollout.interval_seconds
            weight = action.record.step
            return _report(
                obs, "analysing", "hold",
                f"canary {weight}%: held ({action.reason}); next analysis in {interval:g} s",
                results=action.record.results, wake_in=interval,
            )  # fmt: skip
        if isinstance(action, Analyze):  # conclude_graph never leaves one
            raise AssertionError("an analysis was not concluded")
        return self._commit(obs, key, action)

    def _commit(
        self,
        obs: GraphObservation,
        key: tuple[str, str],
        action: SetWeight | Promote | StartRollback,
    ) -> GraphPassReport:
        graph, environment, expected = obs.graph, obs.environment, obs.canary
        if isinstance(action, SetWeight):
            request = GraphWalk(
                graph, environment, "step", weight=action.to_percent, results=action.results,
                expected=expected,
            )  # fmt: skip
            phase = "progressing"
        elif isinstance(action, Promote):
            request = GraphWalk(
                graph, environment, "promote", results=action.results, expected=expected
            )
            phase = "promoting"
        else:
            request = GraphWalk(
                graph, environment, "rollback", reason=action.reason, results=action.results,
                expected=expected,
            )  # fmt: skip
            phase = "rolling_back"
        result = walk_graph(request, workspace=self.workspace)
        self.records.pop(key, None)
        if result.status == "committed" and isinstance(self.target, SyncTrigger):
            try:
                self.target.request_sync(environment)
            except SluiceError as exc:  # its own poll finds the commit
                _log.info("asking %s to sync failed: %s", environment, exc.message)
        what = "Committed" if result.status == "committed" else "Done already"
        return _report(
            obs, phase, request.action, f"{what}: {result.subject}",
            results=request.results, commit=result.commit, wake_in=0.0,
        )  # fmt: skip


def _report(
    obs: GraphObservation,
    phase: str,
    action: str,
    detail: str,
    *,
    results: tuple[GateResult, ...] = (),
    commit: str | None = None,
    outcome: Outcome | None = None,
    wake_in: float | None = None,
    holder: str | None = None,
    lease_until: float | None = None,
) -> GraphPassReport:
    weight = obs.canary.weight if obs.canary is not None else None
    return GraphPassReport(
        obs.graph, obs.environment, weight, phase, action, detail, results, commit, outcome,
        wake_in, holder, lease_until,
    )  # fmt: skip


def _phase(action: GraphAction) -> str:
    """The phase a pass deciding ``action`` reports (what its holder is doing)."""
    if isinstance(action, Wait):
        return action.phase
    if isinstance(action, SetWeight):
        return "progressing"
    if isinstance(action, Promote):
        return "promoting"
    if isinstance(action, StartRollback):
        return "rolling_back"
    return "analysing"  # an analysis, or a hold
