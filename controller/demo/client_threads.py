"""Background clients of a demo: a few threads, each posting every ``threads``-th request of a
sequence with a pause between requests, until stopped.

The ensemble's and the recommender's clients differ in what they post and count; how they
run in the background is this.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

__all__ = ["ClientThreads"]


@dataclass
class ClientThreads:
    """``threads`` daemon threads named ``name-N``; thread N posts requests N, N + threads, …
    (``post(session, index)``, one HTTP session per thread) until :meth:`stop`."""

    name: str
    #: Set while stopping: a client's own loops check it too.
    stopping: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(
        self,
        post: Callable[[requests.Session, int], None],
        *,
        threads: int,
        pause_seconds: float,
    ) -> None:
        """Start the threads (index 0, 1, … grows without end: ``post`` wraps it)."""

        def loop(offset: int) -> None:
            session = requests.Session()
            index = offset
            while not self.stopping.is_set():
                post(session, index)
                index += threads
                self.stopping.wait(pause_seconds)

        self.stopping.clear()
        self._threads = [
            threading.Thread(target=loop, args=(n,), daemon=True, name=f"{self.name}-{n}")
            for n in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def running(self) -> bool:
        """Threads were started and not stopped."""
        return bool(self._threads)

    def stop(self) -> None:
        """Stop the threads (a no-op when none run)."""
        self.stopping.set()
        for thread in self._threads:
            thread.join(timeout=15)
        self._threads = []
        self.stopping.clear()
