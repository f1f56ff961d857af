"""Locust, scripted: load test reports that follow the version a tag route serves."""

from __future__ import annotations

import math
import threading

from controller.analysis_types import LoadPlan, LoadReport
from controller.testing.behaviours import Behaviours
from controller.testing.cluster import InstantCluster

__all__ = ["ScriptedLoad"]


class ScriptedLoad:
    """A :class:`~controller.ports.LoadGenerator` whose reports follow the routed version.

    A run sends ``requests_per_second`` for the plan's duration to the revision behind the
    plan's tag route (up to the plan's ``max_requests``, where Locust stops a smoke), failing
    and taking as long as its :class:`Behaviour` says; a route no revision answers fails every
    request, as Locust against a dead URL does. A cold revision answers ``COLD_REQUESTS`` in
    each of its first ``cold_runs`` load tests bounded by their duration; a smoke, bounded by
    its request count within a long timeout, gets its requests and leaves it as cold.
    Thread-safe: the analyzer runs the canary's and the primary's load at the same time.
    """

    #: Requests a cold revision answers in one test.
    COLD_REQUESTS = 5

    def __init__(
        self,
        cluster: InstantCluster,
        *,
        behaviours: Behaviours | None = None,
        requests_per_second: float = 40.0,
    ) -> None:
        self.cluster = cluster
        self.behaviours = behaviours or cluster.behaviours
        self.requests_per_second = requests_per_second
        self._runs: dict[str, int] = {}
        self._lock = threading.Lock()
        #: Every plan run, in order.
        self.plans: list[LoadPlan] = []

    def run(self, plan: LoadPlan) -> LoadReport:
        """What Locust would have measured on ``plan``'s route."""
        seconds = float(math.ceil(plan.duration_seconds))
        requests = max(1, round(self.requests_per_second * seconds))
        if plan.max_requests is not None and plan.max_requests < requests:
            requests = plan.max_requests
            seconds = float(math.ceil(requests / self.requests_per_second))
        routed = self.cluster.route(plan.url)
        with self._lock:
            self.plans.append(plan)
            if routed is None:
                return LoadReport(requests, requests, plan.duration_seconds, None, None, None)
            revision, uri = routed
            runs = self._runs.get(revision, 0) + (plan.max_requests is None)
            self._runs[revision] = runs
        behaviour = self.behaviours.of(uri)
        if plan.max_requests is None and runs <= behaviour.cold_runs:
            requests = self.COLD_REQUESTS
        return LoadReport(
            requests=requests,
            failures=round(requests * behaviour.error_ratio),
            duration_seconds=seconds,
            p50_ms=behaviour.latency_quantile(0.50),
            p95_ms=behaviour.latency_quantile(0.95),
            p99_ms=behaviour.latency_quantile(0.99),
            latency=behaviour.histogram(requests),
        )
