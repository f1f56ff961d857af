"""The ensemble demo's clients: market rows posted to the InferenceGraph, one row a request.

Each request carries its own ``X-Request-Id``; the stack's graph router passes it on to the
members (``--propagate-header X-Request-Id``), so the members' routers log their answers under
it and the next day's direction, posted later as a label with the same id, joins them.
:func:`step_calls` reads what the graph sent each member from the router's own step series.
"""

from __future__ import annotations

import threading
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import requests
from prometheus_client.parser import text_string_to_metric_families

from controller.demo.client_threads import ClientThreads

__all__ = ["GraphClients", "MarketRow", "StepKey", "step_calls"]

#: A member call the graph made: node, step and the member's InferenceService.
StepKey = tuple[str, str, str]


@dataclass(frozen=True)
class MarketRow:
    """A day's features as a client sends them, the regime it was really in, and the next
    day's direction (known a day later: the label)."""

    features: Mapping[str, float]
    regime: str
    next_up: int


@dataclass
class GraphClients:
    """Clients posting market rows to the graph at ``url``, pausing ``pause_seconds`` between
    requests; answers are counted by the row's true regime and HTTP status."""

    url: str
    pause_seconds: float = 0.02
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)
    #: Request id, regime and next-day direction of every row sent, in order.
    sent: list[tuple[str, str, int]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _background: ClientThreads = field(default_factory=lambda: ClientThreads("graph-clients"))

    def send(self, rows: Sequence[MarketRow], prefix: str) -> list[str]:
        """Post each row once, in order; return the request ids."""
        session = requests.Session()
        ids = []
        for index, row in enumerate(rows):
            if self._background.stopping.is_set():
                break
            request_id = f"{prefix}-{index:05d}"
            self._post(session, row, request_id)
            ids.append(request_id)
            self._background.stopping.wait(self.pause_seconds)
        return ids

    def _post(self, session: requests.Session, row: MarketRow, request_id: str) -> None:
        try:
            answer = session.post(
                self.url,
                json={"instances": [dict(row.features)]},
                headers={"X-Request-Id": request_id},
                timeout=10,
            )
            status = answer.status_code
        except requests.RequestException:
            status = 0
        with self._lock:
            self.answers[(row.regime, status)] += 1
            self.sent.append((request_id, row.regime, row.next_up))

    def start(self, rows: Sequence[MarketRow], prefix: str, *, threads: int = 1) -> GraphClients:
        """Cycle through ``rows`` in ``threads`` background clients until :meth:`stop`."""

        def post(session: requests.Session, index: int) -> None:
            request_id = f"{prefix}-{index % threads}-{index:06d}"
            self._post(session, rows[index % len(rows)], request_id)

        self._background.start(post, threads=threads, pause_seconds=self.pause_seconds)
        return self

    def stop(self) -> None:
        """Stop the background clients (a no-op when none run)."""
        self._background.stop()

    def failed(self) -> int:
        """Requests not answered 200 (0: no answer at all)."""
        return sum(n for (_, status), n in self.answers.items() if status != 200)

    def summary(self) -> str:
        """ "1,234 requests (calm 800, volatile 400, black_swan 34), 0 failed"."""
        by_regime: Counter[str] = Counter()
        for (regime, _), count in self.answers.items():
            by_regime[regime] += count
        total = sum(by_regime.values())
        parts = ", ".join(f"{regime} {n:,}" for regime, n in sorted(by_regime.items()))
        return f"{total:,} requests ({parts}), {self.failed()} failed"


def step_calls(graph_url: str) -> Counter[StepKey]:
    """The graph router's step calls so far, per node, step and member (every status), from
    its ``/metrics`` (the ``_count`` of ``sluice_graph_step_duration_seconds``, or the
    millisecond profile's ``sluice_graph_step_request_count``)."""
    with urllib.request.urlopen(f"{graph_url}/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    calls: Counter[StepKey] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name not in (
                "sluice_graph_step_duration_seconds_count",
                "sluice_graph_step_request_count",
                "sluice_graph_step_request_count_total",
            ):
                continue
            labels = sample.labels
            key = (labels["node_name"], labels["step_name"], labels.get("service_name", ""))
            calls[key] += int(sample.value)
    return calls
