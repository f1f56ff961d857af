"""KServe's InferenceGraph routing decisions, as pure functions (no I/O, no clock, no dice).

Each mirrors one piece of KServe's router (``cmd/router/main.go``):

::

    pick_switch_step(steps, body)        Switch: the first step whose condition exists
    pick_splitter_step(steps, draw)      Splitter: cumulative weights against a draw in [0, 100)
    sequence_request(...)                Sequence: $request or $response, predictions -> instances
    sequence_condition(step, previous)   Sequence: run the step, or stop with the last answer
    ensemble_key(step, index)            Ensemble: the step's name, else its index
    ensemble_member(status, body)        Ensemble: a step's answer as the merge takes it
    is_success(status)                   2xx
    propagated_headers(headers, ...)     the headers a step receives

The executor (:mod:`controller.local.graph.executor`) calls them in KServe's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from controller.local.graph import go_json
from controller.local.graph.conditions import condition_exists
from controller.local.graph.headers import (
    DEFAULT_PROPAGATED_HEADERS,
    canonical_header,
    propagated_headers,
)
from controller.local.graph.spec import Step

__all__ = [
    "DEFAULT_PROPAGATED_HEADERS",
    "NO_SPLITTER_ROUTE",
    "NO_SWITCH_MATCH",
    "SEQUENCE_INVALID_RESPONSE",
    "EnsembleMember",
    "SequenceVerdict",
    "canonical_header",
    "ensemble_key",
    "ensemble_member",
    "is_success",
    "pick_splitter_step",
    "pick_switch_step",
    "propagated_headers",
    "sequence_condition",
    "sequence_request",
]

#: KServe's words, which the router sends back as the ``cause`` of its error answer.
NO_SWITCH_MATCH = "None of the routes matched with the switch condition"
NO_SPLITTER_ROUTE = "no route was selected by the splitter"
SEQUENCE_INVALID_RESPONSE = "invalid response"
#: What KServe's default router configuration propagates (``headers.propagate``).
_MAP_TYPE = "map[string]interface {}"


def is_success(status: int) -> bool:
    """KServe's ``isSuccessFul``: a 2xx status."""
    return 200 <= status <= 299


def pick_switch_step(steps: Sequence[Step], body: bytes) -> Step | None:
    """The first step whose GJSON condition exists in ``body``; None when none does or the body
    is not JSON (the router then answers 404 :data:`NO_SWITCH_MATCH`)."""
    try:
        document = go_json.decode(body)
    except go_json.GoJsonError:
        return None
    return next((s for s in steps if condition_exists(document, s.condition)), None)


def pick_splitter_step(steps: Sequence[Step], draw: int) -> Step | None:
    """The step whose cumulative weight first exceeds ``draw``, a uniform integer in [0, 100);
    None when the weights run out first (the router then answers 500)."""
    end = 0
    for step in steps:
        end += step.weight or 0
        if draw < end:
            return step
    return None


def sequence_request(
    step: Step, index: int, request: bytes, previous_response: bytes | None
) -> bytes:
    """What a Sequence sends to step ``index``: the previous step's answer when the step says
    ``data: $response`` (and is not the first), else the graph's request; with
    ``mapPredictionsToInstances`` a non-empty ``predictions`` list becomes ``instances`` (and
    the body keeps nothing else, as Go's struct re-encoding leaves it)."""
    body = request
    if step.data == "$response" and index > 0:
        body = previous_response or b""
    if step.map_predictions_to_instances:
        body = _predictions_to_instances(body)
    return body


def _predictions_to_instances(body: bytes) -> bytes:
    """Go's decoding into ``{Predictions, Instances []interface{}}`` (keys matched without case,
    others dropped) and re-encoding with ``instances`` only, when it decodes and predictions is
    non-empty; the body unchanged otherwise."""
    try:
        document = go_json.decode(body)
    except go_json.GoJsonError:
        return body
    if not isinstance(document, dict):
        return body
    fields: dict[str, Any] = {}
    for key, value in document.items():
        lowered = key.lower()
        if lowered in ("predictions", "instances"):
            if value is not None and not isinstance(value, list):
                return body  # Go's unmarshal fails on the type: the request is left alone
            fields[lowered] = value
    predictions = fields.get("predictions")
    if not predictions:
        return body
    return b'{"instances":' + go_json.encode(predictions) + b"}"


class SequenceVerdict(Enum):
    """Whether a Sequence runs its next step (KServe checks the condition first)."""

    RUN = "run"
    STOP = "stop"  # the condition found nothing: answer the previous response with 200
    INVALID = "invalid"  # the previous response is not JSON: answer 500 "invalid response"


def sequence_condition(step: Step, previous_response: bytes | None) -> SequenceVerdict:
    """A Sequence step's condition, evaluated on the *previous step's* response (so a
    condition on the first step always finds no JSON, as in KServe)."""
    if not step.condition:
        return SequenceVerdict.RUN
    try:
        document = go_json.decode(previous_response or b"")
    except go_json.GoJsonError:
        return SequenceVerdict.INVALID
    if condition_exists(document, step.condition):
        return SequenceVerdict.RUN
    return SequenceVerdict.STOP


def ensemble_key(step: Step, index: int) -> str:
    """The key of a step's answer in an Ensemble's response: its name, else its index."""
    return step.name or str(index)


@dataclass(frozen=True)
class EnsembleMember:
    """A step's answer as the Ensemble merges it: the decoded object (None for ``null``), or
    the error that fails the whole node with 500."""

    status: int
    value: dict[str, Any] | None = None
    error: str = ""


def ensemble_member(status: int, body: bytes) -> EnsembleMember:
    """Go's ``json.Unmarshal`` of a step's answer into ``map[string]interface{}``: an object
    (or ``null``) is merged whatever its status; anything else is an error."""
    try:
        document = go_json.decode(body)
    except go_json.GoJsonError as exc:
        return EnsembleMember(status, error=str(exc))
    if document is not None and not isinstance(document, dict):
        kind = go_json.type_name(document)
        return EnsembleMember(
            status, error=f"json: cannot unmarshal {kind} into Go value of type {_MAP_TYPE}"
        )
    return EnsembleMember(status, value=document)
