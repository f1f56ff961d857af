"""A checked piece of evidence in a few words: what ``sluice evidence show`` and status print.

:func:`headline` says a piece's numbers in one line (a canary's steps and looks, a shadow
verdict's samples, a soak's window and alerts, who approved, why an override); :func:`piece`
makes one :class:`~controller.evidence.verify.EvidenceCheck` JSON-ready with that line. Both are
pure and read only the signed predicate, so a piece that failed before its statement was read
says so instead of numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.evidence.policy import duration_words
from controller.evidence.verify import EvidenceCheck

__all__ = ["headline", "piece"]


def _body(check: EvidenceCheck) -> Mapping[str, Any]:
    body = check.predicate.get(check.kind, {})
    return body if isinstance(body, Mapping) else {}


def _canary(body: Mapping[str, Any]) -> str:
    steps = "→".join(f"{step}%" for step in body.get("steps", []))
    gates = body.get("gates", [])
    verdicts = [f"{g.get('name')} {g.get('summary') or g.get('verdict')}" for g in gates]
    looks = body.get("looks", 0)
    return (
        f"steps {steps or 'none'}, promoted from {body.get('promotedFrom')}% after "
        f"{looks} look{'s' if looks != 1 else ''}"
        + (f"; {'; '.join(verdicts)}" if verdicts else "")
    )


def _shadow(body: Mapping[str, Any]) -> str:
    return (
        f"verdict {body.get('verdict')} on {body.get('samples')} samples "
        f"({body.get('labelled')} labelled): {body.get('reason')}"
    )


def _soak(body: Mapping[str, Any]) -> str:
    served = duration_words(float(body.get("durationSeconds", 0)))
    queries = body.get("queries", [])
    failing = [str(q.get("name")) for q in queries if not q.get("ok")]
    alerts = [str(alert) for alert in body.get("alerts", [])]
    words = [f"{served} at 100% ({body.get('start')} to {body.get('end')})"]
    if alerts:
        words.append(f"alert {', '.join(alerts)}")
    if failing:
        words.append(f"{', '.join(failing)} out of bounds")
    if queries and not failing:
        words.append(f"{len(queries)} quer{'ies' if len(queries) != 1 else 'y'} within bounds")
    if not alerts and not failing:
        words.append("no alert")
    return ", ".join(words)


def _approval(body: Mapping[str, Any]) -> str:
    pull = body.get("pullRequest", {})
    number = pull.get("number") if isinstance(pull, Mapping) else None
    return (
        f"by {', '.join(body.get('approvers', [])) or 'nobody'} on pull request #{number} "
        f"at {body.get('approvedAt')}"
    )


def _override(body: Mapping[str, Any]) -> str:
    missing = body.get("missing", [])
    return f"forced by {body.get('by')}: {body.get('reason')} (past {len(missing)} missing)"


_HEADLINES = {
    "canary": _canary,
    "shadow": _shadow,
    "soak": _soak,
    "approval": _approval,
    "override": _override,
}


def headline(check: EvidenceCheck) -> str:
    """The piece's numbers in one line; empty when its statement was never read (a piece that
    failed at its tag, envelope or signature carries no numbers that can be believed)."""
    words = _HEADLINES.get(check.kind)
    if words is None or not check.predicate:
        return ""
    try:
        return words(_body(check))
    except (TypeError, ValueError, AttributeError):  # signed, yet not the shape we read
        return ""


def piece(check: EvidenceCheck) -> dict[str, Any]:
    """One piece JSON-ready: kind, environment, when, signer, the check and its numbers."""
    return {
        "kind": check.kind,
        "environment": check.environment,
        "at": check.predicate.get("at"),
        "keyid": check.keyid,
        "digest": check.digest,
        "verified": check.verified,
        "failed": check.failed,
        "reason": check.reason,
        "headline": headline(check),
        "body": dict(_body(check)),
    }
