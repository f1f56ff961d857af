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
from controller.errors import InputError
from controller.ports import PredictionStore
from controller.predictions import PredictionPair
from controller.rollout.observation import ReleaseObservation
from controller.rollout.policy import ShadowPhase
from controller.shadow.class_judge import judge_classes
from controller.shadow.class_samples import ClassSamples
from controller.shadow.judge import GATE_PREFIX, ShadowJudgement, ShadowPolicy, judge_shadow
from controller.shadow.samples import ShadowSamples

__all__ = ["judge_mirrored"]

_log = logging.getLogger("sluice.rollout")


def _without_evidence(reason: str, verdict: Verdict = Verdict.INCONCLUSIVE) -> ShadowJudgement:
    result = GateResult(f"{GATE_PREFIX}/prediction-log", verdict, reason)
    return ShadowJudgement(verdict, reason, (result,), 0, 0)


def judge_mirrored(
    store: PredictionStore | None, obs: ReleaseObservation, phase: ShadowPhase
) -> ShadowJudgement:
    """Judge the challenger's revision on the pairs logged since its pin changed."""
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
        return judge_classes(samples, phase.judge)
    return judge_shadow(samples, phase.judge)


def _samples(pairs: list[PredictionPair], policy: ShadowPolicy) -> ShadowSamples | ClassSamples:
    """The judge's input: decisions among ``classes`` when the policy names them, else scores."""
    if policy.classes is None:
        return ShadowSamples.from_pairs(pairs)
    return ClassSamples.from_pairs(pairs, policy.classes, decision_field=policy.decision_field)
