"""What a multiclass shadow judge reads: per request, both classifiers' decisions and
latencies, and the class it really was, once its label has arrived.

A classifier answers a decision among ``classes``, not one score: :func:`decision_of` reads it
from an answer to a one-row request, the market-regime classifier's
``{"predictions": [{"regime": "volatile", "p_calm": …, "p_volatile": …, …}]}`` among them. The
``decision_field`` of the row (``regime``) holds it; a row without that field is read as the
class of its largest ``p_<class>`` field (the first class on a tie). A row that is the class's
name, or a list of one probability per class in ``classes`` order (V1 or a V2 tensor of shape
``[1, K]``), works too. An answer that decides nothing among ``classes`` is no decision: the
champion's request is left out (its client got none either), the challenger's is a failure.

Labels are class names (``"volatile"``); a number matches the class named as it is written
(2.0 the class ``"2"``). A label that is neither is a one-line :class:`InputError` naming the
request, never a guess: the judge cannot score a request whose truth it does not know.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from controller.errors import InputError
from controller.predictions import Label, PredictionPair
from controller.shadow.samples import _v1_row, _v2_row

__all__ = ["ClassObservation", "ClassSamples", "class_index", "decision_of"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
#: Where a request has no label yet.
UNLABELLED = -1


class ClassObservation(NamedTuple):
    """One request both classifiers answered: their decisions and latencies, and its class if
    its label has arrived."""

    primary: str
    shadow: str
    primary_latency_ms: float
    shadow_latency_ms: float
    label: str | None = None


@dataclass(frozen=True)
class ClassSamples:
    """The multiclass judge's input: one entry per request both classifiers decided, classes
    as indices into ``classes``."""

    classes: tuple[str, ...]
    primary: IntArray
    shadow: IntArray
    primary_latency_ms: FloatArray
    shadow_latency_ms: FloatArray
    #: The true class's index, :data:`UNLABELLED` (-1) where no label has arrived.
    labels: IntArray
    #: Mirrored requests the challenger did not answer with a decision among the classes.
    shadow_failures: int = 0

    @classmethod
    def from_observations(
        cls,
        classes: Sequence[str],
        observations: Iterable[ClassObservation],
        *,
        shadow_failures: int = 0,
    ) -> ClassSamples:
        """Arrays from observations; :class:`InputError` for a class not in ``classes``, or a
        latency that is not a finite, non-negative number."""
        names = tuple(classes)
        index = {name: i for i, name in enumerate(names)}
        rows = list(observations)

        def of(name: str, what: str) -> int:
            if name not in index:
                raise InputError(f"{what} {name!r} is not one of the classes {list(names)}")
            return index[name]

        decided = np.array(
            [(of(o.primary, "decision"), of(o.shadow, "decision")) for o in rows], dtype=np.int64
        ).reshape(-1, 2)
        labels = np.array(
            [UNLABELLED if o.label is None else of(o.label, "label") for o in rows],
            dtype=np.int64,
        )
        latency = np.array([o[2:4] for o in rows], dtype=np.float64).reshape(-1, 2)
        if not np.all(np.isfinite(latency)) or np.any(latency < 0):
            raise InputError("latencies must be finite and not negative")
        if shadow_failures < 0:
            raise InputError(f"{shadow_failures} shadow failures is not a count")
        return cls(
            names,
            np.ascontiguousarray(decided[:, 0]),
            np.ascontiguousarray(decided[:, 1]),
            np.ascontiguousarray(latency[:, 0]),
            np.ascontiguousarray(latency[:, 1]),
            labels,
            shadow_failures,
        )

    @classmethod
    def from_pairs(
        cls,
        pairs: Iterable[PredictionPair],
        classes: Sequence[str],
        *,
        decision_field: str | None = None,
    ) -> ClassSamples:
        """From the prediction log: requests the champion answered with a decision (2xx), the
        challenger's answer a decision or, when it is not, a failure; a label that is not one
        of ``classes`` is an :class:`InputError` naming the request and the fix."""
        names = tuple(classes)
        observations, failures = [], 0
        for pair in pairs:
            primary = decision_of(pair.primary.output, names, decision_field)
            if not 200 <= pair.primary.status < 300 or primary is None:
                continue  # the client got no decision either: nothing to compare
            shadow = decision_of(pair.shadow.output, names, decision_field)
            if not 200 <= pair.shadow.status < 300 or shadow is None:
                failures += 1
                continue
            label = None if pair.label is None else class_index(pair.label, names)
            if pair.label is not None and label is None:
                raise InputError(
                    f"request {pair.request_id} has the label {pair.label!r}, not one of the "
                    f"classes {list(names)}: send its label again as one of them (the latest "
                    "label wins), or add the class to rollout.shadow.judge.classes"
                )
            observations.append(
                ClassObservation(
                    names[primary],
                    names[shadow],
                    pair.primary.latency_ms,
                    pair.shadow.latency_ms,
                    None if label is None else names[label],
                )
            )
        return cls.from_observations(names, observations, shadow_failures=failures)

    @property
    def size(self) -> int:
        """Requests both classifiers answered with a decision."""
        return int(self.primary.size)

    @property
    def labelled(self) -> npt.NDArray[np.bool_]:
        """Which requests have a label."""
        known: npt.NDArray[np.bool_] = self.labels != UNLABELLED
        return known


def class_index(label: Label, classes: Sequence[str]) -> int | None:
    """The index in ``classes`` of a label: a class name, or a number written as a class's
    name (2.0 is the class ``"2"``); None when it is neither."""
    if isinstance(label, str):
        name = label
    elif math.isfinite(label):
        name = f"{label:g}"
    else:
        return None
    return classes.index(name) if name in classes else None


def decision_of(
    output: object, classes: Sequence[str], decision_field: str | None = None
) -> int | None:
    """The index in ``classes`` of the class a V1 or V2 answer to a one-row request decided
    (see the module notes); None when it decided none of them."""
    if not isinstance(output, dict):
        return None
    row = _v1_row(output.get("predictions")) if "predictions" in output else None
    if "outputs" in output:
        row = _v2_row(output["outputs"])
        if isinstance(row, list) and len(row) == 1:
            row = row[0]  # a BYTES tensor of one class name
    if isinstance(row, dict):
        value = row.get(decision_field) if decision_field else None
        if value is not None:
            return _named(value, classes)
        row = [row.get(f"p_{name}") for name in classes]
    if isinstance(row, list):
        return _largest(row) if len(row) == len(classes) else None
    return _named(row, classes)


def _named(value: object, classes: Sequence[str]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return class_index(value if isinstance(value, str) else float(value), classes)


def _largest(values: list[object]) -> int | None:
    """The index of the largest of finite numbers (the first on a tie); None otherwise."""
    if not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
    ):
        return None
    return int(np.argmax(np.asarray(values, dtype=np.float64)))
