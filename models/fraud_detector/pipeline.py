"""The fraud detector's scikit-learn pipeline: how it is built, fitted and scored.

Kept apart from the training entry point so that the champion and the candidate are scored by
the same function on the same rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from models.fraud_detector.data import CATEGORICAL_FEATURES, FEATURES, LABEL, NUMERIC_FEATURES
from models.holdout_digest import frame_digest
from models.openmp_threads import one_openmp_thread

__all__ = ["HYPERPARAMETERS", "build_pipeline", "fit", "frame_digest", "score", "split_holdout"]

HYPERPARAMETERS: dict[str, Any] = {
    "learning_rate": 0.08,
    "max_iter": 150,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
}
HOLDOUT_SHARE = 0.25


def build_pipeline(seed: int) -> Pipeline:
    """One-hot categories (unknown ones ignored: new merchant categories appear) + boosted trees."""
    encode = ColumnTransformer(
        [
            ("numeric", "passthrough", NUMERIC_FEATURES),
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                CATEGORICAL_FEATURES,
            ),
        ]
    )
    trees = HistGradientBoostingClassifier(random_state=seed, **HYPERPARAMETERS)
    return Pipeline([("encode", encode), ("classify", trees)])


def split_holdout(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified train/holdout split; the same frame and seed give the same rows."""
    train, holdout = train_test_split(
        frame, test_size=HOLDOUT_SHARE, random_state=seed, stratify=frame[LABEL]
    )
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def fit(
    train: pd.DataFrame, seed: int, *, fraction: float = 1.0, shuffle_labels: bool = False
) -> Pipeline:
    """Fit on ``train`` (optionally a stratified fraction, or with shuffled labels: both make a
    deliberately weak model for demos and tests)."""
    if fraction < 1.0:
        train, _ = train_test_split(
            train, train_size=fraction, random_state=seed, stratify=train[LABEL]
        )
    labels = train[LABEL].to_numpy()
    if shuffle_labels:
        labels = np.random.default_rng(seed).permutation(labels)
    with one_openmp_thread():
        return build_pipeline(seed).fit(train[FEATURES], labels)


def score(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """Fraud probability per row."""
    with one_openmp_thread():
        return np.asarray(model.predict_proba(frame[FEATURES])[:, 1], dtype=np.float64)
