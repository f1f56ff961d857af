"""The shadow phase's evidence: the challenger's mirrored answers from the prediction log.

The router (locally) or the mesh's mirror and the prediction sink (on a cluster) log every
answer of the primary and of the challenger with the request's id; the judge reads the pairs
the challenger answered since its pin changed. A log that cannot be read is missing evidence:
the judgement is inconclusive, which never starts a canary.
"""

from __future__ import annotations

import logging

from controller.analysis_types import GateResult, Verdict
from controller.ports import PredictionStore
from controller.rollout.observation import ReleaseObservation
from controller.rollout.policy import ShadowPhase
from controller.shadow.judge import GATE_PREFIX, ShadowJudgement, judge_shadow
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
        pairs = store.pairs(shadow_revision=revision, since=obs.pin_changed_at)
    except Exception as exc:  # any store failure is a tool error, never a pass or a fail
        _log.warning("reading the prediction log failed: %s", exc)
        return _without_evidence(
            f"the prediction log could not be read ({type(exc).__name__})", Verdict.ERROR
        )
    return judge_shadow(ShadowSamples.from_pairs(pairs), phase.judge)
