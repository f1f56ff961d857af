"""Pairing KServe's inference-logger halves into answers: pure, with the clock as an argument."""

from __future__ import annotations

import json

import pytest

from controller.serve.event_pairing import (
    EventPairer,
    InferenceEvent,
    prediction_of,
    revision_of,
    version_of,
)

REQUEST = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
RESPONSE = b'{"predictions": [1]}'


def half(kind: str, request_id: str = "r-1", **fields: object) -> InferenceEvent:
    values: dict[str, object] = {
        "model": "iris",
        "data": REQUEST if kind == "request" else RESPONSE,
        **fields,
    }
    return InferenceEvent(kind=kind, request_id=request_id, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize("first", ["request", "response"])
def test_either_half_may_arrive_first(first: str) -> None:
    """KServe's workers send the halves independently: the pair is (request, response) whatever
    the order, and nothing is left waiting."""
    pairer = EventPairer()
    second = "response" if first == "request" else "request"
    assert pairer.add(half(first), now=0.0).pair is None
    assert len(pairer) == 1
    pairing = pairer.add(half(second), now=1.0)
    assert pairing.pair is not None
    assert [e.kind for e in pairing.pair] == ["request", "response"]
    assert (pairing.dropped, len(pairer)) == ((), 0)


def test_halves_of_other_requests_models_components_or_revisions_do_not_pair() -> None:
    """The key is the id within one component of one InferenceService in one namespace, and
    one revision when the halves name it (a mirror sends the client's Ce-Id to two)."""
    pairer = EventPairer()
    pairer.add(half("request"), now=0)
    for other in (
        half("response", "r-2"),
        half("response", model="other"),
        half("response", component="transformer"),
        half("response", namespace="prod"),
        half("response", metadata={"Knative-Serving-Revision": ("iris-predictor-00003",)}),
    ):
        assert pairer.add(other, now=0).pair is None
    assert len(pairer) == 6


def test_a_half_past_its_ttl_is_dropped_as_expired_and_never_pairs() -> None:
    pairer = EventPairer(ttl_seconds=60)
    pairer.add(half("request", "old"), now=0)
    pairer.add(half("request", "young"), now=30)
    pairing = pairer.add(half("response", "old"), now=60)
    assert pairing.pair is None
    assert [(d.event.request_id, d.reason) for d in pairing.dropped] == [("old", "expired")]
    assert pairer.add(half("response", "young"), now=61).pair is not None
    assert [d.event.request_id for d in pairer.expire(now=200)] == ["old"]


def test_a_full_buffer_evicts_its_oldest_half() -> None:
    pairer = EventPairer(max_waiting=2)
    pairer.add(half("request", "a"), now=0)
    pairer.add(half("request", "b"), now=1)
    pairing = pairer.add(half("request", "c"), now=2)
    assert [(d.event.request_id, d.reason) for d in pairing.dropped] == [("a", "evicted")]
    assert len(pairer) == 2
    assert pairer.add(half("response", "a"), now=3).pair is None


def test_waiting_bodies_stay_under_their_byte_limit() -> None:
    """Halves hold bodies of up to 1 MiB: past max_waiting_bytes the oldest go first."""
    pairer = EventPairer(max_waiting_bytes=100)
    pairer.add(half("request", "a", data=b"x" * 60), now=0)
    pairer.add(half("request", "b", data=b"y" * 30), now=1)
    pairing = pairer.add(half("request", "c", data=b"z" * 30), now=2)
    assert [(d.event.request_id, d.reason) for d in pairing.dropped] == [("a", "evicted")]
    assert pairer.waiting_bytes == 60
    assert pairer.add(half("response", "b"), now=3).pair is not None
    assert pairer.waiting_bytes == 30
    assert [d.event.request_id for d in pairer.expire(now=100)] == ["c"]
    assert pairer.waiting_bytes == 0


def test_a_repeated_half_replaces_the_waiting_one() -> None:
    """A client that reuses its Ce-Id: the latest request is the one that pairs."""
    pairer = EventPairer()
    pairer.add(half("request", data=b'{"instances": [[1]]}'), now=0)
    pairer.add(half("request", data=b'{"instances": [[2]]}'), now=1)
    pairing = pairer.add(half("response"), now=2)
    assert pairing.pair is not None
    assert pairing.pair[0].data == b'{"instances": [[2]]}'


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_waiting"):
        EventPairer(max_waiting=0)
    with pytest.raises(ValueError, match="ttl_seconds"):
        EventPairer(ttl_seconds=0)
    with pytest.raises(ValueError, match="max_waiting_bytes"):
        EventPairer(max_waiting_bytes=0)


def test_a_pair_becomes_the_models_answer() -> None:
    """Inputs from the request, output and status from the response, the revision from the
    copied Knative-Serving-Revision header, the latency between the halves' times."""
    request = half(
        "request",
        metadata={"Knative-Serving-Revision": ("iris-predictor-00002",)},
        recorded_at=100.0,
    )
    response = half("response", recorded_at=100.0125)
    prediction = prediction_of(request, response, received_at=500.0)
    assert prediction.request_id == "r-1"
    assert (prediction.model, prediction.revision, prediction.version) == (
        "iris",
        "iris-predictor-00002",
        "",
    )
    assert (prediction.role, prediction.status) == ("primary", 200)
    assert (prediction.body, prediction.output) == (REQUEST, RESPONSE)
    assert prediction.time == 100.0
    assert prediction.latency_ms == pytest.approx(12.5)


def test_without_times_the_answer_is_dated_when_received_and_has_no_latency() -> None:
    prediction = prediction_of(half("request"), half("response"), received_at=500.0)
    assert (prediction.time, prediction.latency_ms, prediction.revision) == (500.0, 0.0, "")


def test_revision_and_version_as_far_as_the_events_tell() -> None:
    assert revision_of({"knative-serving-revision": ("rev-1",)}) == "rev-1"
    assert revision_of({"X-Other": ("x",)}) == ""
    v2 = {"model_name": "iris", "model_version": "3", "outputs": []}
    assert version_of(json.dumps(v2).encode()) == "3"
    assert version_of(RESPONSE) == ""
    assert version_of(b"\x89PNG") == ""
    assert version_of(b'{"model_version": true}') == ""
