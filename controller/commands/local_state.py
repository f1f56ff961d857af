"""Where ``sluice local up`` keeps its state, as every command that uses the stack finds it.

The stack's root is ``<state_dir>/local``; its services' addresses are in the stack file there,
and the routers' prediction log beside it (unless ``prediction_log_path`` says otherwise). A
stack serving several environments keeps each further environment's runtime, and the log its
routers write, in a directory of its own (:func:`~controller.local.state.runtime_dirs`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from controller.local.state import PREDICTION_LOG_FILE, runtime_dirs
from controller.settings import Settings

if TYPE_CHECKING:  # psycopg and SQLite behind it: opened by the commands that read a log
    from controller.backends.prediction_stores import PredictionLog

__all__ = ["local_root", "local_stack_url", "prediction_log_path", "prediction_logs"]


def local_root(settings: Settings) -> Path:
    """Where the local target keeps its state: ``<state_dir>/local``."""
    return (settings.state_dir / "local").resolve()


def local_stack_url(settings: Settings, component: str) -> str | None:
    """The URL of the running local stack's ``component`` (``mlflow``, ``prometheus``...), or
    None when no stack runs it."""
    from controller.local.stack import STACK_FILE
    from controller.local.state import read_json

    stack = read_json(local_root(settings) / STACK_FILE) or {}
    url = (stack.get(component) or {}).get("url")
    return str(url) if url else None


def prediction_log_path(settings: Settings, environment: str | None = None) -> Path:
    """``prediction_log_path``; by default the log the local routers of ``environment`` write:
    ``<state_dir>/local/environments/ENV/predictions.sqlite`` for each further environment of
    the stack, ``<state_dir>/local/predictions.sqlite`` for its first (or only) one, for none
    given and for one it does not serve."""
    if settings.prediction_log_path is not None:
        return settings.prediction_log_path
    root = local_root(settings)
    state_dir = runtime_dirs(root).get(environment, root) if environment else root
    return state_dir / PREDICTION_LOG_FILE


def prediction_logs(settings: Settings) -> Callable[[str], PredictionLog]:
    """The prediction log of an environment, by its name: the configured PostgreSQL store for
    every one, else the SQLite file :func:`prediction_log_path` names for it. Each is opened
    once, at its first use (nothing is read until then)."""
    from controller.backends.prediction_stores import open_prediction_log

    opened: dict[Path | None, PredictionLog] = {}

    def of(environment: str) -> PredictionLog:
        path = prediction_log_path(settings, environment)
        # One PostgreSQL store serves every environment; a SQLite log is a file of its own.
        key = None if settings.prediction_store_url is not None else path
        if key not in opened:
            opened[key] = open_prediction_log(settings, path)
        return opened[key]

    return of
