"""The recommender demo's clients: slates posted to the InferenceService, clicks posted later.

A request's click depends only on the item the user is shown, so the clients do what a shop's
front end does: post a request's candidate items (one V1 instance each, with its own
``X-Request-Id``), show the one with the highest ``p_click``, and remember what was shown and
which revision chose it (``X-Sluice-Revision``). What the user then does is the example's
truth (``shown_outcomes`` of ``models/recommender/sessions.py``, passed in as ``outcomes``: the
demo imports it from the checkout): a click or not, its revenue, and when it arrives. The
click's delay is compressed by :data:`DELAY_COMPRESSION` so that a laptop sees minutes of
clicks in seconds, and :class:`ClickSender` posts each one when it is due to ``sluice serve``'s
``POST /v1/feedback`` as the outcomes ``click`` and ``revenue``, keyed by the request id.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from controller.demo.client_threads import ClientThreads

__all__ = [
    "CLICK_TICK_SECONDS",
    "DELAY_COMPRESSION",
    "ClickSender",
    "Shown",
    "Slate",
    "SlateClients",
]

#: The demo's clicks arrive this many times sooner than ``click_delay_seconds`` says: a
#: median of 1 s instead of 40 s, at most 22.5 s instead of 15 minutes.
DELAY_COMPRESSION = 40.0
#: Seconds between :class:`ClickSender`'s batches: short beside the overlay's ``outcomeDelay``
#: (4 s), so that a click due before a request is counted has been posted by then.
CLICK_TICK_SECONDS = 0.25


@dataclass(frozen=True)
class Slate:
    """One request: its id, the user's segment and the candidate items, one row of features
    each (as the model is fed them)."""

    request_id: str
    segment: str
    candidates: Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Shown:
    """What a request showed: the candidate the serving revision ranked first."""

    request_id: str
    segment: str
    revision: str
    item: Mapping[str, Any]
    #: Seconds since the epoch when the answer came back.
    time: float


#: ``outcomes(shown)``: per shown item, ``(click, revenue, delay_seconds)``, in order.
Outcomes = Callable[[Sequence[Shown]], list[tuple[int, float, float]]]


@dataclass
class ClickSender:
    """Posts each shown item's click and revenue to ``url``'s ``/v1/feedback`` once its
    (compressed) delay has passed, from a thread of its own, a batch every
    :data:`CLICK_TICK_SECONDS`."""

    url: str
    token: str
    outcomes: Outcomes
    #: Clicks (1) and non-clicks (0) posted so far, and their revenue.
    posted: Counter[str] = field(default_factory=Counter)
    _shown: list[Shown] = field(default_factory=list)
    _due: list[tuple[float, str, int, float]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    failures: list[str] = field(default_factory=list)

    def add(self, shown: Sequence[Shown]) -> None:
        """Schedule the outcomes of ``shown``: each request's click at its time plus delay.
        They are drawn at the next batch, many requests at once (one draw builds a frame)."""
        with self._lock:
            self._shown.extend(shown)

    def _schedule(self) -> None:
        with self._lock:
            shown, self._shown = self._shown, []
        if not shown:
            return
        drawn = self.outcomes(shown)
        with self._lock:
            for item, (click, revenue, delay) in zip(shown, drawn, strict=True):
                due = item.time + delay / DELAY_COMPRESSION
                heapq.heappush(self._due, (due, item.request_id, click, revenue))

    def __enter__(self) -> ClickSender:
        self._thread = threading.Thread(target=self._run, daemon=True, name="demo-clicks")
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def flush(self, until: float | None = None) -> None:
        """Post every outcome due by ``until`` (default: all of them, now)."""
        self._schedule()
        with self._lock:
            limit = until if until is not None else float("inf")
            batch = []
            while self._due and self._due[0][0] <= limit:
                batch.append(heapq.heappop(self._due))
        if batch:
            self._post(batch)

    def _run(self) -> None:
        while not self._stop.wait(CLICK_TICK_SECONDS):
            self.flush(time.time())

    def _post(self, batch: list[tuple[float, str, int, float]]) -> None:
        labels = []
        for _, request_id, click, revenue in batch:
            labels.append({"request_id": request_id, "outcome": "click", "label": click})
            labels.append({"request_id": request_id, "outcome": "revenue", "label": revenue})
        try:
            answer = requests.post(
                f"{self.url}/v1/feedback",
                json={"labels": labels},
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=10,
            )
        except requests.RequestException as exc:
            self.failures.append(type(exc).__name__)
            return
        if answer.status_code != 200:
            self.failures.append(f"HTTP {answer.status_code}: {answer.text[:200]}")
            return
        for _, _, click, _ in batch:
            self.posted["click" if click else "no click"] += 1


@dataclass
class SlateClients:
    """Clients posting slates to the InferenceService at ``url`` (its main route), pausing
    ``pause_seconds`` between requests, and handing what they showed to ``clicks``."""

    url: str
    model: str
    clicks: ClickSender
    pause_seconds: float = 0.03
    #: Answers by HTTP status (0: no answer).
    answers: Counter[int] = field(default_factory=Counter)
    shown: list[Shown] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _background: ClientThreads = field(default_factory=lambda: ClientThreads("slate-clients"))

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v1/models/{self.model}:predict"

    def send(self, slates: Sequence[Slate], *, threads: int = 1) -> None:
        """Post each slate once from ``threads`` clients (slate i from client i mod
        ``threads``) and return when all are answered."""

        def post_every(offset: int) -> None:
            session = requests.Session()
            for slate in slates[offset::threads]:
                if self._background.stopping.is_set():
                    break
                self._post(session, slate)
                self._background.stopping.wait(self.pause_seconds)

        clients = [
            threading.Thread(target=post_every, args=(n,), daemon=True, name=f"slate-send-{n}")
            for n in range(threads)
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join()

    def start(self, slates: Sequence[Slate], *, threads: int = 1) -> SlateClients:
        """Cycle through ``slates`` in ``threads`` background clients until :meth:`stop`; a
        slate sent again gets a new request id (``-r1``, ``-r2``, …)."""

        def post(session: requests.Session, index: int) -> None:
            slate = slates[index % len(slates)]
            if rounds := index // len(slates):
                slate = Slate(f"{slate.request_id}-r{rounds}", slate.segment, slate.candidates)
            self._post(session, slate)

        self._background.start(post, threads=threads, pause_seconds=self.pause_seconds)
        return self

    @property
    def running(self) -> bool:
        """Background clients were started and not stopped."""
        return self._background.running

    def stop(self) -> None:
        """Stop the background clients (a no-op when none run)."""
        self._background.stop()

    def _post(self, session: requests.Session, slate: Slate) -> None:
        try:
            answer = session.post(
                self.endpoint,
                json={"instances": [dict(row) for row in slate.candidates]},
                headers={"X-Request-Id": slate.request_id},
                timeout=10,
            )
            status = answer.status_code
        except requests.RequestException:
            status = 0
        shown = None
        if status == 200:
            scores = [float(p["p_click"]) for p in answer.json()["predictions"]]
            best = max(range(len(scores)), key=scores.__getitem__)
            revision = answer.headers.get("X-Sluice-Revision", "")
            shown = Shown(
                slate.request_id, slate.segment, revision, slate.candidates[best], time.time()
            )
        with self._lock:
            self.answers[status] += 1
            if shown is not None:
                self.shown.append(shown)
        if shown is not None:
            self.clicks.add([shown])

    def failed(self) -> int:
        """Requests not answered 200."""
        return sum(n for status, n in self.answers.items() if status != 200)

    def summary(self) -> str:
        """ "1,234 requests, 0 failed"."""
        return f"{sum(self.answers.values()):,} requests, {self.failed()} failed"
