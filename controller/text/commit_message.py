"""Commit subjects and bodies that read well where people see them.

Argo CD's UI shows the first line of the synced commit cut to 64 characters, and
``git log --oneline`` shows only that line, so the subject says what moved where within 64
characters; the body carries the evidence; trailers make the commit machine-readable
(``git log --format='%(trailers:key=Sluice-Version)'``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from string import Template

__all__ = [
    "SUBJECT_LIMIT",
    "ProposalMessage",
    "proposal_branch",
    "proposal_of_branch",
    "render_proposal_message",
]

#: What Argo CD's UI shows of a commit subject.
SUBJECT_LIMIT = 64

_BODY = Template(
    """$summary

Run: $run_url
Holdout metrics: $metrics
Storage: $storage_uri
$evidence
Sluice-Model: $model
Sluice-Version: $version
Sluice-Env: $environment
Sluice-Run: $run_id
"""
)
_KEY_METRICS = ("roc_auc", "pr_auc", "recall_at_1pct_fpr", "calibration_error")


@dataclass(frozen=True)
class ProposalMessage:
    """The view a proposal commit is rendered from."""

    model: str
    version: int
    environment: str
    previous_version: int | None
    canary_percent: int | None
    storage_uri: str
    run_id: str | None
    run_url: str | None
    metrics: Mapping[str, float]
    #: The share of live requests mirrored to the version while it is in shadow (weight 0).
    shadow_percent: float | None = None
    #: Pinned at weight 0 for the pre-traffic smoke, before ``smoke_then`` % (the first step).
    smoke_then: int | None = None
    #: For an environment with ``promotion:``, the evidence the version was held to when
    #: proposed, one line each (met, then missing): the branch itself keeps what it earned.
    evidence: tuple[str, ...] = ()


def proposal_branch(environment: str, model: str, version: int) -> str:
    """Deterministic from the change, so a second run finds the first run's branch and PR."""
    return f"sluice/{environment}/{model}/v{version}"


_PROPOSAL_BRANCH = re.compile(r"sluice/([^/]+)/([^/]+)/v([1-9][0-9]{0,8})")


def proposal_of_branch(branch: str) -> tuple[str, str, int] | None:
    """The environment, model and version a :func:`proposal_branch` names; None for any
    other branch."""
    found = _PROPOSAL_BRANCH.fullmatch(branch)
    if found is None:
        return None
    environment, model, version = found.groups()
    return environment, model, int(version)


def _subject(message: ProposalMessage) -> str:
    if message.previous_version is None:
        how = "first deploy"
    elif message.shadow_percent is not None:
        how = "shadow"
    elif message.smoke_then is not None:
        how = f"smoke, canary {message.smoke_then}%"
    elif message.canary_percent is None:
        how = f"replaces v{message.previous_version}"
    else:
        how = f"canary {message.canary_percent}%"
    subject = f"{message.model} v{message.version} → {message.environment} ({how})"
    if len(subject) > SUBJECT_LIMIT:
        # Keep the version, environment and mode; shorten the model name, which the
        # trailers carry in full.
        room = SUBJECT_LIMIT - (len(subject) - len(message.model)) - 1
        subject = (
            f"{message.model[: max(room, 1)]}… v{message.version} → {message.environment} ({how})"
        )
    return subject[:SUBJECT_LIMIT]


def _metrics_line(metrics: Mapping[str, float]) -> str:
    parts = []
    for name in _KEY_METRICS:
        if name in metrics:
            text = f"{name} {metrics[name]:.4f}"
            champion = metrics.get(f"champion_{name}")
            if champion is not None:
                text += f" (champion {champion:.4f})"
            parts.append(text)
    return ", ".join(parts) or "none logged"


def _evidence_paragraph(lines: tuple[str, ...]) -> str:
    """The body's Evidence paragraph, then the blank line before the trailers; only the blank
    line without evidence."""
    if not lines:
        return ""
    return "\nEvidence:\n" + "".join(f"- {line}\n" for line in lines)


def render_proposal_message(message: ProposalMessage) -> str:
    """Subject, blank line, body with the evidence, and the Sluice-* trailers."""
    if message.previous_version is None:
        summary = (
            f"First deploy of {message.model} to {message.environment}: "
            f"v{message.version} takes all traffic."
        )
    elif message.shadow_percent is not None:
        summary = (
            f"Shadow v{message.version} beside v{message.previous_version} in "
            f"{message.environment}: it answers a mirrored copy of {message.shadow_percent:g}% "
            "of the live requests and no client sees its answers. Sluice starts the canary "
            "only once the shadow judge passes."
        )
    elif message.smoke_then is not None:
        summary = (
            f"Canary v{message.version} beside v{message.previous_version} in "
            f"{message.environment}, smoke-tested first: its revision starts at 0% of the "
            f"traffic and takes {message.smoke_then}% only once it answered the smoke test's "
            "requests; Sluice steps it up after each passing gate."
        )
    elif message.canary_percent is None:
        summary = (
            f"Replace v{message.previous_version} with v{message.version} in {message.environment}."
        )
    else:
        summary = (
            f"Canary v{message.version} at {message.canary_percent}% of {message.environment}'s "
            f"traffic beside v{message.previous_version}; Sluice steps it up after each passing "
            "gate."
        )
    body = _BODY.substitute(
        summary=summary,
        run_url=message.run_url or "-",
        metrics=_metrics_line(message.metrics),
        storage_uri=message.storage_uri,
        model=message.model,
        version=message.version,
        environment=message.environment,
        run_id=message.run_id or "-",
        evidence=_evidence_paragraph(message.evidence),
    )
    return f"{_subject(message)}\n\n{body}"
