"""What a model answered, as plain values: one request's answer, a logged answer, a pair.

The router produces :class:`Prediction` values and hands them to a
:class:`~controller.ports.PredictionSink`; a prediction log keeps them as
:class:`LoggedPrediction` and joins a request's primary and shadow answers into a
:class:`PredictionPair` for the shadow judge, and a revision's answers with one outcome into
:class:`ServedOutcome` rows or, for a rate, :class:`OutcomeCounts` for the KPI judge. The values
live apart from any log so that the router, the judges and the ports depend on them and not on
a storage backend.
"""

from __future__ import annotations

import abc
import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from controller.errors import InputError

__all__ = [
    "DEFAULT_OUTCOME",
    "MAX_CLASS_NAME_CHARS",
    "OUTCOME_NAME_RULE",
    "DiscardPredictions",
    "Label",
    "LoggedPrediction",
    "OutcomeCounts",
    "OutcomeRecorder",
    "PairQuery",
    "PairReader",
    "Prediction",
    "PredictionPair",
    "Role",
    "ServedOutcome",
    "checked_labels",
    "checked_outcome",
    "checked_outcomes",
    "count_outcomes",
    "inputs_digest",
    "is_class_name",
    "is_outcome_name",
]

Role = Literal["primary", "shadow"]
#: A late label: a number (0 or 1 for a binary model) or a class name (``"volatile"``).
Label = float | str
#: Longest class name a label may be.
MAX_CLASS_NAME_CHARS = 100
#: The outcome a label is when no other is named: what a request's one label was before
#: outcomes had names, and what a judge reads unless its policy names another.
DEFAULT_OUTCOME = "label"
_OUTCOME_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
#: How :func:`is_outcome_name` reads, for messages that say what a name should be.
OUTCOME_NAME_RULE = "a lower-case letter, then up to 62 lower-case letters, digits or _"


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
class ServedOutcome:
    """A client's request one revision of a model answered (the answer the client got, its
    primary answer), and the value of one named outcome of that request if it has arrived: what
    a KPI check counts per revision."""

    request_id: str
    revision: str
    #: Seconds since the epoch when the request was sent to the revision.
    time: float
    #: The outcome's value; None until it arrives.
    value: Label | None


@dataclass(frozen=True, slots=True)
class OutcomeCounts:
    """One revision's answers to clients in a KPI window, counted for a rate: what
    :class:`ServedOutcome` rows add up to, so that a store can count them in one aggregating
    query instead of handing over every row
    (:meth:`~controller.ports.ServedOutcomes.outcome_counts`).

    *Settled* answers were sent at or before the cut-off (``outcomeDelay`` before now): only
    they count, with or without an outcome. ``other`` counts the values in the whole window a
    rate cannot count (a class name, a number other than 0 or 1, settled or not): when it is
    not 0 the judge reads the rows, which name the request."""

    #: Settled answers (a rate's requests under ``missing: zero``).
    settled: int
    #: Settled answers whose outcome is a number (a rate's requests under ``missing: skip``).
    with_outcome: int
    #: Settled answers whose outcome is 1.
    positive: int
    #: Answers in the window whose outcome is a class name or a number other than 0 and 1.
    other: int = 0


def count_outcomes(served: Iterable[ServedOutcome], settled: float) -> dict[str, OutcomeCounts]:
    """``served`` (one outcome's rows) counted per revision with cut-off ``settled`` (epoch
    seconds): the arithmetic a store's aggregate does in SQL, over rows. Revisions in the order
    they first appear."""
    tallies: dict[str, list[int]] = {}
    for row in served:
        tally = tallies.setdefault(row.revision, [0, 0, 0, 0])
        value = row.value
        if value is not None and (isinstance(value, str) or value not in (0.0, 1.0)):
            tally[3] += 1
        if row.time > settled:
            continue
        tally[0] += 1
        if value is not None and not isinstance(value, str):
            tally[1] += 1
            tally[2] += value == 1.0
    return {revision: OutcomeCounts(*tally) for revision, tally in tallies.items()}


@dataclass(frozen=True, slots=True)
class PredictionPair:
    """What the primary and the shadow answered to one request, and its label if known."""

    request_id: str
    primary: LoggedPrediction
    shadow: LoggedPrediction
    #: The value of the query's outcome (``label`` unless it named another), None until it
    #: arrived.
    label: Label | None


@dataclass(frozen=True, slots=True)
class PairQuery:
    """Which pairs a reader asks a prediction log for: the arguments of
    :meth:`PairReader.pairs` (and of :meth:`controller.ports.PredictionStore.pairs`) as one
    value."""

    #: Only pairs whose shadow answer came from this model.
    model: str | None = None
    #: Only pairs whose shadow answer came from this revision.
    shadow_revision: str | None = None
    #: Only pairs whose primary answer was logged at or after this time.
    since: float | None = None
    #: Only pairs whose label has arrived.
    labelled: bool = False
    #: At most this many pairs, the oldest; None or negative: all.
    limit: int | None = None
    #: Which named outcome is the pair's label (and must have arrived for ``labelled``).
    outcome: str = DEFAULT_OUTCOME

    def __post_init__(self) -> None:
        checked_outcome(self.outcome)

    def admits(
        self, primary: LoggedPrediction, shadow: LoggedPrediction, label: Label | None
    ) -> bool:
        """Whether one request's primary and shadow answers, with its label, are a pair this
        query selects: both answered the same inputs (equal digests), and the filters hold.
        SQLite's log says the same in SQL
        (:mod:`controller.backends.prediction_log_queries`)."""
        return (
            primary.model == shadow.model
            and primary.inputs_digest == shadow.inputs_digest
            and (self.model is None or shadow.model == self.model)
            and (self.shadow_revision is None or shadow.revision == self.shadow_revision)
            and (self.since is None or primary.time >= self.since)
            and (not self.labelled or label is not None)
        )


class PairReader(abc.ABC):
    """The reading side of a prediction log: ``pairs`` and ``labelled_pairs`` both come down to
    one :class:`PairQuery` its :meth:`select_pairs` answers."""

    def pairs(
        self,
        *,
        model: str | None = None,
        shadow_revision: str | None = None,
        since: float | None = None,
        labelled: bool = False,
        limit: int | None = None,
        outcome: str = DEFAULT_OUTCOME,
    ) -> list[PredictionPair]:
        """Requests both answered, oldest first, with the value of ``outcome`` as label."""
        return self.select_pairs(PairQuery(model, shadow_revision, since, labelled, limit, outcome))

    def labelled_pairs(
        self,
        *,
        model: str | None = None,
        shadow_revision: str | None = None,
        since: float | None = None,
        limit: int | None = None,
        outcome: str = DEFAULT_OUTCOME,
    ) -> list[PredictionPair]:
        """Pairs whose ``outcome`` has arrived."""
        return self.select_pairs(PairQuery(model, shadow_revision, since, True, limit, outcome))

    @abc.abstractmethod
    def select_pairs(self, query: PairQuery) -> list[PredictionPair]:
        """The pairs ``query`` selects, oldest first by when the primary's answer was logged."""


class OutcomeRecorder(abc.ABC):
    """The writing side of a prediction log's late outcomes: one request's value and a batch
    of one outcome's values both come down to the :meth:`record_outcomes` a log implements."""

    def record_feedback(
        self, request_id: str, label: Label, outcome: str = DEFAULT_OUTCOME
    ) -> None:
        """Store the value of one request's ``outcome``, a number or a class name (the latest
        value of a request's outcome wins)."""
        self.record_outcomes([(request_id, outcome, label)])

    def record_feedback_batch(
        self, labels: Iterable[tuple[str, Label]], outcome: str = DEFAULT_OUTCOME
    ) -> int:
        """Store many ``(request_id, label)`` of one ``outcome`` at once, all or none; returns
        how many."""
        return self.record_outcomes((request_id, outcome, label) for request_id, label in labels)

    @abc.abstractmethod
    def record_outcomes(self, rows: Iterable[tuple[str, str, Label]]) -> int:
        """Store many ``(request_id, outcome, value)`` at once, all or none; returns how
        many."""


def is_class_name(value: object) -> bool:
    """A class name a label may be: printable text of 1 to :data:`MAX_CLASS_NAME_CHARS`
    characters, without surrounding spaces, that does not read as a number (``"1"`` and
    ``"nan"`` are numbers written as text, not names)."""
    if not (
        isinstance(value, str)
        and 0 < len(value) <= MAX_CLASS_NAME_CHARS
        and value.isprintable()
        and value.strip() == value
    ):
        return False
    try:
        float(value)
    except ValueError:
        return True
    return False


def is_outcome_name(value: object) -> bool:
    """A name an outcome may have (``label``, ``regime``, ``up``, ``click``): a lower-case
    letter, then up to 62 lower-case letters, digits or underscores."""
    return isinstance(value, str) and _OUTCOME_NAME.fullmatch(value) is not None


def checked_outcome(outcome: str) -> str:
    """``outcome`` when it is an outcome name (:func:`is_outcome_name`), else an
    :class:`InputError` saying what one is."""
    if not is_outcome_name(outcome):
        raise InputError(f"outcome {outcome!r} is not an outcome name ({OUTCOME_NAME_RULE})")
    return outcome


def checked_labels(labels: Iterable[tuple[str, Label]]) -> list[tuple[str, Label]]:
    """``(request_id, label)`` as a log stores them: :func:`checked_outcomes` of the
    :data:`DEFAULT_OUTCOME`."""
    rows = checked_outcomes((request_id, DEFAULT_OUTCOME, label) for request_id, label in labels)
    return [(request_id, value) for request_id, _outcome, value in rows]


def checked_outcomes(rows: Iterable[tuple[str, str, Label]]) -> list[tuple[str, str, Label]]:
    """``(request_id, outcome, value)`` as a log stores them; :class:`InputError`, before
    anything is stored, for a value without a request id, of an outcome whose name is not one
    (:func:`is_outcome_name`), or that is neither a finite number nor a class name
    (:func:`is_class_name`)."""
    checked: list[tuple[str, str, Label]] = []
    for request_id, outcome, value in rows:
        if not is_outcome_name(outcome):
            raise InputError(
                f"feedback ({request_id!r}, {outcome!r}, {value!r}): {outcome!r} is not an "
                f"outcome name ({OUTCOME_NAME_RULE})"
            )
        if isinstance(value, str):
            if not request_id or not is_class_name(value):
                raise InputError(
                    f"feedback ({request_id!r}, {value!r}) needs an id and a number or a class "
                    "name (text that is not a number)"
                )
            checked.append((request_id, outcome, value))
            continue
        number = float(value)
        if not request_id or not math.isfinite(number):
            raise InputError(f"feedback ({request_id!r}, {value!r}) needs an id and a number")
        checked.append((request_id, outcome, number))
    return checked


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
