"""The pure decisions behind grouping a pair's drift alerts and the cool-down between starts.

:class:`~controller.retrain.retrainer.Retrainer` holds the state (the open groups, the last
starts) and the lock; what a new alert does to a group and how long the cool-down still runs
are decided here.
"""

from __future__ import annotations

from controller.domain import RetrainRequest
from controller.retrain.record import parse_time

__all__ = ["cooldown_remaining", "merge_requests"]


def merge_requests(first: RetrainRequest, second: RetrainRequest) -> RetrainRequest:
    """One request for the alerts of both: features and alert names united in first-seen
    order, the earlier ``since``, the drifted version of the first that names one."""
    if (first.model, first.environment) != (second.model, second.environment):
        raise ValueError("only requests of one model and environment merge")
    stamps = [s for s in (first.since, second.since) if parse_time(s) is not None]
    since = min(stamps, key=lambda s: parse_time(s) or 0.0) if stamps else ""
    return RetrainRequest(
        first.model,
        first.environment,
        tuple(dict.fromkeys((*first.features, *second.features))),
        since=since,
        drifted_version=first.drifted_version or second.drifted_version,
        alerts=tuple(dict.fromkeys((*first.alerts, *second.alerts))),
    )


def cooldown_remaining(last_started: float | None, now: float, cooldown_seconds: float) -> float:
    """Seconds until another retraining may start (0: it may start now)."""
    if last_started is None:
        return 0.0
    return max(0.0, last_started + cooldown_seconds - now)
