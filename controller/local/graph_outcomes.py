"""The task metric of an InferenceGraph's members, per revision and segment: the outcome series.

Every member's router logs its answers to the runtime's prediction log under the request id the
graph propagates, and late ground truth arrives there as named outcomes of that request id
(``sluice feedback FILE --outcome regime --outcome up``). The graph's router exports, from that
log, how many of each member revision's answers were right and wrong about each outcome, by
the convention of :mod:`controller.outcome_scores` (a class-name outcome against the answer's
field of that name, a 0/1 outcome against its ``p_<outcome>`` at 0.5):

- the gauge ``sluice_graph_outcome_answers``, labelled with the profile's namespace label,
  ``graph_name``, ``service_name`` (the member InferenceService: the graph's ``serviceName``
  steps), the profile's revision label (the member's revision that answered), ``outcome``,
  ``segment`` and ``result`` (``right`` or ``wrong``); the task metric is
  ``right / (right + wrong)``;
- over the members' primary answers logged in the last :data:`OUTCOME_WINDOW_SECONDS` (7 days:
  a daily outcome such as the next day's direction arrives a day or more after the answer, so a
  shorter window would hold few answers with their outcome) that have an outcome; at most
  :data:`OUTCOME_ROW_LIMIT` rows (an answer per outcome), the newest;
- ``segment`` is the value, for the same request, of the outcome the graph's annotation
  :data:`SEGMENT_ANNOTATION` names (``sluice.dev/outcome-segment: regime``: each specialist
  judged on the days that really were each regime), "" while it has not arrived, and always ""
  without the annotation.

The router answers on an event loop and a scrape must stay cheap, so neither reads the log: a
thread of :class:`GraphOutcomes` reads it every :data:`REFRESH_SECONDS` and the collector
exports the values it cached (a failed read keeps the last ones, and is logged). A router
without a prediction log exports no outcome series.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from controller.gates.metrics_profile import DEFAULT_PROFILE, MetricsProfile, resolve_profile
from controller.outcome_scores import OutcomeAnswer, OutcomeKey, Tally, tally
from controller.predictions import is_outcome_name
from controller.refresher import Refresher

__all__ = [
    "OUTCOME_ANSWERS",
    "OUTCOME_ROW_LIMIT",
    "OUTCOME_WINDOW_SECONDS",
    "REFRESH_SECONDS",
    "SEGMENT_ANNOTATION",
    "GraphOutcomes",
    "OutcomeReader",
]

#: The gauge of a member revision's answers right and wrong about an outcome.
OUTCOME_ANSWERS = "sluice_graph_outcome_answers"
#: The InferenceGraph annotation naming the outcome whose value segments the series.
SEGMENT_ANNOTATION = "sluice.dev/outcome-segment"
#: The answers the series count: those logged in the last 7 days.
OUTCOME_WINDOW_SECONDS = 7 * 24 * 3600.0
#: How often the cached values are read again from the log.
REFRESH_SECONDS = 5.0
#: The most rows (an answer per outcome) one refresh reads, the newest.
OUTCOME_ROW_LIMIT = 100_000
_log = logging.getLogger("sluice.local.graph")


class OutcomeReader(Protocol):
    """What the series read: the runtime's prediction log
    (:meth:`~controller.backends.sqlite_prediction_log.SqlitePredictionLog.outcome_answers`)."""

    def outcome_answers(
        self, models: Iterable[str], since: float, *, segment: str | None = None, limit: int = ...
    ) -> list[OutcomeAnswer]: ...


class GraphOutcomes:
    """One graph's outcome series: the cached tally, the thread that refreshes it, and the
    collector that exports it (the ``prometheus_client`` collector protocol)."""

    def __init__(
        self,
        namespace: str,
        graph: str,
        reader: OutcomeReader,
        profile: MetricsProfile | None = None,
        *,
        window: float = OUTCOME_WINDOW_SECONDS,
        interval: float = REFRESH_SECONDS,
        limit: int = OUTCOME_ROW_LIMIT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._namespace, self._graph, self._reader = namespace, graph, reader
        self._profile = profile or resolve_profile(DEFAULT_PROFILE)
        self.window, self.limit = window, limit
        self._clock = clock
        self._lock = threading.Lock()
        self._members: tuple[str, ...] = ()
        self._segment = ""
        self._tally: dict[OutcomeKey, Tally] = {}
        #: The thread that calls :meth:`refresh` (start it, stop it, set its interval).
        self.refresher = Refresher(
            self.refresh,
            interval=interval,
            name=f"outcomes-{graph}",
            failure=f"InferenceGraph {graph}: outcome series not refreshed",
            log=_log,
        )
        #: Set after each refresh that read the log (tests wait on it).
        self.refreshed = threading.Event()

    def set_profile(self, profile: MetricsProfile) -> None:
        """Label the series under ``profile``'s conventions from now on."""
        with self._lock:
            self._profile = profile

    def set_graph(self, members: Sequence[str], segment: str) -> None:
        """Count the answers of ``members`` (the graph's ``serviceName`` steps), segmented by
        outcome ``segment`` ("" for none; a name no outcome may have is ignored, and logged)."""
        segment = segment.strip()
        if segment and not is_outcome_name(segment):
            _log.warning(
                "InferenceGraph %s: %s %r is not an outcome name; the outcome series are not "
                "segmented",
                self._graph, SEGMENT_ANNOTATION, segment,
            )  # fmt: skip
            segment = ""
        with self._lock:
            self._members, self._segment = tuple(dict.fromkeys(members)), segment

    def refresh(self) -> None:
        """Read the log once and cache the tally (on the caller's thread: never the loop's)."""
        with self._lock:
            members, segment = self._members, self._segment
        if not members:
            counted: dict[OutcomeKey, Tally] = {}
        else:
            answers = self._reader.outcome_answers(
                members, self._clock() - self.window, segment=segment or None, limit=self.limit
            )
            counted = tally(answers)
        with self._lock:
            if (self._members, self._segment) == (members, segment):  # else a newer graph's
                self._tally = counted
        self.refreshed.set()

    def counts(self) -> dict[OutcomeKey, Tally]:
        """The cached tally."""
        with self._lock:
            return dict(self._tally)

    def collect(self) -> Iterator[Metric]:
        """The cached gauge values: no log read here."""
        with self._lock:
            profile, counted = self._profile, sorted(self._tally.items())
        if not counted:
            return
        labels = [
            profile.namespace_label, "graph_name", "service_name", profile.revision_label,
            "outcome", "segment", "result",
        ]  # fmt: skip
        family = GaugeMetricFamily(
            OUTCOME_ANSWERS,
            "Answers of an InferenceGraph's member revision logged in the last "
            f"{self.window / 3600:g} hours that were right or wrong about an outcome",
            labels=labels,
        )
        for key, counts in counted:
            common = [self._namespace, self._graph, key.model, key.revision, key.outcome]
            family.add_metric([*common, key.segment, "right"], counts.right)
            family.add_metric([*common, key.segment, "wrong"], counts.wrong)
        yield family
