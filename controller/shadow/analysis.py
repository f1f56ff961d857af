"""The shadow phase's evidence: the challenger's mirrored answers from the prediction log.

The router (locally) or the mesh's mirror and the prediction sink (on a cluster) log every
answer of the primary and of the challenger with the request's id; the judge reads the pairs
the challenger answered since its pin changed. A log that cannot be read is missing evidence:
the judgement is inconclusive, which never starts a canary. A label the judge cannot use (a
class name for a binary judge, a class not in ``classes``) is an error naming the request:
nothing was learnt about the model, and a corrected label (the latest wins) lets it judge.
With ``classes`` in the policy the multiclass judge (:mod:`controller.shadow.class_judge`)
judges the pairs, else the binary one. A pair's label is the value of the policy's
``outcome`` (``label`` unless it names another: a graph's classifier and specialist share
request ids and each has its own truth).
"""

from __future__ import annotations

import logging

from controller.analysis_types import GateResult, Verdict
from controller.errors import ConfigError, InputError, SluiceError
from controller.ports import GraphReplay, PredictionStore
from controller.predictions import LoggedPrediction, PredictionPair
from controller.rollout.observation import ReleaseObservation
from controller.rollout.policy import ShadowPhase
from controller.shadow.class_judge import judge_classes
from controller.shadow.class_samples import ClassSamples, class_index
from controller.shadow.downstream import (
    DOWNSTREAM_CHECK,
    DownstreamSamples,
    Routed,
    judge_downstream,
)
from controller.shadow.downstream_policy import DownstreamPolicy
from controller.shadow.judge import (
    GATE_PREFIX,
    ShadowJudgement,
    ShadowPolicy,
    judge_shadow,
    result_of,
)
from controller.shadow.samples import ShadowSamples

__all__ = ["judge_mirrored"]

_log = logging.getLogger("sluice.rollout")


def _without_evidence(reason: str, verdict: Verdict = Verdict.INCONCLUSIVE) -> ShadowJudgement:
    result = GateResult(f"{GATE_PREFIX}/prediction-log", verdict, reason)
    return ShadowJudgement(verdict, reason, (result,), 0, 0)


def judge_mirrored(
    store: PredictionStore | None,
    obs: ReleaseObservation,
    phase: ShadowPhase,
    replay: GraphReplay | None = None,
) -> ShadowJudgement:
    """Judge the challenger's revision on the pairs logged since its pin changed (a
    classifier routing a graph also downstream, through ``replay``)."""
    revision = obs.canary_revision
    if store is None:
        return _without_evidence("no prediction log is configured to read mirrored answers from")
    if revision is None:
        return _without_evidence("the challenger's revision is not known yet")
    try:
        pairs = store.pairs(
            shadow_revision=revision, since=obs.pin_changed_at, outcome=phase.judge.outcome
        )
    except Exception as exc:  # any store failure is a tool error, never a pass or a fail
        _log.warning("reading the prediction log failed: %s", exc)
        return _without_evidence(
            f"the prediction log could not be read ({type(exc).__name__})", Verdict.ERROR
        )
    try:
        samples = _samples(pairs, phase.judge)
    except InputError as exc:  # a label the judge cannot read: say which, judge nothing
        return _without_evidence(exc.message, Verdict.ERROR)
    if isinstance(samples, ClassSamples):
        downstream = phase.judge.downstream
        if downstream is None:
            return judge_classes(samples, phase.judge)
        checks = _downstream(store, replay, pairs, obs.inference_service, phase.judge, downstream)
        return judge_classes(samples, phase.judge, checks)
    return judge_shadow(samples, phase.judge)


def _downstream(
    store: PredictionStore,
    replay: GraphReplay | None,
    pairs: list[PredictionPair],
    member: str,
    judge: ShadowPolicy,
    policy: DownstreamPolicy,
) -> tuple[GateResult, ...]:
    """The downstream checks on the newest pairs whose outcome has arrived."""
    classes = judge.classes or ()
    try:
        arrived = store.outcomes([p.request_id for p in pairs], policy.outcome)
    except Exception as exc:  # any store failure is a tool error, never a pass or a fail
        _log.warning("reading the prediction log's outcomes failed: %s", exc)
        reason = f"the prediction log's {policy.outcome} outcomes could not be read"
        return (result_of(DOWNSTREAM_CHECK, Verdict.ERROR, f"{reason} ({type(exc).__name__})"),)
    try:
        chosen = [p for p in pairs if p.request_id in arrived and 200 <= p.primary.status < 300][
            -policy.max_requests :
        ]
        champion: list[Routed] = []
        challenger: list[Routed] = []
        if chosen:
            if replay is None:
                raise ConfigError("no graph replay is configured for this target")
            champion = _replayed(replay, policy.graph, member, [p.primary for p in chosen])
            challenger = _replayed(replay, policy.graph, member, [p.shadow for p in chosen])
        rows = [
            (pair.request_id, arrived[pair.request_id], _regime(pair, classes), ours, theirs)
            for pair, ours, theirs in zip(chosen, champion, challenger, strict=True)
        ]
        samples = DownstreamSamples.from_routed(classes, rows, policy)
    except SluiceError as exc:  # the graph or the log could not answer: a tool error
        _log.warning("the downstream replay of %s failed: %s", policy.graph, exc.message)
        reason = f"replaying through InferenceGraph {policy.graph} failed: {exc.message}"
        return (result_of(DOWNSTREAM_CHECK, Verdict.ERROR, reason),)
    return judge_downstream(
        samples, policy, alpha=judge.alpha, min_labelled=judge.min_labelled,
        min_positives=judge.min_positives,
    )  # fmt: skip


def _replayed(
    replay: GraphReplay, graph: str, member: str, answers: list[LoggedPrediction]
) -> list[Routed]:
    """The graph's answers with ``member`` answering each of ``answers``; an answer that was
    no answer (an error status, no JSON) is not replayed: the graph failed with it."""
    usable = [i for i, a in enumerate(answers) if 200 <= a.status < 300 and a.output is not None]
    routed = [Routed(a.status if a.status >= 300 else 502, None) for a in answers]
    if usable:
        outputs = replay.replay(graph, member, [answers[i].output for i in usable])
        for i, out in zip(usable, outputs, strict=True):
            routed[i] = Routed(out.status, out.output)
    return routed


def _regime(pair: PredictionPair, classes: tuple[str, ...]) -> str | None:
    """The request's true class (the judge's own label), None before it has arrived."""
    if pair.label is None:
        return None
    index = class_index(pair.label, classes)
    return None if index is None else classes[index]


def _samples(pairs: list[PredictionPair], policy: ShadowPolicy) -> ShadowSamples | ClassSamples:
    """The judge's input: decisions among ``classes`` when the policy names them, else scores."""
    if policy.classes is None:
        return ShadowSamples.from_pairs(pairs)
    return ClassSamples.from_pairs(pairs, policy.classes, decision_field=policy.decision_field)
