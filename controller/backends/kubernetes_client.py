"""The Kubernetes API client Sluice's cluster backends share: the pod's service account, else
the kubeconfig, with a failure to find either as one :class:`~controller.errors.ConfigError`."""

from __future__ import annotations

import os
from typing import Any

from controller.errors import ConfigError
from controller.redact import redact

__all__ = ["KUBE_CREDENTIALS_FIX", "load_api_client"]

KUBE_CREDENTIALS_FIX = (
    "run Sluice in the cluster with a service account, or point KUBECONFIG at a kubeconfig"
)


def load_api_client() -> Any:
    """The pod's service account, else the kubeconfig (``KUBECONFIG``, ``~/.kube/config``)."""
    from kubernetes import client, config  # type: ignore[import-untyped]

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        try:
            # KUBECONFIG is read now: the library reads it once, when it is first imported.
            config.load_kube_config(
                config_file=os.environ.get("KUBECONFIG") or None,
                client_configuration=configuration,
            )
        except (config.ConfigException, OSError, ValueError, TypeError) as exc:
            raise ConfigError(
                f"no Kubernetes credentials ({redact(' '.join(str(exc).split()))[:200]}); "
                f"{KUBE_CREDENTIALS_FIX}"
            ) from None
    return client.ApiClient(configuration)
