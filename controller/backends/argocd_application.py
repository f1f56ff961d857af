"""Argo CD's view of an environment: its Application read through argocd-server's REST API,
which puts per-resource health back from its resource-tree cache (Argo CD 3 no longer keeps it
in the Application object), and asked to refresh so a fresh commit is synced now. HTTP
failures become one line naming the URL (credentials redacted) and the fix; the token never
reaches a message."""

from __future__ import annotations

import urllib.parse
from typing import Any

import requests

from controller.errors import ConfigError, RemoteUnavailable, SluiceError
from controller.redact import redact, register_secret

__all__ = ["ArgoCDApplications"]

_ARGOCD_AUTH_FIX = "set ARGOCD_AUTH_TOKEN to a valid Argo CD API token"


class ArgoCDApplications:
    """Applications of the Argo CD at ``url``, read with ``token`` (a bearer token, or none)."""

    def __init__(
        self, url: str, token: str | None, *, verify_tls: bool = True, timeout_seconds: float = 10.0
    ) -> None:
        register_secret(token)
        self.url = url.rstrip("/")
        self._token = token or None
        self._verify_tls = verify_tls
        self._timeout = timeout_seconds
        self._session = requests.Session()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._session.close()

    def read(self, name: str, *, refresh: bool = False) -> dict[str, Any]:
        """The Application ``name`` (``?refresh=normal`` with ``refresh``, as
        ``argocd app get --refresh``)."""
        url = f"{self.url}/api/v1/applications/{urllib.parse.quote(name, safe='')}"
        shown = redact(url)
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            response = self._session.get(
                url,
                headers=headers,
                params={"refresh": "normal"} if refresh else None,
                timeout=self._timeout,
                verify=self._verify_tls,
            )
        except requests.exceptions.SSLError:
            raise ConfigError(
                f"Argo CD at {shown} failed TLS verification; trust its CA "
                "(REQUESTS_CA_BUNDLE) or turn TLS verification off for Argo CD"
            ) from None
        except requests.RequestException as exc:
            raise RemoteUnavailable(
                f"Argo CD at {shown} is unreachable ({type(exc).__name__}); check "
                "SLUICE_ARGOCD_URL and that argocd-server is running"
            ) from None
        if response.status_code != 200:
            raise _argocd_error(response, shown, name)
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict) or not isinstance(document.get("status", {}), dict):
            raise RemoteUnavailable(
                f"Argo CD at {shown} did not answer with an Application; "
                "is the URL argocd-server's?"
            )
        return document


def _argocd_error(response: requests.Response, shown: str, name: str) -> SluiceError:
    status = response.status_code
    if status == 401:
        return ConfigError(f"Argo CD at {shown} rejected the token (401); {_ARGOCD_AUTH_FIX}")
    if status == 403:
        # Argo CD answers 403 for an Application that does not exist, so as not to reveal it.
        return ConfigError(
            f"Argo CD at {shown} denied access (403): application {name!r} does not exist or "
            "the token may not read it; check SLUICE_ARGOCD_APPLICATION and the token's RBAC"
        )
    if status == 404:
        return ConfigError(
            f"Argo CD at {shown} has no application {name!r} (404); check SLUICE_ARGOCD_APPLICATION"
        )
    return RemoteUnavailable(f"Argo CD at {shown} answered {status}; retry later")
