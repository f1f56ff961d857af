"""KServe's inference logger in an InferenceService: where the cluster's answers reach Sluice.

A policy that judges a model on its answers (a shadow phase, KPIs over outcomes) needs
the cluster's requests and responses in ``sluice serve``'s prediction log. KServe sends them
when the predictor has a logger: ``spec.predictor.logger: {mode: all, url: ...}`` posts every
request and every 200 response as a CloudEvent to the URL (``POST /v1/events``,
:mod:`controller.serve.events`). :func:`set_inference_logger` writes that block into a pin,
in place with ruamel (comments and key order kept), and only what it owns: ``mode``, ``url``
and two entries of ``metadataHeaders``: ``Knative-Serving-Revision``, which copies the revision
Knative routed each request to into the events, so that canary and primary answers can be
told apart, and ``X-Sluice-Synthetic``, which marks the load test's and the smoke's requests
(:mod:`controller.synthetic_traffic`), so that they are not counted as clients' (they never
get a click: counted, they would lower a canary's CTR). Other keys of an existing logger
(``storage``, more ``metadataHeaders``) stay. Writing it twice changes nothing.

:func:`events_url_problem` checks the URL an environment gives (``eventsUrl``): it is written
into Git, so it must carry no credential.
"""

from __future__ import annotations

import urllib.parse

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from controller.errors import ManifestInvalid
from controller.synthetic_traffic import SYNTHETIC_HEADER

__all__ = ["EVENTS_PATH", "REVISION_HEADER", "events_url_problem", "set_inference_logger"]

#: The path of ``sluice serve``'s route (:data:`controller.serve.events.EVENTS_PATH`).
EVENTS_PATH = "/v1/events"
#: The request header Knative's ingress sets to the revision it routes to, in the canonical
#: form KServe's agent matches ``metadataHeaders`` against (Go's ``http.Header`` keys).
REVISION_HEADER = "Knative-Serving-Revision"


def events_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an environment's ``eventsUrl`` (None when it can): an http(s)
    URL of ``sluice serve``'s ``/v1/events``, without user, password or query (Git keeps it)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return (
            "is not an http(s) URL such as "
            "http://sluice-controller.sluice-system.svc:8686/v1/events"
        )
    if parts.username is not None or parts.password is not None or parts.query:
        return (
            "carries a credential or a query, which Git would keep: give the bare URL and "
            "guard the route with a NetworkPolicy (SLUICE_EVENTS_TRUST_NETWORK)"
        )
    if not parts.path.rstrip("/").endswith(EVENTS_PATH):
        return f"does not end in {EVENTS_PATH}, where sluice serve takes the logger's events"
    return None


def set_inference_logger(document: CommentedMap, url: str, *, source: str) -> None:
    """Give the pin's predictor a logger posting every request and answer to ``url``."""
    spec = document.get("spec")
    predictor = spec.get("predictor") if isinstance(spec, CommentedMap) else None
    if not isinstance(predictor, CommentedMap):
        raise ManifestInvalid(f"{source}: spec.predictor is not a mapping; fix the pin")
    logger = predictor.get("logger")
    if logger is None:
        logger = predictor["logger"] = CommentedMap()
    if not isinstance(logger, CommentedMap):
        raise ManifestInvalid(f"{source}: spec.predictor.logger is not a mapping; fix the pin")
    if logger.get("mode") != "all":
        logger["mode"] = "all"
    if logger.get("url") != url:
        logger["url"] = url
    headers = logger.get("metadataHeaders")
    if headers is None:
        headers = logger["metadataHeaders"] = CommentedSeq()
    if not isinstance(headers, list):
        raise ManifestInvalid(
            f"{source}: spec.predictor.logger.metadataHeaders is not a list; fix the pin"
        )
    for header in (REVISION_HEADER, SYNTHETIC_HEADER):
        if header not in headers:
            headers.append(header)
