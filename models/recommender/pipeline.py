"""The recommender's scikit-learn pipelines: how each variant is built, fitted and scored.

Two variants share one request format. ``full`` is the click-through model: one-hot
categories and gradient-boosted trees over the user, the item and the context, so it learns
which segment clicks what, when. ``popularity`` is deliberately worse: a logistic regression
over the item's own columns, blind to the user and the context, so it ranks every slate the
same way for everyone. It is quicker to fit and to answer and is a valid model (same
signature, same answer), which is what the demo's "faster but recommends worse" challenger
needs.

Kept apart from the training entry point so that a candidate and the champion are scored by
the same function (:func:`models.recommender.served_model.click_frame`) on the same rows.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from models.openmp_threads import one_openmp_thread
from models.recommender.served_model import P_CLICK, click_frame
from models.recommender.sessions import (
    CATEGORICAL_FEATURES,
    CLICK,
    FEATURES,
    ITEM_FEATURES,
    NUMERIC_FEATURES,
    SLATE,
)

__all__ = [
    "HOLDOUT_SHARE",
    "HYPERPARAMETERS",
    "VARIANTS",
    "Variant",
    "build_pipeline",
    "fit",
    "score",
    "score_served",
    "split_holdout",
]

Variant = Literal["full", "popularity"]
VARIANTS: tuple[Variant, ...] = ("full", "popularity")
HOLDOUT_SHARE = 0.25
HYPERPARAMETERS: dict[str, Any] = {
    "learning_rate": 0.08,
    "max_iter": 150,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
}


def _one_hot() -> OneHotEncoder:
    # A category the model never saw answers as the baseline, not as an error.
    return OneHotEncoder(handle_unknown="ignore", sparse_output=False)


def build_pipeline(variant: Variant, seed: int) -> Pipeline:
    """The unfitted pipeline of ``variant``."""
    if variant == "full":
        encode = ColumnTransformer(
            [
                ("numeric", "passthrough", NUMERIC_FEATURES),
                ("categorical", _one_hot(), CATEGORICAL_FEATURES),
            ]
        )
        trees = HistGradientBoostingClassifier(random_state=seed, **HYPERPARAMETERS)
        return Pipeline([("encode", encode), ("classify", trees)])
    numeric = [name for name in ITEM_FEATURES if name in NUMERIC_FEATURES]
    categorical = [name for name in ITEM_FEATURES if name in CATEGORICAL_FEATURES]
    encode = ColumnTransformer(
        [("numeric", StandardScaler(), numeric), ("categorical", _one_hot(), categorical)]
    )
    return Pipeline([("encode", encode), ("classify", LogisticRegression(max_iter=1000))])


def split_holdout(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Whole slates to the holdout (a quarter of them, chosen by ``seed``), so the ranking of
    every held-out slate can be judged; the same frame and seed give the same rows."""
    slates = frame[SLATE].unique()
    rng = np.random.default_rng(seed)
    held = rng.choice(slates, size=max(1, round(len(slates) * HOLDOUT_SHARE)), replace=False)
    in_holdout = frame[SLATE].isin(held).to_numpy()
    return (
        frame[~in_holdout].reset_index(drop=True),
        frame[in_holdout].reset_index(drop=True),
    )


def fit(variant: Variant, train: pd.DataFrame, seed: int) -> Pipeline:
    """Fit ``variant`` on the training rows."""
    pipeline = build_pipeline(variant, seed)
    columns = FEATURES if variant == "full" else ITEM_FEATURES
    with one_openmp_thread():
        return pipeline.fit(train[columns], train[CLICK].to_numpy())


def score(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """``p_click`` per row, as the served model answers it."""
    with one_openmp_thread():
        answers = click_frame(model, frame[FEATURES])
    return np.asarray(answers[P_CLICK], dtype=np.float64)


def score_served(served: Any, frame: pd.DataFrame) -> np.ndarray:
    """``p_click`` per row from a version loaded as it is served (an MLflow pyfunc)."""
    with one_openmp_thread():
        answers = pd.DataFrame(served.predict(frame[FEATURES]))
    return np.asarray(answers[P_CLICK], dtype=np.float64)
