"""Verification of MLflow webhook deliveries, against MLflow's own signing code."""

from __future__ import annotations

import json
import uuid

import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature

from controller.serve.webhooks import (
    MlflowDelivery,
    ReplayGuard,
    WebhookRejected,
    sign_mlflow_delivery,
    verify_mlflow_delivery,
)

SECRET = "whsec-for-tests-only"
NOW = 1_800_000_000


def mlflow_delivery(
    data: dict[str, object] | None = None,
    *,
    entity: str = "model_version_alias",
    action: str = "created",
    secret: str = SECRET,
    timestamp: int = NOW,
    delivery_id: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """Headers and body exactly as mlflow/webhooks/delivery.py builds them."""
    payload = {
        "entity": entity,
        "action": action,
        "timestamp": "2027-01-15T08:00:00+00:00",
        "data": {"name": "fraud-detector", "alias": "challenger", "version": "7"}
        if data is None
        else data,
    }
    body = json.dumps(payload)
    delivery_id = delivery_id or str(uuid.uuid4())
    headers = {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": str(timestamp),
        "X-MLflow-Signature": _generate_hmac_signature(secret, delivery_id, str(timestamp), body),
    }
    return headers, body.encode("utf-8")


def verify(headers: dict[str, str], body: bytes, *, now: float = NOW) -> MlflowDelivery:
    return verify_mlflow_delivery(headers, body, secret=SECRET, now=now)


def rejection(headers: dict[str, str], body: bytes, *, now: float = NOW) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as caught:
        verify(headers, body, now=now)
    # The reason goes back to the sender: it never repeats the secret or a signature.
    assert SECRET not in str(caught.value)
    assert "v1," not in str(caught.value)
    return caught.value


def test_a_delivery_signed_by_mlflow_is_accepted_and_parsed() -> None:
    """A delivery signed as MLflow signs it yields its id, time, event, model, alias, version."""
    headers, body = mlflow_delivery(delivery_id="d-1")
    delivery = verify(headers, body)
    assert delivery == MlflowDelivery(
        delivery_id="d-1",
        timestamp=NOW,
        entity="model_version_alias",
        action="created",
        model="fraud-detector",
        alias="challenger",
        version=7,
        payload=json.loads(body),
    )
    assert delivery.event == "model_version_alias.created"


def test_signing_matches_mlflow() -> None:
    """sign_mlflow_delivery computes the header MLflow sends, non-ASCII bodies included."""
    body = '{"data": {"name": "modèle"}}'
    expected = _generate_hmac_signature(SECRET, "id-1", "1800000000", body)
    assert sign_mlflow_delivery(SECRET, "id-1", "1800000000", body.encode()) == expected


def test_wrong_secret_is_rejected_with_401() -> None:
    """A delivery signed with another secret is unauthorized."""
    rejected = rejection(*mlflow_delivery(secret="someone-elses-secret"))
    assert (rejected.status, rejected.reason) == (401, "signature does not match")


def test_tampered_body_is_rejected_with_401() -> None:
    """Changing the signed body after signing breaks the signature."""
    headers, body = mlflow_delivery()
    tampered = body.replace(b'"version": "7"', b'"version": "8"')
    assert tampered != body
    assert rejection(headers, tampered).status == 401


def test_tampered_delivery_id_is_rejected_with_401() -> None:
    """The delivery id is signed too, so a replay cannot simply change it."""
    headers, body = mlflow_delivery()
    headers["X-MLflow-Delivery-Id"] = str(uuid.uuid4())
    assert rejection(headers, body).status == 401


def test_stale_timestamp_is_rejected_with_401() -> None:
    """A delivery older than the window is refused even with a good signature."""
    rejected = rejection(*mlflow_delivery(timestamp=NOW - 301))
    assert (rejected.status, rejected.reason) == (401, "timestamp too old")


def test_future_timestamp_is_rejected_with_401() -> None:
    """A delivery stamped further ahead than the window is refused."""
    rejected = rejection(*mlflow_delivery(timestamp=NOW + 301))
    assert (rejected.status, rejected.reason) == (401, "timestamp in the future")


def test_timestamps_at_the_edges_of_the_window_are_accepted() -> None:
    """Exactly max_age_seconds either way is still inside the window."""
    assert verify(*mlflow_delivery(timestamp=NOW - 300)).timestamp == NOW - 300
    assert verify(*mlflow_delivery(timestamp=NOW + 300)).timestamp == NOW + 300


@pytest.mark.parametrize(
    "header", ["X-MLflow-Delivery-Id", "X-MLflow-Timestamp", "X-MLflow-Signature"]
)
def test_missing_header_is_rejected_with_401(header: str) -> None:
    """Each of the three signed headers is required."""
    headers, body = mlflow_delivery()
    del headers[header]
    rejected = rejection(headers, body)
    assert (rejected.status, rejected.reason) == (401, f"missing {header} header")


def test_malformed_timestamp_is_rejected_with_401() -> None:
    """A timestamp that is not whole Unix seconds is refused before any signature check."""
    headers, body = mlflow_delivery()
    headers["X-MLflow-Timestamp"] = "1800000000.5"
    assert rejection(headers, body).status == 401


def test_header_names_are_matched_case_insensitively() -> None:
    """Proxies may lower-case header names; the delivery still verifies."""
    headers, body = mlflow_delivery()
    assert verify({name.lower(): value for name, value in headers.items()}, body).version == 7


def test_one_of_several_signatures_may_match() -> None:
    """Space-separated signatures (secret rotation) pass if any one matches."""
    headers, body = mlflow_delivery()
    headers["X-MLflow-Signature"] = "v1,bm90LXRoaXMtb25l " + headers["X-MLflow-Signature"]
    assert verify(headers, body).model == "fraud-detector"


def test_malformed_json_is_rejected_with_400() -> None:
    """A correctly signed body that is not JSON is a bad request, not an auth failure."""
    body = b"{not json"
    headers = {
        "X-MLflow-Delivery-Id": "d-2",
        "X-MLflow-Timestamp": str(NOW),
        "X-MLflow-Signature": sign_mlflow_delivery(SECRET, "d-2", str(NOW), body),
    }
    rejected = rejection(headers, body)
    assert (rejected.status, rejected.reason) == (400, "body is not JSON")


def test_alias_event_without_a_version_is_rejected_with_400() -> None:
    """An alias event must name model, alias and version."""
    rejected = rejection(*mlflow_delivery({"name": "fraud-detector", "alias": "challenger"}))
    assert rejected.status == 400


def signed(payload: object) -> tuple[dict[str, str], bytes]:
    """Headers signing an arbitrary JSON payload, as MLflow would sign it."""
    body = json.dumps(payload)
    headers = {
        "X-MLflow-Delivery-Id": "d-3",
        "X-MLflow-Timestamp": str(NOW),
        "X-MLflow-Signature": _generate_hmac_signature(SECRET, "d-3", str(NOW), body),
    }
    return headers, body.encode()


EVENT = {"entity": "model_version", "action": "created"}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([1], "body is not a JSON object"),
        ({"action": "set", "data": {}}, "payload lacks entity or action"),
        ({"entity": "model_version", "action": 1, "data": {}}, "payload lacks entity or action"),
        ({"entity": "model_version", "action": "created"}, "payload lacks a data object"),
        ({**EVENT, "data": []}, "payload lacks a data object"),
        ({**EVENT, "data": {"name": ""}}, "data.name is not a non-empty string"),
        ({**EVENT, "data": {"alias": 3}}, "data.alias is not a non-empty string"),
        ({**EVENT, "data": {"version": "0"}}, "data.version is not a positive integer"),
        ({**EVENT, "data": {"version": True}}, "data.version is not a positive integer"),
        ({**EVENT, "data": {"version": 2.0}}, "data.version is not a positive integer"),
    ],
)  # fmt: skip
def test_a_signed_payload_of_the_wrong_shape_is_400_naming_the_field(
    payload: object, reason: str
) -> None:
    """A signed body whose fields have the wrong types is 400 with a one-line reason."""
    rejected = rejection(*signed(payload))
    assert (rejected.status, rejected.reason) == (400, reason)


def test_a_version_may_be_a_string_or_a_number_and_extra_keys_are_ignored() -> None:
    """MLflow's "7" and a JSON 7 are both version 7; fields Sluice does not read are kept in
    the payload and do not fail the delivery."""
    for version in ("7", 7):
        data = {"name": "m", "alias": "champion", "version": version, "run_id": "r"}
        delivery = verify(*signed({"entity": "model_version_alias", "action": "set", "data": data}))
        assert (delivery.version, delivery.payload["data"]) == (7, data)


def test_other_events_parse_without_an_alias() -> None:
    """A model_version.created delivery carries name and version but no alias."""
    headers, body = mlflow_delivery(
        {"name": "fraud-detector", "version": "2", "source": "s3://b/m"},
        entity="model_version",
    )
    delivery = verify(headers, body)
    assert (delivery.event, delivery.model, delivery.alias, delivery.version) == (
        "model_version.created",
        "fraud-detector",
        None,
        2,
    )


def test_only_the_exact_signature_is_accepted() -> None:
    """A signature one character off, cut short, or of another version is refused; among
    several (secret rotation), one that matches is enough."""
    headers, body = mlflow_delivery()
    signature = headers["X-MLflow-Signature"]
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    for wrong in (flipped, signature[:-4], signature.replace("v1,", "v2,", 1), ""):
        assert rejection({**headers, "X-MLflow-Signature": wrong}, body).status == 401, wrong
    rotated = {**headers, "X-MLflow-Signature": f"{flipped} {signature}"}
    assert verify(rotated, body).model == "fraud-detector"


def test_replayed_delivery_id_is_rejected_with_409() -> None:
    """The second delivery with an id the guard admitted is a replay."""
    guard = ReplayGuard()
    guard.admit("d-1", NOW, now=NOW)
    with pytest.raises(WebhookRejected) as caught:
        guard.admit("d-1", NOW, now=NOW + 10)
    assert (caught.value.status, caught.value.reason) == (409, "delivery already received")
    guard.admit("d-2", NOW, now=NOW + 10)


def test_guard_forgets_ids_once_their_timestamp_left_the_window() -> None:
    """An id is kept only while the timestamp check alone would still accept its replay."""
    guard = ReplayGuard(max_age_seconds=300)
    guard.admit("d-1", NOW, now=NOW)
    guard.admit("d-2", NOW + 1, now=NOW + 300)
    assert "d-1" in guard
    guard.admit("d-3", NOW + 301, now=NOW + 301)
    assert "d-1" not in guard
    assert "d-2" in guard


def test_guard_is_bounded() -> None:
    """Past max_entries the oldest ids are dropped, so memory stays bounded."""
    guard = ReplayGuard(max_entries=2)
    for number in range(5):
        guard.admit(f"d-{number}", NOW, now=NOW)
    assert len(guard) == 2
    assert "d-4" in guard
    assert "d-0" not in guard


def test_forgotten_id_is_admitted_again() -> None:
    """forget() lets a redelivery through after the receiver failed to act on it."""
    guard = ReplayGuard()
    guard.admit("d-1", NOW, now=NOW)
    guard.forget("d-1")
    guard.admit("d-1", NOW, now=NOW)
    assert len(guard) == 1
