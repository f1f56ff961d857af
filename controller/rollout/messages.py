"""Commit messages of rollout steps, written for the Argo CD UI and ``git log``.

The subject (at most 64 characters, what Argo CD shows) says which version moved where; the
body carries every gate's result, so the history explains each traffic change without
opening Sluice; trailers (``Sluice-Action``) let the next pass, or a person, tell a step from
a rollback with ``git log --format='%(trailers:key=Sluice-Action,valueonly)'``, and a
promotion's (or a passed shadow phase's) ``Sluice-Evidence`` keeps the body its evidence signs
(:mod:`controller.rollout.evidence_trailer`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from controller.analysis_types import GateResult, Verdict
from controller.text.commit_message import SUBJECT_LIMIT

__all__ = [
    "RolloutCommit",
    "gate_lines",
    "gates_in_message",
    "render_rollout_comment",
    "render_rollout_message",
]

_MARK = {
    Verdict.PASS: "pass",
    Verdict.FAIL: "FAIL",
    Verdict.ERROR: "ERROR",
    Verdict.INCONCLUSIVE: "inconclusive",
}


@dataclass(frozen=True)
class RolloutCommit:
    """What one rollout commit says."""

    model: str
    version: int
    environment: str
    #: step, promote, rollback, restore or mirror (the ``Sluice-Action`` trailer).
    action: str
    headline: str
    summary: str
    #: Headline numbers ("success 99.9%, p99 41 ms vs 39 ms"), added to the subject if they fit.
    evidence: str = ""
    results: tuple[GateResult, ...] = ()
    #: A Markdown report (the shadow judge's) shown in the pull request instead of the table.
    report: str = ""
    #: Markdown after the gates in the body and the comment (a multiclass shadow judge's
    #: confusion matrices); the report, when there is one, holds it already.
    details: str = ""
    #: Trailers after ``Sluice-Action`` (the ``Sluice-Evidence`` body of a promotion or of a
    #: passed shadow phase: :mod:`controller.rollout.evidence_trailer`), one line each.
    trailers: tuple[tuple[str, str], ...] = ()


def _subject(commit: RolloutCommit) -> str:
    prefix = "rollback " if commit.action in ("rollback", "restore") else ""
    where = f"{commit.environment}; {commit.evidence}" if commit.evidence else commit.environment
    subject = f"{prefix}{commit.model} v{commit.version}: {commit.headline} ({where})"
    if len(subject) > SUBJECT_LIMIT:
        subject = (
            f"{prefix}{commit.model} v{commit.version}: {commit.headline} ({commit.environment})"
        )
    if len(subject) > SUBJECT_LIMIT:
        subject = f"{prefix}{commit.model} v{commit.version}: {commit.headline}"
    if len(subject) > SUBJECT_LIMIT:
        subject = subject[: SUBJECT_LIMIT - 1] + "…"
    return subject


def _named(result: GateResult) -> str:
    """The summary, led by the gate's name once (most summaries already start with it)."""
    if result.summary.startswith(result.gate):
        return result.summary
    return f"{result.gate}: {result.summary}"


def gate_lines(results: tuple[GateResult, ...]) -> list[str]:
    """A commit body's ``Gates:`` block, one line per gate (empty without results): what
    :func:`gates_in_message` reads back."""
    if not results:
        return []
    return ["Gates:", *(f"- [{_MARK[r.verdict]}] {_named(r)}" for r in results)]


def render_rollout_message(commit: RolloutCommit) -> str:
    """Subject, the why, one line per gate, any details (Markdown), and the trailers."""
    lines = [_subject(commit), "", commit.summary]
    if commit.results:
        lines += ["", *gate_lines(commit.results)]
    if commit.details:
        lines += ["", commit.details.rstrip()]
    lines += [
        "",
        f"Sluice-Model: {commit.model}",
        f"Sluice-Version: {commit.version}",
        f"Sluice-Env: {commit.environment}",
        f"Sluice-Action: {commit.action}",
        *(f"{key}: {value}" for key, value in commit.trailers),
    ]
    return "\n".join(lines) + "\n"


_GATE_LINE = re.compile(r"^- \[(pass|FAIL|ERROR|inconclusive)\] (.*)$")
_GATE_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_./-]*): (.*)$")


def gates_in_message(message: str) -> tuple[GateResult, ...]:
    """The gates a rollout commit's body lists (:func:`render_rollout_message`), read back:
    ``sluice status`` shows them as the last gates of the step the commit started."""
    verdicts = {mark: verdict for verdict, mark in _MARK.items()}
    lines = message.splitlines()
    if "Gates:" not in lines:
        return ()
    results = []
    for line in lines[lines.index("Gates:") + 1 :]:
        match = _GATE_LINE.match(line)
        if match is None:
            break
        text = match.group(2)
        named = _GATE_NAME.match(text)
        gate, summary = (named.group(1), named.group(2)) if named else (text.split(" ")[0], text)
        if not summary.startswith(gate.rsplit("/", 1)[-1]):
            summary = text  # "locust: 0 of 50 failed" was the summary as written
        results.append(GateResult(gate, verdicts[match.group(1)], summary))
    return tuple(results)


_ICON = {"step": "⏩", "promote": "✅", "rollback": "⏪", "restore": "⏪", "mirror": "🪞"}


def render_rollout_comment(commit: RolloutCommit, sha: str) -> str:
    """The pull request comment for one rollout commit: what moved, why, and every gate."""
    icon = _ICON.get(commit.action, "")
    lines = [
        f"### {icon} {commit.model} v{commit.version}: {commit.headline} ({commit.environment})",
        "",
        commit.summary,
        "",
        f"Commit: `{sha[:12]}`",
    ]
    if commit.report:
        lines += ["", commit.report.rstrip()]
    elif commit.results:
        lines += ["", "| gate | verdict | result |", "|---|---|---|"]
        lines += [
            f"| {r.gate} | {_MARK[r.verdict]} | {r.summary.replace('|', '/')} |"
            for r in commit.results
        ]
        if commit.details:
            lines += ["", commit.details.rstrip()]
    lines += ["", "<!-- sluice:rollout -->"]
    return "\n".join(lines) + "\n"
