"""The ``local`` extra: what the embedded local target needs beyond the controller.

``pip install sluice`` is the controller (``sluice serve``, ``sluice rollout`` against a
cluster); the local stack's model servers (KServe's ModelServer) and router (uvloop,
httptools) come with ``pip install 'sluice[local]'``, which ``make setup`` installs. A command
that starts the stack checks for them first, so a missing extra is one line, not a model
server that dies while loading.
"""

from __future__ import annotations

import importlib.util

from controller.errors import ConfigError

__all__ = [
    "LOCAL_EXTRA_MODULES",
    "missing_local_extra",
    "require_graph_extra",
    "require_local_extra",
]

#: The modules of the ``local`` extra that every stack imports (psycopg2 only when MLflow keeps
#: its registry in PostgreSQL).
LOCAL_EXTRA_MODULES = ("kserve", "uvloop", "httptools")


def missing_local_extra() -> list[str]:
    """The modules of the ``local`` extra that this Python cannot import."""
    return [name for name in LOCAL_EXTRA_MODULES if importlib.util.find_spec(name) is None]


def require_local_extra(command: str) -> None:
    """:class:`ConfigError` naming ``command``, what is missing and the fix, when the extra is
    not installed."""
    missing = missing_local_extra()
    if missing:
        raise ConfigError(
            f"{command} needs Sluice's local extra ({', '.join(missing)} not installed): "
            "pip install 'sluice[local]' (make setup installs it)"
        )


def require_graph_extra(command: str) -> None:
    """:class:`ConfigError` naming ``command`` and the fix when gjson-py, with which the local
    target routes InferenceGraphs (the ``graph`` extra), is not installed."""
    if importlib.util.find_spec("gjson") is None:
        raise ConfigError(
            f"{command} needs Sluice's graph extra (gjson not installed): "
            "pip install 'sluice[graph]' (make setup installs it)"
        )
