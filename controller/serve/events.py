"""``POST /v1/events``: KServe's inference logger, into the prediction log.

An InferenceService with ``spec.predictor.logger: {mode: all, url: .../v1/events}`` posts
every request and every 200 response as a binary-mode CloudEvent (``pkg/logger/worker.go`` in
kserve: ``ce-type`` ``org.kubeflow.serving.inference.request`` or ``...response``, ``ce-id``
the request id, extensions ``inferenceservicename``, ``namespace``, ``component``,
``endpoint``, ``metadata``, ``annotations``). This route parses each with the ``cloudevents``
SDK's HTTP parser (structured mode is read too), checks it (:func:`parse_event`, pure, so
every malformed event is tested without a socket), pairs the halves of a request by id
(:mod:`controller.serve.event_pairing`) and records each pair into the prediction log as one
answer of the InferenceService's model. The halves wait in this process's memory
(:class:`~controller.serve.event_pairing.EventPairer`, one replica), or in the PostgreSQL store
(any number of replicas), which records the pair's answer in the transaction that pairs it.

Authentication: KServe's logger sends no header of its own (its client is built from the URL
alone), so it cannot present a bearer token. The route therefore runs in one of two modes,
chosen when ``sluice serve`` starts: ``Authorization: Bearer TOKEN`` required (for senders that
can: a relay, a test, a Knative Eventing sink with a token), or ``trust_network``, where no
credential is asked and a NetworkPolicy (or a mesh's authorization policy) admitting only the
model namespaces' pods is the guard. A token in the logger's URL (``http://x:TOKEN@...``,
which Go's client would send as basic auth) or a ``?token=`` is not accepted: the URL is
written into the InferenceService in Git.

Answers: 200 ``{"result": "paired" | "waiting" | "ignored"}`` (``ignored``: a transformer's or
explainer's events; only the predictor's answers are the model's), 400 with a one-line
reason, 401 with ``WWW-Authenticate: Bearer``, 413 over the size limit, 503 when the log
refused the answer (or a store that pairs could not take the half). Every request is counted in
``sluice_webhook_deliveries{source="kserve_logger"}`` by result, and so is every half dropped
unpaired (``expired``, ``evicted``). Nothing of a rejected event is stored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import datetime

from cloudevents.exceptions import GenericException
from cloudevents.http import from_http

from controller.ports import PredictionSink
from controller.redact import redact
from controller.serve.alertmanager_hook import verify_bearer
from controller.serve.event_pairing import (
    REQUEST_TYPE,
    RESPONSE_TYPE,
    EventHalves,
    EventPairer,
    InferenceEvent,
    Kind,
    is_synthetic_pair,
    prediction_of,
)
from controller.serve.feedback import MAX_REQUEST_ID_CHARS, is_request_id
from controller.serve.server import Handler, Request, Response, ServeMetrics, bearer_rejection
from controller.serve.webhooks import WebhookRejected

__all__ = ["EVENTS_PATH", "MAX_EVENT_BYTES", "events_route", "parse_event"]

log = logging.getLogger("sluice.server")

#: Where ``sluice serve`` takes KServe's inference-logger events.
EVENTS_PATH = "/v1/events"
#: Largest event body accepted, as ``sluice serve``'s own limit.
MAX_EVENT_BYTES = 1 << 20
_SOURCE = "kserve_logger"
_KINDS: dict[str, Kind] = {REQUEST_TYPE: "request", RESPONSE_TYPE: "response"}
_BINARY_HEADERS = ("ce-specversion", "ce-id", "ce-source", "ce-type")
#: Components whose answers are the model's (empty: KServe before 0.11 sent none).
_MODEL_COMPONENTS = ("predictor", "")


def _one_line(text: str) -> str:
    return redact(" ".join(text.split()))[:300]


def _is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _data_bytes(data: object) -> bytes:
    """A structured event's ``data`` as bytes: as sent when text or base64, else its JSON."""
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _timestamp(value: object, name: str) -> float:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise WebhookRejected(400, f"{name} {str(value)[:60]!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise WebhookRejected(400, f"{name} {str(value)[:60]!r} has no time zone")
    return moment.timestamp()


def _metadata(value: object) -> dict[str, tuple[str, ...]]:
    """The ``metadata`` extension: a JSON object of header name to list of values."""
    if value is None or value == "":
        return {}
    text = str(value)
    if text.startswith("%7B") or text.startswith("%7b"):
        # Percent-encoded as the HTTP binding asks (sdk-go, which KServe uses, does not).
        text = urllib.parse.unquote(text)
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict) or not all(
        isinstance(values, list) and all(isinstance(v, str) for v in values)
        for values in parsed.values()
    ):
        raise WebhookRejected(
            400, "the metadata extension is not a JSON object of header name to list of values"
        )
    return {str(name): tuple(values) for name, values in parsed.items()}


def _status(value: object) -> int:
    if value is None:
        return 200
    try:
        status = int(str(value))
    except ValueError:
        status = 0
    if not 100 <= status <= 599:
        raise WebhookRejected(400, f"statuscode {str(value)[:20]!r} is not an HTTP status")
    return status


def _sent_time(headers: Mapping[str, str], body: bytes, structured: bool) -> object:
    """The ``time`` the sender set, if any (the SDK stamps one of its own when it is absent)."""
    if not structured:
        return headers.get("ce-time")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return document.get("time") if isinstance(document, dict) else None


def parse_event(headers: Mapping[str, str], body: bytes) -> InferenceEvent:
    """One checked half from an HTTP request (header names lower-case): binary mode as KServe
    sends it, or structured mode (``application/cloudevents+json``); :class:`WebhookRejected`
    (400) with a one-line reason for anything else."""
    content_type = headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/cloudevents-batch+json":
        raise WebhookRejected(400, "batched CloudEvents are not accepted; send one per request")
    structured = media == "application/cloudevents+json"
    if not structured:
        missing = [name for name in _BINARY_HEADERS if not headers.get(name, "").strip()]
        if missing:
            raise WebhookRejected(
                400,
                f"missing {', '.join(missing)}: a binary-mode CloudEvent needs "
                f"{', '.join(_BINARY_HEADERS)} headers",
            )
    try:
        event = from_http(dict(headers), body)
    except GenericException as exc:
        raise WebhookRejected(400, f"not a CloudEvent: {_one_line(str(exc))}") from None
    attributes = event.get_attributes()
    kind = _KINDS.get(str(attributes.get("type", "")))
    if kind is None:
        raise WebhookRejected(
            400,
            f"ce-type {str(attributes.get('type'))[:80]!r} is not {REQUEST_TYPE} or "
            f"{RESPONSE_TYPE}",
        )
    request_id = attributes.get("id")
    if not is_request_id(request_id):
        raise WebhookRejected(
            400, f"ce-id is not a printable string of 1 to {MAX_REQUEST_ID_CHARS} characters"
        )
    model = str(attributes.get("inferenceservicename") or "")
    if not model:
        raise WebhookRejected(400, "the event has no inferenceservicename extension")
    data = body if not structured else _data_bytes(event.get_data())
    data_type = str(attributes.get("datacontenttype") or "")
    if _is_json_type(data_type):
        try:
            json.loads(data)
        except (ValueError, RecursionError):
            raise WebhookRejected(
                400, f"the {kind} body is not JSON, though its content type is {data_type}"
            ) from None
    recorded = attributes.get("recordedtime")
    sent = _sent_time(headers, body, structured)
    stamp = recorded if recorded is not None else sent
    recorded_at = None
    if stamp is not None:
        recorded_at = _timestamp(stamp, "recordedtime" if recorded is not None else "time")
    return InferenceEvent(
        kind=kind,
        request_id=str(request_id),
        model=model,
        namespace=str(attributes.get("namespace") or ""),
        component=str(attributes.get("component") or ""),
        metadata=_metadata(attributes.get("metadata")),
        data=data,
        recorded_at=recorded_at if recorded_at is None or math.isfinite(recorded_at) else None,
        status=_status(attributes.get("statuscode")) if kind == "response" else 200,
    )


def events_route(
    *,
    sink: PredictionSink,
    metrics: ServeMetrics,
    token: str | None = None,
    trust_network: bool = False,
    pairer: EventHalves | None = None,
    clock: Callable[[], float] = time.time,
    max_body_bytes: int = MAX_EVENT_BYTES,
) -> Handler:
    """``POST /v1/events`` recording paired answers into ``sink``; authenticated by ``token``,
    or by nothing with ``trust_network`` (exactly one of the two; see the module notes). The
    halves wait in ``pairer``, a new :class:`EventPairer` unless given."""
    if bool(token) == trust_network:
        raise ValueError("the events route needs a bearer token or trust_network, not both")
    halves = pairer if pairer is not None else EventPairer()
    # The in-memory buffer is one dict for every request thread; a store pairs in transactions.
    lock: contextlib.AbstractContextManager[object] = (
        threading.Lock() if isinstance(halves, EventPairer) else contextlib.nullcontext()
    )

    def receive(request: Request) -> Response:
        try:
            if token:
                verify_bearer(request.headers, token)
            if len(request.body) > max_body_bytes:
                raise WebhookRejected(413, f"event over {max_body_bytes:,} bytes")
            event = parse_event(request.headers, request.body)
        except WebhookRejected as rejected:
            return bearer_rejection(metrics, rejected, source=_SOURCE, route=EVENTS_PATH)
        if event.component not in _MODEL_COMPONENTS:
            metrics.webhook_delivery(_SOURCE, "ignored")
            return Response.json(200, {"result": "ignored"})
        now = clock()
        try:
            with lock:
                pairing = halves.add(event, now=now)
        except Exception as exc:  # a store that pairs could not take it; the logger does not retry
            metrics.webhook_delivery(_SOURCE, "error")
            log.error("POST %s: event not taken: %s", EVENTS_PATH, _one_line(str(exc)))
            return Response.json(503, {"error": "the prediction log could not take the event"})
        for dropped in pairing.dropped:
            metrics.webhook_delivery(_SOURCE, dropped.reason)
        if pairing.dropped:
            log.warning(
                "POST %s: %d unpaired halves dropped (%s); is the logger's mode all?",
                EVENTS_PATH,
                len(pairing.dropped),
                ", ".join(sorted({d.reason for d in pairing.dropped})),
            )
        if pairing.pair is None:
            metrics.webhook_delivery(_SOURCE, "waiting")
            return Response.json(200, {"result": "waiting"})
        if is_synthetic_pair(pairing.pair):
            # The load test's or the smoke's: answered, but no client's, and never clicked.
            metrics.webhook_delivery(_SOURCE, "synthetic")
            return Response.json(200, {"result": "synthetic"})
        if pairing.recorded:
            metrics.webhook_delivery(_SOURCE, "paired")
            return Response.json(200, {"result": "paired"})
        try:
            sink.record(prediction_of(*pairing.pair, received_at=now))
        except Exception as exc:  # a sink should not raise; the logger does not retry
            metrics.webhook_delivery(_SOURCE, "error")
            log.error("POST %s: answer not recorded: %s", EVENTS_PATH, _one_line(repr(exc)))
            return Response.json(503, {"error": "the prediction log could not record the answer"})
        metrics.webhook_delivery(_SOURCE, "paired")
        return Response.json(200, {"result": "paired"})

    return receive
