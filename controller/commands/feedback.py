"""``sluice feedback FILE [--url URL]``: late ground truth, from a file into the prediction log.

Fraud is confirmed days after the router answered, usually as an export from the case system:
a CSV or Parquet file with the ``request_id`` the router logged (``X-Request-Id``) and the
``label`` that was confirmed: a number (0 or 1 for a binary model) or, for a classifier, a class
name (``volatile``). This command checks the whole file first (a missing file, missing
columns, a label that is neither a number nor a class name, numbers and names mixed, or an
empty file is one line and exit 2, before anything is written), then stores the labels either
straight into the SQLite prediction log at ``prediction_log_path`` or, with ``--url``, through
``POST /v1/feedback`` of a running ``sluice serve`` (:mod:`controller.serve.feedback`), in
batches the route accepts. It prints how many labels were stored and how many of their request
ids the log has no answer for, yet: those are kept and join their answers when they arrive.

A request id given twice keeps its last label, as the log itself does, so sending a file again
changes nothing. It is also the composition root of the route: :func:`build_feedback_route`
opens the log ``sluice serve`` hands the labels to.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import requests
from rich.console import Console

from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.commands.local_state import prediction_log_path
from controller.errors import ConfigError, InputError, TransientError
from controller.limits import FEEDBACK_FILE_MAX_BYTES
from controller.predictions import Label, is_class_name
from controller.redact import register_secret
from controller.serve.feedback import FEEDBACK_PATH, feedback_route, is_request_id
from controller.serve.server import Handler, ServeMetrics
from controller.settings import Settings
from controller.tables import read_table

__all__ = [
    "BATCH_BYTES",
    "BATCH_LABELS",
    "build_feedback_route",
    "label_batches",
    "read_labels",
    "run_feedback",
]

#: Labels per ``POST /v1/feedback`` (the route takes up to 10,000) ...
BATCH_LABELS = 5_000
#: ... and bytes per request, half of the route's limit, whatever the ids' length.
BATCH_BYTES = 512 << 10
_COLUMNS = ("request_id", "label")
_TIMEOUT_SECONDS = 30.0


def read_labels(path: Path) -> list[tuple[str, Label]]:
    """``(request_id, label)`` of every row, the last label of a repeated id winning; an
    unreadable file, missing columns, a bad id or label, or no rows is an InputError."""
    # Ids stay text as written ("007", "NA"); labels are checked as numbers or names below.
    frame = read_table(
        path,
        name="feedback file",
        fix="fix the file",
        fix_missing="fix the path",
        fix_empty="give a file with columns request_id and label",
        csv_as_text=True,
        max_bytes=FEEDBACK_FILE_MAX_BYTES,
    )
    missing = [name for name in _COLUMNS if name not in frame.columns]
    if missing:
        found = ", ".join(repr(str(name)) for name in list(frame.columns)[:10]) or "none"
        raise InputError(
            f"feedback file {path} lacks the column {' and '.join(missing)} "
            f"(its columns: {found}); it needs request_id and label"
        )
    if frame.empty:
        raise InputError(f"feedback file {path} has no rows; give at least one label")

    def row(index: int) -> str:
        return f"line {index + 2}" if path.suffix.lower() == ".csv" else f"row {index + 1}"

    values = _label_values(path, frame["label"], row)
    ids = frame["request_id"].astype("string")
    labels: dict[str, Label] = {}
    for index, (request_id, label) in enumerate(zip(ids, values, strict=True)):
        if not is_request_id(request_id):
            raise InputError(
                f"feedback file {path}: request_id at {row(index)} is not a printable id of 1 "
                "to 200 characters; fix the file"
            )
        labels[request_id] = label
    return list(labels.items())


def _label_values(path: Path, column: pd.Series, row: Callable[[int], str]) -> list[Label]:
    """The column's labels: all numbers, or all class names (a classifier's labels); anything
    else, or a mix of the two, is an InputError naming the first row at fault."""
    numbers = pd.to_numeric(column, errors="coerce").to_numpy(float, na_value=np.nan)
    number = np.isfinite(numbers)
    if number.all():
        return [float(value) for value in numbers]
    texts = column.astype("string")
    name = np.array([is_class_name(text) for text in texts], dtype=bool)
    kinds = "labels are numbers such as 0 and 1, or class names such as volatile"
    bad = np.flatnonzero(~number & ~name)
    if bad.size:
        first = int(bad[0])
        raise InputError(
            f"feedback file {path}: label is not a number or a class name in {bad.size:,} of "
            f"{len(column):,} rows (first: {row(first)}, {column.iloc[first]!r}); {kinds}"
        )
    if number.any():
        named, numbered = int(np.flatnonzero(name)[0]), int(np.flatnonzero(number)[0])
        raise InputError(
            f"feedback file {path}: labels mix numbers and class names (first name: "
            f"{row(named)}, {column.iloc[named]!r}; first number: {row(numbered)}, "
            f"{column.iloc[numbered]!r}); {kinds}, not both"
        )
    return [str(text) for text in texts]


def label_batches(
    labels: Iterable[tuple[str, Label]],
    *,
    max_labels: int = BATCH_LABELS,
    max_bytes: int = BATCH_BYTES,
) -> Iterator[list[tuple[str, Label]]]:
    """Consecutive batches of at most ``max_labels`` labels and about ``max_bytes`` of JSON."""
    batch: list[tuple[str, Label]] = []
    size = 0
    for request_id, label in labels:
        # {"request_id": ..., "label": ...}, around the id: 60 bytes at most with any float,
        # a class name's own length more.
        item = len(json.dumps(request_id)) + 60
        if isinstance(label, str):
            item += len(json.dumps(label))
        if batch and (len(batch) >= max_labels or size + item > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append((request_id, label))
        size += item
    if batch:
        yield batch


def build_feedback_route(settings: Settings, *, metrics: ServeMetrics) -> Handler | None:
    """``POST /v1/feedback`` into the prediction log; None without ``feedback_token``."""
    if settings.feedback_token is None:
        return None
    token = settings.feedback_token.get_secret_value()
    if not token:
        raise ConfigError("SLUICE_FEEDBACK_TOKEN is empty; set a token or unset it")
    register_secret(token)
    store = SqlitePredictionLog(prediction_log_path(settings))
    store.row_count()  # open (or create) it now: a wrong path or schema fails at start
    return feedback_route(token=token, store=store, metrics=metrics)


def _write_log(path: Path, labels: list[tuple[str, Label]]) -> tuple[int, int]:
    if not path.is_file():
        raise InputError(
            f"there is no prediction log at {path}: start the local stack (sluice local up), "
            "set SLUICE_PREDICTION_LOG_PATH, or send the labels to sluice serve with --url"
        )
    store = SqlitePredictionLog(path)
    logged = store.count_logged(request_id for request_id, _ in labels)
    stored = store.record_feedback_batch(labels)
    return stored, len(labels) - logged


def _endpoint(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"--url {url!r} is not an http(s) URL such as http://127.0.0.1:8686")
    base = url.rstrip("/")
    return base if base.endswith(FEEDBACK_PATH) else base + FEEDBACK_PATH


def _error_of(response: requests.Response) -> str:
    try:
        answer = response.json()
    except ValueError:
        return " ".join(response.text.split())[:100]
    return str(answer.get("error", "")) if isinstance(answer, dict) else ""


def _counts(response: requests.Response, where: str, done: str) -> tuple[int, int]:
    """``(stored, not_in_log)`` of one answer; an error of the tree otherwise."""
    status = response.status_code
    if status == 200:
        try:
            answer = response.json()
            return int(answer["stored"]), int(answer["not_in_log"])
        except (ValueError, TypeError, KeyError):
            raise TransientError(f"{where} answered 200 without counts{done}") from None
    reason = _error_of(response)
    if status == 401:
        raise ConfigError(
            f"{where} refused the token (401){done}: set SLUICE_FEEDBACK_TOKEN to the token "
            "sluice serve was started with"
        )
    if status in (404, 405):
        raise ConfigError(
            f"{where} does not take labels ({status}){done}: is it sluice serve, started "
            "with SLUICE_FEEDBACK_TOKEN?"
        )
    if status < 500:
        raise InputError(f"{where} refused the labels ({status}: {reason}){done}")
    raise TransientError(f"{where} answered {status} ({reason}){done}; send the file again")


def _post(url: str, token: str, labels: list[tuple[str, Label]]) -> tuple[int, int]:
    endpoint = _endpoint(url)
    where = f"sluice serve at {endpoint}"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    stored = missing = 0
    with requests.Session() as session:
        for batch in label_batches(labels):
            done = f" after storing {stored} labels" if stored else ""
            body = {"labels": [{"request_id": rid, "label": label} for rid, label in batch]}
            try:
                response = session.post(
                    endpoint, data=json.dumps(body), headers=headers, timeout=_TIMEOUT_SECONDS
                )
            except requests.RequestException as exc:
                raise TransientError(
                    f"cannot reach {where} ({type(exc).__name__}){done}; is it running?"
                ) from None
            counted = _counts(response, where, done)
            stored, missing = stored + counted[0], missing + counted[1]
    return stored, missing


def run_feedback(settings: Settings, path: Path, *, url: str | None, console: Console) -> int:
    """Read ``path``, store its labels (in the log, or through ``url``), print the counts;
    returns how many were stored."""
    labels = read_labels(path)
    if url is None:
        stored, missing = _write_log(prediction_log_path(settings), labels)
    else:
        token = settings.feedback_token.get_secret_value() if settings.feedback_token else ""
        if not token:
            raise ConfigError(
                "--url needs SLUICE_FEEDBACK_TOKEN, the token sluice serve was started with"
            )
        register_secret(token)
        stored, missing = _post(url, token, labels)
    console.print(f"stored {stored} labels ({missing} request ids not in the log)", highlight=False)
    return stored
