"""Where ``sluice local up`` keeps its state, as every command that uses the stack finds it.

The stack's root is ``<state_dir>/local``; its services' addresses are in the stack file there,
and the routers' prediction log beside it (unless ``prediction_log_path`` says otherwise).
"""

from __future__ import annotations

from pathlib import Path

from controller.local.state import PREDICTION_LOG_FILE
from controller.settings import Settings

__all__ = ["local_root", "local_stack_url", "prediction_log_path"]


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


def prediction_log_path(settings: Settings) -> Path:
    """``prediction_log_path``, by default ``<state_dir>/local/predictions.sqlite``."""
    return settings.prediction_log_path or local_root(settings) / PREDICTION_LOG_FILE
