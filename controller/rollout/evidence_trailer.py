"""The evidence a rollout commit carries: the body its controller signs, kept in Git.

The promotion's commit and the commit that ends a passed shadow phase each carry the body of
their evidence (:func:`~controller.evidence.statement.canary_body`,
:func:`~controller.evidence.statement.shadow_body`) as one trailer::

    Sluice-Action: promote
    Sluice-Evidence: canary {"gates":[…],"looks":2,"promotedFrom":50,"steps":[10,50,100]}

so Git keeps the numbers the controller signs. A controller killed between the commit and the
record finds the same body in the commit on its next pass and records it then, once
(:class:`~controller.rollout.evidence_recorder.EvidenceRecorder`): the body is rebuilt from
Git, never from a memory the crash lost.

Pure: the bodies from an action and the observation, the trailer's text, and the reading of a
rollout's commits back into the evidence they carry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from controller.evidence.statement import canary_body, shadow_body
from controller.ports import ChangeInfo
from controller.rollout.actions import EndShadow, Promote
from controller.rollout.observation import ReleaseObservation
from controller.rollout.record import AnalysisRecord

__all__ = [
    "EVIDENCE_TRAILER",
    "CarriedEvidence",
    "RolloutEvidenceKind",
    "carried_evidence",
    "promotion_evidence",
    "rollout_evidence",
    "shadow_evidence",
]

#: The trailer holding a commit's evidence: ``KIND {json body}``.
EVIDENCE_TRAILER = "Sluice-Evidence"
RolloutEvidenceKind = Literal["canary", "shadow"]
_KINDS: tuple[RolloutEvidenceKind, ...] = ("canary", "shadow")
#: The actions of a rollout's commits between its proposal and its promotion.
_ROLLOUT_ACTIONS = frozenset({"step", "promote"})


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body as JSON gives it back: what the trailer holds is what is signed."""
    plain: dict[str, Any] = json.loads(json.dumps(body))
    return plain


@dataclass(frozen=True)
class CarriedEvidence:
    """One piece of evidence a commit carries: its kind and body."""

    kind: RolloutEvidenceKind
    body: Mapping[str, Any]

    def trailer(self) -> tuple[str, str]:
        """The ``Sluice-Evidence`` trailer: the kind, then the body as compact JSON."""
        text = json.dumps(self.body, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        return EVIDENCE_TRAILER, f"{self.kind} {text}"

    def problem(self) -> str | None:
        """Why the body does not say pass (a promotion or a shadow phase that ended on anything
        else cannot happen, and is never signed); None when it does."""
        if self.kind == "shadow":
            verdict = self.body.get("verdict")
            return None if verdict == "pass" else f"the shadow verdict is {verdict}, not pass"
        gates = self.body.get("gates") or []
        if not gates:
            return "no gate was judged at the last step"
        failing = [str(g.get("name")) for g in gates if g.get("verdict") != "pass"]
        return f"{', '.join(failing)} did not pass" if failing else None


def promotion_evidence(
    action: Promote, obs: ReleaseObservation, steps: Sequence[int]
) -> CarriedEvidence:
    """The ``canary`` evidence of a promotion: the policy's ``steps``, the step promoted from,
    the looks of its analysis (the passing one included: the record kept in the registry
    counts those before it) and each gate's numbers."""
    record = obs.analysis
    if record is None or record.commit != obs.pin_commit:
        record = AnalysisRecord(commit=obs.pin_commit, step=action.from_percent)
    body = canary_body(
        steps=steps,
        promoted_from=action.from_percent,
        results=action.results,
        record=replace(record, looks=record.looks + 1),
    )
    return CarriedEvidence("canary", _plain(body))


def shadow_evidence(action: EndShadow) -> CarriedEvidence:
    """The ``shadow`` evidence of a shadow phase the judge passed: its reason, sample sizes
    and each check's statistics."""
    body = shadow_body(
        verdict="pass",
        reason=action.reason or "every check passed",
        samples=action.samples,
        labelled=action.labelled,
        results=action.results,
    )
    return CarriedEvidence("shadow", _plain(body))


def carried_evidence(trailers: Mapping[str, str]) -> CarriedEvidence | None:
    """The evidence a commit's trailers carry; None without one, or with one that does not
    read as ``KIND {json object}``."""
    value = trailers.get(EVIDENCE_TRAILER)
    if value is None:
        return None
    kind, _, text = value.partition(" ")
    if kind not in _KINDS:
        return None
    try:
        body = json.loads(text)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    return CarriedEvidence("canary" if kind == "canary" else "shadow", body)


def rollout_evidence(changes: Iterable[ChangeInfo], version: int) -> list[CarriedEvidence]:
    """The evidence the commits of ``version``'s rollout carry, newest first, one per kind:
    walking back the pin's changes (newest first) while they are that version's steps and
    promotion, to the proposal that brought it in."""
    found: dict[str, CarriedEvidence] = {}
    for change in changes:
        trailers = change.trailers
        if trailers.get("Sluice-Version") != str(version):
            break
        if trailers.get("Sluice-Action") not in _ROLLOUT_ACTIONS:
            break
        carried = carried_evidence(trailers)
        if carried is not None:
            found.setdefault(carried.kind, carried)
    return list(found.values())
