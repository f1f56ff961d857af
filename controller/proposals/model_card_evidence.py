"""The model card's Evidence section: every piece of a version's evidence, with its numbers and
its signer, and what the environment's ``promotion:`` still misses.

A reviewer of a production pull request should not have to open MLflow to see what the
version earned upstream: each signed piece is one line with the numbers its predicate holds (a
canary's steps, looks and gates, a shadow verdict's samples, a soak's window, queries and
alerts, an approval, an override's reason) and the key id that signed it; a piece that failed
verification says which link broke. Pure: it renders checked evidence
(:class:`~controller.evidence.verify.EvidenceCheck`) and a verdict, as GitHub Markdown.

Evidence earned after the pull request was opened (its approval) reaches the card through
:func:`with_evidence_section`, which puts a new section in place of the old one and leaves
every other line of the body as it was (a reviewer's edits included).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from controller.evidence.evaluate import EvidenceVerdict
from controller.evidence.policy import duration_words
from controller.evidence.verify import EvidenceCheck
from controller.text.markdown_text import one_line

__all__ = ["EVIDENCE_HEADING", "evidence_section", "piece_summary", "with_evidence_section"]

#: The heading of the section in a model card (:mod:`controller.proposals.model_card`).
EVIDENCE_HEADING = "### Evidence"


def _gates(gates: Any) -> str:
    if not isinstance(gates, list) or not gates:
        return "no gate recorded"
    return "; ".join(
        f"{g.get('name')} {g.get('verdict')} ({g.get('summary')})"
        for g in gates
        if isinstance(g, Mapping)
    )


def _canary(body: Mapping[str, Any]) -> str:
    steps = " → ".join(f"{step}%" for step in body.get("steps", [])) or "100%"
    return (
        f"promoted after {steps} from {body.get('promotedFrom')}%, "
        f"{body.get('looks')} looks; gates: {_gates(body.get('gates'))}"
    )


def _shadow(body: Mapping[str, Any]) -> str:
    return (
        f"verdict {body.get('verdict')} on {body.get('samples')} samples "
        f"({body.get('labelled')} labelled): {body.get('reason')}; "
        f"checks: {_gates(body.get('checks'))}"
    )


def _query(query: Mapping[str, Any]) -> str:
    value = query.get("value")
    shown = f"{value:.4g}" if isinstance(value, (int, float)) else "unmeasured"
    return f"{query.get('name')} {shown}{'' if query.get('ok') else ' (out of bounds)'}"


def _soak(body: Mapping[str, Any]) -> str:
    queries = [q for q in body.get("queries", []) if isinstance(q, Mapping)]
    alerts = ", ".join(str(alert) for alert in body.get("alerts", [])) or "none"
    return (
        f"served 100% for {duration_words(float(body.get('durationSeconds', 0)))} "
        f"({body.get('start')} → {body.get('end')}); "
        f"queries: {'; '.join(_query(q) for q in queries) or 'none'}; alerts: {alerts}"
    )


def _approval(body: Mapping[str, Any]) -> str:
    pull = body.get("pullRequest") or {}
    return (
        f"approved by {', '.join(body.get('approvers', []))} on #{pull.get('number')} "
        f"at {body.get('approvedAt')}"
    )


def _override(body: Mapping[str, Any]) -> str:
    missing = "; ".join(str(line) for line in body.get("missing", [])) or "nothing"
    return f"forced by {body.get('by')}: {body.get('reason')} (past: {missing})"


_SUMMARIES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "canary": _canary,
    "shadow": _shadow,
    "soak": _soak,
    "approval": _approval,
    "override": _override,
}


def piece_summary(check: EvidenceCheck) -> str:
    """One line for one piece: its numbers and signer when verified, the broken link if not."""
    what = f"**{check.kind} in {check.environment}**"
    if not check.verified:
        return f"❌ {what}: {check.failed} check failed: {check.reason}"
    body = check.predicate.get(check.kind)
    summary = _SUMMARIES.get(check.kind)
    numbers = summary(body) if summary is not None and isinstance(body, Mapping) else ""
    signer = f"key `{(check.keyid or '?')[:12]}…`"
    return f"✅ {what} ({check.predicate.get('at')}, signed by {signer}): {numbers}"


def evidence_section(
    environment: str, checks: Sequence[EvidenceCheck], verdict: EvidenceVerdict
) -> str:
    """The section: a verdict line, every piece (:func:`piece_summary`), what is missing."""
    if verdict.complete:
        headline = f"Complete for **{environment}**'s promotion policy."
    elif verdict.override is not None and verdict.allowed:
        headline = f"⚠️ **Incomplete**, proposed by hand past it (an override) into {environment}."
    else:
        headline = f"**Incomplete** for {environment}'s promotion policy."
    pieces = [f"- {one_line(piece_summary(check))}" for check in checks] or ["- none recorded"]
    missing = [f"- {one_line(line)}" for line in verdict.lines()]
    parts = [headline, "", *pieces]
    if missing:
        parts += ["", "Missing:", "", *missing]
    return "\n".join(parts)


def _ends_section(line: str) -> bool:
    """The line after a card section: the next heading, or the card's closing marker."""
    return line.startswith("#") or line.startswith("<!-- sluice:")


def with_evidence_section(body: str, section: str) -> str:
    """``body`` with ``section`` as its Evidence section: in place of the lines under
    :data:`EVIDENCE_HEADING` up to the next heading (or the card's marker), else before the
    body's first ``###`` heading (where the card puts it), else at its end."""
    lines = body.split("\n")
    block = [EVIDENCE_HEADING, "", *section.strip("\n").split("\n"), ""]
    start = next((i for i, line in enumerate(lines) if line.strip() == EVIDENCE_HEADING), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(lines)) if _ends_section(lines[i])), len(lines))
        return "\n".join([*lines[:start], *block, *lines[end:]])
    first = next((i for i, line in enumerate(lines) if line.startswith("### ")), None)
    if first is None:
        first = next((i for i, line in enumerate(lines) if _ends_section(line)), None)
    if first is None:
        return "\n".join([body.rstrip("\n"), "", *block])
    return "\n".join([*lines[:first], *block, *lines[first:]])
