"""Holdout metrics of a click-through model, as a recommender's owner reads them.

A model that predicts clicks well on average can still rank a slate badly, and a slate is
what a user sees. Besides the click classifier's own numbers (ROC AUC, calibration error, from
Sluice's :mod:`controller.quality.classification_metrics`), each held-out slate is ranked by
the model and judged by observed clicks only, as a team with real logs would:

- ``top_pick_ctr``: how often the item the model ranks first was clicked: the click-through
  rate if each request showed the model's single best item;
- ``random_pick_ctr``: how often any shown item was clicked (a random pick's CTR);
- ``ctr_lift``: their ratio, what ranking by the model is worth over not ranking;
- ``ndcg_at_3``: the normalised discounted cumulative gain of the model's top three, over the
  slates with at least one click.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from controller.quality.classification_metrics import (
    binary_classification_metrics,
)

__all__ = ["NDCG_K", "click_metrics", "ranking_metrics"]

NDCG_K = 3


def ranking_metrics(
    slates: npt.ArrayLike, clicks: npt.ArrayLike, scores: npt.ArrayLike
) -> dict[str, float]:
    """Top-pick CTR, random-pick CTR, their lift and NDCG@3 over the rows' slates."""
    frame = pd.DataFrame(
        {
            "slate": np.asarray(slates),
            "click": np.asarray(clicks, dtype=np.float64),
            "score": np.asarray(scores, dtype=np.float64),
        }
    )
    # Ties broken by row order, so equal scores rank as the slate showed them.
    frame["rank"] = frame.groupby("slate")["score"].rank(method="first", ascending=False)
    top_pick_ctr = float(frame.loc[frame["rank"] == 1, "click"].mean())
    random_pick_ctr = float(frame["click"].mean())
    discount = 1.0 / np.log2(frame["rank"] + 1.0)
    in_top = frame["rank"] <= NDCG_K
    gain = (frame["click"] * discount).where(in_top, 0.0).groupby(frame["slate"]).sum()
    clicks_per_slate = frame.groupby("slate")["click"].sum()
    ideal_discounts = np.cumsum(1.0 / np.log2(np.arange(NDCG_K) + 2.0))
    ideal = ideal_discounts[np.minimum(clicks_per_slate.to_numpy(), NDCG_K).astype(int) - 1]
    clicked = clicks_per_slate.to_numpy() > 0
    ndcg = float((gain.to_numpy()[clicked] / ideal[clicked]).mean()) if clicked.any() else 0.0
    return {
        "top_pick_ctr": top_pick_ctr,
        "random_pick_ctr": random_pick_ctr,
        "ctr_lift": top_pick_ctr / random_pick_ctr if random_pick_ctr else 0.0,
        "ndcg_at_3": ndcg,
    }


def click_metrics(
    slates: npt.ArrayLike, clicks: npt.ArrayLike, scores: npt.ArrayLike
) -> dict[str, float]:
    """ROC AUC and calibration error of the click probabilities, then the ranking metrics."""
    classification = binary_classification_metrics(clicks, scores)
    return {
        "roc_auc": classification["roc_auc"],
        "calibration_error": classification["calibration_error"],
        **ranking_metrics(slates, clicks, scores),
    }
