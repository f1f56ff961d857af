"""What the shadow judge reads: per request, both models' scores and latencies, and a label.

The prediction log keeps answers as the model servers wrote them (V1 ``predictions`` or V2
output tensors); the judge needs one number per answer. :func:`score_of` reads it from an
answer to a one-row request (real-time scoring sends one transaction per request), and
:meth:`ShadowSamples.from_pairs` turns the log's pairs into the judge's arrays: requests the
champion did not answer with a score are left out (their client got none either), and those
the challenger did not answer with one count as its failures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from controller.errors import InputError
from controller.predictions import PredictionPair

__all__ = ["ShadowObservation", "ShadowSamples", "score_of"]

FloatArray = npt.NDArray[np.float64]


class ShadowObservation(NamedTuple):
    """One request both models answered: their scores and latencies, and its label if known."""

    primary_score: float
    shadow_score: float
    primary_latency_ms: float
    shadow_latency_ms: float
    label: float | None = None


@dataclass(frozen=True)
class ShadowSamples:
    """The judge's input: one entry per request both models answered with a score."""

    primary: FloatArray
    shadow: FloatArray
    primary_latency_ms: FloatArray
    shadow_latency_ms: FloatArray
    #: 0 or 1, NaN where no label has arrived.
    labels: FloatArray
    #: Mirrored requests the challenger did not answer with a score.
    shadow_failures: int = 0

    @classmethod
    def from_observations(
        cls, observations: Iterable[ShadowObservation], *, shadow_failures: int = 0
    ) -> ShadowSamples:
        """Arrays from observations; :class:`InputError` for non-finite scores or latencies."""
        rows = [(*o[:4], math.nan if o.label is None else float(o.label)) for o in observations]
        table = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
        if not np.all(np.isfinite(table[:, :4])) or np.any(table[:, 2:4] < 0):
            raise InputError("scores and latencies must be finite (latencies not negative)")
        labels = table[:, 4]
        if not np.all(np.isnan(labels) | (labels == 0) | (labels == 1)):
            raise InputError("labels must be 0 or 1")
        if shadow_failures < 0:
            raise InputError(f"{shadow_failures} shadow failures is not a count")
        primary, shadow, primary_ms, shadow_ms = (
            np.ascontiguousarray(table[:, i]) for i in range(4)
        )
        return cls(primary, shadow, primary_ms, shadow_ms, labels, shadow_failures)

    @classmethod
    def from_pairs(cls, pairs: Iterable[PredictionPair]) -> ShadowSamples:
        """From the prediction log: requests the champion answered with a score (2xx), the
        challenger's answer a score or, when it is not, a failure; a class name as a label is
        an :class:`InputError` naming the request."""
        observations, failures = [], 0
        for pair in pairs:
            primary = score_of(pair.primary.output)
            if not 200 <= pair.primary.status < 300 or primary is None:
                continue  # the client got no score either: nothing to compare
            shadow = score_of(pair.shadow.output)
            if not 200 <= pair.shadow.status < 300 or shadow is None:
                failures += 1
                continue
            if isinstance(pair.label, str):
                raise InputError(
                    f"request {pair.request_id} has the label {pair.label!r}, a class name, but "
                    "the shadow judge is binary (labels 0 or 1): set "
                    "rollout.shadow.judge.classes to judge a classifier, or send its label "
                    "again as 0 or 1 (the latest label wins)"
                )
            observations.append(
                ShadowObservation(
                    primary, shadow, pair.primary.latency_ms, pair.shadow.latency_ms, pair.label
                )
            )
        return cls.from_observations(observations, shadow_failures=failures)

    @property
    def size(self) -> int:
        """Requests both models answered with a score."""
        return int(self.primary.size)


def score_of(output: object) -> float | None:
    """The score of a V1 or V2 answer to a one-row request: a number, a one-element row, the
    positive class of a two-class row, or an object with one field (a pyfunc's one-column
    DataFrame, ``{"p_up": 0.61}``); None for anything else (several rows, no JSON)."""
    if not isinstance(output, dict):
        return None
    value = _v1_row(output.get("predictions")) if "predictions" in output else None
    if isinstance(value, dict):
        value = next(iter(value.values())) if len(value) == 1 else None
    if "outputs" in output:
        value = _v2_row(output["outputs"])
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else value[1] if len(value) == 2 else None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _v1_row(predictions: object) -> object:
    """The only row of V1 ``predictions``."""
    if isinstance(predictions, list) and len(predictions) == 1:
        return predictions[0]
    return None


def _v2_row(outputs: object) -> object:
    """The flat data of the only V2 output tensor, if its shape says one row."""
    if not (isinstance(outputs, list) and len(outputs) == 1 and isinstance(outputs[0], dict)):
        return None
    shape, data = outputs[0].get("shape"), outputs[0].get("data")
    if isinstance(data, list) and isinstance(shape, list) and shape[:1] == [1]:
        return data
    return None
