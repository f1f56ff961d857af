"""The composition root of ``POST /v1/events``: KServe's inference logger into the prediction
log ``sluice serve`` keeps.

The route (:mod:`controller.serve.events`) is served when ``SLUICE_EVENTS_TOKEN`` is set (a
bearer token, for senders that can send a header) or ``SLUICE_EVENTS_TRUST_NETWORK`` is true
(no credential: KServe's logger sends none, so a NetworkPolicy is the guard); both at once is a
:class:`ConfigError`, as is an empty token. The answers go to the configured
prediction log (PostgreSQL at ``prediction_store_url``, else the SQLite file at
``prediction_log_path``), through its writer thread: :func:`build_events_route` starts it, and
``sluice serve`` closes it when it stops, so the answers still queued are written. With
PostgreSQL the halves of a request wait in the store, so that any replica may take either
(the retention pass counts those that expired); with SQLite, in this process's memory.
"""

from __future__ import annotations

import logging

from controller.backends.postgres_prediction_log import PostgresPredictionLog
from controller.backends.prediction_stores import PredictionLog, open_prediction_log
from controller.commands.local_state import prediction_log_path
from controller.errors import ConfigError
from controller.redact import register_secret
from controller.serve.event_pairing import EventHalves
from controller.serve.events import EVENTS_PATH, events_route
from controller.serve.server import Handler, ServeMetrics
from controller.settings import Settings

__all__ = ["build_events_route"]

log = logging.getLogger("sluice.serve")


def build_events_route(
    settings: Settings, *, metrics: ServeMetrics, environment: str | None = None
) -> tuple[Handler, PredictionLog] | None:
    """``POST /v1/events`` and the started log it writes to (close it at the end; by default
    the one the local routers of ``environment`` write); None when neither ``events_token``
    nor ``events_trust_network`` is set."""
    token = settings.events_token.get_secret_value() if settings.events_token else None
    if settings.events_token is not None and not token:
        raise ConfigError("SLUICE_EVENTS_TOKEN is empty; set a token or unset it")
    if token and settings.events_trust_network:
        raise ConfigError(
            "SLUICE_EVENTS_TOKEN and SLUICE_EVENTS_TRUST_NETWORK are both set; "
            f"{EVENTS_PATH} takes a token or trusts the network, not both: unset one"
        )
    if not token and not settings.events_trust_network:
        return None
    register_secret(token)
    store = open_prediction_log(settings, prediction_log_path(settings, environment))
    store.row_count()  # open (or create) it now: a wrong path, URL or schema fails at start
    if not token:
        log.warning(
            "%s accepts events without a credential (SLUICE_EVENTS_TRUST_NETWORK): keep it "
            "behind a NetworkPolicy that admits the model namespaces alone",
            EVENTS_PATH,
        )
    pairer: EventHalves | None = None
    if isinstance(store, PostgresPredictionLog):

        def expired(count: int) -> None:
            for _ in range(count):
                metrics.webhook_delivery("kserve_logger", "expired")

        pairer = store.pair_events(on_expired=expired)
    route = events_route(
        sink=store, metrics=metrics, token=token, trust_network=settings.events_trust_network,
        pairer=pairer,
    )  # fmt: skip
    return route, store.start()
