"""The halves of KServe's logged requests meeting in PostgreSQL, so that any ``sluice serve``
replica may take either half of a request (``sluice_event_halves``, created with the store's
other tables by :mod:`controller.backends.postgres_prediction_schema`).

Taking a half (:func:`take_half`) is one transaction: the half that finds its other half
waiting deletes it and stores the pair's answer (:func:`~controller.serve.event_pairing.
prediction_of`, the in-memory pairing's own rules, or nothing for a synthetic pair); a half
that finds none waits as a row, a second one of the same kind and key taking its place (a
duplicate delivery changes nothing; a reused ``Ce-Id``: the latest wins, as in memory). A
waiting half older than the time to live no longer pairs: it is deleted and reported expired,
and :func:`delete_expired_halves` deletes the rest of them from the store's retention pass.

Concurrency: two replicas taking a request's two halves at the same instant must pair them
exactly once. Under READ COMMITTED each would look for the other, find nothing (neither has
committed), and both would wait forever; a row lock cannot help, as there is no row to lock
until one of them inserts it. So each transaction first takes a transaction-level advisory
lock on the event's key (``pg_advisory_xact_lock`` on a hash of it, released at commit): the
second waits for the first to commit, and its next statement, under a new snapshot, sees the
first's half. SERIALIZABLE would catch the race too, but by failing one of the two, which then
retries from the start; the lock makes it wait a few milliseconds instead, and two keys that
hash alike only wait for each other, never mix.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from controller.backends.postgres_prediction_queries import rotate, upsert_answers
from controller.backends.prediction_log_writer import answer_rows
from controller.serve.event_pairing import (
    Dropped,
    InferenceEvent,
    Pairing,
    is_synthetic_pair,
    pair_of,
    prediction_of,
)

if TYPE_CHECKING:
    import psycopg2.extensions as pg

__all__ = ["delete_expired_halves", "take_half"]

#: First key of the event locks (``pg_advisory_xact_lock(int, int)``): "slce" in ASCII; apart
#: from the schema lock's single ``bigint`` key.
_LOCK_CLASS = 0x736C6365
_KEY = "request_id = %s AND model = %s AND namespace = %s AND component = %s AND revision = %s"
_COLUMNS = "kind, since, metadata, data, recorded_at, status"
_INSERT = (
    "INSERT INTO sluice_event_halves (request_id, model, namespace, component, revision,"
    " kind, since, metadata, data, recorded_at, status)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (request_id, model, namespace, component, revision, kind) DO UPDATE SET"
    " since = EXCLUDED.since, metadata = EXCLUDED.metadata, data = EXCLUDED.data,"
    " recorded_at = EXCLUDED.recorded_at, status = EXCLUDED.status"
)


def _key(event: InferenceEvent) -> tuple[str, str, str, str, str]:
    """What pairs two halves (:attr:`InferenceEvent.key`), in ``_KEY``'s column order."""
    namespace, model, component, revision, request_id = event.key
    return request_id, model, namespace, component, revision


def _half(event: InferenceEvent, row: tuple[Any, ...]) -> InferenceEvent:
    """The waiting half a row holds (its key is ``event``'s)."""
    kind, _, metadata, data, recorded_at, status = row
    return InferenceEvent(
        kind=kind,
        request_id=event.request_id,
        model=event.model,
        namespace=event.namespace,
        component=event.component,
        metadata={name: tuple(values) for name, values in json.loads(metadata).items()},
        data=bytes(data),
        recorded_at=recorded_at,
        status=int(status),
    )


def take_half(
    cursor: pg.cursor,
    event: InferenceEvent,
    *,
    now: float,
    ttl_seconds: float,
    max_output_bytes: int,
    max_rows: int | None,
) -> Pairing:
    """Pair ``event`` with its waiting other half and store the pair's answer, or keep it
    waiting, in the caller's transaction (see the module notes); a waiting half of this key
    older than ``ttl_seconds`` is dropped as ``expired``."""
    key, cutoff = _key(event), now - ttl_seconds
    cursor.execute(
        "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, "\x1f".join(key))
    )
    # One statement for both: the halves of this key past their time, and the other half.
    cursor.execute(
        f"DELETE FROM sluice_event_halves WHERE {_KEY} AND (since <= %s OR kind <> %s)"  # noqa: S608
        f" RETURNING {_COLUMNS}",
        (*key, cutoff, event.kind),
    )
    deleted = cursor.fetchall()
    dropped = tuple(Dropped(_half(event, row), "expired") for row in deleted if row[1] <= cutoff)
    waiting = next((row for row in deleted if row[1] > cutoff), None)  # the other half
    if waiting is None:
        cursor.execute(
            _INSERT,
            (
                *key, event.kind, now, json.dumps(dict(event.metadata)), event.data,
                event.recorded_at, event.status,
            ),
        )  # fmt: skip
        return Pairing(None, dropped)
    pair = pair_of(_half(event, waiting), event)
    if not is_synthetic_pair(pair):
        rows = answer_rows([prediction_of(*pair, received_at=now)], max_output_bytes)
        upsert_answers(cursor, rows, 1)
        if max_rows is not None:
            rotate(cursor, "sluice_predictions", max_rows)
    return Pairing(pair, dropped, recorded=True)


def delete_expired_halves(cursor: pg.cursor, cutoff: float, batch: int) -> int:
    """Delete up to ``batch`` halves that arrived at or before ``cutoff`` (epoch seconds),
    skipping those a pairing holds; returns how many."""
    key = "request_id, model, namespace, component, revision, kind"
    cursor.execute(
        f"DELETE FROM sluice_event_halves WHERE ({key}) IN (SELECT {key}"  # noqa: S608
        " FROM sluice_event_halves WHERE since <= %s LIMIT %s FOR UPDATE SKIP LOCKED)",
        (cutoff, batch),
    )
    return int(cursor.rowcount)
