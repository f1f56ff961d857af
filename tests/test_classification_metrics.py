"""Holdout metrics for binary classifiers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from controller.errors import InputError
from controller.quality.classification_metrics import (
    binary_classification_metrics,
    expected_calibration_error,
    recall_at_fpr,
)


def test_recall_at_fpr_on_a_hand_computed_case() -> None:
    """With 100 negatives, one false positive is the 1% budget: recall is what fits under it."""
    labels = np.array([1, 1, 1, 1] + [0] * 100)
    # Two positives above every negative, one tied with the top negative, one below.
    scores = np.array([0.99, 0.98, 0.9, 0.1] + [0.9] + [0.5] * 99)
    assert recall_at_fpr(labels, scores, 0.01) == pytest.approx(0.75)
    assert recall_at_fpr(labels, scores, 0.0) == pytest.approx(0.5)


def test_recall_at_fpr_takes_labels_first_as_scikit_learn() -> None:
    """Labels, then scores (sklearn's y_true, y_score): scores in the labels' place are an input
    error, not a number, and the bound defaults to a 1% false-positive rate."""
    labels = np.array([1, 1, 1, 1] + [0] * 100)
    scores = np.array([0.99, 0.98, 0.9, 0.1] + [0.9] + [0.5] * 99)
    with pytest.raises(InputError):
        recall_at_fpr(scores, labels)
    assert recall_at_fpr(labels, scores) == recall_at_fpr(labels, scores, 0.01)


def test_calibration_error_is_zero_for_calibrated_bins() -> None:
    """Scores equal to the observed positive rate of their bin have no calibration error."""
    labels = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    scores = np.array([0.25] * 4 + [0.75] * 4)
    assert expected_calibration_error(labels, scores) == pytest.approx(0.0)


def test_calibration_error_on_a_hand_computed_case() -> None:
    """Always predicting 0.9 for a 50% rate is off by 0.4."""
    assert expected_calibration_error([1, 0, 1, 0], [0.9] * 4) == pytest.approx(0.4)


def test_metrics_agree_with_scikit_learn() -> None:
    """ROC AUC and PR AUC are scikit-learn's."""
    rng = np.random.default_rng(1)
    labels = rng.random(500) < 0.1
    scores = np.clip(labels * 0.3 + rng.random(500) * 0.7, 0, 1)
    metrics = binary_classification_metrics(labels.astype(int), scores)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert metrics["pr_auc"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_single_class_holdout_is_an_input_error() -> None:
    """A holdout without positives cannot be scored, and says so."""
    with pytest.raises(InputError, match="single class"):
        binary_classification_metrics([0, 0, 0], [0.1, 0.2, 0.3])
