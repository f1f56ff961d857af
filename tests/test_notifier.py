"""Notifiers: nowhere, the log, and a Slack-compatible webhook served on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from controller.backends.slack_notifier import COLORS, SlackWebhookNotifier, slack_payload
from controller.errors import ConfigError
from controller.notify import LogNotifier, NullNotifier

SECRET = "T0SLUICE/B0SLUICE/xk7Qw9Zp2Lm4Rt6Vy8Ab1Cd3"


@dataclass
class Received:
    """One POST the webhook received."""

    path: str
    content_type: str
    body: dict[str, Any]


@dataclass
class Behaviour:
    """How the webhook answers: status, body, delay."""

    status: int = 200
    body: bytes = b"ok"
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)


class Webhook(ThreadingHTTPServer):
    """An incoming webhook that records what it is sent."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = Behaviour()

    def url(self, path: str = f"/services/{SECRET}") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: Webhook

    def do_POST(self) -> None:
        behaviour = self.server.behaviour
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        behaviour.received.append(
            Received(self.path, self.headers.get("Content-Type", ""), json.loads(raw))
        )
        time.sleep(behaviour.delay)
        # A client that timed out has gone: nobody reads this answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(behaviour.status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(behaviour.body)))
            self.end_headers()
            self.wfile.write(behaviour.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read the recorded requests."""


@pytest.fixture(scope="module")
def webhook_server() -> Iterator[Webhook]:
    server = Webhook()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def webhook(webhook_server: Webhook) -> Webhook:
    webhook_server.behaviour = Behaviour()
    return webhook_server


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record of every logger, down to DEBUG."""
    caplog.set_level(logging.DEBUG)
    return caplog


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the webhook --------------------------------------------------------------------------------


def test_posts_slack_json(webhook: Webhook, logs: pytest.LogCaptureFixture) -> None:
    """One POST of JSON: the title as text and a coloured attachment with title and text."""
    SlackWebhookNotifier(webhook.url()).notify(
        "fraud-detector v5 → staging: canary failed", "Revision 00003 failed", severity="error"
    )
    (received,) = webhook.behaviour.received
    assert received.path == f"/services/{SECRET}"
    assert received.content_type.startswith("application/json")
    assert received.body == {
        "text": "fraud-detector v5 → staging: canary failed",
        "attachments": [
            {
                "color": COLORS["error"],
                "fallback": "fraud-detector v5 → staging: canary failed: Revision 00003 failed",
                "title": "fraud-detector v5 → staging: canary failed",
                "text": "Revision 00003 failed",
            }
        ],
    }
    assert SECRET not in logs.text


@pytest.mark.parametrize("severity", ["info", "success", "warning", "error"])
def test_colour_follows_severity(webhook: Webhook, severity: str) -> None:
    """Each severity has its own attachment colour."""
    SlackWebhookNotifier(webhook.url()).notify("t", "x", severity=severity)
    assert webhook.behaviour.received[0].body["attachments"][0]["color"] == COLORS[severity]


def test_unknown_severity_is_info() -> None:
    """A severity the notifier does not know is shown as info, not refused."""
    assert (
        slack_payload("t", "x", "critical")["attachments"] == slack_payload("t", "x")["attachments"]
    )


def test_markup_characters_are_escaped() -> None:
    """<, > and & reach Slack as text, not as links or mentions."""
    attachment = slack_payload("a < b", "<!channel> & co")["attachments"]
    assert attachment == [
        {
            "color": COLORS["info"],
            "fallback": "a &lt; b: &lt;!channel&gt; &amp; co",
            "title": "a &lt; b",
            "text": "&lt;!channel&gt; &amp; co",
        }
    ]


def test_unreachable_webhook_is_logged_not_raised(logs: pytest.LogCaptureFixture) -> None:
    """An unreachable webhook logs one warning, naming the host but not the URL's token."""
    url = f"http://127.0.0.1:{closed_port()}/services/{SECRET}"
    SlackWebhookNotifier(url).notify("rollout started", "10 %")
    warnings = [r for r in logs.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "unreachable" in warnings[0].getMessage()
    assert "http://127.0.0.1:" in warnings[0].getMessage()
    assert SECRET not in logs.text
    assert "xk7Qw9Zp2Lm4Rt6Vy8Ab1Cd3" not in logs.text


def test_error_status_is_logged_not_raised(
    webhook: Webhook, logs: pytest.LogCaptureFixture
) -> None:
    """A non-2xx answer logs one warning with the status and Slack's reason, not the token."""
    webhook.behaviour = Behaviour(status=404, body=b"no_service")
    SlackWebhookNotifier(webhook.url()).notify("rollout started", "10 %")
    warnings = [r for r in logs.records if r.levelno >= logging.WARNING]
    assert [w.getMessage() for w in warnings] == [
        f"notification 'rollout started' not sent: the webhook at "
        f"http://127.0.0.1:{webhook.server_address[1]}/*** answered 404 (no_service)"
    ]
    assert SECRET not in logs.text


def test_slow_webhook_times_out(webhook: Webhook, logs: pytest.LogCaptureFixture) -> None:
    """A webhook slower than the timeout is given up on, logged, and not raised."""
    webhook.behaviour = Behaviour(delay=1.0)
    SlackWebhookNotifier(webhook.url(), timeout=0.2).notify("t", "x")
    assert "unreachable (TimeoutError)" in logs.text
    assert SECRET not in logs.text


def test_non_http_url_is_refused() -> None:
    """Only http(s) URLs are accepted, and the refusal does not echo the URL."""
    with pytest.raises(ConfigError) as caught:
        SlackWebhookNotifier(f"file:///etc/{SECRET}")
    assert SECRET not in str(caught.value)


def test_repr_hides_the_token(webhook: Webhook) -> None:
    """The notifier's repr shows the host only."""
    shown = repr(SlackWebhookNotifier(webhook.url()))
    assert SECRET not in shown
    assert f"127.0.0.1:{webhook.server_address[1]}/***" in shown


# -- nowhere and the log -----------------------------------------------------------------------


def test_null_notifier_says_nothing(logs: pytest.LogCaptureFixture) -> None:
    """The null notifier logs nothing and returns nothing."""
    NullNotifier().notify("rollout started", "10 %", severity="error")
    assert logs.records == []


@pytest.mark.parametrize(
    ("severity", "level"),
    [
        ("info", logging.INFO),
        ("success", logging.INFO),
        ("warning", logging.WARNING),
        ("error", logging.ERROR),
        ("unheard-of", logging.INFO),
    ],
)
def test_log_notifier_logs_at_severity(
    logs: pytest.LogCaptureFixture, severity: str, level: int
) -> None:
    """The log notifier writes one record, at the severity's level, on one line."""
    LogNotifier().notify("canary failed", "Revision 00003\nfailed", severity=severity)
    assert [(r.name, r.levelno, r.getMessage()) for r in logs.records] == [
        ("sluice.notify", level, "canary failed: Revision 00003 failed")
    ]
