"""One error tree for all of Sluice, so that every failure maps to one line and one exit code.

::

    SluiceError
     +-- TransientError           a dependency did not answer: retry with backoff   (exit 3)
     |    +-- RegistryUnavailable    the MLflow tracking server
     |    +-- RemoteUnavailable      the git remote
     |    +-- MetricsUnavailable     Prometheus
     |    +-- ForgeUnavailable       GitHub (or GitHub Enterprise)
     |    +-- GitConflict            a push lost a race; fetch, re-apply, push again
     |    +-- LeaseHeld              another controller kept a release's lease: run again later
     +-- PermanentError           retrying will not help: stop and report
          +-- ConfigError            bad flag, environment variable or config file   (exit 2)
          +-- InputError             bad input data or arguments                     (exit 2)
          |    +-- DataValidationError   a dataset broke its schema, ranges or null rates
          |    +-- WebhookRejected       (controller.serve.webhooks) a delivery failed verification:
          |                              HTTP 400/401/409 to the sender, never an exit code
          +-- ModelNotFound          unknown model, alias or version                 (exit 2)
          +-- ManifestInvalid        a manifest that would not validate              (exit 2)
          +-- ModelLoadFailed        a model server could not fetch or load its model (exit 2)
          +-- GateFailed             a quality gate or analysis said no              (exit 1)

Any other exception is a bug: ``sluice`` exits 70 (``ExitCode.INTERNAL_ERROR``, sysexits'
EX_SOFTWARE), prints one line naming it and writes the traceback to a crash log.

Backends translate library exceptions (``MlflowException`` error codes, ``GithubException``,
git's non-fast-forward) into this tree at the boundary, so the core never sees a library type.
Every message is one line that names the thing and the fix; secrets are redacted before an
error is built (see :mod:`controller.redact`).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "ConfigError",
    "DataValidationError",
    "ExitCode",
    "ForgeUnavailable",
    "GateFailed",
    "GitConflict",
    "InputError",
    "LeaseHeld",
    "ManifestInvalid",
    "MetricsUnavailable",
    "ModelLoadFailed",
    "ModelNotFound",
    "PermanentError",
    "RegistryUnavailable",
    "RemoteUnavailable",
    "SluiceError",
    "TransientError",
]


class ExitCode(IntEnum):
    """Process exit codes of the ``sluice`` command and the training entry points."""

    OK = 0
    GATE_FAILED = 1
    BAD_INPUT = 2
    UNAVAILABLE = 3
    #: A bug: an exception Sluice did not anticipate (BSD sysexits' EX_SOFTWARE).
    INTERNAL_ERROR = 70


class SluiceError(Exception):
    """Base of every error Sluice raises on purpose; its message is one line for a person."""

    exit_code: ExitCode = ExitCode.BAD_INPUT

    def __init__(self, message: str) -> None:
        # Keep messages on one line whatever a library put in them.
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        """The one-line message shown on stderr."""
        return str(self)


class TransientError(SluiceError):
    """A dependency did not answer; the same call may succeed later."""

    exit_code = ExitCode.UNAVAILABLE


class RegistryUnavailable(TransientError):
    """The MLflow tracking server could not be reached or answered with a server error."""


class RemoteUnavailable(TransientError):
    """The git remote could not be reached."""


class MetricsUnavailable(TransientError):
    """Prometheus could not be reached or the query failed on its side."""


class ForgeUnavailable(TransientError):
    """GitHub (or GitHub Enterprise) could not be reached or answered with a server error."""


class GitConflict(TransientError):
    """A push was rejected because the remote moved; fetch, re-apply and push again."""


class LeaseHeld(TransientError):
    """Another controller kept a release's lease for longer than Sluice would wait."""


class PermanentError(SluiceError):
    """Retrying will not help: the input, the configuration or the verdict must change."""


class ConfigError(PermanentError):
    """A flag, environment variable or configuration file is missing or invalid."""


class InputError(PermanentError):
    """An argument or input file is invalid."""


class DataValidationError(InputError):
    """A dataset broke its schema, value ranges, null rates or label rate."""


class ModelNotFound(PermanentError):
    """The registry has no such model, alias or version."""


class ManifestInvalid(PermanentError):
    """A manifest is malformed or would not validate against its schema."""


class ModelLoadFailed(PermanentError):
    """The model behind a storage URI could not be fetched or loaded (KServe: ModelLoadFailed)."""


class GateFailed(PermanentError):
    """A quality gate or canary analysis decided against the candidate."""

    exit_code = ExitCode.GATE_FAILED
