"""The analysis record: what earlier analyses of a canary step concluded, kept in the registry.

Flagger keeps its failed-check counter in the Canary object's status; Sluice has no object of
its own, so the counter lives on the model version as the MLflow tag ``sluice.analysis.ENV``
(JSON). It is keyed by the commit that set the step: a new step starts a fresh record, and a
controller restarted mid-step continues the count instead of starting over.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from controller.analysis_types import GateResult, Verdict

__all__ = ["AnalysisRecord", "analysis_tag", "shadow_tag", "tally"]


def analysis_tag(environment: str) -> str:
    """The version tag holding the record for one environment."""
    return f"sluice.analysis.{environment}"


def shadow_tag(environment: str) -> str:
    """The version tag holding the shadow judge's verdict in one environment."""
    return f"sluice.shadow.{environment}"


@dataclass(frozen=True)
class AnalysisRecord:
    """Analyses of one canary step so far."""

    #: The commit that set this step's canaryTrafficPercent.
    commit: str
    step: int
    looks: int = 0
    failures: int = 0
    inconclusive: int = 0
    #: Analyses in a row where a gate's tool did not work (and none failed).
    errors: int = 0
    #: When the last analysis finished (seconds since the epoch), for pacing.
    last_at: float | None = None
    results: tuple[GateResult, ...] = ()
    #: The summary of the smoke that passed at the start of this (shadow) phase, if one did.
    smoke: str | None = None

    def to_json(self) -> str:
        """Compact JSON for the registry tag (MLflow tag values hold up to 5,000 characters)."""
        payload = {
            "commit": self.commit,
            "step": self.step,
            "looks": self.looks,
            "failures": self.failures,
            "inconclusive": self.inconclusive,
            "errors": self.errors,
            "lastAt": self.last_at,
            **({"smoke": self.smoke[:300]} if self.smoke is not None else {}),
            "results": [
                {"gate": r.gate, "verdict": r.verdict.value, "summary": r.summary[:300]}
                for r in self.results
            ],
        }
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | None) -> AnalysisRecord | None:
        """The record in a tag value; None when absent or unreadable (a fresh start is safe)."""
        if not text:
            return None
        try:
            data: Mapping[str, Any] = json.loads(text)
            return cls(
                commit=str(data["commit"]),
                step=int(data["step"]),
                looks=int(data.get("looks", 0)),
                failures=int(data.get("failures", 0)),
                inconclusive=int(data.get("inconclusive", 0)),
                errors=int(data.get("errors", 0)),
                last_at=float(data["lastAt"]) if data.get("lastAt") is not None else None,
                smoke=str(data["smoke"]) if data.get("smoke") is not None else None,
                results=tuple(
                    GateResult(str(r["gate"]), Verdict(r["verdict"]), str(r.get("summary", "")))
                    for r in data.get("results", [])
                ),
            )
        except (ValueError, KeyError, TypeError):
            return None


def tally(record: AnalysisRecord, results: Sequence[GateResult], now: float) -> AnalysisRecord:
    """The record after one more analysis with ``results``.

    A failing gate counts a failure (evidence against the model wins over a broken tool);
    otherwise a gate whose tool did not work counts an error analysis, and any inconclusive
    gate (or no gate at all) an inconclusive one. The error and inconclusive counts are streaks:
    their limits are on consecutive analyses without an answer, so an analysis that answers
    resets them.
    """
    verdicts = {r.verdict for r in results}
    failures, inconclusive, errors = record.failures, record.inconclusive, record.errors
    if Verdict.FAIL in verdicts:
        failures += 1
    elif Verdict.ERROR in verdicts:
        errors += 1
    elif Verdict.INCONCLUSIVE in verdicts or not results:
        inconclusive += 1
        errors = 0
    else:
        inconclusive = errors = 0
    return replace(
        record,
        looks=record.looks + 1,
        failures=failures,
        inconclusive=inconclusive,
        errors=errors,
        last_at=now,
        results=tuple(results),
    )
