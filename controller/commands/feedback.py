"""``sluice feedback FILE [--url URL]``: late ground truth, from a file into the prediction log.

Fraud is confirmed days after the router answered, usually as an export from the case system:
a CSV or Parquet file with the ``request_id`` the router logged (``X-Request-Id``) and the
``label`` that was confirmed: a number (0 or 1 for a binary model) or, for a classifier, a class
name (``volatile``). A request answered by several models (an InferenceGraph's regime
classifier and its specialist share one request id) has a truth for each, a named outcome
(``label`` the default one; ``regime``, ``up``, ``click``), and each judge reads the outcome its
policy names. By default the file's ``label`` column alone is stored (an export's other
columns, such as ``confirmed_at``, never are); ``--outcome NAME`` (repeatable) stores the
columns it names instead. An empty cell is an outcome that has not arrived for that row:
skipped.

This command checks the whole file first (a missing file, a missing column, an ``--outcome``
that is not an outcome name, a value that is neither a number nor a class name, numbers
and names mixed in one column, or a file without values is one line and exit 2, before
anything is written), then stores the values either straight into the prediction log (the
PostgreSQL store at ``prediction_store_url`` when set, else the SQLite log at
``prediction_log_path``) or, with ``--url``, through ``POST /v1/feedback`` of a running ``sluice
serve`` (:mod:`controller.serve.feedback`), in batches the route accepts, each item naming its
outcome. It prints how many values of each outcome were stored and how many of their request
ids the log has no answer for, yet: those are kept and join their answers when they arrive.

A request id's outcome given twice keeps its last value, as the log itself does, so sending a
file again changes nothing. The route's composition root is
:mod:`controller.commands.feedback_route`, apart from this module's pandas.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import requests
from rich.console import Console

from controller.backends.prediction_stores import open_prediction_log
from controller.commands.local_state import prediction_log_path
from controller.errors import ConfigError, InputError, TransientError
from controller.limits import FEEDBACK_FILE_MAX_BYTES
from controller.predictions import (
    DEFAULT_OUTCOME,
    OUTCOME_NAME_RULE,
    Label,
    is_class_name,
    is_outcome_name,
)
from controller.redact import register_secret
from controller.serve.feedback import FEEDBACK_PATH, is_request_id
from controller.settings import Settings
from controller.tables import read_table

__all__ = [
    "BATCH_BYTES",
    "BATCH_LABELS",
    "label_batches",
    "read_labels",
    "read_outcomes",
    "run_feedback",
]

#: Labels per ``POST /v1/feedback`` (the route takes up to 10,000) ...
BATCH_LABELS = 5_000
#: ... and bytes per request, half of the route's limit, whatever the ids' length.
BATCH_BYTES = 512 << 10
_ID = "request_id"
#: One value of one outcome of one request, as a file row gives it.
Row = tuple[str, str, Label]
_TIMEOUT_SECONDS = 30.0


def read_labels(path: Path) -> list[tuple[str, Label]]:
    """``(request_id, label)`` of every row with a ``label`` (the default outcome), the last
    label of a repeated id winning; other columns are not read."""
    return [(rid, value) for rid, _, value in read_outcomes(path, [DEFAULT_OUTCOME])]


def read_outcomes(path: Path, outcomes: Sequence[str] | None = None) -> list[Row]:
    """``(request_id, outcome, value)`` of every non-empty cell of the file's outcome columns
    (``outcomes``, by default ``label`` alone: other columns of an export, such as
    ``confirmed_at``, are never stored unless named), the last value of a repeated id's
    outcome winning; an unreadable file, a missing column, a name that is not an outcome
    name, a bad id or value, or no values is an InputError."""
    # Ids stay text as written ("007", "NA"); values are checked as numbers or names below.
    frame = read_table(
        path,
        name="feedback file",
        fix="fix the file",
        fix_missing="fix the path",
        fix_empty="give a file with columns request_id and label",
        csv_as_text=True,
        max_bytes=FEEDBACK_FILE_MAX_BYTES,
    )
    columns = [str(name) for name in frame.columns]
    wanted = [DEFAULT_OUTCOME] if outcomes is None else list(dict.fromkeys(outcomes))
    for name in wanted:
        if not is_outcome_name(name):
            raise InputError(
                f"--outcome {name!r} is not an outcome name ({OUTCOME_NAME_RULE}); rename the "
                f"column{_suggestion(name)} and name it so"
            )
    missing = [name for name in [_ID, *wanted] if name not in columns]
    if missing:
        found = ", ".join(repr(name) for name in columns[:10]) or "none"
        named = (
            ""
            if outcomes is not None
            else ("; to store named outcomes, name their columns: --outcome regime --outcome up")
        )
        raise InputError(
            f"feedback file {path} lacks the column {' and '.join(missing)} (its columns: "
            f"{found}); it needs request_id and label{named}"
        )
    if frame.empty:
        raise InputError(f"feedback file {path} has no rows; give at least one label")

    def row(index: int) -> str:
        return f"line {index + 2}" if path.suffix.lower() == ".csv" else f"row {index + 1}"

    ids = frame[_ID].astype("string")
    for index, request_id in enumerate(ids):
        if not is_request_id(request_id):
            raise InputError(
                f"feedback file {path}: request_id at {row(index)} is not a printable id of 1 "
                "to 200 characters; fix the file"
            )
    values = {name: _label_values(path, name, frame[name], row) for name in wanted}
    found_values: dict[tuple[str, str], Label] = {}
    for index, request_id in enumerate(ids):
        for name in wanted:
            value = values[name][index]
            if value is not None:
                found_values[(str(request_id), name)] = value
    if not found_values:
        raise InputError(
            f"feedback file {path} has no values in {', '.join(wanted)} (every cell is empty); "
            "give at least one label"
        )
    return [(request_id, name, value) for (request_id, name), value in found_values.items()]


def _suggestion(name: str) -> str:
    """`` to 'up_day'``, a name the column could have, or nothing when none is near."""
    near = re.sub(r"[^a-z0-9_]+", "_", name.strip().lower()).strip("_")
    return f" to {near!r}" if is_outcome_name(near) else ""


def _is_empty(cell: object) -> bool:
    return cell is None or cell is pd.NA or cell == "" or (isinstance(cell, float) and cell != cell)


def _label_values(
    path: Path, name: str, column: pd.Series, row: Callable[[int], str]
) -> list[Label | None]:
    """The column's values, None for an empty cell (not arrived): all numbers, or all class
    names (a classifier's labels); anything else, or a mix of the two, is an InputError naming
    the first row at fault."""
    empty = np.array([_is_empty(cell) for cell in column], dtype=bool)
    numbers = pd.to_numeric(column, errors="coerce").to_numpy(float, na_value=np.nan)
    number = np.isfinite(numbers) & ~empty
    texts = column.astype("string")
    # A cell that reads as a number is one (a Parquet True is 1, not the name "True").
    named = ~number & np.array(
        [not blank and is_class_name(text) for blank, text in zip(empty, texts, strict=True)],
        dtype=bool,
    )
    kinds = f"{name} values are numbers such as 0 and 1, or class names such as volatile"
    bad = np.flatnonzero(~empty & ~number & ~named)
    if bad.size:
        first = int(bad[0])
        raise InputError(
            f"feedback file {path}: {name} is not a number or a class name in {bad.size:,} of "
            f"{len(column):,} rows (first: {row(first)}, {column.iloc[first]!r}); {kinds}"
        )
    if number.any() and named.any():
        first_name, first_number = int(np.flatnonzero(named)[0]), int(np.flatnonzero(number)[0])
        raise InputError(
            f"feedback file {path}: {name} mixes numbers and class names (first name: "
            f"{row(first_name)}, {column.iloc[first_name]!r}; first number: "
            f"{row(first_number)}, {column.iloc[first_number]!r}); {kinds}, not both"
        )
    if number.any():
        return [None if blank else float(v) for blank, v in zip(empty, numbers, strict=True)]
    return [None if blank else str(text) for blank, text in zip(empty, texts, strict=True)]


def label_batches(
    labels: Iterable[Row],
    *,
    max_labels: int = BATCH_LABELS,
    max_bytes: int = BATCH_BYTES,
) -> Iterator[list[Row]]:
    """Consecutive batches of at most ``max_labels`` values and about ``max_bytes`` of JSON."""
    batch: list[Row] = []
    size = 0
    for request_id, outcome, label in labels:
        # {"request_id": ..., "label": ...}, around the id: 60 bytes at most with any float,
        # a class name's own length more, and a named outcome's ("outcome": "...").
        item = len(json.dumps(request_id)) + 60
        if isinstance(label, str):
            item += len(json.dumps(label))
        if outcome != DEFAULT_OUTCOME:
            item += len(outcome) + 15
        if batch and (len(batch) >= max_labels or size + item > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append((request_id, outcome, label))
        size += item
    if batch:
        yield batch


def _item(request_id: str, outcome: str, label: Label) -> dict[str, object]:
    """One item of ``POST /v1/feedback``; the default outcome unnamed, as before outcomes."""
    item: dict[str, object] = {"request_id": request_id, "label": label}
    if outcome != DEFAULT_OUTCOME:
        item["outcome"] = outcome
    return item


def _write_log(settings: Settings, labels: list[Row], env: str | None) -> tuple[int, int]:
    path = prediction_log_path(settings, env)
    if settings.prediction_store_url is None and not path.is_file():
        raise InputError(
            f"there is no prediction log at {path}: start the local stack (sluice local up), "
            "set SLUICE_PREDICTION_LOG_PATH or SLUICE_PREDICTION_STORE_URL, or send the labels "
            "to sluice serve with --url"
        )
    store = open_prediction_log(settings, path)
    ids = {request_id for request_id, _, _ in labels}
    logged = store.count_logged(ids)
    stored = store.record_outcomes(labels)
    return stored, len(ids) - logged


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


def _post(url: str, token: str, labels: list[Row]) -> tuple[int, int]:
    endpoint = _endpoint(url)
    where = f"sluice serve at {endpoint}"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    stored = missing = 0
    with requests.Session() as session:
        for batch in label_batches(labels):
            done = f" after storing {stored} labels" if stored else ""
            body = {"labels": [_item(*item) for item in batch]}
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


def run_feedback(
    settings: Settings,
    path: Path,
    *,
    url: str | None,
    console: Console,
    outcomes: Sequence[str] | None = None,
    env: str | None = None,
) -> int:
    """Read ``path`` (its ``outcomes`` columns, or ``label`` alone), store its values (in
    the log, by default the one ``env``'s local routers write, or through ``url``), print the
    counts per outcome; returns how many were stored."""
    if url is not None and env is not None:
        raise InputError(
            f"--env {env} picks a local prediction log, and --url sends the labels to a sluice "
            "serve, which writes its own: drop one (serve writes ENV's when started with --env)"
        )
    labels = read_outcomes(path, outcomes or None)
    if url is None:
        stored, missing = _write_log(settings, labels, env)
    else:
        token = settings.feedback_token.get_secret_value() if settings.feedback_token else ""
        if not token:
            raise ConfigError(
                "--url needs SLUICE_FEEDBACK_TOKEN, the token sluice serve was started with"
            )
        register_secret(token)
        stored, missing = _post(url, token, labels)
    console.print(
        f"stored {_summary(stored, labels)} ({missing} request ids not in the log)", highlight=False
    )
    return stored


def _summary(stored: int, labels: list[Row]) -> str:
    """``4812 labels`` for a file of labels only, ``7 values: 4 regime, 3 up`` otherwise."""
    per_outcome = Counter(outcome for _, outcome, _ in labels)
    if set(per_outcome) == {DEFAULT_OUTCOME}:
        return f"{stored} labels"
    counts = ", ".join(f"{count} {outcome}" for outcome, count in per_outcome.items())
    return f"{stored} values: {counts}"
