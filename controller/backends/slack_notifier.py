"""Rollout events to a Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat...).

A notification is best-effort: a chat service that is down must not stop a rollout, so every
failure is logged once, as a warning, and never raised. The webhook URL is itself the secret
(Slack's carries its token in the path), so it is shown only as scheme and host. The request
goes through :mod:`urllib.request` rather than ``requests``: urllib3 logs each request's path
at debug level, and that path is the token.

The message is a legacy attachment (``color``, ``title``, ``text``, ``fallback``) under a
top-level ``text``: Slack still renders it with the colour bar, and the Slack-compatible
services that ignore Block Kit understand it too.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.parse
import urllib.request

from controller.errors import ConfigError
from controller.notify import SEVERITIES
from controller.redact import redact, register_secret

__all__ = ["COLORS", "SlackWebhookNotifier", "slack_payload"]

#: Attachment colour of each severity (Slack's brand palette).
COLORS = {"info": "#36C5F0", "success": "#2EB67D", "warning": "#ECB22E", "error": "#E01E5A"}
_log = logging.getLogger("sluice.notify.slack")


def slack_payload(title: str, text: str, severity: str = "info") -> dict[str, object]:
    """The webhook's JSON body; an unknown severity is shown as ``info``."""
    if severity not in SEVERITIES:
        severity = "info"
    return {
        "text": _escape(title),
        "attachments": [
            {
                "color": COLORS[severity],
                "fallback": _escape(f"{title}: {text}"),
                "title": _escape(title),
                "text": _escape(text),
            }
        ],
    }


def _escape(text: str) -> str:
    """Slack reads ``&``, ``<`` and ``>`` as markup: send them as text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackWebhookNotifier:
    """The :class:`~controller.ports.Notifier` posting to one incoming-webhook URL."""

    def __init__(self, url: str, *, timeout: float = 5) -> None:
        parts = urllib.parse.urlsplit(url)
        register_secret(url)
        register_secret(parts.path)
        register_secret(parts.query)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                "the notification webhook URL is not an http(s) URL; set it to the incoming "
                "webhook URL the chat service gave"
            )
        self._url = url
        self._timeout = timeout
        port = f":{parts.port}" if parts.port else ""
        #: The webhook as it may be shown: scheme and host, never the path that holds the token.
        self.shown_url = f"{parts.scheme}://{parts.hostname}{port}/***"

    def __repr__(self) -> str:
        return f"SlackWebhookNotifier(url={self.shown_url!r})"

    def notify(self, title: str, text: str, *, severity: str = "info") -> None:
        """Post one message; a failure is logged once and swallowed."""
        body = json.dumps(slack_payload(title, text, severity)).encode()
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked in __init__)
            self._url,
            data=body,
            headers={"Content-Type": "application/json; charset=utf-8"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                response.read()
        except urllib.error.HTTPError as exc:
            detail = _short(exc.read(200))
            self._failed(title, f"answered {exc.code}{f' ({detail})' if detail else ''}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # URLError (refused, DNS, TLS) and timeouts are OSErrors; their text names no path.
            self._failed(title, f"is unreachable ({type(exc).__name__})")

    def _failed(self, title: str, what: str) -> None:
        _log.warning(
            "notification %r not sent: the webhook at %s %s", title, self.shown_url, redact(what)
        )


def _short(raw: bytes) -> str:
    """The first words of an error body (Slack answers ``invalid_token``, ``no_service``...)."""
    return " ".join(raw.decode("utf-8", "replace").split())[:100]
