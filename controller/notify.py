"""Notifiers that need no service: nowhere, and the log.

The rollout always holds a :class:`~controller.ports.Notifier` and calls it, as Flagger's
``nop`` notifier replaces nil checks: :class:`NullNotifier` when nothing is configured,
:class:`LogNotifier` when events should at least reach the controller's log. Chat webhooks live
in :mod:`controller.backends.slack_notifier`.
"""

from __future__ import annotations

import logging

__all__ = ["SEVERITIES", "LogNotifier", "NullNotifier", "log_level"]

#: The severities notifiers understand; anything else is treated as ``info``.
SEVERITIES = ("info", "success", "warning", "error")

_LEVELS = {"info": logging.INFO, "success": logging.INFO, "warning": logging.WARNING}


def log_level(severity: str) -> int:
    """The :mod:`logging` level of a notification's severity."""
    return logging.ERROR if severity == "error" else _LEVELS.get(severity, logging.INFO)


class NullNotifier:
    """Announces nothing; the default when no notifier is configured."""

    def notify(self, title: str, text: str, *, severity: str = "info") -> None:
        """Do nothing."""


class LogNotifier:
    """Announces each event as one log record, at the level its severity maps to."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("sluice.notify")

    def notify(self, title: str, text: str, *, severity: str = "info") -> None:
        """Log ``title: text`` (multi-line text is kept on one line)."""
        self._log.log(log_level(severity), "%s: %s", title, " ".join(text.split()))
