"""KServe's inference-logger events, paired by request id into the answers a log keeps.

KServe's logger (``spec.predictor.logger``, ``pkg/logger/`` in kserve) posts two CloudEvents
per request, sent independently by a pool of workers: ``org.kubeflow.serving.inference.request``
with the request body, queued before the request reaches the model, and
``org.kubeflow.serving.inference.response`` with the response body, only when the model
answered 200. Both carry the request's id as ``ce-id`` (the client's ``Ce-Id`` header, else a
new UUID), so either may arrive first. :class:`EventPairer` holds the first half of each
request in a bounded buffer until the other arrives (or its time to live passes, or the buffer
is full: the oldest half is then dropped, and each drop is reported), and
:func:`prediction_of` turns a pair into the :class:`~controller.predictions.Prediction` a
prediction log records. :class:`EventHalves` is what the route pairs with: this buffer, which
holds the halves one ``sluice serve`` received, or the PostgreSQL store's table of waiting
halves (:mod:`controller.backends.postgres_event_halves`), where any replica finds the half
another one received. (The port lives here, not in :mod:`controller.ports`, because the core
below ``serve`` does not know the events.)

Nothing in an event names the serving revision for certain (see the README's section on the
inference logger): ``endpoint`` is empty on v1beta1 InferenceServices and ``ce-source`` is the
agent's default ``http://localhost:9081/``. The revision is read from the request header
``Knative-Serving-Revision`` when the logger's ``metadataHeaders`` copies it into the
``metadata`` extension (Knative's ingress sets it on every request it routes to a revision),
and the version from an Open Inference Protocol (V2) response's ``model_version``. Both stay
empty when absent, and a judge that needs them cannot tell canary from primary.

Pure: no clock (every call takes ``now``), no I/O.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from controller.predictions import Prediction
from controller.synthetic_traffic import is_synthetic

__all__ = [
    "HALF_TTL_SECONDS",
    "REQUEST_TYPE",
    "RESPONSE_TYPE",
    "REVISION_HEADER",
    "Dropped",
    "EventHalves",
    "EventPairer",
    "InferenceEvent",
    "Pairing",
    "is_synthetic_event",
    "is_synthetic_pair",
    "pair_of",
    "prediction_of",
    "revision_of",
    "version_of",
]

#: ``ce-type`` of the request half.
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
#: ``ce-type`` of the response half.
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
#: The request header Knative's ingress sets to the revision a request is routed to; the
#: logger's ``metadataHeaders`` must name it so, in Go's canonical form.
REVISION_HEADER = "Knative-Serving-Revision"
#: How long a half waits for its other half unless told otherwise.
HALF_TTL_SECONDS = 60.0

Kind = Literal["request", "response"]


@dataclass(frozen=True, slots=True)
class InferenceEvent:
    """One half of a request as the logger sent it, checked."""

    kind: Kind
    #: ``ce-id``: the request id both halves share.
    request_id: str
    #: ``inferenceservicename``.
    model: str
    namespace: str = ""
    #: ``predictor``, ``transformer`` or ``explainer`` (empty from KServe before 0.11).
    component: str = ""
    #: The ``metadata`` extension: request headers named by ``metadataHeaders``.
    metadata: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: The body of the request or of the response.
    data: bytes = b""
    #: Seconds since the epoch the sender recorded the half (``recordedtime``), else when it
    #: sent it (``time``: KServe's workers stamp it at send), else None.
    recorded_at: float | None = None
    #: The HTTP status of a response half (``statuscode`` when sent; KServe logs 200s only).
    status: int = 200

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        """What pairs two halves: the id within one component of one InferenceService, and
        within one revision when the halves name it (a mirrored request reaches two revisions
        with the client's ``Ce-Id``: each revision's halves pair with each other)."""
        revision = revision_of(self.metadata)
        return (self.namespace, self.model, self.component, revision, self.request_id)


@dataclass(frozen=True, slots=True)
class Dropped:
    """A half that waited in vain: its time to live passed, or the buffer was full."""

    event: InferenceEvent
    reason: Literal["expired", "evicted"]


@dataclass(frozen=True, slots=True)
class Pairing:
    """What adding one half did: the pair it completed (request, response) or None when it
    waits, and the halves dropped on the way. ``recorded``: the pairing stored the pair's
    answer itself (a store that pairs in the transaction that records the answer), so the
    route must not record it again."""

    pair: tuple[InferenceEvent, InferenceEvent] | None
    dropped: tuple[Dropped, ...] = ()
    recorded: bool = False


class EventHalves(Protocol):
    """Where halves wait for their other half (``POST /v1/events`` pairs through it)."""

    def add(self, event: InferenceEvent, *, now: float) -> Pairing:
        """Pair ``event`` with its waiting other half, or keep it waiting; a half of the same
        kind and key replaces the waiting one, and a half that has waited its time to live no
        longer pairs."""
        ...


class EventPairer:
    """Halves waiting for their other half: at most ``max_waiting`` of them holding at most
    ``max_waiting_bytes`` of bodies (a body is up to ``sluice serve``'s 1 MiB), each for
    ``ttl_seconds``.

    A second half of the same kind and key replaces the waiting one (a client that reuses a
    ``Ce-Id``: the latest request wins, as in the prediction log).
    """

    def __init__(
        self,
        *,
        max_waiting: int = 10_000,
        max_waiting_bytes: int = 64 << 20,
        ttl_seconds: float = HALF_TTL_SECONDS,
    ) -> None:
        if max_waiting < 1 or max_waiting_bytes < 1 or ttl_seconds <= 0:
            raise ValueError(
                "an event pairer needs max_waiting >= 1, max_waiting_bytes >= 1 and ttl_seconds > 0"
            )
        self.max_waiting = max_waiting
        self.max_waiting_bytes = max_waiting_bytes
        self.ttl_seconds = ttl_seconds
        #: The bodies of the waiting halves, in bytes.
        self.waiting_bytes = 0
        self._waiting: OrderedDict[tuple[str, ...], tuple[InferenceEvent, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, event: InferenceEvent, *, now: float) -> Pairing:
        """Pair ``event`` with its waiting other half, or keep it waiting."""
        dropped = list(self.expire(now=now))
        waiting = self._waiting.get(event.key)
        if waiting is not None and waiting[0].kind != event.kind:
            return Pairing(pair_of(self._take(event.key), event), tuple(dropped))
        if waiting is not None:
            self._take(event.key)
        while self._waiting and (
            len(self._waiting) >= self.max_waiting
            or self.waiting_bytes + len(event.data) > self.max_waiting_bytes
        ):
            dropped.append(Dropped(self._take(next(iter(self._waiting))), "evicted"))
        self._waiting[event.key] = (event, now)
        self.waiting_bytes += len(event.data)
        return Pairing(None, tuple(dropped))

    def _take(self, key: tuple[str, ...]) -> InferenceEvent:
        event, _ = self._waiting.pop(key)
        self.waiting_bytes -= len(event.data)
        return event

    def expire(self, *, now: float) -> tuple[Dropped, ...]:
        """Drop the halves that have waited ``ttl_seconds`` or longer, oldest first."""
        dropped: list[Dropped] = []
        while self._waiting:
            key, (_, since) = next(iter(self._waiting.items()))
            if now - since < self.ttl_seconds:
                break
            dropped.append(Dropped(self._take(key), "expired"))
        return tuple(dropped)


def revision_of(metadata: Mapping[str, tuple[str, ...]]) -> str:
    """The revision Knative routed the request to, from the copied ``Knative-Serving-Revision``
    header (any case); empty when the logger did not copy it."""
    for name, values in metadata.items():
        if name.lower() == REVISION_HEADER.lower() and values:
            return values[0]
    return ""


def is_synthetic_event(event: InferenceEvent) -> bool:
    """Whether the logger copied Sluice's synthetic marker (``X-Sluice-Synthetic``, sent by the
    load test and the smoke) into the event: a request no client sent."""
    return is_synthetic({name: values[0] for name, values in event.metadata.items() if values})


def is_synthetic_pair(pair: tuple[InferenceEvent, InferenceEvent]) -> bool:
    """Whether either half of a pair is synthetic (:func:`is_synthetic_event`): its answer is
    the load test's or the smoke's, no client's, and is not recorded."""
    return any(is_synthetic_event(half) for half in pair)


def pair_of(
    waiting: InferenceEvent, event: InferenceEvent
) -> tuple[InferenceEvent, InferenceEvent]:
    """The two halves of one request, the request half first, whichever arrived first."""
    return (waiting, event) if waiting.kind == "request" else (event, waiting)


def version_of(response: bytes) -> str:
    """The ``model_version`` of an Open Inference Protocol (V2) response; empty otherwise
    (V1 responses name no version)."""
    try:
        parsed = json.loads(response)
    except (ValueError, RecursionError):
        return ""
    version = parsed.get("model_version") if isinstance(parsed, dict) else None
    return str(version) if isinstance(version, str | int) and not isinstance(version, bool) else ""


def prediction_of(
    request: InferenceEvent, response: InferenceEvent, *, received_at: float
) -> Prediction:
    """The answer a pair records: the request's inputs and the response's output, the
    revision and version as far as the events tell (:func:`revision_of`, :func:`version_of`),
    and the latency between the two halves' times when both carry one (0 otherwise: a sender
    that stamps neither says nothing about it). ``received_at`` is the time when the request
    half carries none."""
    latency_ms = 0.0
    if request.recorded_at is not None and response.recorded_at is not None:
        latency_ms = max(0.0, (response.recorded_at - request.recorded_at) * 1000.0)
    return Prediction(
        request_id=request.request_id,
        time=request.recorded_at if request.recorded_at is not None else received_at,
        model=request.model,
        version=version_of(response.data),
        revision=revision_of(request.metadata) or revision_of(response.metadata),
        role="primary",
        body=request.data,
        status=response.status,
        output=response.data,
        latency_ms=latency_ms,
    )
