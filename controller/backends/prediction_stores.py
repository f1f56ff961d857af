"""Which prediction log a command opens: the PostgreSQL store when ``prediction_store_url`` is
set, else the SQLite file, so that ``sluice serve``'s feedback route, ``sluice feedback`` and
the shadow phase all read and write the one the settings name (one choice, made here).
"""

from __future__ import annotations

from pathlib import Path

from controller.backends.postgres_prediction_log import PostgresPredictionLog
from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.settings import Settings

__all__ = ["PredictionLog", "open_prediction_log"]

#: A prediction log either way: the same methods (held to one contract by the tests).
PredictionLog = SqlitePredictionLog | PostgresPredictionLog
_DAY_SECONDS = 24 * 3600.0


def open_prediction_log(settings: Settings, sqlite_path: Path) -> PredictionLog:
    """The configured store: PostgreSQL at ``prediction_store_url`` with its retention, or the
    SQLite log at ``sqlite_path``. Nothing is opened until it is used."""
    if settings.prediction_store_url is not None:
        return PostgresPredictionLog(
            settings.prediction_store_url.get_secret_value(),
            retention=settings.prediction_store_retention_days * _DAY_SECONDS,
        )
    return SqlitePredictionLog(sqlite_path)
