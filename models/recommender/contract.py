"""What valid training data for the recommender looks like.

One row per item shown: the slate it was shown in (the holdout keeps slates whole), the
user, the item, the context and the click. Ranges are generous enough for real traffic and
the holiday shift, tight enough to catch the usual breakages: prices in cents, a discount as
a fraction, a popularity score rescaled, an hour in another time format, a click feed that
stopped. Revenue is an outcome for later KPIs, not a training input, so it is not required.
"""

from __future__ import annotations

from controller.quality.data_contract import ColumnSpec, DataContract
from models.recommender.sessions import CLICK, SLATE

__all__ = ["CONTRACT"]

CONTRACT = DataContract(
    columns={
        SLATE: ColumnSpec(kind="integer", minimum=0),
        "user_past_clicks": ColumnSpec(kind="integer", minimum=0, maximum=100_000),
        "item_price": ColumnSpec(kind="numeric", minimum=0.0, maximum=100_000.0),
        "item_discount_pct": ColumnSpec(kind="integer", minimum=0, maximum=100),
        "item_popularity": ColumnSpec(kind="numeric", minimum=0.0, maximum=1.0),
        "hour": ColumnSpec(kind="integer", minimum=0, maximum=23),
        "days_to_holiday": ColumnSpec(kind="integer", minimum=0, maximum=366),
        # New segments, categories and devices appear; the model must accept them, not the
        # contract reject them.
        "user_segment": ColumnSpec(kind="categorical", max_null_rate=0.01),
        "item_category": ColumnSpec(kind="categorical", max_null_rate=0.01),
        "device": ColumnSpec(kind="categorical", max_null_rate=0.01),
        CLICK: ColumnSpec(kind="binary"),
    },
    label=CLICK,
    min_label_rate=0.01,
    max_label_rate=0.6,
    min_rows=3_000,
)
