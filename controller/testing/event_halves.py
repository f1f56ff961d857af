"""``/v1/events``'s halves paired as the PostgreSQL store pairs them, in a dict.

Why it exists: a test of the events route with several replicas (several routes sharing one
store) should not need a database. :class:`MemoryEventHalves` is the
:class:`~controller.serve.event_pairing.EventHalves` port with the rules of the store's
(:mod:`controller.backends.postgres_event_halves`):

- one waiting half per event key and kind, shared by every route given it; a second of the
  same kind and key takes its place;
- the half that finds its other half pairs it and records the answer into the
  :class:`~controller.testing.prediction_store.MemoryPredictionStore` at once
  (:func:`~controller.serve.event_pairing.prediction_of`; nothing for a synthetic pair), so
  the pairing says ``recorded``;
- a waiting half of the key that has waited ``ttl_seconds`` no longer pairs and is dropped
  ``expired``; :meth:`MemoryEventHalves.expire` is the retention pass, reporting to
  ``on_expired`` how many it dropped.

What it is not: bounded. The store keeps halves on disk until they expire, and so does this.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from controller.serve.event_pairing import (
    HALF_TTL_SECONDS,
    Dropped,
    InferenceEvent,
    Pairing,
    is_synthetic_pair,
    pair_of,
    prediction_of,
)
from controller.testing.prediction_store import MemoryPredictionStore

__all__ = ["MemoryEventHalves"]


class MemoryEventHalves:
    """Waiting halves in a dict (thread-safe), answers into ``store``."""

    def __init__(
        self,
        store: MemoryPredictionStore,
        *,
        ttl_seconds: float = HALF_TTL_SECONDS,
        on_expired: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.ttl_seconds = ttl_seconds
        self.on_expired = on_expired or (lambda count: None)
        self._waiting: dict[tuple[tuple[str, ...], str], tuple[InferenceEvent, float]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, event: InferenceEvent, *, now: float) -> Pairing:
        """Pair ``event`` and record the answer, or keep it waiting (the store's rules)."""
        kinds = ("request", "response")
        with self._lock:
            dropped = tuple(
                Dropped(self._waiting.pop((event.key, kind))[0], "expired")
                for kind in kinds
                if (event.key, kind) in self._waiting
                and now - self._waiting[(event.key, kind)][1] >= self.ttl_seconds
            )
            other_kind = kinds[1] if event.kind == "request" else kinds[0]
            waiting = self._waiting.pop((event.key, other_kind), None)
            if waiting is None:
                self._waiting[(event.key, event.kind)] = (event, now)
                return Pairing(None, dropped)
        pair = pair_of(waiting[0], event)
        if not is_synthetic_pair(pair):
            self.store.record(prediction_of(*pair, received_at=now))
        return Pairing(pair, dropped, recorded=True)

    def expire(self, *, now: float) -> int:
        """Drop the halves that have waited ``ttl_seconds`` or longer (the retention pass);
        reports and returns how many."""
        with self._lock:
            stale = [
                key for key, (_, since) in self._waiting.items() if now - since >= self.ttl_seconds
            ]
            for key in stale:
                del self._waiting[key]
        if stale:
            self.on_expired(len(stale))
        return len(stale)
