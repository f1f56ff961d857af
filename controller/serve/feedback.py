"""``POST /v1/feedback``: ground truth that arrives days after the answers it judges.

A shadow evaluation can only say which of champion and challenger was *right* once labels
exist, and for fraud they exist when a chargeback or an analyst confirms it, long after the
router logged both answers under the request's ``X-Request-Id``. This route is where those
labels come in: a bearer-authenticated JSON batch
``{"labels": [{"request_id": "...", "label": 1}, ...]}`` (a label is a number, or a class name
such as ``"volatile"`` for a classifier) stored in one transaction through a
:class:`~controller.ports.PredictionStore`, which joins them to the logged pairs. An item may
name the outcome it is the value of, ``{"request_id": "...", "outcome": "up", "label": 1}``
(``label`` when it names none): one request answered by several models (an InferenceGraph's
regime classifier and specialist share its id) has a truth for each, and each judge reads its
own.

Parsing is the pure :func:`parse_feedback`, so every malformed body is tested without a
socket. The answer is 200 ``{"stored": N, "not_in_log": M}`` (M request ids the log has no
answer for, yet: a label may arrive before its answers are written), 400 with a one-line
reason, 401 with ``WWW-Authenticate: Bearer``, 413 over the size limit, and 503 when the store
failed, which the sender may retry (the latest label of a request wins, so a retry is safe).
"""

from __future__ import annotations

import logging
from typing import Annotated

from pydantic import AfterValidator, Field

from controller.ports import PredictionStore
from controller.predictions import (
    DEFAULT_OUTCOME,
    MAX_CLASS_NAME_CHARS,
    OUTCOME_NAME_RULE,
    Label,
    is_class_name,
    is_outcome_name,
)
from controller.redact import redact
from controller.serve.alertmanager_hook import verify_bearer
from controller.serve.server import Handler, Request, Response, ServeMetrics, bearer_rejection
from controller.serve.webhooks import StrictBody, WebhookRejected, read_json_object, validate_body

__all__ = [
    "FEEDBACK_PATH",
    "MAX_BODY_BYTES",
    "MAX_LABELS",
    "MAX_REQUEST_ID_CHARS",
    "feedback_route",
    "is_request_id",
    "parse_feedback",
]

log = logging.getLogger("sluice.server")

#: Where ``sluice serve`` takes labels.
FEEDBACK_PATH = "/v1/feedback"
#: Labels in one request; more are sent in batches (``sluice feedback --url`` sends 5,000).
MAX_LABELS = 10_000
#: Largest body accepted, as ``sluice serve``'s own limit (10,000 labels with UUIDs: 0.6 MiB).
MAX_BODY_BYTES = 1 << 20
#: Longest request id accepted, as the router's ``X-Request-Id``.
MAX_REQUEST_ID_CHARS = 200
_SOURCE = "feedback"


def is_request_id(value: object) -> bool:
    """A request id: a printable string of 1 to :data:`MAX_REQUEST_ID_CHARS` characters."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_REQUEST_ID_CHARS
        and value.isprintable()
        and value.strip() == value
    )


def _request_id(value: str) -> str:
    if not is_request_id(value):
        raise ValueError("not a request id")
    return value


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _class_name(value: str) -> str:
    if not is_class_name(value):
        raise ValueError("not a class name")
    return value


def _outcome(value: str) -> str:
    if not is_outcome_name(value):
        raise ValueError("not an outcome name")
    return value


class _Label(StrictBody):
    request_id: Annotated[str, AfterValidator(_request_id)]
    outcome: Annotated[str, AfterValidator(_outcome)] = DEFAULT_OUTCOME
    # Strict: an integer is a number, a string a class name; `true` and "1" (a number written
    # as text: which did the sender mean?) are not labels.
    label: (
        Annotated[float, Field(allow_inf_nan=False)] | Annotated[str, AfterValidator(_class_name)]
    )


class _Feedback(StrictBody):
    labels: Annotated[list[_Label], Field(max_length=MAX_LABELS)]


_REASONS = {
    "labels": 'body has no "labels" list',
    "labels:too_long": (
        "{actual_length:,} labels in one request; send at most {max_length:,} per request"
    ),
    "labels[]": "{field} is not an object",
    "labels[].request_id": (
        f"{{field}} is not a printable string of 1 to {MAX_REQUEST_ID_CHARS} characters"
    ),
    "labels[].outcome": f"{{field}} is not an outcome name ({OUTCOME_NAME_RULE})",
    "labels[].label": (
        "{field} is not a finite number or a class name (text of 1 to "
        f"{MAX_CLASS_NAME_CHARS} characters that is not a number)"
    ),
}


def parse_feedback(body: bytes) -> list[tuple[str, str, Label]]:
    """``(request_id, outcome, label)`` of each item, in order (``outcome`` is ``label`` when
    the item names none); :class:`WebhookRejected` (400) with a one-line reason when the body
    is not a batch of labels, each outcome's all numbers or all class names."""
    payload = read_json_object(
        body,
        not_json="body is not JSON (NaN and Infinity are not labels)",
        parse_constant=_reject_constant,
    )
    parsed = validate_body(_Feedback, payload, _REASONS)
    labels = [(item.request_id, item.outcome, item.label) for item in parsed.labels]
    named: dict[str, int] = {}
    numbered: dict[str, int] = {}
    for i, (_, outcome, label) in enumerate(labels):
        (named if isinstance(label, str) else numbered).setdefault(outcome, i)
    for outcome, first_name in named.items():
        number = numbered.get(outcome)
        if number is None:
            continue
        of = "" if outcome == DEFAULT_OUTCOME else f" (outcome {outcome})"
        raise WebhookRejected(
            400,
            f"labels[{first_name}].label is a class name ({labels[first_name][2]!r}) and "
            f"labels[{number}].label a number{of}: send numbers such as 0 and 1, or class "
            "names such as volatile, not both in one request",
        )
    return labels


def feedback_route(
    *,
    token: str,
    store: PredictionStore,
    metrics: ServeMetrics,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Handler:
    """``POST /v1/feedback``, authenticated by ``token`` (see the module notes)."""
    if not token:
        raise ValueError("the feedback route needs a bearer token")

    def receive(request: Request) -> Response:
        try:
            verify_bearer(request.headers, token)
            if len(request.body) > max_body_bytes:
                raise WebhookRejected(413, f"body over {max_body_bytes:,} bytes; send batches")
            labels = parse_feedback(request.body)
        except WebhookRejected as rejected:
            return bearer_rejection(metrics, rejected, source=_SOURCE, route=FEEDBACK_PATH)
        try:
            stored = store.record_outcomes(labels)
            ids = {request_id for request_id, _, _ in labels}
            missing = len(ids) - store.count_logged(ids)
        except Exception as exc:  # any store failure: the sender keeps the labels and retries
            metrics.webhook_delivery(_SOURCE, "error")
            line = redact(" ".join(f"{type(exc).__name__}: {exc}".split()))
            log.error("POST %s: %d labels not stored: %s", FEEDBACK_PATH, len(labels), line)
            return Response.json(503, {"error": "the prediction log could not store the labels"})
        metrics.webhook_delivery(_SOURCE, "stored")
        log.info(
            "POST %s: stored %d labels (%d request ids not in the log)",
            FEEDBACK_PATH,
            stored,
            missing,
        )
        return Response.json(200, {"stored": stored, "not_in_log": missing})

    return receive
