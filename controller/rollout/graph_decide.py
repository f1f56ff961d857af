"""A graph rollout's decision: a pure function from what is observed to the one thing to do next.

A merged graph change is the environment's graph in canary form
(:mod:`controller.manifests.graph_canary`); its state is in Git alone (the committed canary
weight, and the commit that set it), so ``sluice graph rollout`` can die anywhere and resume.
The rules, as a model version's rollout has them (:mod:`controller.rollout.decide`):

- no canary form: nothing to walk; the last change of the graph's file says how the last
  canary ended (its ``Sluice-Action`` trailer: promoted or rolled back);
- until the target serves the committed graph (its canary annotations and weight), wait; past
  ``progressDeadline`` from the step's commit, roll back (aborted: nothing was judged);
- every ``interval`` after the step's commit (or the last analysis), analyse the step: the
  checks compare the canary branch with the stable branch on the branch series;
- an analysis ends by :func:`~controller.rollout.conclusions.conclude_look`, the model's rules:
  a failed check rolls back after ``failureLimit`` analyses, Prometheus not answering after
  ``errorLimit`` in a row and too few requests after ``inconclusiveLimit`` in a row; only an
  analysis where every check passed moves to the next step (never skipping one), and after the
  last step to the promotion.

No clock, network or file in here (``now`` is an argument).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controller.analysis_types import GateResult
from controller.manifests.graph_canary import GraphCanary
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
from controller.rollout.conclusions import conclude_look
from controller.rollout.graph_policy import GraphRolloutPolicy, next_graph_step
from controller.rollout.record import AnalysisRecord

__all__ = [
    "PROMOTED_ACTION",
    "ROLLED_BACK_ACTION",
    "GraphAction",
    "GraphObservation",
    "conclude_graph",
    "decide_graph",
]

#: The ``Sluice-Action`` trailers of a graph walk's last commits
#: (:mod:`controller.text.graph_messages`).
PROMOTED_ACTION = "graph-promote"
ROLLED_BACK_ACTION = "graph-rollback"

GraphAction = Wait | Analyze | Hold | SetWeight | Promote | StartRollback | Finish


@dataclass(frozen=True)
class GraphObservation:
    """One graph of one environment as Git and the target have it now."""

    graph: str
    environment: str
    #: The committed graph's canary (proposed spec's digest and weight), None: no canary form.
    canary: GraphCanary | None
    #: The last commit that changed the graph's file (first parent: a merge is its own).
    commit: str
    #: Its time (epoch seconds, whole as Git keeps them).
    changed_at: float
    #: Its ``Sluice-Action`` trailer, if any, and its subject.
    last_action: str | None = None
    last_subject: str = ""
    #: Whether the target serves the committed graph (the same canary, at the same weight).
    served: bool = False
    #: Why not, when it does not (for the wait's line).
    serving_note: str = ""


def decide_graph(
    obs: GraphObservation,
    policy: GraphRolloutPolicy,
    now: float,
    record: AnalysisRecord | None = None,
) -> GraphAction:
    """The next action for one graph in one environment; ``record`` is the analyses of the
    step so far (a record of another commit is ignored: a new step starts counting anew)."""
    if obs.canary is None:
        return _ended(obs)
    weight = obs.canary.weight
    if not obs.served:
        if now - obs.changed_at > policy.progress_deadline_seconds:
            return StartRollback(
                f"the canary at {weight}% was not served within "
                f"{policy.progress_deadline_seconds:g} s ({obs.serving_note or 'not synced'})",
                verdict="aborted",
            )
        why = obs.serving_note or f"waiting for {obs.environment} to serve {obs.commit[:12]}"
        return Wait(why, "progressing")
    if record is None or record.commit != obs.commit:
        record = AnalysisRecord(commit=obs.commit, step=weight)
    start = record.last_at if record.last_at is not None else obs.changed_at
    due = start + policy.interval_seconds
    if now < due:
        return Wait(f"canary {weight}%: next analysis in {due - now:.0f} s", "analysing", due - now)
    return Analyze(step=weight, look=record.looks + 1, record=record)


def conclude_graph(
    policy: GraphRolloutPolicy, analysis: Analyze, results: Sequence[GateResult], now: float
) -> StartRollback | Promote | SetWeight | Hold:
    """What an analysis of the canary at ``analysis.step`` with ``results`` leads to: the next
    step of the policy (never skipping one), the promotion after the last, a hold, or the
    rollback."""
    following = next_graph_step(policy.steps, analysis.step)
    return conclude_look(analysis, results, policy, following=following, now=now)


def _ended(obs: GraphObservation) -> Finish:
    last = f"last change: {obs.commit[:7]} {obs.last_subject}".rstrip()
    if obs.last_action == PROMOTED_ACTION:
        return Finish(Outcome.PROMOTED, f"graph {obs.graph} serves its new graph alone ({last})")
    if obs.last_action == ROLLED_BACK_ACTION:
        return Finish(Outcome.ROLLED_BACK, f"graph {obs.graph} was rolled back ({last})")
    return Finish(
        Outcome.IDLE,
        f"graph {obs.graph} serves no canary in {obs.environment} ({last}); propose a change "
        f"first (sluice graph propose {obs.graph} --env {obs.environment} --spec FILE)",
    )
