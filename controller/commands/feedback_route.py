"""The composition root of ``POST /v1/feedback``: late ground truth into the prediction log
``sluice serve`` keeps.

The route (:mod:`controller.serve.feedback`) is served when ``SLUICE_FEEDBACK_TOKEN`` is set; an
empty token is a :class:`ConfigError`. The labels go to the configured prediction log
(PostgreSQL at ``prediction_store_url``, else the SQLite file at ``prediction_log_path``),
opened at start so that a wrong path, URL or schema fails then. Apart from ``sluice
feedback FILE`` (:mod:`controller.commands.feedback`), which reads tables with pandas: ``sluice
serve`` starts without it.
"""

from __future__ import annotations

from controller.backends.postgres_prediction_log import PostgresPredictionLog
from controller.backends.prediction_stores import open_prediction_log
from controller.commands.local_state import prediction_log_path
from controller.errors import ConfigError
from controller.redact import register_secret
from controller.serve.feedback import feedback_route
from controller.serve.server import Handler, ServeMetrics
from controller.settings import Settings

__all__ = ["build_feedback_route"]


def build_feedback_route(
    settings: Settings, *, metrics: ServeMetrics, environment: str | None = None
) -> Handler | None:
    """``POST /v1/feedback`` into the prediction log (by default the one the local routers of
    ``environment`` write); None without ``feedback_token``."""
    if settings.feedback_token is None:
        return None
    token = settings.feedback_token.get_secret_value()
    if not token:
        raise ConfigError("SLUICE_FEEDBACK_TOKEN is empty; set a token or unset it")
    register_secret(token)
    store = open_prediction_log(settings, prediction_log_path(settings, environment))
    store.row_count()  # open (or create) it now: a wrong path, URL or schema fails at start
    if isinstance(store, PostgresPredictionLog):
        store.start_retention()  # serve is the store's long-running process
    return feedback_route(token=token, store=store, metrics=metrics)
