"""Keep secrets out of messages, logs and commits.

Tokens reach Sluice through the environment and URLs (``https://user:token@host``). Anything
that may echo them (an exception from a library, a URL in an error) passes through
:func:`redact` before it is shown.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

__all__ = ["SECRET_ENVIRONMENT_VARIABLES", "redact", "register_secret"]

#: Environment variables whose values are secrets wherever they appear.
SECRET_ENVIRONMENT_VARIABLES = (
    "GITHUB_TOKEN",
    "SLUICE_GITHUB_TOKEN",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
    "ARGOCD_AUTH_TOKEN",
    "SLUICE_WEBHOOK_SECRET",
    "SLUICE_ALERTMANAGER_TOKEN",
)

_MASK = "***"
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s:]+(:[^/@\s]*)?@")
_BEARER = re.compile(r"(?i)\b(bearer|token)\s+[A-Za-z0-9._~+/=-]{8,}")
_registered: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so that :func:`redact` masks it wherever it appears."""
    if value and len(value) >= 4:
        _registered.add(value)


def _known_secrets() -> Iterable[str]:
    yield from _registered
    for name in SECRET_ENVIRONMENT_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            yield value


def redact(text: str) -> str:
    """Return ``text`` with known secrets, URL credentials and bearer tokens masked."""
    # Longest first, so a secret that contains another is masked whole.
    for secret in sorted(set(_known_secrets()), key=len, reverse=True):
        text = text.replace(secret, _MASK)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{_MASK}@", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {_MASK}", text)
