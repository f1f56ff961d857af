"""What a model answered, as plain values: one request's answer, a logged answer, a pair.

The router produces :class:`Prediction` values and hands them to a
:class:`~controller.ports.PredictionSink`; a prediction log keeps them as
:class:`LoggedPrediction` and joins a request's primary and shadow answers into a
:class:`PredictionPair` for the shadow judge. The values live apart from any log so that the
router, the judge and the ports depend on them and not on a storage backend.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DiscardPredictions",
    "LoggedPrediction",
    "Prediction",
    "PredictionPair",
    "Role",
    "inputs_digest",
]

Role = Literal["primary", "shadow"]


@dataclass(frozen=True, slots=True)
class Prediction:
    """One answer as the router saw it, handed to a sink before anything is serialised."""

    request_id: str
    #: Seconds since the epoch when the request was sent to the revision.
    time: float
    model: str
    version: str
    revision: str
    role: Role
    #: The request body as received: the sink digests it, off the request path.
    body: bytes
    #: The HTTP status; 502 when the revision was unreachable, 504 when it did not answer.
    status: int
    #: The response body (empty when there was none).
    output: bytes
    latency_ms: float


@dataclass(frozen=True, slots=True)
class LoggedPrediction:
    """One answer as the log kept it."""

    request_id: str
    time: float
    model: str
    version: str
    revision: str
    role: Role
    #: SHA-256 of the canonical JSON request body (of the raw body if it is not JSON).
    inputs_digest: str
    #: The parsed JSON response; None when there was none, or it was not JSON or too large.
    output: object
    latency_ms: float
    status: int


@dataclass(frozen=True, slots=True)
class PredictionPair:
    """What the primary and the shadow answered to one request, and its label if known."""

    request_id: str
    primary: LoggedPrediction
    shadow: LoggedPrediction
    label: float | None


class DiscardPredictions:
    """The sink of a router that keeps no prediction log (a null object)."""

    def record(self, prediction: Prediction) -> None:
        """Forget the answer."""


def inputs_digest(body: bytes) -> str:
    """SHA-256 of the body as canonical JSON (sorted keys, no spaces), so that two clients
    sending the same inputs formatted differently get one digest; of the raw bytes otherwise."""
    try:
        canonical = json.dumps(
            json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    except (ValueError, RecursionError):
        canonical = body
    return hashlib.sha256(canonical).hexdigest()
