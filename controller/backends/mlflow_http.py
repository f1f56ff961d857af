"""HTTP to an MLflow tracking server, configured the way MLflow's own client is.

Users set MLflow's client up through its environment variables; they keep working, read at
request time as MLflow reads them:

* ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (or ``~/.mlflow/credentials``):
  basic auth; otherwise ``MLFLOW_TRACKING_TOKEN``: a bearer token;
* ``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH`` (a CA bundle) and
  ``MLFLOW_TRACKING_CLIENT_CERT_PATH`` (a client certificate);
* ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``,
  ``MLFLOW_HTTP_REQUEST_BACKOFF_JITTER`` and ``MLFLOW_HTTP_REQUEST_TIMEOUT`` (which
  :func:`~controller.backends.mlflow_errors.configure_mlflow_http` bounds);
* ``MLFLOW_WORKSPACE``: the workspace header of a server with workspaces.

A connection error, a 429 and a 500/502/503/504 are retried with MLflow's backoff (none before
the first retry, then factor x 2^n plus jitter, at most 120 s; a 429's or 503's Retry-After
wins). Failures are raised as :mod:`controller.backends.mlflow_errors`' exceptions, shaped like
MLflow's, so their messages stay the ones users know.
"""

from __future__ import annotations

import configparser
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
)

from controller import __version__
from controller.backends.mlflow_errors import MlflowCallError, MlflowServerError, MlflowUnreachable
from controller.errors import ConfigError
from controller.redact import redact

__all__ = ["MlflowHttp"]

_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_BACKOFF = 120.0
#: MLflow's error codes (``databricks.proto``); MLflow's client reads any other as INTERNAL_ERROR.
_ERROR_CODES = frozenset(
    """ABORTED ALREADY_EXISTS BAD_REQUEST CANCELLED CATALOG_ALREADY_EXISTS CATALOG_DOES_NOT_EXIST
    CATALOG_NOT_EMPTY COULD_NOT_ACQUIRE_LOCK CUSTOMER_UNAUTHORIZED DAC_ALREADY_EXISTS
    DAC_DOES_NOT_EXIST DATA_LOSS DEADLINE_EXCEEDED DEPLOYMENT_TIMEOUT DIRECTORY_NOT_EMPTY
    DIRECTORY_PROTECTED DRY_RUN_FAILED ENDPOINT_NOT_FOUND EXTERNAL_LOCATION_ALREADY_EXISTS
    EXTERNAL_LOCATION_DOES_NOT_EXIST FEATURE_DISABLED GIT_CONFLICT GIT_REMOTE_ERROR
    GIT_SENSITIVE_TOKEN_DETECTED GIT_UNKNOWN_REF GIT_URL_NOT_ON_ALLOW_LIST
    INSECURE_PARTNER_RESPONSE INTERNAL_ERROR INVALID_PARAMETER_VALUE INVALID_STATE
    INVALID_STATE_TRANSITION IO_ERROR IPYNB_FILE_IN_REPO MALFORMED_PARTNER_RESPONSE
    MALFORMED_REQUEST MANAGED_RESOURCE_GROUP_DOES_NOT_EXIST MAX_BLOCK_SIZE_EXCEEDED
    MAX_CHILD_NODE_SIZE_EXCEEDED MAX_LIST_SIZE_EXCEEDED MAX_NOTEBOOK_SIZE_EXCEEDED
    MAX_READ_SIZE_EXCEEDED METASTORE_ALREADY_EXISTS METASTORE_DOES_NOT_EXIST METASTORE_NOT_EMPTY
    NOT_FOUND NOT_IMPLEMENTED PARTIAL_DELETE PERMISSION_DENIED PERMISSION_NOT_PROPAGATED
    PRINCIPAL_DOES_NOT_EXIST PROJECTS_OPERATION_TIMEOUT PROVIDER_ALREADY_EXISTS
    PROVIDER_DOES_NOT_EXIST PROVIDER_SHARE_NOT_ACCESSIBLE QUOTA_EXCEEDED RECIPIENT_ALREADY_EXISTS
    RECIPIENT_DOES_NOT_EXIST REQUEST_LIMIT_EXCEEDED RESOURCE_ALREADY_EXISTS RESOURCE_CONFLICT
    RESOURCE_DOES_NOT_EXIST RESOURCE_EXHAUSTED RESOURCE_LIMIT_EXCEEDED SCHEMA_ALREADY_EXISTS
    SCHEMA_DOES_NOT_EXIST SCHEMA_NOT_EMPTY SEARCH_QUERY_TOO_LONG SEARCH_QUERY_TOO_SHORT
    SERVICE_UNDER_MAINTENANCE SHARE_ALREADY_EXISTS SHARE_DOES_NOT_EXIST
    STORAGE_CREDENTIAL_ALREADY_EXISTS STORAGE_CREDENTIAL_DOES_NOT_EXIST TABLE_ALREADY_EXISTS
    TABLE_DOES_NOT_EXIST TEMPORARILY_UNAVAILABLE UNAUTHENTICATED UNPARSEABLE_HTTP_ERROR
    WORKSPACE_TEMPORARILY_UNAVAILABLE""".split()  # noqa: SIM905 - 84 names, one line each is noise
)
#: What MLflow's client names an error answer without an error document, by HTTP status.
_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


def _flag(name: str) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return False
    if raw.lower() not in {"true", "false", "1", "0"}:
        raise ConfigError(f"{name}={raw!r} is not one of true, false, 1, 0")
    return raw.lower() in {"true", "1"}


def _credentials() -> tuple[str | None, str | None]:
    """Username and password: the environment's, else ``~/.mlflow/credentials``' (MLflow's)."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    path = Path("~/.mlflow/credentials").expanduser()
    if (not user or not password) and path.is_file():
        config = configparser.ConfigParser()
        config.read(path)
        if "mlflow" in config:
            user = user or config["mlflow"].get("mlflow_tracking_username")
            password = password or config["mlflow"].get("mlflow_tracking_password")
    return user, password


@dataclass(frozen=True)
class _Options:
    """One request's settings, from the environment at the time it is sent."""

    retries: int
    backoff: float
    jitter: float
    timeout: float
    headers: dict[str, str]
    auth: tuple[str, str] | None
    verify: bool | str
    cert: str | None

    @classmethod
    def from_environment(cls) -> _Options:
        retries = int(_number("MLFLOW_HTTP_REQUEST_MAX_RETRIES", 7))
        limit = int(_number("_MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT", 10))
        if not 0 <= retries <= limit:
            raise MlflowCallError(
                "INVALID_PARAMETER_VALUE",
                f"The configured max_retries value ({retries}) is in excess of the maximum "
                f"allowable retries ({limit})"
                if retries > limit
                else f"The max_retries value must be either 0 a positive integer. Got {retries}",
            )
        backoff = _number("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 2)
        most = _number("_MLFLOW_HTTP_REQUEST_MAX_BACKOFF_FACTOR_LIMIT", _MAX_BACKOFF)
        if not 0 <= backoff <= most:
            raise MlflowCallError(
                "INVALID_PARAMETER_VALUE",
                f"The configured backoff_factor value ({backoff:g}) is in excess of the maximum "
                f"allowable backoff_factor limit ({most:g})"
                if backoff > most
                else "The backoff_factor value must be either 0 a positive integer. "
                f"Got {backoff:g}",
            )
        for unsupported in ("MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_AWS_SIGV4"):
            if os.environ.get(unsupported, "").lower() not in {"", "false", "0"}:
                raise ConfigError(
                    f"{unsupported} is set, and Sluice's registry client does not support "
                    "MLflow's auth plugins; use MLFLOW_TRACKING_TOKEN or "
                    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
                )
        insecure = _flag("MLFLOW_TRACKING_INSECURE_TLS")
        ca_bundle = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
        if insecure and ca_bundle is not None:
            raise MlflowCallError(
                "INVALID_PARAMETER_VALUE",
                "When 'ignore_tls_verification' is true then 'server_cert_path' must not be set! "
                "This error may have occurred because the 'MLFLOW_TRACKING_INSECURE_TLS' and "
                "'MLFLOW_TRACKING_SERVER_CERT_PATH' environment variables are both set - only "
                "one of these environment variables may be set.",
            )
        headers = {"User-Agent": f"sluice/{__version__}"}
        user, password = _credentials()
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        if token and not (user and password):
            headers["Authorization"] = f"Bearer {token}"
        if workspace := os.environ.get("MLFLOW_WORKSPACE", "").strip():
            headers["X-MLFLOW-WORKSPACE"] = workspace
        return cls(
            retries=retries,
            backoff=backoff,
            jitter=_number("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", 1.0),
            timeout=_number("MLFLOW_HTTP_REQUEST_TIMEOUT", 120),
            headers=headers,
            auth=(user, password) if user and password else None,
            verify=ca_bundle if ca_bundle is not None else not insecure,
            cert=os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH"),
        )

    def wait(self, state: RetryCallState) -> float:
        """urllib3's backoff, which MLflow uses: none before the first retry, then
        factor x 2^(failures - 1) plus jitter; a 429's or 503's Retry-After wins."""
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            response: requests.Response = outcome.result()
            after = response.headers.get("Retry-After", "")
            if response.status_code in {429, 503} and after.isdigit():
                return min(float(after), _MAX_BACKOFF)
        failures = state.attempt_number
        if failures <= 1:
            return 0.0
        backoff = self.backoff * 2.0 ** (failures - 1) + random.random() * self.jitter  # noqa: S311
        return min(backoff, _MAX_BACKOFF)


def _error_document(text: str) -> dict[str, Any] | None:
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


#: What a server that kept answering with one of these statuses is busy with, in MLflow's
#: codes; a 502 or 504 comes from a gateway whose tracking server did not answer at all.
_BUSY_CODES = {429: "REQUEST_LIMIT_EXCEEDED", 500: "INTERNAL_ERROR", 503: "TEMPORARILY_UNAVAILABLE"}


def _exhausted(response: requests.Response, url: str) -> MlflowCallError:
    """The error once every retry met a 429 or a 5xx: the server's own error document if it
    sent one, its status as MLflow's code if it answered (it is up, and failing: "check its
    log"), and unreachable only when a gateway answered for it (502, 504)."""
    document = _error_document(response.text)
    if document is not None and "error_code" in document:
        return _server_error(document)
    code = _BUSY_CODES.get(response.status_code)
    if code is not None:
        return MlflowServerError(code, f"HTTP {response.status_code} on every attempt")
    return MlflowUnreachable(
        f"API request to {redact(url)} failed with exception: too many "
        f"{response.status_code} error responses"
    )


def _server_error(document: dict[str, Any]) -> MlflowServerError:
    """An error document as MLflow's RestException reads it: an HTTP status for a code is
    translated, and a code MLflow does not know is INTERNAL_ERROR."""
    raw = document.get("error_code") or "INTERNAL_ERROR"
    text = document.get("message", f"Response: {document}")
    code = str(raw)
    if code.isdigit():
        code = _STATUS_CODES.get(int(code), "INTERNAL_ERROR")
    elif code not in _ERROR_CODES:
        code = "INTERNAL_ERROR"
    return MlflowServerError(code, f"{raw}: {text}")


class MlflowHttp:
    """Requests to one tracking server, retried and translated (one session per process)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = requests.Session()
        self._pid = os.getpid()

    def send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One request with the environment's auth, TLS, timeout and retries.

        :class:`MlflowUnreachable` when no answer came or a gateway answered 502/504 every
        time; :class:`MlflowServerError` when the server itself kept answering 429/500/503.
        """
        if os.getpid() != self._pid:  # a forked child must not share the parent's sockets
            self._session, self._pid = requests.Session(), os.getpid()
        options = _Options.from_environment()
        retrying = Retrying(
            stop=stop_after_attempt(options.retries + 1),
            wait=options.wait,
            retry=retry_if_exception_type(requests.ConnectionError)
            | retry_if_result(lambda r: r.status_code in _RETRIED_STATUSES),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        try:
            response: requests.Response = retrying(
                self._session.request,
                method,
                url,
                headers=options.headers,
                auth=options.auth,
                verify=options.verify,
                cert=options.cert,
                timeout=options.timeout,
                **kwargs,
            )
        except OSError as exc:  # requests' errors are OSErrors, and so is a missing CA bundle
            raise MlflowUnreachable(
                f"API request to {redact(url)} failed with exception {type(exc).__name__}"
            ) from exc
        if response.status_code in _RETRIED_STATUSES:
            raise _exhausted(response, url)
        return response

    def call(
        self,
        method: str,
        endpoint: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A REST call (``endpoint`` under ``/api/2.0/mlflow``) and its JSON answer.

        An error answer with an error document is :class:`MlflowServerError`; without one, an
        :class:`MlflowCallError` with the code MLflow's client gives its HTTP status.
        """
        path = f"/api/2.0/mlflow/{endpoint}"
        response = self.send(method, f"{self.base_url}{path}", params=params, json=body)
        text = response.text
        if response.status_code != 200:
            document = _error_document(text)
            if document is not None:
                raise _server_error(document)
            raise MlflowCallError(
                _STATUS_CODES.get(response.status_code, "INTERNAL_ERROR"),
                f"API request to endpoint {path} failed with error code "
                f"{response.status_code} != 200. Response body: '{text}'",
            )
        if text.strip() in {"", "200 OK"}:
            return {}
        document = _error_document(text)
        if document is None:
            # MLflow's client fails on it as on a server error: "unreachable".
            raise MlflowCallError(
                "INTERNAL_ERROR",
                f"API request to endpoint {path} answered with something other than a JSON "
                f"object: {text[:50]!r}",
            )
        return document
