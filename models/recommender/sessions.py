"""Synthetic recommendation traffic whose clicks shift in the holiday season.

A recommender's clicks cannot ship with an example, and a static data set cannot show what a
season does to a ranking. This generator is deterministic from ``(period, seed)`` and knows
its own truth: every impression's click is drawn from :func:`click_probability`, a known
function of the row, so a test can say exactly how much a model's top pick is worth.

Each request shows a **slate** of :data:`SLATE_SIZE` items from a fixed catalog to one user;
each row is one item shown (a recommendation) with its click and, for a click, the revenue
it brought (price x quantity: heavy-tailed). The user has a segment (``bargain`` hunters,
``loyal`` customers, ``new`` ones), the item a category, price, discount and a catalog
popularity (how well it did in normal weeks), the context an hour, a device and the days to
the holiday.

In the **normal** weeks (28 to 90 days to the holiday) clicks follow popularity, each
segment's taste in categories, and price: bargain hunters click cheap, discounted items. In
the **holiday** weeks (0 to 20 days) more of the users are new (gift shoppers), and a growing
holiday intensity shifts both item popularity (toys, electronics and books are gifts;
groceries and home goods are not; last season's catalog popularity counts for less) and user
intent (price stops deterring, gift-givers buy dearer). A model trained on normal weeks ranks
holiday slates by the old taste and loses click-through; a model retrained on holiday weeks
wins it back.

Clicks arrive late: :func:`click_delay_seconds` gives each request's delay (seconds to
minutes, log-normal), deterministic per request id. :func:`shown_outcomes` draws, per request
id, the click, revenue and delay of the item a model chose to show, so live traffic rewards a
better choice. ``python -m models.recommender.sessions`` writes a period's traffic to a file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

__all__ = [
    "CATEGORICAL_FEATURES",
    "CATEGORIES",
    "CLICK",
    "DEVICES",
    "FEATURES",
    "ITEM_FEATURES",
    "NUMERIC_FEATURES",
    "PERIODS",
    "REQUEST_ID",
    "REVENUE",
    "SEGMENTS",
    "SLATE",
    "SLATE_SIZE",
    "Period",
    "click_delay_seconds",
    "click_probability",
    "generate_impressions",
    "holiday_intensity",
    "main",
    "shown_outcomes",
    "write_impressions",
]

Period = Literal["normal", "holiday"]
PERIODS: tuple[Period, ...] = ("normal", "holiday")

SEGMENTS = ("bargain", "loyal", "new")
CATEGORIES = ("electronics", "fashion", "home", "toys", "grocery", "books")
DEVICES = ("mobile", "desktop", "tablet")

#: What the model is fed: the user, the item, the context.
NUMERIC_FEATURES = [
    "user_past_clicks",
    "item_price",
    "item_discount_pct",
    "item_popularity",
    "hour",
    "days_to_holiday",
]
CATEGORICAL_FEATURES = ["user_segment", "item_category", "device"]
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES
#: The features that describe the item alone: all a popularity model looks at.
ITEM_FEATURES = ["item_price", "item_discount_pct", "item_popularity", "item_category"]
CLICK = "click"
REVENUE = "revenue"
REQUEST_ID = "request_id"
SLATE = "slate"
SLATE_SIZE = 6

#: Items in the catalog; the catalog is the same in every period and for every seed.
CATALOG_ITEMS = 400
_CATALOG_SEED = 20_261_224
#: Days to the holiday in each period (inclusive).
_DAYS = {"normal": (28, 90), "holiday": (0, 20)}
#: The holiday's intensity rises from 0 at this many days before it to 1 on the day.
HOLIDAY_RAMP_DAYS = 24

#: Share of requests per segment; the holiday brings new customers (gift shoppers).
_SEGMENT_SHARE = {"normal": np.array([0.4, 0.35, 0.25]), "holiday": np.array([0.3, 0.3, 0.4])}
_DEVICE_SHARE = np.array([0.6, 0.3, 0.1])
_CATEGORY_SHARE = np.array([0.15, 0.2, 0.15, 0.15, 0.2, 0.15])
#: Median price per category.
_MEDIAN_PRICE = np.array([180.0, 45.0, 60.0, 30.0, 8.0, 15.0])
#: Log-odds each segment adds to each category (rows: segments, columns: categories).
_AFFINITY = np.array(
    [
        [-0.8, 0.3, 0.2, -0.3, 1.2, 0.1],  # bargain: everyday goods
        [0.9, 0.6, 0.4, -0.6, -0.4, 0.6],  # loyal: their usual shop
        [0.4, 0.9, -0.5, 0.2, -0.8, -0.4],  # new: what is shown first
    ]
)
_PRICE_SENSITIVITY = np.array([1.0, 0.2, 0.5])
_DISCOUNT_SENSITIVITY = np.array([0.06, 0.0, 0.02])  # per discount percent
#: Log-odds the holiday adds to each category at full intensity.
_GIFT_BOOST = np.array([1.2, 0.3, -0.6, 2.0, -1.8, 1.0])
_REFERENCE_PRICE = 40.0
#: Share of orders of 1, 2 and 3 items, and the spread of the basket around them.
_QUANTITY_SHARE = np.array([0.67, 0.27, 0.06])
_BASKET_SIGMA = 0.5


def _catalog() -> pd.DataFrame:
    """The items: category, price, discount, and popularity in normal weeks (0 to 1)."""
    rng = np.random.default_rng(_CATALOG_SEED)
    category = rng.choice(len(CATEGORIES), size=CATALOG_ITEMS, p=_CATEGORY_SHARE)
    price = _MEDIAN_PRICE[category] * rng.lognormal(0.0, 0.6, size=CATALOG_ITEMS)
    discount = rng.choice([0, 0, 0, 10, 20, 30, 50], size=CATALOG_ITEMS)
    return pd.DataFrame(
        {
            "item_category": np.asarray(CATEGORIES, dtype=object)[category],
            "item_price": price.round(2),
            "item_discount_pct": discount.astype(np.int64),
            "item_popularity": rng.beta(2.0, 5.0, size=CATALOG_ITEMS).round(4),
        }
    )


def holiday_intensity(days_to_holiday: np.ndarray) -> np.ndarray:
    """0 far from the holiday, rising linearly to 1 on the day."""
    days = np.asarray(days_to_holiday, dtype=np.float64)
    return np.clip(1.0 - days / HOLIDAY_RAMP_DAYS, 0.0, 1.0)


def click_probability(frame: pd.DataFrame) -> np.ndarray:
    """The true chance that each impression of ``frame`` is clicked: the generator's truth,
    a function of the row's features alone."""
    segment = _index(frame["user_segment"], SEGMENTS)
    category = _index(frame["item_category"], CATEGORIES)
    h = holiday_intensity(frame["days_to_holiday"].to_numpy())
    log_price = np.log(frame["item_price"].to_numpy(dtype=np.float64) / _REFERENCE_PRICE)
    popularity = frame["item_popularity"].to_numpy(dtype=np.float64) - 0.3
    hour = frame["hour"].to_numpy()
    evening_mobile = (frame["device"].to_numpy() == "mobile") & (hour >= 18) & (hour <= 23)
    logit = (
        -3.1
        + (3.0 - 2.5 * h) * popularity
        + _AFFINITY[segment, category]
        - (1.0 - h) * _PRICE_SENSITIVITY[segment] * log_price
        + h * 0.5 * log_price
        + (1.0 - h) * _DISCOUNT_SENSITIVITY[segment] * frame["item_discount_pct"].to_numpy()
        + h * _GIFT_BOOST[category]
        + 0.3 * evening_mobile
        + 0.15 * np.log1p(frame["user_past_clicks"].to_numpy(dtype=np.float64))
    )
    return np.asarray(1.0 / (1.0 + np.exp(-logit)), dtype=np.float64)


def _index(values: pd.Series, names: Sequence[str]) -> np.ndarray:
    codes = pd.Categorical(values, categories=list(names)).codes
    if (codes < 0).any():
        unknown = sorted(set(values[codes < 0].astype(str)))
        raise ValueError(f"unknown values {unknown}: expected one of {list(names)}")
    return np.asarray(codes, dtype=np.int64)


def _revenue(price: np.ndarray, quantity: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """A click's order: price x quantity x a log-normal basket factor (add-ons, shipping)."""
    return np.asarray(price * quantity * np.exp(_BASKET_SIGMA * normal), dtype=np.float64)


def _request_ids(period: str, seed: int, requests: int) -> list[str]:
    """One id per row: the request and the item's place in its slate."""
    return [
        f"{period}-s{seed}-{i:06d}-{slot}" for i in range(requests) for slot in range(SLATE_SIZE)
    ]


def generate_impressions(
    period: Period = "normal", requests: int = 5_000, seed: int = 7
) -> pd.DataFrame:
    """``requests`` slates of one period, one row per item shown, with its click and revenue;
    the same arguments give the same frame."""
    if period not in PERIODS or requests < 1:
        raise ValueError(f"period must be one of {list(PERIODS)} and requests >= 1")
    rng = np.random.default_rng([seed, PERIODS.index(period)])
    catalog = _catalog()
    rows = requests * SLATE_SIZE

    # One user and context per request, repeated over its slate.
    segment = rng.choice(len(SEGMENTS), size=requests, p=_SEGMENT_SHARE[period])
    past_clicks = rng.poisson(np.array([4.0, 25.0, 0.3])[segment])
    hour = (rng.normal(15.0, 5.0, size=requests) % 24).astype(np.int64)
    device = rng.choice(len(DEVICES), size=requests, p=_DEVICE_SHARE)
    low, high = _DAYS[period]
    days = rng.integers(low, high + 1, size=requests)

    # The candidate stage favours popular items, without repeats in a slate.
    weights = 0.5 + catalog["item_popularity"].to_numpy()
    keys = rng.random((requests, CATALOG_ITEMS)) ** (1.0 / weights)
    items = np.argsort(-keys, axis=1)[:, :SLATE_SIZE].ravel()

    slate = np.repeat(np.arange(requests), SLATE_SIZE)
    frame = pd.DataFrame(
        {
            REQUEST_ID: _request_ids(period, seed, requests),
            SLATE: slate.astype(np.int64),
            "item_id": items.astype(np.int64),
            "user_segment": np.asarray(SEGMENTS, dtype=object)[segment][slate],
            "user_past_clicks": past_clicks.astype(np.int64)[slate],
            "hour": hour[slate],
            "device": np.asarray(DEVICES, dtype=object)[device][slate],
            "days_to_holiday": days.astype(np.int64)[slate],
        }
    )
    for column in ("item_category", "item_price", "item_discount_pct", "item_popularity"):
        frame[column] = catalog[column].to_numpy()[items]
    clicked = rng.random(rows) < click_probability(frame)
    quantity = rng.choice(len(_QUANTITY_SHARE), size=rows, p=_QUANTITY_SHARE) + 1
    revenue = _revenue(frame["item_price"].to_numpy(), quantity, rng.standard_normal(rows))
    frame[CLICK] = clicked.astype(np.int64)
    frame[REVENUE] = np.where(clicked, revenue, 0.0).round(2)
    return frame


#: Median and spread (log-normal sigma) of a click's delay after its recommendation, and bounds.
CLICK_DELAY_MEDIAN_SECONDS = 40.0
CLICK_DELAY_SIGMA = 1.0
CLICK_DELAY_BOUNDS = (2.0, 900.0)


def _uniforms(request_ids: Sequence[str], seed: int, purpose: str) -> np.ndarray:
    """Two uniforms in (0, 1) per request id, from a hash of the id, ``seed`` and ``purpose``:
    the same id gets the same numbers whatever order or company it is asked in."""
    words = np.empty((len(request_ids), 2), dtype=np.uint64)
    for i, request_id in enumerate(request_ids):
        key = f"{purpose}:{seed}:{request_id}".encode()
        words[i] = np.frombuffer(hashlib.blake2b(key, digest_size=16).digest(), dtype="<u8")
    return ((words >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


def click_delay_seconds(request_ids: Sequence[str], seed: int = 7) -> np.ndarray:
    """How long after its recommendation each request's click arrives: log-normal around
    40 s, within 2 s and 15 min; deterministic per request id and ``seed``."""
    uniforms = _uniforms(request_ids, seed, "delay")
    normal = np.sqrt(-2.0 * np.log(uniforms[:, 0])) * np.cos(2.0 * np.pi * uniforms[:, 1])
    delay = CLICK_DELAY_MEDIAN_SECONDS * np.exp(CLICK_DELAY_SIGMA * normal)
    low, high = CLICK_DELAY_BOUNDS
    return np.asarray(np.clip(delay, low, high), dtype=np.float64)


def shown_outcomes(shown: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    """What happens after each recommendation of ``shown`` (one row per request: its
    ``request_id`` and the features of the item a model chose to show): whether it is clicked
    (drawn from :func:`click_probability`), the revenue of a click, and when the click arrives.

    Deterministic per request id and ``seed``, so a live demo and a test agree on each
    request's outcome whichever model chose the item: a better choice is clicked more often.
    """
    request_ids = [str(r) for r in shown[REQUEST_ID]]
    click_draw, quantity_draw = _uniforms(request_ids, seed, "click").T
    basket = _uniforms(request_ids, seed, "basket")
    clicked = click_draw < click_probability(shown)
    quantity = 1 + np.searchsorted(np.cumsum(_QUANTITY_SHARE), quantity_draw)
    normal = np.sqrt(-2.0 * np.log(basket[:, 0])) * np.cos(2.0 * np.pi * basket[:, 1])
    revenue = _revenue(shown["item_price"].to_numpy(dtype=np.float64), quantity, normal)
    return pd.DataFrame(
        {
            REQUEST_ID: request_ids,
            CLICK: clicked.astype(np.int64),
            REVENUE: np.where(clicked, revenue, 0.0).round(2),
            "delay_seconds": click_delay_seconds(request_ids, seed).round(3),
        }
    )


#: What ``--format`` writes: a table, or a V1 request body for the router.
FORMATS = ("csv", "parquet", "v1")


def write_impressions(
    out: Path,
    *,
    period: Period,
    requests: int,
    seed: int,
    fmt: str,
    outcomes: Path | None = None,
) -> None:
    """Write the impressions of ``requests`` slates of ``period`` to ``out``.

    ``csv``/``parquet``: a table with each row's ``request_id``, its slate, the features, the
    click and the revenue (``sluice drift --current`` ignores the extra columns). ``v1``: the
    features as one V1 request body (``curl -d @FILE``). ``outcomes``: ``request_id,click,
    revenue,delay_seconds`` of the same rows, for ``sluice feedback FILE --outcome click
    --outcome revenue`` once each row was sent with ``X-Request-Id: <request_id>``.
    """
    frame = generate_impressions(period, requests=requests, seed=seed)
    if fmt == "csv":
        frame.to_csv(out, index=False)
    elif fmt == "parquet":
        frame.to_parquet(out, index=False)
    else:
        instances = json.loads(frame[FEATURES].to_json(orient="records"))
        out.write_text(json.dumps({"instances": instances}) + "\n", encoding="utf-8")
    if outcomes is not None:
        delays = click_delay_seconds(list(frame[REQUEST_ID]), seed).round(3)
        frame[[REQUEST_ID, CLICK, REVENUE]].assign(delay_seconds=delays).to_csv(
            outcomes, index=False
        )


def main(argv: list[str] | None = None) -> int:
    """``python -m models.recommender.sessions --period P --requests N --out FILE``."""
    parser = argparse.ArgumentParser(
        prog="python -m models.recommender.sessions",
        description="Write synthetic recommendation traffic: a table for `sluice drift`, a "
        "request body for the router, and clicks for `sluice feedback`.",
    )
    parser.add_argument("--period", choices=PERIODS, default="normal", help="default normal")
    parser.add_argument(
        "--requests", type=int, default=200, metavar="N",
        help=f"slates of {SLATE_SIZE} items (default 200)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=11, help="seed (default 11; training uses 7, so these rows "
        "are new to the model)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="where to write")
    parser.add_argument(
        "--format", choices=FORMATS, dest="fmt",
        help="csv or parquet (a table), v1 (a request body); default from FILE's suffix: "
        ".parquet, .json (v1), else csv",
    )  # fmt: skip
    parser.add_argument(
        "--outcomes", type=Path, metavar="FILE",
        help="also write request_id,click,revenue,delay_seconds of the same rows",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be >= 1")
    fmt = args.fmt or {".parquet": "parquet", ".json": "v1"}.get(args.out.suffix.lower(), "csv")
    try:
        write_impressions(
            args.out, period=args.period, requests=args.requests, seed=args.seed, fmt=fmt,
            outcomes=args.outcomes,
        )  # fmt: skip
    except OSError as exc:
        reason = exc.strerror or str(exc).splitlines()[0]
        print(f"cannot write {args.out}: {reason}; give a writable --out", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
