"""Decide whether an HTTP request really is a webhook delivery from our MLflow registry.

A webhook receiver listens on the network, so whatever reaches it is untrusted until proven
otherwise. MLflow 3 signs each delivery the Standard Webhooks way (``mlflow/webhooks/delivery.py``
``_generate_hmac_signature``): three headers, ``X-MLflow-Delivery-Id``, ``X-MLflow-Timestamp``
(Unix seconds) and ``X-MLflow-Signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``
under the secret given to ``MlflowClient.create_webhook``. This module checks them, in an order
that never parses an unauthenticated body:

1. the three headers are present and well formed (else 401),
2. the timestamp is within ``max_age_seconds`` of now, either way (else 401),
3. the signature matches, compared in constant time (else 401),
4. the body is the JSON MLflow sends (else 400),

and :class:`ReplayGuard` refuses a delivery id it has accepted before (409). The timestamp
window bounds how long the guard must remember an id; given a file, the guard keeps the ids it
remembers there too (rewritten atomically, bounded like the memory), so that a delivery
captured before ``sluice serve`` restarted is still refused after. Nothing here reads a clock:
the caller passes ``now``, so every rule is tested with plain values.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from controller.errors import InputError

__all__ = [
    "DELIVERY_ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "MlflowDelivery",
    "ReplayGuard",
    "WebhookRejected",
    "sign_mlflow_delivery",
    "verify_mlflow_delivery",
]

#: Header names as MLflow sends them (``mlflow/webhooks/constants.py``); matched case-insensitively.
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
SIGNATURE_HEADER = "X-MLflow-Signature"

_SIGNATURE_VERSION = "v1"
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_MAX_DELIVERY_ID_CHARS = 200
# Payloads of these entities name a registered model version, so they must carry all three.
_ALIAS_ENTITY = "model_version_alias"
_log = logging.getLogger("sluice.webhooks")


class WebhookRejected(InputError):
    """A request to a webhook route that is not an acceptable delivery.

    ``status`` is the HTTP status to answer with (400 malformed, 401 unauthenticated, 409
    replayed) and ``reason`` a short phrase safe to send back: it never contains the secret,
    the expected signature or the body.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"webhook delivery rejected ({status}): {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class MlflowDelivery:
    """One verified delivery: who sent it when, which event, and the model it is about."""

    delivery_id: str
    #: Unix seconds, from ``X-MLflow-Timestamp`` (covered by the signature).
    timestamp: int
    #: ``model_version_alias``, ``model_version``, ``registered_model``, ``prompt``, ...
    entity: str
    #: ``created``, ``deleted``, ``set``, ...
    action: str
    #: ``data.name``; ``None`` only for events whose payload has no name.
    model: str | None
    #: ``data.alias``, for alias events.
    alias: str | None
    #: ``data.version`` as a number, for version and alias events.
    version: int | None
    payload: Mapping[str, object] = field(repr=False)

    @property
    def event(self) -> str:
        """``entity.action``, as MLflow spells events (``model_version_alias.created``)."""
        return f"{self.entity}.{self.action}"


def sign_mlflow_delivery(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``X-MLflow-Signature`` value MLflow sends for this delivery (``v1,<base64>``)."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
    return f"{_SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def verify_mlflow_delivery(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    now: float,
    max_age_seconds: float = 300,
) -> MlflowDelivery:
    """Check a delivery's headers, timestamp and signature, then parse its body.

    ``now`` is Unix time in seconds. Raises :class:`WebhookRejected`; does not check replays
    (see :class:`ReplayGuard`, which must only see deliveries that passed this function).
    """
    if not secret:
        raise ValueError("verify_mlflow_delivery needs a non-empty secret")
    lowered = {name.lower(): value for name, value in headers.items()}
    delivery_id = _header(lowered, DELIVERY_ID_HEADER)
    timestamp_text = _header(lowered, TIMESTAMP_HEADER)
    signature = _header(lowered, SIGNATURE_HEADER)
    if len(delivery_id) > _MAX_DELIVERY_ID_CHARS or not delivery_id.isprintable():
        raise WebhookRejected(401, f"malformed {DELIVERY_ID_HEADER} header")
    if not _TIMESTAMP.fullmatch(timestamp_text):
        raise WebhookRejected(401, f"malformed {TIMESTAMP_HEADER} header")
    timestamp = int(timestamp_text)
    if timestamp < now - max_age_seconds:
        raise WebhookRejected(401, "timestamp too old")
    if timestamp > now + max_age_seconds:
        raise WebhookRejected(401, "timestamp in the future")
    expected = sign_mlflow_delivery(secret, delivery_id, timestamp_text, body)
    if not _signature_matches(signature, expected):
        raise WebhookRejected(401, "signature does not match")
    return _parse(delivery_id, timestamp, body)


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name.lower(), "").strip()
    if not value:
        raise WebhookRejected(401, f"missing {name} header")
    return value


def _signature_matches(header: str, expected: str) -> bool:
    """Whether any ``v1,`` signature in the header equals ``expected``, in constant time.

    Standard Webhooks allows several space-separated signatures (secret rotation); MLflow sends
    one. Every candidate is compared, so the time taken does not say which one matched.
    """
    wanted = expected.encode("ascii")
    matched = False
    for candidate in header.split():
        version, _, _ = candidate.partition(",")
        if version == _SIGNATURE_VERSION:
            # hmac.compare_digest, looked up at call time, so a test can watch it being used.
            matched |= hmac.compare_digest(candidate.encode("utf-8", "replace"), wanted)
    return matched


def _parse(delivery_id: str, timestamp: int, body: bytes) -> MlflowDelivery:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise WebhookRejected(400, "body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "body is not a JSON object")
    entity, action, data = payload.get("entity"), payload.get("action"), payload.get("data")
    if not isinstance(entity, str) or not isinstance(action, str):
        raise WebhookRejected(400, "payload lacks entity or action")
    if not isinstance(data, dict):
        raise WebhookRejected(400, "payload lacks a data object")
    model = _optional_text(data, "name")
    alias = _optional_text(data, "alias")
    version = _optional_version(data)
    if entity == _ALIAS_ENTITY and (model is None or alias is None or version is None):
        raise WebhookRejected(400, "alias event lacks data.name, data.alias or data.version")
    return MlflowDelivery(
        delivery_id=delivery_id,
        timestamp=timestamp,
        entity=entity,
        action=action,
        model=model,
        alias=alias,
        version=version,
        payload=payload,
    )


def _optional_text(data: Mapping[str, object], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise WebhookRejected(400, f"data.{key} is not a non-empty string")
    return value


def _optional_version(data: Mapping[str, object]) -> int | None:
    value = data.get("version")
    if value is None:
        return None
    # MLflow sends the version as a string ("3"); accept a JSON number too.
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and int(value) > 0:
        return int(value)
    raise WebhookRejected(400, "data.version is not a positive integer")


class ReplayGuard:
    """Remembers accepted delivery ids, so that a captured delivery cannot be replayed.

    An id need only be remembered while its timestamp still passes the window of
    :func:`verify_mlflow_delivery`, i.e. until ``timestamp + max_age_seconds``; later, the
    timestamp check rejects a replay on its own. Ids are kept in arrival order and forgotten
    from the oldest end once expired, or once more than ``max_entries`` are held (a bound on
    memory; reaching it needs that many *signed* deliveries within the window, because only
    verified deliveries are admitted). Safe to share between request threads.

    With ``path``, the ids survive a restart: they are read from it at start (a missing or
    unreadable file is an empty memory, logged) and written to it, whole and atomically
    (a temporary file renamed over it), after every change; the file holds no more ids than
    the memory, at most ``max_entries``, each at most 200 characters.
    """

    def __init__(
        self,
        *,
        max_age_seconds: float = 300,
        max_entries: int = 10_000,
        path: Path | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_age_seconds = max_age_seconds
        self.max_entries = max_entries
        self.path = path
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        if path is not None:
            self._load(path)

    def admit(self, delivery_id: str, timestamp: float, *, now: float) -> None:
        """Remember ``delivery_id``; raise :class:`WebhookRejected` (409) if it was seen."""
        with self._lock:
            self._forget_expired(now)
            if delivery_id in self._seen:
                raise WebhookRejected(409, "delivery already received")
            self._seen[delivery_id] = timestamp
            while len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)
            self._save()

    def forget(self, delivery_id: str) -> None:
        """Drop an id, so that a redelivery is accepted (after our side failed to act on it)."""
        with self._lock:
            if self._seen.pop(delivery_id, None) is not None:
                self._save()

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def __contains__(self, delivery_id: object) -> bool:
        with self._lock:
            return delivery_id in self._seen

    def _load(self, path: Path) -> None:
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))["deliveries"]
            for delivery_id, timestamp in entries[-self.max_entries :]:
                if isinstance(delivery_id, str) and len(delivery_id) <= _MAX_DELIVERY_ID_CHARS:
                    self._seen[delivery_id] = float(timestamp)
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _log.warning("ignoring the webhook replay memory %s: %s", path, exc)

    def _save(self) -> None:
        """Write every remembered id to :attr:`path`, atomically (under the lock)."""
        if self.path is None:
            return
        text = json.dumps({"deliveries": [[key, when] for key, when in self._seen.items()]})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".deliveries-")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(text)
            Path(temporary).replace(self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def _forget_expired(self, now: float) -> None:
        while self._seen:
            oldest_id, oldest_timestamp = next(iter(self._seen.items()))
            if oldest_timestamp + self.max_age_seconds >= now:
                return
            del self._seen[oldest_id]
