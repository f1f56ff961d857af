"""MLflow's failures, bounded and translated: an unknown model says "unknown model" and an
unreachable server says "unreachable", each in one line with the fix.

The registry's REST client (:mod:`controller.backends.mlflow_http`) fails the way MLflow's own
client did, so that the messages stay what they were: :class:`MlflowServerError` is an error
document the server answered with (MLflow's ``RestException``: an error code and a message),
:class:`MlflowUnreachable` a request that got no answer (connection refused, timeout, retries
used up), and :class:`MlflowCallError` anything else refused on this side of the wire (MLflow's
plain ``MlflowException``). :func:`registry_errors` maps these onto :mod:`controller.errors`, and
maps MLflow's own exceptions alike for the code that still calls MLflow's library (training,
artifact stores other than the server's proxy) without importing MLflow here: an
``MlflowException`` can only exist once something else has imported MLflow.
:func:`configure_mlflow_http` bounds the retries of both clients: by default MLflow retries a
dead server for minutes.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import requests

from controller.errors import (
    InputError,
    ModelNotFound,
    PermanentError,
    RegistryUnavailable,
    SluiceError,
)
from controller.redact import redact

__all__ = [
    "NOT_FOUND_CODES",
    "MlflowCallError",
    "MlflowServerError",
    "MlflowUnreachable",
    "configure_mlflow_http",
    "is_missing_alias",
    "registry_errors",
]

_UNAVAILABLE_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}
#: The error codes of an object the registry does not have.
NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}
_BAD_INPUT_CODES = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "RESOURCE_ALREADY_EXISTS"}


class MlflowCallError(Exception):
    """A registry call that failed on this side: MLflow's error code and its message."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


class MlflowServerError(MlflowCallError):
    """The server answered with an error document; the message is ``"CODE: message"``."""


class MlflowUnreachable(MlflowCallError):
    """No answer: the connection failed or timed out, or every retry met a 429 or a 5xx."""

    def __init__(self, message: str) -> None:
        super().__init__("INTERNAL_ERROR", message)


class _CodedError(Protocol):
    error_code: str
    message: str


def configure_mlflow_http(*, retries: int, timeout_seconds: float) -> None:
    """Bound the registry's HTTP retries and timeout unless the user set them explicitly.

    Sluice's client and MLflow's read these variables at request time; MLflow's defaults
    (7 retries, 120 s timeout) turn an unreachable registry into minutes of silence.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(timeout_seconds))))
    # A progress bar per artifact download is noise in a controller's output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def is_missing_alias(exc: _CodedError) -> bool:
    """A missing model is RESOURCE_DOES_NOT_EXIST; a missing alias on an existing model is
    INVALID_PARAMETER_VALUE "Registered model alias X not found" (MLflow 3)."""
    code = str(exc.error_code)
    return code in NOT_FOUND_CODES or (
        code == "INVALID_PARAMETER_VALUE"
        and "alias" in str(exc.message)
        and "not found" in str(exc.message)
    )


def _from_mlflow(exc: Exception) -> MlflowCallError | None:
    """An exception of MLflow's library as the REST client's error, or None if it is not one."""
    module = sys.modules.get("mlflow.exceptions")
    if module is None or not isinstance(exc, module.MlflowException):
        return None
    code, message = str(exc.error_code), str(exc.message)
    if isinstance(exc, module.RestException):
        return MlflowServerError(code, message)
    if message.startswith("API request to") and (
        "failed with exception" in message or "failed with timeout exception" in message
    ):
        return MlflowUnreachable(message)
    return MlflowCallError(code, message)


def _translate(exc: MlflowCallError, where: str, what: str) -> SluiceError:
    code = exc.error_code
    detail = redact(exc.message).split("\n", 1)[0]
    if isinstance(exc, MlflowServerError):
        if code in NOT_FOUND_CODES:
            return ModelNotFound(
                f"{what} not found in the registry at {where}: {detail}; check the name, "
                "version or alias"
            )
        if code in _BAD_INPUT_CODES:
            return InputError(f"registry at {where} refused {what}: {detail}")
        if code in _UNAVAILABLE_CODES:
            return RegistryUnavailable(
                f"registry at {where} failed on {what} ({code}); retry, or check the server's log"
            )
        return PermanentError(f"registry at {where} refused {what} ({code}): {detail}")
    if isinstance(exc, MlflowUnreachable) or code in _UNAVAILABLE_CODES:
        return RegistryUnavailable(
            f"MLflow registry at {where} is unreachable{_transport_cause(exc.message)}; start "
            "it or set MLFLOW_TRACKING_URI to a running tracking server"
        )
    return PermanentError(f"registry at {where} failed on {what}: {detail}")


#: What failed in a transport error MLflow's library reports: urllib3's path and the socket's
#: own words ("[Errno 111] Connection refused"), or a timeout or a dropped connection.
_FAILED_PATH = re.compile(r"url: (/[^\s?(]+)")
_SOCKET_CAUSE = re.compile(
    r"\[Errno -?\d+\] ([A-Za-z][A-Za-z ]+)|(Read timed out|RemoteDisconnected|Connection aborted)"
)


def _transport_cause(message: str) -> str:
    """ " (Connection refused on /api/2.0/mlflow/runs/log-batch)" when MLflow's message says
    what failed and where, else "": without it, a server that refused one request under load
    reads like one that was never started."""
    cause = _SOCKET_CAUSE.search(message)
    if cause is None:
        return ""
    path = _FAILED_PATH.search(message)
    where = f" on {path.group(1)}" if path else ""
    return f" ({(cause.group(1) or cause.group(2)).strip()}{where})"


@contextmanager
def registry_errors(tracking_uri: str, what: str) -> Iterator[None]:
    """Translate registry and transport exceptions raised inside the block into Sluice errors.

    ``what`` names the object being worked on ("model 'fraud-detector'") for the message.
    """
    where = redact(tracking_uri)
    try:
        yield
    except MlflowCallError as exc:
        raise _translate(exc, where, what) from None
    except (requests.exceptions.RequestException, ConnectionError) as exc:
        raise RegistryUnavailable(
            f"MLflow registry at {where} is unreachable ({type(exc).__name__}); start it or set "
            "MLFLOW_TRACKING_URI to a running tracking server"
        ) from None
    except Exception as exc:
        translated = _from_mlflow(exc)
        if translated is None:
            raise
        raise _translate(translated, where, what) from None
