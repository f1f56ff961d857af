"""Delayed ground truth for the example: which sent transactions are confirmed, and when.

A card issuer learns whether a transaction was fraud days later (a chargeback, an analyst's
review), so a shadow evaluation can only score champion and challenger on the share of
requests confirmed so far. This module plays the case system for the demo: given the request
ids the router logged for the rows that were sent (``generate_transactions`` frames, with their
true ``is_fraud``), it draws each row's confirmation delay and keeps the labels confirmed
within ``after_days``, as the CSV ``request_id,label,confirmed_at`` that ``sluice feedback``
reads. Deterministic from ``seed``; the clock is an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from models.fraud_detector.data import LABEL

__all__ = ["COLUMNS", "delayed_labels", "write_delayed_labels"]

#: The columns of the file; ``sluice feedback FILE`` stores the label alone (``confirmed_at``
#: is when, not what).
COLUMNS = ["request_id", "label", "confirmed_at"]


def delayed_labels(
    request_ids: Sequence[str],
    sent: pd.DataFrame,
    *,
    sent_at: datetime,
    after_days: float,
    mean_delay_days: float = 3.0,
    seed: int = 7,
) -> pd.DataFrame:
    """The labels of ``sent`` (row i answered as ``request_ids[i]``) confirmed by
    ``sent_at + after_days``, in order of confirmation; delays are exponential with mean
    ``mean_delay_days``."""
    if len(request_ids) != len(sent):
        raise ValueError(f"{len(request_ids)} request ids for {len(sent)} sent rows")
    if LABEL not in sent.columns:
        raise ValueError(f"the sent rows have no {LABEL!r} column")
    if after_days < 0 or mean_delay_days <= 0:
        raise ValueError("after_days must be >= 0 and mean_delay_days > 0")
    delays = np.random.default_rng(seed).exponential(mean_delay_days, size=len(sent))
    frame = pd.DataFrame(
        {
            "request_id": list(request_ids),
            "label": sent[LABEL].to_numpy(dtype=np.int64),
            "delay": delays,
        }
    )
    confirmed = frame[frame["delay"] <= after_days].sort_values("delay", kind="stable")
    confirmed_at = [
        (sent_at + timedelta(days=float(delay))).isoformat(timespec="seconds")
        for delay in confirmed["delay"]
    ]
    return confirmed.assign(confirmed_at=confirmed_at)[COLUMNS].reset_index(drop=True)


def write_delayed_labels(
    path: Path,
    request_ids: Sequence[str],
    sent: pd.DataFrame,
    *,
    sent_at: datetime,
    after_days: float,
    mean_delay_days: float = 3.0,
    seed: int = 7,
) -> int:
    """Write :func:`delayed_labels` to ``path`` as CSV; returns how many labels it holds."""
    labels = delayed_labels(
        request_ids,
        sent,
        sent_at=sent_at,
        after_days=after_days,
        mean_delay_days=mean_delay_days,
        seed=seed,
    )
    labels.to_csv(path, index=False)
    return len(labels)
