"""Whether a version's soak goes on, broke, or is complete: a pure decision over plain values.

The soak starts when the version took 100 % of the environment's traffic (its promote commit's
time, from Git) and must last the required duration (the longest ``promotion.require.soak``
of the environments downstream). At each pass :func:`decide` is given the clock, the alerts
recorded for the release and the readings of the soak's checks, and answers:

- :class:`Broken` when a drift alert fired since the start, or a check read a value past its
  bound: *why* (which alert or check) and *when*. A broken soak is final for that version and
  does not restart: as in Flagger or Kargo, verification failed and the version is not
  promoted. Its soak evidence is recorded with the alert or the failing check, so the
  downstream proposal refuses with "soak in staging: 3h with alert SluiceFeatureDrift", and a
  restart of the controller finds the decision in the registry instead of soaking again. The
  way on is a new version (the drift alert's own retraining) or ``sluice propose --force``
  with a reason.
- :class:`Soaking` while the window is shorter than required, and also past it while a check
  has no number over the whole window (no data, Prometheus unreachable): a soak is complete
  only on numbers, as a gate passes only on numbers.
- :class:`Complete` when the window is long enough, no alert fired and every check, over the
  whole window, is within its bounds.

:func:`check_window_seconds` says over what span a check is read at a given moment, and
:func:`evidence_body` turns a final decision into the ``soak`` evidence body.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from controller.evidence.policy import duration_words
from controller.evidence.statement import SoakQuery, format_instant, soak_body

__all__ = [
    "Broken",
    "Complete",
    "Reading",
    "SeenAlert",
    "SoakDecision",
    "SoakFacts",
    "Soaking",
    "check_window_seconds",
    "decide",
    "evidence_body",
]

ReadingVerdict = Literal["pass", "fail", "inconclusive", "error"]


@dataclass(frozen=True)
class SeenAlert:
    """A drift alert recorded for the release in the environment, and when it fired."""

    name: str
    at: float


@dataclass(frozen=True)
class Reading:
    """One check's reading: its PromQL as run, its value (None: none), and the verdict on it."""

    name: str
    query: str
    value: float | None
    verdict: ReadingVerdict
    summary: str


@dataclass(frozen=True)
class SoakFacts:
    """What one pass knows of a version's soak."""

    version: int
    #: When the version took all the traffic (the promote commit's time), epoch seconds.
    started_at: float
    now: float
    required_seconds: float
    #: Every drift alert the registry records for the release (older ones are ignored here).
    alerts: Sequence[SeenAlert] = ()
    readings: Sequence[Reading] = ()
    #: The readings span the whole window (taken once the window is long enough).
    whole_window: bool = False

    @property
    def elapsed(self) -> float:
        """How long the version has served 100 %."""
        return max(0.0, self.now - self.started_at)


@dataclass(frozen=True)
class Soaking:
    """The soak goes on: ``elapsed`` of ``required`` seconds, and what it waits on past it."""

    elapsed: float
    required: float
    waiting_on: tuple[str, ...] = ()

    def line(self) -> str:
        """``soak 6h/24h``, and what a soak past its duration waits on."""
        text = f"soak {duration_words(self.elapsed)}/{duration_words(self.required)}"
        return f"{text}, waiting on {'; '.join(self.waiting_on)}" if self.waiting_on else text


@dataclass(frozen=True)
class Broken:
    """The soak broke at ``at`` because of ``reason``; the alerts that broke it, if any."""

    at: float
    reason: str
    alerts: tuple[str, ...] = ()

    def line(self) -> str:
        """``soak broken at 2026-12-06T18:00:00Z: alert SluiceFeatureDrift``."""
        return f"soak broken at {format_instant(self.at)}: {self.reason}"


@dataclass(frozen=True)
class Complete:
    """The version soaked long enough, clean."""

    elapsed: float

    def line(self) -> str:
        """``soak complete: 24h, clean``."""
        return f"soak complete: {duration_words(self.elapsed)}, clean"


SoakDecision = Soaking | Broken | Complete


def check_window_seconds(facts: SoakFacts, interval_seconds: float) -> int:
    """The span a check is read over now, in whole seconds (at least 1): its own interval,
    cut to the time since the promotion (the canary's traffic before it is not the soak's);
    the whole window once the soak has lasted long enough."""
    if facts.elapsed >= facts.required_seconds:
        return max(1, math.floor(facts.elapsed))
    return max(1, math.floor(min(interval_seconds, facts.elapsed)))


def decide(facts: SoakFacts) -> SoakDecision:
    """Soaking, broken or complete (see the module notes)."""
    fired = sorted(
        (alert for alert in facts.alerts if alert.at >= facts.started_at), key=lambda a: a.at
    )
    if fired:
        names = tuple(dict.fromkeys(alert.name for alert in fired))
        return Broken(fired[0].at, f"alert {', '.join(names)}", names)
    failed = [reading for reading in facts.readings if reading.verdict == "fail"]
    if failed:
        return Broken(facts.now, "; ".join(f"check {r.summary}" for r in failed))
    if facts.elapsed < facts.required_seconds:
        return Soaking(facts.elapsed, facts.required_seconds)
    if not facts.whole_window:
        return Soaking(facts.elapsed, facts.required_seconds, ("the window's readings",))
    unmeasured = tuple(r.summary for r in facts.readings if r.verdict != "pass")
    if unmeasured:
        return Soaking(facts.elapsed, facts.required_seconds, unmeasured)
    return Complete(facts.elapsed)


def evidence_body(decision: Broken | Complete, facts: SoakFacts) -> dict[str, Any]:
    """The ``soak`` evidence body of a final decision: the window (up to the break, for a
    broken soak), each check's query and value, the alerts that broke it."""
    end = decision.at if isinstance(decision, Broken) else facts.now
    alerts = decision.alerts if isinstance(decision, Broken) else ()
    queries = [SoakQuery(r.name, r.query, r.value, r.verdict != "fail") for r in facts.readings]
    end = max(end, facts.started_at)
    return soak_body(start=facts.started_at, end=end, queries=queries, alerts=alerts)
