"""Holdout metrics for binary classifiers, the numbers a quality gate and a model card compare.

Fraud-style problems are rare-positive, so ROC AUC alone flatters a model: PR AUC and recall at
a fixed low false-positive rate say what an operator gets at the alert volume they can staff,
and the calibration error says whether the scores can be read as probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from controller.errors import InputError

__all__ = [
    "binary_classification_metrics",
    "expected_calibration_error",
    "recall_at_fpr",
]

FloatArray = npt.NDArray[np.float64]


def _as_arrays(
    labels: Sequence[int] | npt.ArrayLike, scores: Sequence[float] | npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], FloatArray]:
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise InputError(
            f"labels and scores must be 1-D of equal length, got {y.shape} and {s.shape}"
        )
    if not np.isin(y, (0, 1)).all():
        raise InputError("labels must be 0 or 1")
    if y.min(initial=1) == y.max(initial=0):
        raise InputError("holdout has a single class: both labels are needed to compute metrics")
    return y, s


def recall_at_fpr(
    labels: npt.ArrayLike, scores: npt.ArrayLike, max_false_positive_rate: float = 0.01
) -> float:
    """Highest recall of any threshold whose false-positive rate is at most the bound."""
    y, s = _as_arrays(labels, scores)
    from sklearn.metrics import roc_curve  # on use: the model card imports this module

    fpr, tpr, _ = roc_curve(y, s)
    allowed = fpr <= max_false_positive_rate
    return float(tpr[allowed].max()) if allowed.any() else 0.0


def expected_calibration_error(
    labels: npt.ArrayLike, scores: npt.ArrayLike, bins: int = 10
) -> float:
    """Mean absolute gap between predicted and observed positive rate over equal-width score bins,
    weighted by the share of rows in each bin."""
    y, s = _as_arrays(labels, scores)
    index = np.clip((s * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    predicted = np.bincount(index, weights=s, minlength=bins)
    observed = np.bincount(index, weights=y.astype(np.float64), minlength=bins)
    filled = counts > 0
    gaps = np.abs(predicted[filled] - observed[filled])
    return float(gaps.sum() / counts.sum())


def binary_classification_metrics(
    labels: npt.ArrayLike, scores: npt.ArrayLike, max_false_positive_rate: float = 0.01
) -> dict[str, float]:
    """ROC AUC, PR AUC (average precision), recall at the FPR bound and calibration error."""
    y, s = _as_arrays(labels, scores)
    from sklearn.metrics import average_precision_score, roc_auc_score

    return {
        "roc_auc": float(roc_auc_score(y, s)),
        "pr_auc": float(average_precision_score(y, s)),
        "recall_at_1pct_fpr": recall_at_fpr(y, s, max_false_positive_rate),
        "calibration_error": expected_calibration_error(y, s),
    }
