"""From a registry artifact location to the storage URI KServe reads in one environment.

The registry records where artifacts are (``mlflow-artifacts:/…`` behind a proxy, a path, or
``s3://…``); KServe's storage initializer reads a handful of schemes and knows nothing of
MLflow. Each environment says how to translate and which schemes it accepts, so a laptop path
can never reach production.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from controller.errors import InputError
from controller.manifests.environment import StorageConfig

__all__ = ["check_uri_characters", "map_storage_uri", "uri_scheme"]


def check_uri_characters(uri: str, *, environment: str) -> None:
    """Refuse (never quote) a URI with whitespace or control characters: a storage URI is
    written into a pin verbatim, and a newline in it would be a second line of YAML."""
    for index, char in enumerate(uri):
        if char.isspace() or ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 or char in "\u2028\u2029":
            what = "a space" if char == " " else f"the character {char!r}"
            raise InputError(
                f"storage URI {uri!r} contains {what} at position {index}; KServe and Sluice "
                f"take no spaces or control characters in a URI (environment {environment!r}): "
                "register the model under a location without them"
            )
    try:
        urlsplit(uri)
    except ValueError as exc:
        raise InputError(
            f"storage URI {uri!r} is not a valid URI ({exc}) in environment {environment!r}"
        ) from None


def uri_scheme(uri: str) -> str:
    """The URI's scheme; a bare absolute path counts as ``file``."""
    if uri.startswith("/"):
        return "file"
    scheme = urlsplit(uri).scheme
    # A Windows drive letter is not a scheme.
    return scheme if len(scheme) > 1 else ""


def map_storage_uri(artifact_uri: str, storage: StorageConfig, *, environment: str) -> str:
    """Rewrite ``artifact_uri`` by the first matching rule and check its scheme is allowed.

    Raises :class:`InputError` naming the URI, the environment and the allowed schemes.
    """
    check_uri_characters(artifact_uri, environment=environment)
    uri = artifact_uri
    for rule in storage.rewrites:
        if uri.startswith(rule.prefix):
            uri = rule.replacement + uri[len(rule.prefix) :]
            break
    check_uri_characters(uri, environment=environment)
    if uri.startswith("/"):
        uri = Path(uri).as_uri()
    scheme = uri_scheme(uri)
    if not scheme:
        raise InputError(
            f"storage URI {uri!r} has no scheme; add a rewrite for it in environment "
            f"{environment!r} (manifests/overlays/{environment}/sluice.yaml)"
        )
    if scheme not in storage.allowed_schemes:
        allowed = ", ".join(storage.allowed_schemes)
        raise InputError(
            f"storage URI scheme {scheme!r} ({uri}) is not allowed in environment "
            f"{environment!r} (allowed: {allowed}); add a rewrite to an allowed store or "
            f"register the model where {environment} can read it"
        )
    return uri
