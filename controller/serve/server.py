"""The HTTP side of ``sluice serve``: health, metrics and the webhooks that wake the loop.

Routes are plain functions from a :class:`Request` to a :class:`Response`, kept in a table keyed
by method and path, so each is tested without sockets and later routes (``POST
/hooks/alertmanager``, built in :mod:`controller.serve.alertmanager_hook`) are one more entry in
:func:`sluice_routes`. Those types and :class:`SluiceServer`, which serves a table with
Starlette and uvicorn from a thread, live in :mod:`controller.serve.http_transport` and are
re-exported here, where the routes' modules and commands import them.

Metrics live in a ``CollectorRegistry`` owned by :class:`ServeMetrics`, never the global one,
so two servers in one process (as in the tests) count separately.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from controller.errors import ConfigError
from controller.redact import redact
from controller.serve.http_transport import Handler, Request, Response, Route, SluiceServer
from controller.serve.webhooks import ReplayGuard, WebhookRejected, verify_mlflow_delivery

__all__ = [
    "Handler",
    "Request",
    "Response",
    "Route",
    "ServeMetrics",
    "SluiceServer",
    "bearer_rejection",
    "health_route",
    "metrics_route",
    "mlflow_hook_route",
    "page_route",
    "sluice_routes",
]

_log = logging.getLogger("sluice.server")

#: Alias events wake the loop; their payload names the model and alias (MLflow 3).
_ALIAS_ENTITY = "model_version_alias"
_REJECTION_RESULTS = {400: "malformed", 401: "unauthorized", 409: "replayed"}


class ServeMetrics:
    """The counters of ``sluice serve``, in a registry of their own.

    It is also the :class:`~controller.serve.watch.WatchObserver` of the watcher, so the loop and
    the HTTP side report into one ``/metrics``.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()

        def counter(name: str, doc: str, labels: list[str]) -> Counter:
            return Counter(name, doc, labels, registry=self.registry)

        self._deliveries = counter(
            "sluice_webhook_deliveries",
            "Webhook requests by sender and result (queued, ignored, malformed, unauthorized, "
            "replayed, error).",
            ["source", "result"],
        )
        self._polls = counter("sluice_poll_runs", "Full registry polls by result.", ["result"])
        self._proposals = counter(
            "sluice_proposals_triggered",
            "New alias versions handed to the proposal step, by model and cause "
            "(startup, poll, webhook).",
            ["model", "trigger"],
        )
        self._errors = counter(
            "sluice_watch_errors",
            "Failed registry lookups and proposal steps, by model and stage.",
            ["model", "stage"],
        )
        self._retrains = counter(
            "sluice_retrains",
            "Retrainings asked for by drift alerts, by model, environment and result (started, "
            "cooldown, unknown-model, failed).",
            ["model", "environment", "result"],
        )
        # Series that exist from the start, so that rate() and absent() work before any event.
        for result in ("ok", "error"):
            self._polls.labels(result)
        for result in ("queued", "ignored", *_REJECTION_RESULTS.values()):
            self._deliveries.labels("mlflow", result)
        for result in ("accepted", "ignored", "malformed", "unauthorized", "error"):
            self._deliveries.labels("alertmanager", result)

    def webhook_delivery(self, source: str, result: str) -> None:
        """Count one webhook request."""
        self._deliveries.labels(source, result).inc()

    def poll_finished(self, result: str) -> None:
        """Count one full poll."""
        self._polls.labels(result).inc()

    def proposal_triggered(self, model: str, trigger: str) -> None:
        """Count one call of the proposal step."""
        self._proposals.labels(model, trigger).inc()

    def watch_error(self, model: str, stage: str) -> None:
        """Count one failed lookup or proposal step."""
        self._errors.labels(model, stage).inc()

    def retrain(self, model: str, environment: str, result: str) -> None:
        """Count one retraining asked for by an alert, by what became of it."""
        self._retrains.labels(model, environment, result).inc()


# -- routes -------------------------------------------------------------------------------------


def health_route(status: Callable[[], Mapping[str, object]]) -> Handler:
    """``GET /healthz``: 200 with ``{"status": "ok", ...}`` and the loop's own status."""

    def health(request: Request) -> Response:
        return Response.json(200, {"status": "ok", **status()})

    return health


def metrics_route(metrics: ServeMetrics) -> Handler:
    """``GET /metrics``: Prometheus text format."""

    def exposition(request: Request) -> Response:
        return Response(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)

    return exposition


def page_route(render: Callable[[], str]) -> Handler:
    """``GET /``: the read-only status page ``render()`` writes (HTML)."""

    def page(request: Request) -> Response:
        return Response(200, render().encode("utf-8"), "text/html; charset=utf-8")

    return page


def mlflow_hook_route(
    *,
    secret: str,
    trigger: Callable[[str, str], bool],
    metrics: ServeMetrics,
    guard: ReplayGuard | None = None,
    clock: Callable[[], float] = time.time,
    max_age_seconds: float = 300.0,
) -> Handler:
    """``POST /hooks/mlflow``: verify a registry delivery and wake the loop for its model.

    ``trigger(model, alias)`` queues a check and says whether the pair is watched. Answers 200
    ``{"result": "queued" | "ignored"}`` (MLflow counts any status below 400 as delivered),
    400/401/409 ``{"error": reason}`` on rejection, and 500 if queueing failed, which MLflow
    retries with the same delivery id.
    """
    if not secret:
        raise ConfigError("the MLflow webhook route needs a secret: set SLUICE_WEBHOOK_SECRET")
    # Not `guard or ...`: an empty guard is falsy (it has a length).
    replays = guard if guard is not None else ReplayGuard(max_age_seconds=max_age_seconds)

    def receive(request: Request) -> Response:
        now = clock()
        try:
            delivery = verify_mlflow_delivery(
                request.headers,
                request.body,
                secret=secret,
                now=now,
                max_age_seconds=max_age_seconds,
            )
            replays.admit(delivery.delivery_id, delivery.timestamp, now=now)
        except WebhookRejected as rejected:
            metrics.webhook_delivery("mlflow", _REJECTION_RESULTS.get(rejected.status, "error"))
            _log.warning("POST /hooks/mlflow: %s", rejected.message)
            return Response.json(rejected.status, {"error": rejected.reason})
        if delivery.entity != _ALIAS_ENTITY or delivery.model is None or delivery.alias is None:
            metrics.webhook_delivery("mlflow", "ignored")
            return Response.json(200, {"result": "ignored", "event": delivery.event})
        try:
            queued = trigger(delivery.model, delivery.alias)
        except Exception as exc:
            # Let MLflow's retry (same delivery id) through: we did not act on this one.
            replays.forget(delivery.delivery_id)
            metrics.webhook_delivery("mlflow", "error")
            _log.error("POST /hooks/mlflow: queueing failed: %s", _one_line(exc))
            return Response.json(500, {"error": "could not queue the delivery"})
        result = "queued" if queued else "ignored"
        metrics.webhook_delivery("mlflow", result)
        what = f"{delivery.event} {delivery.model}@{delivery.alias}={delivery.version}"
        _log.info("POST /hooks/mlflow: %s: %s", what, result)
        return Response.json(200, {"result": result, "delivery_id": delivery.delivery_id})

    return receive


def sluice_routes(
    *,
    metrics: ServeMetrics,
    status: Callable[[], Mapping[str, object]],
    mlflow_trigger: Callable[[str, str], bool],
    mlflow_webhook_secret: str | None,
    clock: Callable[[], float] = time.time,
    max_age_seconds: float = 300.0,
    alertmanager_hook: Handler | None = None,
    feedback: Handler | None = None,
    events: Handler | None = None,
    replay_file: Path | None = None,
    page: Callable[[], str] | None = None,
) -> dict[Route, Handler]:
    """Every route of ``sluice serve``; ``POST /hooks/mlflow`` only when a secret is set,
    ``POST /hooks/alertmanager``, ``POST /v1/feedback`` and ``POST /v1/events`` only when their
    handlers are given (:func:`controller.serve.alertmanager_hook.alertmanager_hook_route`,
    :func:`controller.serve.feedback.feedback_route`,
    :func:`controller.serve.events.events_route`), and ``GET /`` when ``page`` renders it.
    ``replay_file`` keeps the MLflow deliveries already received across restarts
    (:class:`~controller.serve.webhooks.ReplayGuard`)."""
    routes: dict[Route, Handler] = {
        ("GET", "/healthz"): health_route(status),
        ("GET", "/metrics"): metrics_route(metrics),
    }
    if mlflow_webhook_secret:
        routes["POST", "/hooks/mlflow"] = mlflow_hook_route(
            secret=mlflow_webhook_secret,
            trigger=mlflow_trigger,
            metrics=metrics,
            clock=clock,
            max_age_seconds=max_age_seconds,
            guard=ReplayGuard(max_age_seconds=max_age_seconds, path=replay_file),
        )
    if alertmanager_hook is not None:
        routes["POST", "/hooks/alertmanager"] = alertmanager_hook
    if feedback is not None:
        routes["POST", "/v1/feedback"] = feedback
    if events is not None:
        routes["POST", "/v1/events"] = events
    if page is not None:
        routes["GET", "/"] = page_route(page)
    return routes


def bearer_rejection(
    metrics: ServeMetrics, rejected: WebhookRejected, *, source: str, route: str
) -> Response:
    """The answer of a bearer-authenticated route (``POST /hooks/alertmanager``,
    ``/v1/feedback``, ``/v1/events``) to a delivery it refused: counted as ``unauthorized``
    (401, with ``WWW-Authenticate: Bearer``) or ``malformed``, logged in one line, and the reason
    as ``{"error": ...}``."""
    unauthorized = rejected.status == 401
    metrics.webhook_delivery(source, "unauthorized" if unauthorized else "malformed")
    _log.warning("POST %s: %s", route, rejected.message)
    headers = {"WWW-Authenticate": "Bearer"} if unauthorized else {}
    body = json.dumps({"error": rejected.reason}).encode()
    return Response(rejected.status, body, "application/json", headers)


def _one_line(exc: BaseException) -> str:
    return redact(" ".join(f"{type(exc).__name__}: {exc}".split()))
