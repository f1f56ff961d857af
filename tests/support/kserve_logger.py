"""CloudEvents as KServe's inference logger posts them, built with the ``cloudevents`` SDK.

``pkg/logger/worker.go`` in kserve: binary mode, ``ce-id`` the request id shared by both
halves, ``ce-type`` ``org.kubeflow.serving.inference.request`` or ``...response``, ``ce-source``
the agent's ``--source-uri`` (the injector passes the pod's name, empty at admission, so the
agent's default ``http://localhost:9081/``), ``ce-time`` stamped when a worker sends it, the
extensions ``inferenceservicename``, ``namespace``, ``component``, ``endpoint`` (empty on
v1beta1) and ``metadata`` (the JSON of the request headers ``metadataHeaders`` names, ``{}``
without), and the request's own ``Content-Type`` as the data's content type of both halves.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

__all__ = ["kserve_event"]


def kserve_event(
    kind: str,
    request_id: str,
    data: bytes,
    *,
    model: str = "iris",
    namespace: str = "models",
    component: str = "predictor",
    metadata: Mapping[str, list[str]] | None = None,
    time: str | None = None,
    content_type: str = "application/json",
) -> tuple[dict[str, str], bytes]:
    """The headers and body of one half, as ``requests.post(url, headers=..., data=...)``
    sends them."""
    attributes = {
        "specversion": "1.0",
        "id": request_id,
        "type": f"org.kubeflow.serving.inference.{kind}",
        "source": "http://localhost:9081/",
        "datacontenttype": content_type,
        "inferenceservicename": model,
        "namespace": namespace,
        "component": component,
        "endpoint": "",
        "metadata": json.dumps(dict(metadata or {}), separators=(",", ":")),
    }
    if time is not None:
        attributes["time"] = time
    headers, body = to_binary(CloudEvent(attributes, data))
    return {name: str(value) for name, value in headers.items()}, body
