"""Requests per revision and response code, second by second, for the watch to read live.

Prometheus learns a counter's value only at its next scrape, and a series it has not scraped
before starts at whatever it first reads, so ``increase()`` over a fresh canary misses every
request the canary answered before that first scrape: at 4 canary requests per second and a
1 s scrape, the first few of the requests that matter most. The local router therefore also
keeps what it counted in one-second buckets and answers ``GET /_sluice/requests?since=T``
with the counts of every bucket from ``T`` on, which the sequential watch reads between
analyses (:meth:`controller.local.target.LocalTarget.request_counts`). A bucket is a
whole second, so a ``since`` inside one counts all of it: at most a second early, never late.

Buckets older than ``retention_seconds`` (an hour: a step longer than that is watched over its
last hour) are dropped as new ones start. Thread-safe; the router's event loop observes and
any thread may read.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["RequestWindow"]


class RequestWindow:
    """Counts by (revision, code) in one-second buckets over the last ``retention_seconds``."""

    def __init__(
        self, retention_seconds: float = 3600.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.retention_seconds = retention_seconds
        self._clock = clock
        self._lock = threading.Lock()
        # (second, {(revision, code): count}), oldest first
        self._buckets: deque[tuple[int, dict[tuple[str, int], int]]] = deque()

    def observe(self, revision: str, code: int) -> None:
        """Count one answer of ``revision`` with ``code``, now."""
        second = math.floor(self._clock())
        with self._lock:
            if not self._buckets or self._buckets[-1][0] != second:
                self._buckets.append((second, {}))
                horizon = second - self.retention_seconds
                while self._buckets[0][0] < horizon:
                    self._buckets.popleft()
            counts = self._buckets[-1][1]
            counts[(revision, code)] = counts.get((revision, code), 0) + 1

    def since(self, start: float) -> dict[str, dict[int, int]]:
        """Answers per revision and code from the second holding ``start`` on."""
        first = math.floor(start)
        totals: dict[str, dict[int, int]] = {}
        with self._lock:
            for second, counts in reversed(self._buckets):
                if second < first:
                    break
                for (revision, code), count in counts.items():
                    by_code = totals.setdefault(revision, {})
                    by_code[code] = by_code.get(code, 0) + count
        return totals
