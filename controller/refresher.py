"""A thread that calls one refresh every few seconds until stopped, and logs a failing refresh
once until it succeeds again.

Series that are expensive to compute (a graph's outcome tally, a release's KPI values) are
read on such a thread and cached, so that a scrape or an event loop never waits on a log. The
thread outlives whatever a refresh raises: the cached values stay as they were.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Refresher"]


class Refresher:
    """Call ``refresh`` every ``interval`` seconds on a daemon thread named ``name``."""

    def __init__(
        self,
        refresh: Callable[[], None],
        *,
        interval: float,
        name: str,
        failure: str,
        log: logging.Logger,
    ) -> None:
        """``failure`` begins the warning logged when a refresh raises (its error follows)."""
        self._refresh, self.interval, self._name = refresh, interval, name
        self._failure, self._log = failure, log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Started and not stopped since."""
        return self._thread is not None

    def start(self) -> None:
        """Refresh now and then every ``interval`` seconds, until :meth:`stop` (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop refreshing, waiting for a refresh under way (idempotent)."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(10.0)

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self._refresh()
            except Exception as exc:  # the thread outlives a busy log or an unreadable remote
                if not failing:
                    self._log.warning("%s: %s", self._failure, exc)
                failing = True
            else:
                failing = False
            self._stop.wait(self.interval)
