"""What valid training data for the fraud detector looks like.

Ranges are generous enough for real traffic and the generator's weekly shift, tight enough to
catch the usual breakages: a unit change (cents for dollars), a sign flip, an upstream join
that nulls a column, a label feed that stopped.
"""

from __future__ import annotations

from controller.quality.data_contract import ColumnSpec, DataContract
from models.fraud_detector.data import LABEL

__all__ = ["CONTRACT"]

CONTRACT = DataContract(
    columns={
        "amount": ColumnSpec(kind="numeric", minimum=0.0, maximum=1_000_000.0),
        "hour": ColumnSpec(kind="integer", minimum=0, maximum=23),
        "card_age_days": ColumnSpec(kind="integer", minimum=0, maximum=36_500),
        "tx_velocity_24h": ColumnSpec(kind="integer", minimum=0, maximum=10_000),
        # New merchant categories appear over time; the model must accept them, not the contract
        # reject them.
        "merchant_category": ColumnSpec(kind="categorical", max_null_rate=0.01),
        "country": ColumnSpec(kind="categorical", max_null_rate=0.01),
        LABEL: ColumnSpec(kind="binary"),
    },
    label=LABEL,
    min_label_rate=0.001,
    max_label_rate=0.5,
    min_rows=500,
)
