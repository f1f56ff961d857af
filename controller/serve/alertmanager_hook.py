"""``POST /hooks/alertmanager``: a firing drift alert becomes a retraining, once per cool-down.

Alertmanager's webhook receiver posts its notification format version 4: a group ``status``
and ``alerts[]``, each with its own ``status``, ``labels`` and ``annotations``. The drift rules
in ``manifests/monitoring/prometheus-rules.yaml`` label an alert with ``model``, ``version`` and
``environment`` and list the drifted features in the annotation ``drifted_features``
(comma-separated); a ``feature`` label, from a rule of one's own, counts too.

The route checks, in an order that never parses an unauthenticated body:

1. ``Authorization: Bearer TOKEN`` equals the configured token, compared in constant time
   (else 401, counted, one log line that never holds the token);
2. the body is a version 4 notification (else 400);

then takes the *firing* alerts whose ``alertname`` asks for retraining, merges them per
(model, environment) with the union of their features, the earliest ``startsAt`` (the
retraining's ``since``), the drifted ``version`` and the alert names, and hands each pair to
:class:`~controller.retrain.retrainer.Retrainer`, which groups the pair's alerts of the next
``retrain_group_seconds`` into the same retraining and starts one per cool-down. The answer is
200 when every pair was grouped, started or is cooling down, and 503 when the registry or the
forge failed, so that Alertmanager delivers again; pairs already started are then in their
cool-down.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

from pydantic import Field, JsonValue

from controller.domain import RetrainRequest
from controller.errors import ModelNotFound, SluiceError
from controller.redact import redact
from controller.retrain.forge_dispatch import NAME_PATTERN
from controller.retrain.grouping import merge_requests
from controller.retrain.retrainer import Retrainer, RetrainOutcome
from controller.serve.server import Handler, Request, Response, ServeMetrics, bearer_rejection
from controller.serve.webhooks import StrictBody, WebhookRejected, read_json_object, validate_body

__all__ = [
    "DEFAULT_RETRAIN_ALERTS",
    "Alert",
    "AlertNotification",
    "alertmanager_hook_route",
    "parse_notification",
    "retrain_observer",
    "retrain_requests",
    "verify_bearer",
]

log = logging.getLogger("sluice.server")

#: The alerts of ``manifests/monitoring/prometheus-rules.yaml`` that start a retraining.
DEFAULT_RETRAIN_ALERTS = ("SluiceFeatureDrift", "SluicePredictionDrift")
_SOURCE = "alertmanager"
_MAX_FEATURES = 100
_MAX_FEATURE_CHARS = 200


@dataclass(frozen=True)
class Alert:
    """One alert of a notification."""

    status: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    fingerprint: str = ""
    #: When the alert started firing (ISO 8601, as Alertmanager sends it; empty: unknown).
    starts_at: str = ""

    @property
    def name(self) -> str:
        """The ``alertname`` label."""
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class AlertNotification:
    """A notification as Alertmanager's webhook receiver sends it (version 4)."""

    status: str
    receiver: str
    group_key: str
    alerts: tuple[Alert, ...]


def verify_bearer(headers: Mapping[str, str], token: str) -> None:
    """Accept ``Authorization: Bearer <token>`` only; :class:`WebhookRejected` (401) otherwise."""
    if not token:
        raise ValueError("verify_bearer needs a non-empty token")
    lowered = {name.lower(): value for name, value in headers.items()}
    scheme, _, credentials = lowered.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise WebhookRejected(401, "missing bearer token")
    given = credentials.strip().encode("utf-8", "replace")
    if not hmac.compare_digest(given, token.encode("utf-8")):
        raise WebhookRejected(401, "bearer token does not match")


class _AlertBody(StrictBody):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    # Informational, read as text whatever was sent (as Alertmanager sends it: a string).
    fingerprint: JsonValue = None
    starts_at: JsonValue = Field(default=None, alias="startsAt")


class _NotificationBody(StrictBody):
    version: Literal["4"]
    alerts: list[_AlertBody]
    status: JsonValue = None
    receiver: JsonValue = None
    group_key: JsonValue = Field(default=None, alias="groupKey")


_REASONS = {
    "version": "not an Alertmanager notification of version 4",
    "alerts": "alerts is not a list of objects",
    "alerts[]": "{field} is not an object",
    "alerts[].status": "{field} is neither firing nor resolved",
    "alerts[].labels": "{field} is not an object of strings",
    "alerts[].annotations": "{field} is not an object of strings",
}


def parse_notification(body: bytes) -> AlertNotification:
    """Parse a notification; :class:`WebhookRejected` (400), naming the field, when it is not
    one."""
    parsed = validate_body(_NotificationBody, read_json_object(body), _REASONS)
    return AlertNotification(
        status=str(parsed.status or ""),
        receiver=str(parsed.receiver or ""),
        group_key=str(parsed.group_key or ""),
        alerts=tuple(
            Alert(
                status=alert.status,
                labels=alert.labels or {},
                annotations=alert.annotations or {},
                fingerprint=str(alert.fingerprint or ""),
                starts_at=_since(alert.starts_at),
            )
            for alert in parsed.alerts
        ),
    )


def _since(value: JsonValue) -> str:
    """``startsAt`` as an ISO 8601 UTC time to the second; empty when it is none (Alertmanager's
    zero time, ``0001-01-01…``, included)."""
    if not isinstance(value, str):
        return ""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return ""
    if when.year < 2000:
        return ""
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="seconds")


def _features(alert: Alert) -> list[str]:
    names = [alert.labels.get("feature", "")]
    names += alert.annotations.get("drifted_features", "").split(",")
    return [
        name
        for name in (raw.strip() for raw in names)
        if name and len(name) <= _MAX_FEATURE_CHARS and name.isprintable()
    ]


def retrain_requests(
    notification: AlertNotification, alertnames: Collection[str]
) -> tuple[list[RetrainRequest], list[str]]:
    """One request per (model, environment) among the firing alerts named in ``alertnames``,
    with the union of their features in first-seen order (:func:`merge_requests`); and why
    other alerts were skipped."""
    merged: dict[tuple[str, str], RetrainRequest] = {}
    skipped: list[str] = []
    for alert in notification.alerts:
        if alert.status != "firing" or alert.name not in alertnames:
            continue
        model, environment = alert.labels.get("model", ""), alert.labels.get("environment", "")
        if not NAME_PATTERN.fullmatch(model) or not NAME_PATTERN.fullmatch(environment):
            skipped.append(f"{alert.name} has no valid model and environment labels")
            continue
        version = alert.labels.get("version", "")
        request = RetrainRequest(
            model,
            environment,
            tuple(_features(alert)),
            since=alert.starts_at,
            drifted_version=version if version.isdigit() and len(version) < 10 else "",
            alerts=(alert.name,),
        )
        key = (model, environment)
        merged[key] = merge_requests(merged[key], request) if key in merged else request
    requests = [
        replace(request, features=request.features[:_MAX_FEATURES]) for request in merged.values()
    ]
    return requests, skipped


def alertmanager_hook_route(
    *,
    token: str,
    retrainer: Retrainer,
    metrics: ServeMetrics,
    alertnames: Collection[str] = DEFAULT_RETRAIN_ALERTS,
) -> Handler:
    """``POST /hooks/alertmanager``, authenticated by ``token`` (see the module notes)."""
    if not token:
        raise ValueError("the Alertmanager route needs a bearer token")

    def receive(request: Request) -> Response:
        try:
            verify_bearer(request.headers, token)
            notification = parse_notification(request.body)
        except WebhookRejected as rejected:
            return bearer_rejection(metrics, rejected, source=_SOURCE, route="/hooks/alertmanager")
        requests, skipped = retrain_requests(notification, alertnames)
        for reason in skipped:
            log.warning("POST /hooks/alertmanager: skipped an alert: %s", reason)
        if not requests:
            metrics.webhook_delivery(_SOURCE, "ignored")
            return Response.json(200, {"result": "ignored"})
        answers = [_retrain(retrainer, metrics, retrain) for retrain in requests]
        failed = any(answer["result"] == "failed" for answer in answers)
        metrics.webhook_delivery(_SOURCE, "error" if failed else "accepted")
        return Response.json(503 if failed else 200, {"retrains": answers})

    return receive


def _retrain(
    retrainer: Retrainer, metrics: ServeMetrics, request: RetrainRequest
) -> dict[str, str]:
    result: str
    try:
        outcome = retrainer.request(request)
        result, detail = outcome.result, outcome.detail
    except ModelNotFound:
        result, detail = "unknown-model", f"no registered model {request.model!r}"
    except SluiceError as exc:
        result, detail = "failed", exc.message
    except Exception as exc:  # a starter's bug must still answer, and Alertmanager retries
        result, detail = "failed", f"{type(exc).__name__}: {exc}"
    detail = _report(metrics, request, result, detail)
    return {
        "model": request.model,
        "environment": request.environment,
        "result": result,
        "detail": detail,
    }


def _report(metrics: ServeMetrics, request: RetrainRequest, result: str, detail: str) -> str:
    """Count and log what became of a request; returns the redacted detail."""
    detail = redact(detail)
    metrics.retrain(request.model, request.environment, result)
    where = f"{request.model} in {request.environment}"
    features = ", ".join(request.features) or "none named"
    line = f"POST /hooks/alertmanager: retrain {where} (drifted: {features}): {result}: {detail}"
    (log.error if result == "failed" else log.info)("%s", line)
    return detail


def retrain_observer(metrics: ServeMetrics) -> Callable[[RetrainOutcome], None]:
    """What a grouped retraining reports when its window closes: counted and logged as the
    route reports what it decides at once (``started`` or ``failed``)."""

    def observe(outcome: RetrainOutcome) -> None:
        _report(metrics, outcome.request, outcome.result, outcome.detail)

    return observe
