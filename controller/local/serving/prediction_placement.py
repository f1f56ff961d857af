"""Where a prediction runs: on the server's event loop when the model is quick, else a thread.

KServe's Python server calls a synchronous ``predict`` on its event loop, so one slow
prediction stalls every other request of the process, probes and ``/metrics`` scrapes
included. Handing every prediction to a thread avoids that, but the hand-off is not free for
the small requests online inference mostly serves: queueing the call, waking a worker thread
and waking the loop again when it is done. Predicting a quick model inline took 3-6 % less
server CPU and 6-10 % less latency per one-row request to a scikit-learn pipeline on two
cores (``benchmarks/serve_cpu.py``, three runs on a shared machine).

So the server keeps a moving average of how long this model's predictions take, seeded by the
warm-up's own predictions: while it stays under :data:`INLINE_SECONDS` a prediction runs on
the loop, as KServe runs it; a model slower than that (or one whose predictions become slow)
runs in a thread. A prediction that is slow once is seen at once: the average is weighted
towards the latest, and a single call over ten times the bound sends the next one to a thread.
"""

from __future__ import annotations

import threading

__all__ = ["INLINE_SECONDS", "PredictionPlacement"]

#: A prediction expected to take less than this runs on the event loop (2 ms: a request
#: waiting behind it is delayed less than by one Prometheus scrape of the server).
INLINE_SECONDS = 0.010

_WEIGHT = 0.3  # of the latest prediction in the moving average


class PredictionPlacement:
    """Decides, per prediction, whether it runs inline; told each prediction's duration."""

    def __init__(self, bound_seconds: float = INLINE_SECONDS) -> None:
        self._bound = bound_seconds
        self._average: float | None = None  # unknown until a prediction was timed
        self._lock = threading.Lock()  # predictions in threads report concurrently

    @property
    def inline(self) -> bool:
        """Run the next prediction on the event loop? Not before one was timed."""
        average = self._average
        return average is not None and average < self._bound

    def observe(self, seconds: float) -> None:
        """One prediction took ``seconds``."""
        with self._lock:
            if self._average is None or seconds > 10 * self._bound:
                self._average = seconds
            else:
                self._average += _WEIGHT * (seconds - self._average)
