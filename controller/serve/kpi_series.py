"""The KPI series of ``sluice serve``: each release's KPI checks per serving revision, on
``/metrics``.

A canary's KPI gate judges two revisions at each look; between rollouts nobody watches the
champion's click-through rate, and a holiday can halve it while errors and latency stay green.
These series show it, from the same prediction log and with the same arithmetic as the gate
(:func:`~controller.gates.kpi_values.kpi_by_revision`):

- ``sluice_kpi{environment, model, kpi, outcome, revision}``: the check's rate or mean over
  the requests each revision answered in the last ``window`` seconds before the check's
  ``outcomeDelay`` (those younger may still get their outcome, so they are not counted yet);
- ``sluice_kpi_requests{...}``: how many requests that value counts (a rate of 2 requests is
  not a rate of 2,000).

Which checks: those of every release ``sluice serve`` watches whose environment's policy has
``gates.kpis``; which revisions: every revision of the model whose answers reached clients in
the window (the prediction log's ``served_revisions``). Reading the log takes a query per
release and outcome, so neither a scrape nor the watcher's thread reads it: a thread of
:class:`KpiSeries` reads every :data:`REFRESH_SECONDS` and the collector exports what it cached.
A failed read keeps the last values and is logged once until a read succeeds again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from controller.errors import InputError
from controller.gates.kpi_policy import KpiCheck
from controller.gates.kpi_values import RevisionKpi, kpi_by_revision, rate_by_revision
from controller.ports import ServedOutcomes
from controller.predictions import ServedOutcome
from controller.refresher import Refresher

__all__ = ["KPI_REQUESTS", "KPI_VALUE", "REFRESH_SECONDS", "KpiRelease", "KpiSeries"]

#: The gauge of a KPI check's value per revision.
KPI_VALUE = "sluice_kpi"
#: The gauge of the requests that value counts.
KPI_REQUESTS = "sluice_kpi_requests"
#: How often the cached values are read again from the log.
REFRESH_SECONDS = 15.0
_LABELS = ["environment", "model", "kpi", "outcome", "revision"]
_log = logging.getLogger("sluice.serve.kpi")


@dataclass(frozen=True)
class KpiRelease:
    """A release with KPI checks: its environment, model and the checks its policy names."""

    environment: str
    model: str
    checks: tuple[KpiCheck, ...]


@dataclass(frozen=True)
class _Point:
    labels: tuple[str, str, str, str, str]
    value: float | None
    requests: int


class KpiSeries:
    """The cached KPI values, the thread that refreshes them, and the collector that exports
    them (the ``prometheus_client`` collector protocol)."""

    def __init__(
        self,
        releases: Callable[[], Sequence[KpiRelease]],
        logs: Callable[[str], ServedOutcomes],
        *,
        window: float,
        interval: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        #: The prediction log of an environment, by its name (the local stack keeps one each).
        self._releases, self._logs = releases, logs
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._points: list[_Point] = []
        #: The thread that calls :meth:`refresh` (start it, stop it, set its interval).
        self.refresher = Refresher(
            self.refresh,
            interval=interval,
            name="sluice-kpi-series",
            failure="KPI series not refreshed",
            log=_log,
        )
        self._warned: set[str] = set()
        #: Set after each refresh that read the log (tests wait on it).
        self.refreshed = threading.Event()

    def refresh(self) -> None:
        """Read the log once for every release's checks and cache the values (on the caller's
        thread). :class:`~controller.errors.SluiceError` when Git or the log cannot be read."""
        now = self._clock()
        points: list[_Point] = []
        for release in self._releases():
            if not release.checks:
                continue
            oldest = max(check.outcome_delay_seconds for check in release.checks)
            since = now - self.window - oldest
            log = self._logs(release.environment)
            revisions = log.served_revisions(release.model, since)
            served: dict[str, list[ServedOutcome]] = {}  # rows, read once per outcome
            for check in release.checks:
                start = now - self.window - check.outcome_delay_seconds
                window = (since, start, now)
                try:
                    kpis = _values(log, release.model, check, revisions, served, window)
                except InputError as exc:  # the policy's mistake: this check has no series
                    self._warn_once(f"KPI {check.name} of {release.model}: {exc.message}")
                    continue
                for kpi in kpis:
                    labels = (release.environment, release.model, check.name, check.outcome)
                    points.append(_Point((*labels, kpi.revision), kpi.value, kpi.requests))
        with self._lock:
            self._points = points
        self.refreshed.set()

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            _log.warning("%s", message)

    def collect(self) -> Iterator[Metric]:
        """The cached values: no log read here."""
        with self._lock:
            points = list(self._points)
        window = f"{self.window:g} s"
        value = GaugeMetricFamily(
            KPI_VALUE,
            f"A release's KPI check (rate or mean) per revision over the requests it answered "
            f"in the {window} before the check's outcomeDelay, as the canary gate counts them",
            labels=_LABELS,
        )
        requests = GaugeMetricFamily(
            KPI_REQUESTS,
            f"The requests per revision a KPI check counted over the same {window}",
            labels=_LABELS,
        )
        for point in points:
            if point.value is not None:
                value.add_metric(list(point.labels), point.value)
            requests.add_metric(list(point.labels), point.requests)
        yield value
        yield requests


def _values(
    log: ServedOutcomes,
    model: str,
    check: KpiCheck,
    revisions: Sequence[str],
    served: dict[str, list[ServedOutcome]],
    window: tuple[float, float, float],
) -> list[RevisionKpi]:
    """``check`` per revision; ``window`` is (the release's read start, this check's start,
    now). A rate comes from the store's counts (one aggregating query, as the canary's gate
    reads it); a mean, or a rate whose window holds a value it cannot count, from the rows
    (read once per outcome into ``served``; they name the request)."""
    since, start, now = window
    if check.kind == "rate" and check.outcome not in served:
        settled = now - check.outcome_delay_seconds
        counts = log.outcome_counts(model, revisions, check.outcome, start, settled)
        if not any(c.other for c in counts.values()):
            return rate_by_revision(check, counts, revisions)
    if check.outcome not in served:
        served[check.outcome] = log.served_outcomes(model, revisions, check.outcome, since)
    rows = [row for row in served[check.outcome] if row.time >= start]
    return kpi_by_revision(check, rows, now=now)
