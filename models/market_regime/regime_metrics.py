"""Holdout metrics per regime: over every row (``all``) and over each regime's rows.

A specialist is meant to be poor outside its regime and a blend is there for the rare black
swans, so one number over the whole holdout says little: a model much worse in volatile
markets can even gain overall when it gains in the (three times as common) calm ones. Each
metric is therefore computed per scope, the regime the row was really in, and flattened as
``SCOPE/METRIC`` (``volatile/directional_accuracy``), the names the quality gate and MLflow
use (MLflow's UI groups metrics by the part before the slash).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd

from models.market_regime.market import REGIMES

__all__ = [
    "ALL",
    "LOWER_IS_BETTER",
    "SCOPES",
    "classifier_metrics",
    "direction_metrics",
    "flatten",
    "scope_rows",
]

#: The scope of every holdout row.
ALL = "all"
SCOPES = (ALL, *REGIMES)
#: Metrics for which a smaller value is better (everything else: larger is better).
LOWER_IS_BETTER = frozenset({"brier"})

PerScope = dict[str, dict[str, float]]


def scope_rows(regimes: pd.Series | npt.ArrayLike) -> dict[str, int]:
    """Holdout rows per scope."""
    labels = np.asarray(regimes, dtype=object)
    return {ALL: len(labels), **{r: int((labels == r).sum()) for r in REGIMES}}


def _masks(regimes: npt.ArrayLike) -> dict[str, npt.NDArray[np.bool_]]:
    labels = np.asarray(regimes, dtype=object)
    masks = {ALL: np.ones(len(labels), dtype=bool)}
    masks.update({r: labels == r for r in REGIMES})
    return {scope: mask for scope, mask in masks.items() if mask.any()}


def direction_metrics(
    p_up: npt.ArrayLike, next_up: npt.ArrayLike, regimes: npt.ArrayLike
) -> PerScope:
    """Per scope: the share of rows whose predicted direction (``p_up > 0.5``) was the next
    period's (``directional_accuracy``) and the Brier score of ``p_up`` (``brier``)."""
    p = np.asarray(p_up, dtype=np.float64)
    y = np.asarray(next_up, dtype=np.int64)
    hits = (p > 0.5) == (y == 1)
    squared = (p - y) ** 2
    return {
        scope: {
            "directional_accuracy": float(hits[mask].mean()),
            "brier": float(squared[mask].mean()),
        }
        for scope, mask in _masks(regimes).items()
    }


def classifier_metrics(predicted: npt.ArrayLike, regimes: npt.ArrayLike) -> PerScope:
    """Per regime: ``recall`` (its rows recognised), ``precision`` (its calls right) and
    ``f1``; over all rows: ``accuracy`` and ``macro_f1`` (the regimes' mean F1, so the rare
    black swan counts as much as the calm)."""
    guess = np.asarray(predicted, dtype=object)
    truth = np.asarray(regimes, dtype=object)
    metrics: PerScope = {}
    for regime in REGIMES:
        if not (truth == regime).any():
            continue
        hits = float(((guess == regime) & (truth == regime)).sum())
        called = float((guess == regime).sum())
        recall = hits / float((truth == regime).sum())
        precision = hits / called if called else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        metrics[regime] = {"recall": recall, "precision": precision, "f1": f1}
    return {
        ALL: {
            "accuracy": float((guess == truth).mean()),
            "macro_f1": float(np.mean([m["f1"] for m in metrics.values()])),
        },
        **metrics,
    }


def flatten(metrics: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``{scope: {metric: value}}`` as ``{"scope/metric": value}``."""
    return {
        f"{scope}/{name}": value
        for scope, values in metrics.items()
        for name, value in values.items()
    }
