"""MLflow's failures, bounded and translated: MLflow raises one ``MlflowException`` for
everything, distinguished by error code and, for transport failures, only by its message; and
by default it retries a dead server for minutes. :func:`configure_mlflow_http` bounds the
retries, and :func:`registry_errors` maps what MLflow raises onto :mod:`controller.errors`, so
an unknown model says "unknown model" and an unreachable server says "unreachable", each in
one line with the fix."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from mlflow.exceptions import MlflowException, RestException

from controller.errors import (
    InputError,
    ModelNotFound,
    PermanentError,
    RegistryUnavailable,
)
from controller.redact import redact

__all__ = ["NOT_FOUND_CODES", "configure_mlflow_http", "is_missing_alias", "registry_errors"]

_UNAVAILABLE_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}
#: The error codes of an object the registry does not have.
NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}
_BAD_INPUT_CODES = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "RESOURCE_ALREADY_EXISTS"}


def configure_mlflow_http(*, retries: int, timeout_seconds: float) -> None:
    """Bound MLflow's HTTP retries and timeout unless the user set them explicitly.

    MLflow reads these variables at request time; its defaults (7 retries, 120 s timeout) turn
    an unreachable registry into minutes of silence.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(timeout_seconds))))
    # A progress bar per artifact download is noise in a controller's output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _is_transport_failure(exc: MlflowException) -> bool:
    text = str(exc.message)
    return text.startswith("API request to") and (
        "failed with exception" in text or "failed with timeout exception" in text
    )


def is_missing_alias(exc: RestException) -> bool:
    """A missing model is RESOURCE_DOES_NOT_EXIST; a missing alias on an existing model is
    INVALID_PARAMETER_VALUE "Registered model alias X not found" (MLflow 3)."""
    code = str(exc.error_code)
    return code in NOT_FOUND_CODES or (
        code == "INVALID_PARAMETER_VALUE"
        and "alias" in str(exc.message)
        and "not found" in str(exc.message)
    )


@contextmanager
def registry_errors(tracking_uri: str, what: str) -> Iterator[None]:
    """Translate MLflow and transport exceptions raised inside the block into Sluice errors.

    ``what`` names the object being worked on ("model 'fraud-detector'") for the message.
    """
    where = redact(tracking_uri)
    try:
        yield
    except RestException as exc:
        code = str(exc.error_code)
        detail = redact(str(exc.message)).split("\n", 1)[0]
        if code in NOT_FOUND_CODES:
            raise ModelNotFound(
                f"{what} not found in the registry at {where}: {detail}; check the name, "
                "version or alias"
            ) from None
        if code in _BAD_INPUT_CODES:
            raise InputError(f"registry at {where} refused {what}: {detail}") from None
        if code in _UNAVAILABLE_CODES:
            raise RegistryUnavailable(
                f"registry at {where} failed on {what} ({code}); retry, or check the server's log"
            ) from None
        raise PermanentError(f"registry at {where} refused {what} ({code}): {detail}") from None
    except MlflowException as exc:
        if _is_transport_failure(exc) or str(exc.error_code) in _UNAVAILABLE_CODES:
            raise RegistryUnavailable(
                f"MLflow registry at {where} is unreachable; start it or set "
                "MLFLOW_TRACKING_URI to a running tracking server"
            ) from None
        detail = redact(str(exc.message)).split("\n", 1)[0]
        raise PermanentError(f"registry at {where} failed on {what}: {detail}") from None
    except (requests.exceptions.RequestException, ConnectionError) as exc:
        raise RegistryUnavailable(
            f"MLflow registry at {where} is unreachable ({type(exc).__name__}); start it or set "
            "MLFLOW_TRACKING_URI to a running tracking server"
        ) from None
