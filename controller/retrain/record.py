"""A retraining as the registry keeps it: its record, the tags that hold it, and its words.

Pure: :class:`RetrainRecord` encodes to and decodes from a tag value within MLflow's limit,
:func:`exit_outcome` says what a training command's exit status means, and
:func:`describe_retraining` is the line ``sluice status`` shows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from controller.domain import RetrainRequest

__all__ = [
    "FINISHED_OUTCOMES",
    "Outcome",
    "RetrainRecord",
    "cooldown_tag",
    "describe_retraining",
    "exit_outcome",
    "iso_time",
    "last_retrain_tag",
    "parse_time",
    "retrain_reason",
    "turned_away_tag",
]

log = logging.getLogger("sluice.retrain")

_RECORD_MAX_CHARS = 4000  # MLflow keeps at most 5,000 characters of a tag's value
_DETAIL_MAX_CHARS = 600

Outcome = Literal["grouping", "started", "succeeded", "gate-failed", "failed"]
#: The outcomes of a retraining that ran: what ``sluice retrain report --outcome`` accepts.
FINISHED_OUTCOMES: tuple[Outcome, ...] = ("succeeded", "gate-failed", "failed")


def iso_time(epoch: float) -> str:
    """``epoch`` (Unix time) as the records write it: ISO 8601, UTC, to the second."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def parse_time(text: str) -> float | None:
    """Unix time of an ISO 8601 ``text`` (UTC when it names no zone); None if it is not one."""
    try:
        when = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def cooldown_tag(environment: str) -> str:
    """The registered model's tag that holds when a retraining for ``environment`` started."""
    return f"sluice.retrain.{environment}.requested_at"


def last_retrain_tag(environment: str) -> str:
    """The registered model's tag that holds the last retraining for ``environment`` (JSON)."""
    return f"sluice.retrain.{environment}.last"


def turned_away_tag(environment: str) -> str:
    """The registered model's tag that holds the last alert the cool-down turned away (JSON)."""
    return f"sluice.retrain.{environment}.turned_away"


@dataclass(frozen=True)
class RetrainRecord:
    """A retraining (or an alert turned away) as the registry keeps it."""

    at: str
    outcome: str
    detail: str
    alerts: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    since: str = ""
    drifted_version: str = ""
    new_version: int | None = None
    finished_at: str = ""
    #: Where the retraining ran: the training command's log, the workflow run's URL.
    where: str = ""

    @classmethod
    def of(cls, request: RetrainRequest, at: float, outcome: str, detail: str) -> RetrainRecord:
        """A record of ``request`` at ``at`` (Unix time)."""
        return cls(
            at=iso_time(at),
            outcome=outcome,
            detail=detail[:_DETAIL_MAX_CHARS],
            alerts=request.alerts,
            features=request.features,
            since=request.since,
            drifted_version=request.drifted_version,
        )

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready values (the tag's content, and ``status --json``'s)."""
        return {
            "at": self.at,
            "outcome": self.outcome,
            "detail": self.detail,
            "alerts": list(self.alerts),
            "features": list(self.features),
            "since": self.since,
            "driftedVersion": self.drifted_version,
            "newVersion": self.new_version,
            "finishedAt": self.finished_at,
            "where": self.where,
        }

    def encode(self) -> str:
        """The tag value: JSON, features cut (and counted) to fit MLflow's limit."""
        features = list(self.features)
        while True:
            data = self.to_json()
            data["features"] = features
            if len(features) < len(self.features):
                data["featuresOmitted"] = len(self.features) - len(features)
            text = json.dumps(data, separators=(",", ":"))
            if len(text) <= _RECORD_MAX_CHARS or not features:
                return text[:_RECORD_MAX_CHARS]
            features = features[: len(features) // 2]

    @classmethod
    def decode(cls, text: str | None) -> RetrainRecord | None:
        """The record in a tag value; None when there is none or it is unreadable."""
        if not text:
            return None
        try:
            data = json.loads(text)
            version = data.get("newVersion")
            return cls(
                at=str(data["at"]),
                outcome=str(data["outcome"]),
                detail=str(data.get("detail", "")),
                alerts=tuple(str(a) for a in data.get("alerts", ())),
                features=tuple(str(f) for f in data.get("features", ())),
                since=str(data.get("since", "")),
                drifted_version=str(data.get("driftedVersion", "")),
                new_version=int(version) if version is not None else None,
                finished_at=str(data.get("finishedAt", "")),
                where=str(data.get("where", "")),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("ignoring an unreadable retraining record: %.200s", text)
            return None

    def finish(
        self, outcome: Outcome, detail: str, *, version: int | None, where: str, now: float
    ) -> RetrainRecord:
        """This record (the one the start wrote) finished with ``outcome``: the detail names
        where it ran, as the local path's names its log."""
        text = f"{detail}; {where}" if where else detail
        return replace(
            self,
            outcome=outcome,
            detail=text[:_DETAIL_MAX_CHARS],
            new_version=version,
            finished_at=iso_time(now),
            where=where,
        )


def retrain_reason(alerts: Sequence[str], features: Sequence[str]) -> str:
    """Why a retraining runs, for its notices: the alerts and the drifted features."""
    drifted = ", ".join(features) or "no feature named"
    return f"{', '.join(alerts) or 'a drift alert'} (drifted: {drifted})"


def exit_outcome(code: int) -> tuple[Outcome, str]:
    """What the retrain command's exit status means (the training module's exit codes)."""
    if code == 0:
        return "succeeded", "trained and registered as challenger"
    if code == 1:
        return "gate-failed", "the new version failed the quality gate (exit 1)"
    if code == 2:
        return "failed", "bad data or arguments (exit 2)"
    if code == 3:
        return "failed", "the registry was unreachable (exit 3)"
    if code < 0:
        return "failed", f"killed by signal {-code}"
    return "failed", f"exited {code}"


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def describe_retraining(
    last: RetrainRecord | None, turned_away: RetrainRecord | None, now: float
) -> str:
    """One line for ``sluice status``: the last retraining, and a later turn-away."""
    parts: list[str] = []
    if last is not None:
        when = _ago(now - (parse_time(last.at) or now))
        why = ", ".join(last.alerts) or "asked for"
        features = ", ".join(last.features) or "no feature named"
        outcome = last.outcome
        if last.new_version is not None:
            outcome += f" → v{last.new_version}"
        text = f"{outcome} ({when}; {why}: {features}"
        text += f"; data since {last.since})" if last.since else ")"
        if last.outcome in ("grouping", "gate-failed", "failed"):
            text += f": {last.detail}"
        parts.append(text)
    if turned_away is not None and (last is None or turned_away.at >= last.at):
        when = _ago(now - (parse_time(turned_away.at) or now))
        why = ", ".join(turned_away.alerts) or "an alert"
        parts.append(f"turned away {why} {when}: {turned_away.detail}")
    return "; ".join(parts) or "-"
