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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from controller.errors import InputError

__all__ = [
    "DELIVERY_ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "MlflowDelivery",
    "ReplayGuard",
    "StrictBody",
    "WebhookRejected",
    "read_json_object",
    "sign_mlflow_delivery",
    "validate_body",
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
            matched |= hmac.compare_digest(candidate.encode("utf-8", "replace"), wanted)
    return matched


# -- request bodies: JSON read into strict models, one-line reasons -------------------------------

M = TypeVar("M", bound=BaseModel)


class StrictBody(BaseModel):
    """A JSON request body's shape: no coercion (``"1"`` is not a number, ``true`` not a
    label), unknown keys ignored (senders add fields), immutable once read."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


def read_json_object(
    body: bytes,
    *,
    not_json: str = "body is not JSON",
    parse_constant: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """``body`` parsed as a JSON object; :class:`WebhookRejected` (400) otherwise."""
    try:
        payload = json.loads(body, parse_constant=parse_constant)
    except (ValueError, RecursionError):
        raise WebhookRejected(400, not_json) from None
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "body is not a JSON object")
    return payload


def validate_body(model: type[M], payload: Mapping[str, Any], reasons: Mapping[str, str]) -> M:
    """``payload`` as ``model``, or :class:`WebhookRejected` (400) with a one-line reason for
    the first field that does not fit.

    ``reasons`` maps a field's path, list indices written ``[]`` (``labels[].label``), or a path
    and pydantic's error type (``labels:too_long``), to a reason; ``{field}`` in it becomes the
    path with its indices (``labels[3].label``), and the error's context (``{max_length}``) is
    there too. A value inside a field (a key of an object of strings) takes its field's reason.
    """
    try:
        return model.model_validate(payload)
    except ValidationError as invalid:
        raise WebhookRejected(400, _reason(invalid.errors()[0], reasons)) from None


def _reason(error: Mapping[str, Any], reasons: Mapping[str, str]) -> str:
    loc = error["loc"]
    for end in range(len(loc), 0, -1):
        pattern = "".join(
            "[]" if isinstance(part, int) else f".{part}" for part in loc[:end]
        ).lstrip(".")
        reason = reasons.get(f"{pattern}:{error['type']}", reasons.get(pattern))
        if reason is not None:
            return reason.format(field=_path(loc[:end]), **error.get("ctx", {}))
    return f"{_path(loc) or 'body'}: {error['msg']}"


def _path(loc: tuple[int | str, ...]) -> str:
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    return " ".join(text.lstrip(".").split())[:200]


# -- the MLflow delivery's body -----------------------------------------------------------------


def _digits_as_number(value: object) -> object:
    # MLflow sends the version as a string ("3"); a JSON number is accepted too.
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return value


_Text = Annotated[str, Field(min_length=1)]
_Version = Annotated[int, BeforeValidator(_digits_as_number), Field(gt=0)]


class _MlflowData(StrictBody):
    name: _Text | None = None
    alias: _Text | None = None
    version: _Version | None = None


class _MlflowPayload(StrictBody):
    entity: str
    action: str
    data: _MlflowData


_MLFLOW_REASONS = {
    "entity": "payload lacks entity or action",
    "action": "payload lacks entity or action",
    "data": "payload lacks a data object",
    "data.name": "{field} is not a non-empty string",
    "data.alias": "{field} is not a non-empty string",
    "data.version": "{field} is not a positive integer",
}


def _parse(delivery_id: str, timestamp: int, body: bytes) -> MlflowDelivery:
    payload = read_json_object(body)
    parsed = validate_body(_MlflowPayload, payload, _MLFLOW_REASONS)
    data = parsed.data
    if parsed.entity == _ALIAS_ENTITY and None in (data.name, data.alias, data.version):
        raise WebhookRejected(400, "alias event lacks data.name, data.alias or data.version")
    return MlflowDelivery(
        delivery_id=delivery_id,
        timestamp=timestamp,
        entity=parsed.entity,
        action=parsed.action,
        model=data.name,
        alias=data.alias,
        version=data.version,
        payload=payload,
    )


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
