"""Whether one logged answer was right about one named outcome, and the tally per member revision.

Late ground truth arrives as named outcomes of a request (``sluice feedback FILE --outcome
regime --outcome up``): a class name (``regime`` = ``"volatile"``) or a number (``up`` = 0 or
1). Which field of an answer predicts which outcome is a convention, so that no configuration
is needed:

- a class-name outcome is compared with the answer row's field **of the same name** (the
  classifier's ``{"regime": "volatile", ...}`` is right about ``regime`` = ``"volatile"``);
- a 0/1 outcome is compared with the row's **``p_<outcome>``** field at 0.5 (``p_up`` >= 0.5
  predicts ``up`` = 1, below it 0);
- anything else is not scored (None): an answer without that field, of several rows or none,
  not JSON, a field of the wrong type (a class-name outcome against a number, a probability
  that is not a finite number), an outcome value that is neither a class name nor 0/1.

An answer is a V1 body with one row (``{"predictions": [{...}]}``) or a V2 one with one row
per tensor (``{"outputs": [{"name": "p_up", "data": [0.61], ...}]}``: the tensor named the
field, of one value).

:func:`tally` counts, over logged answers joined with their outcomes, how many were right and
wrong per (model, revision, outcome, segment), where the segment is the value of another
outcome of the same request (a market day's ``regime``: how each specialist does on the days
that really were its regime); the task metric is ``right / (right + wrong)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.predictions import Label

__all__ = [
    "OutcomeAnswer",
    "OutcomeKey",
    "Tally",
    "answer_field",
    "is_right",
    "is_right_text",
    "number_field",
    "tally",
]

#: A 0/1 outcome's probability at or above this predicts 1.
THRESHOLD = 0.5
_MISSING = object()


@dataclass(frozen=True)
class OutcomeAnswer:
    """One primary answer of ``model`` (its ``revision``) joined with one outcome of its request,
    and ``segment``, the value of the segmenting outcome of that request ("" when none)."""

    model: str
    revision: str
    #: The answer as the log keeps it: compact JSON text, or None when it kept none.
    output: str | None
    outcome: str
    value: Label
    segment: str = ""


@dataclass(frozen=True, order=True)
class OutcomeKey:
    """One series of the tally."""

    model: str
    revision: str
    outcome: str
    segment: str


@dataclass(frozen=True)
class Tally:
    """Answers right and wrong about an outcome."""

    right: int = 0
    wrong: int = 0

    @property
    def share_right(self) -> float | None:
        """The task metric, ``right / (right + wrong)``; None when nothing was scored."""
        scored = self.right + self.wrong
        return self.right / scored if scored else None


def answer_field(output: object, name: str) -> object:
    """The value of field ``name`` in a one-row V1 or V2 answer; ``None`` when there is none
    (no such field, not one row, not an answer)."""
    if not isinstance(output, Mapping):
        return None
    if "predictions" in output:
        rows = output["predictions"]
        if not isinstance(rows, list) or len(rows) != 1 or not isinstance(rows[0], Mapping):
            return None
        return rows[0].get(name)
    outputs = output.get("outputs")
    if not isinstance(outputs, list):
        return None
    named = [o for o in outputs if isinstance(o, Mapping) and o.get("name") == name]
    if len(named) != 1:
        return None
    data = named[0].get("data")
    while isinstance(data, list) and len(data) == 1:  # [x] or [[x]]: one row, one value
        data = data[0]
    return None if isinstance(data, list | Mapping) else data


def number_field(output: object, name: str) -> float | None:
    """The finite number in field ``name`` of a one-row V1 or V2 answer (:func:`answer_field`);
    None when it is missing or not a finite number (a bool is not one)."""
    value = answer_field(output, name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def is_right(output: object, outcome: str, value: Label) -> bool | None:
    """Whether the parsed answer ``output`` was right about ``outcome`` = ``value`` by the
    module's convention; None when it is not scored."""
    if isinstance(value, str):
        predicted = answer_field(output, outcome)
        return predicted == value if isinstance(predicted, str) else None
    if isinstance(value, bool) or value not in (0, 1):  # NaN and 0.5 are neither
        return None
    probability = number_field(output, f"p_{outcome}")
    if probability is None:
        return None
    return (probability >= THRESHOLD) == (value == 1)


def is_right_text(output: str | None, outcome: str, value: Label) -> bool | None:
    """:func:`is_right` of an answer as the log keeps it (JSON text; None or not JSON: None)."""
    parsed = _parsed(output)
    return None if parsed is _MISSING else is_right(parsed, outcome, value)


def tally(answers: Iterable[OutcomeAnswer]) -> dict[OutcomeKey, Tally]:
    """Right and wrong answers per (model, revision, outcome, segment); answers not scored
    count nowhere, and a key appears only once one of its answers is scored."""
    counts: dict[OutcomeKey, list[int]] = {}
    last_text: str | None = None
    last_parsed: Any = _MISSING
    for answer in answers:
        # The rows of one answer come together (one per outcome): parse its text once.
        if answer.output != last_text or last_parsed is _MISSING:
            last_text, last_parsed = answer.output, _parsed(answer.output)
        if last_parsed is _MISSING:
            continue
        right = is_right(last_parsed, answer.outcome, answer.value)
        if right is None:
            continue
        key = OutcomeKey(answer.model, answer.revision, answer.outcome, answer.segment)
        pair = counts.setdefault(key, [0, 0])
        pair[0 if right else 1] += 1
    return {key: Tally(right, wrong) for key, (right, wrong) in sorted(counts.items())}


def _parsed(output: str | None) -> Any:
    """The JSON value of ``output``; ``_MISSING`` when there is none or it is not JSON."""
    if output is None:
        return _MISSING
    try:
        return json.loads(output)
    except (ValueError, RecursionError):
        return _MISSING
