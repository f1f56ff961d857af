"""Synthetic card transactions whose distribution shifts week by week.

Real fraud data cannot ship with an example, and a static data set cannot show drift. This
generator is deterministic from ``(week, seed)`` and moves the way card traffic does: amounts
inflate and spread, activity creeps later into the night, fraudsters move to new merchant
categories (``crypto`` from week 2, ``gift_cards`` grows), so a model trained on an old week
loses recall on a new one and a retrained model wins it back.

The generator plays the data a team's warehouse would hold: weeks ``0`` to :data:`NEWEST_WEEK`
have "happened", and :data:`NEWEST_WEEK` is the current one, the week live traffic comes from in
the README and the demo. "The newest data", which a retraining after drift trains on, is that
week (``train --since TIME`` or ``--week newest``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "CATEGORICAL_FEATURES",
    "COUNTRIES",
    "FEATURES",
    "LABEL",
    "NEWEST_WEEK",
    "NUMERIC_FEATURES",
    "generate_transactions",
    "main",
    "merchant_categories",
    "write_week",
]

#: The current week of the example's data: the newest a training run can reach.
NEWEST_WEEK = 6

NUMERIC_FEATURES = ["amount", "hour", "card_age_days", "tx_velocity_24h"]
CATEGORICAL_FEATURES = ["merchant_category", "country"]
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES
LABEL = "is_fraud"

_BASE_CATEGORIES = ["grocery", "fuel", "restaurants", "travel", "electronics", "gift_cards"]
COUNTRIES = ["US", "GB", "DE", "FR", "NG", "BR", "IN"]
_COUNTRY_WEIGHTS = np.array([0.55, 0.12, 0.1, 0.08, 0.05, 0.05, 0.05])


def merchant_categories(week: int) -> list[str]:
    """Categories that exist in ``week``: ``crypto`` appears in week 2, ``bnpl`` in week 4."""
    categories = list(_BASE_CATEGORIES)
    if week >= 2:
        categories.append("crypto")
    if week >= 4:
        categories.append("bnpl")
    return categories


def _category_weights(categories: list[str], week: int) -> np.ndarray:
    weights = np.array([0.3, 0.18, 0.2, 0.08, 0.1, 0.04] + [0.0] * (len(categories) - 6))
    if "crypto" in categories:
        weights[categories.index("crypto")] = 0.03 + 0.01 * min(week - 2, 4)
    if "bnpl" in categories:
        weights[categories.index("bnpl")] = 0.05
    weights[categories.index("gift_cards")] += 0.005 * week
    return weights / weights.sum()


def _category_risk(categories: list[str], week: int) -> np.ndarray:
    """Log-odds added by each category; fraud moves to the newest categories as weeks pass."""
    risk = {
        "grocery": -0.6,
        "fuel": -0.3,
        "restaurants": -0.5,
        "travel": 0.4,
        "electronics": 0.9 - 0.05 * week,
        "gift_cards": 1.2 + 0.1 * week,
        "crypto": 2.2,
        "bnpl": 1.0,
    }
    return np.array([risk[name] for name in categories])


def generate_transactions(week: int = 0, rows: int = 20_000, seed: int = 7) -> pd.DataFrame:
    """Transactions of one week, with the fraud label; the same arguments give the same frame."""
    if week < 0 or rows < 1:
        raise ValueError("week must be >= 0 and rows >= 1")
    rng = np.random.default_rng([seed, week])
    categories = merchant_categories(week)
    category_index = rng.choice(len(categories), size=rows, p=_category_weights(categories, week))
    country_index = rng.choice(len(COUNTRIES), size=rows, p=_COUNTRY_WEIGHTS)

    # Amounts inflate ~4% a week and spread wider; evenings shift later by ~20 min a week.
    amount = rng.lognormal(mean=3.6 + 0.04 * week, sigma=0.9 + 0.03 * week, size=rows).round(2)
    hour = ((rng.normal(loc=14.0 + 0.33 * week, scale=4.5, size=rows)) % 24).astype(np.int64)
    card_age_days = rng.gamma(shape=2.0, scale=300.0, size=rows).astype(np.int64)
    tx_velocity_24h = rng.poisson(lam=2.0 + 0.1 * week, size=rows)

    night = (hour <= 4) | (hour >= 23)
    foreign = country_index >= 4
    logit = (
        -5.0
        + 0.9 * np.log1p(amount / 100.0)
        + 1.1 * night
        + 0.8 * foreign
        + 1.3 * (card_age_days < 30)
        + 0.35 * np.minimum(tx_velocity_24h, 10)
        + _category_risk(categories, week)[category_index]
    )
    # Fraud rings burst velocity and buy high-value items on new cards: make them visible.
    fraud = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))
    tx_velocity_24h = np.where(
        fraud, tx_velocity_24h + rng.poisson(2.0, size=rows), tx_velocity_24h
    )

    return pd.DataFrame(
        {
            "amount": amount,
            "hour": hour,
            "card_age_days": card_age_days,
            "tx_velocity_24h": tx_velocity_24h.astype(np.int64),
            "merchant_category": np.asarray(categories, dtype=object)[category_index],
            "country": np.asarray(COUNTRIES, dtype=object)[country_index],
            LABEL: fraud.astype(np.int64),
        }
    )


#: What ``--format`` writes: a table, or a request body for the router.
FORMATS = ("csv", "parquet", "v1", "v2")


def _request_ids(week: int, seed: int, rows: int) -> list[str]:
    return [f"w{week}-s{seed}-{i:06d}" for i in range(rows)]


def _v2_body(features: pd.DataFrame) -> dict[str, object]:
    """An Open Inference Protocol (V2) request: one input per column, as the model's signature
    names and types them."""
    inputs = []
    for column in FEATURES:
        values = features[column]
        numeric = pd.api.types.is_integer_dtype(values)
        datatype = "INT64" if numeric else "FP64" if column in NUMERIC_FEATURES else "BYTES"
        inputs.append(
            {"name": column, "datatype": datatype, "shape": [len(values)], "data": values.tolist()}
        )
    return {"inputs": inputs}


def write_week(
    out: Path, *, week: int, rows: int, seed: int, fmt: str, labels: Path | None = None
) -> None:
    """Write ``rows`` transactions of ``week`` to ``out``.

    ``csv``/``parquet``: a table with a ``request_id`` per row, the features and the label
    (``sluice drift --current`` ignores the extra columns). ``v1``/``v2``: the features as a
    request body for the router (``curl -d @FILE``). ``labels``: ``request_id,label`` of the
    same rows, for ``sluice feedback`` once they were sent with ``X-Request-Id: <request_id>``.
    """
    frame = generate_transactions(week=week, rows=rows, seed=seed)
    frame.insert(0, "request_id", _request_ids(week, seed, rows))
    features = frame[FEATURES]
    if fmt == "csv":
        frame.to_csv(out, index=False)
    elif fmt == "parquet":
        frame.to_parquet(out, index=False)
    elif fmt == "v1":
        instances = json.loads(features.to_json(orient="records"))
        out.write_text(json.dumps({"instances": instances}) + "\n", encoding="utf-8")
    else:
        out.write_text(json.dumps(_v2_body(features)) + "\n", encoding="utf-8")
    if labels is not None:
        frame[["request_id", LABEL]].rename(columns={LABEL: "label"}).to_csv(labels, index=False)


def _format(out: Path, given: str | None) -> str:
    if given is not None:
        return given
    return {".parquet": "parquet", ".json": "v1"}.get(out.suffix.lower(), "csv")


def main(argv: list[str] | None = None) -> int:
    """``python -m models.fraud_detector.data --week N --rows R --out FILE``."""
    parser = argparse.ArgumentParser(
        prog="python -m models.fraud_detector.data",
        description="Write a week of synthetic transactions: a table for `sluice drift`, a "
        "request body for the router, and labels for `sluice feedback`.",
    )
    parser.add_argument("--week", type=int, default=0, metavar="N", help="week (default 0)")
    parser.add_argument("--rows", type=int, default=1000, metavar="R", help="rows (default 1000)")
    parser.add_argument(
        "--seed", type=int, default=11, help="seed (default 11; training uses 7, so these rows "
        "are new to the model)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="where to write")
    parser.add_argument(
        "--format", choices=FORMATS, dest="fmt",
        help="csv or parquet (a table), v1 or v2 (a request body); default from FILE's suffix: "
        ".parquet, .json (v1), else csv",
    )  # fmt: skip
    parser.add_argument(
        "--labels", type=Path, metavar="FILE",
        help="also write request_id,label of the same rows (for `sluice feedback`)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.week < 0 or args.rows < 1:
        parser.error("--week must be >= 0 and --rows >= 1")
    try:
        write_week(
            args.out, week=args.week, rows=args.rows, seed=args.seed,
            fmt=_format(args.out, args.fmt), labels=args.labels,
        )  # fmt: skip
    except OSError as exc:
        print(
            f"cannot write {exc.filename}: {exc.strerror}; give a writable --out", file=sys.stderr
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
