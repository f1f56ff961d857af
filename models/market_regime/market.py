"""A synthetic daily market with hidden regimes, and the feature rows the models learn from.

Real market data cannot ship with an example, and it never says which regime a day was in.
This generator does: a hidden Markov chain of regimes (``calm``, ``volatile``, ``black_swan``)
drives a daily log return and a trading volume, deterministically from ``(days, seed)``.

- **Regimes.** Calm spells last about 65 days, volatile ones about 20; a black swan is rare
  (about 2 % of days), short (about 4 days) and mostly follows a volatile spell.
- **Volatility clustering.** Each regime has a volatility level and its own GARCH(1,1)
  parameters over a unit-variance process ``h``: ``h[t] = omega + alpha * e[t-1]**2 +
  beta * h[t-1]``, the return's standard deviation ``level * sqrt(h[t])``. A switch of regime
  changes the level at once; within a regime, large moves are followed by large moves.
- **What is predictable.** Calm markets trend (a 5-day momentum term in the mean), volatile
  ones mean-revert (yesterday's return, negatively), black swans fall: a strong negative drift
  and downward jumps. So a trend model is right in calm markets and wrong in volatile ones, and
  the reverse for a mean-reversion model: the specialists of :mod:`models.market_regime`.
- **Volume** rises with the regime and with the size of the day's move, around a persistent
  AR(1) level.

:func:`feature_rows` turns a series into one row per day: what is known at the close of day
``t`` (returns, realised volatility over several windows, drawdown, volume shock), the regime
of day ``t`` (the classifier's label) and the targets, day ``t + 1``'s return and its
direction. ``python -m models.market_regime.market --rows R --out FILE [--seed S]`` writes such
rows to a CSV or Parquet file (for ``sluice drift --by regime``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

__all__ = [
    "BLACK_SWAN",
    "CALM",
    "FEATURES",
    "NEXT_RETURN",
    "NEXT_UP",
    "REGIME",
    "REGIMES",
    "TRANSITIONS",
    "VOLATILE",
    "WARM_UP_DAYS",
    "MarketSeries",
    "feature_rows",
    "generate_market",
    "main",
    "market_frame",
]

REGIMES = ("calm", "volatile", "black_swan")
CALM, VOLATILE, BLACK_SWAN = range(3)

#: Daily regime transition probabilities, row: today, column: tomorrow.
TRANSITIONS = np.array(
    [
        [0.9850, 0.0128, 0.0022],
        [0.0350, 0.9530, 0.0120],
        [0.1000, 0.1500, 0.7500],
    ]
)

# Per regime (calm, volatile, black_swan): the volatility level (daily standard deviation of
# the log return), the GARCH(1,1) parameters of the unit-variance process, and the mean.
_LEVEL = np.array([0.007, 0.018, 0.045])
_ALPHA = np.array([0.06, 0.10, 0.15])
_BETA = np.array([0.90, 0.86, 0.80])
_OMEGA = 1.0 - _ALPHA - _BETA  # unconditional variance 1 in every regime
_DRIFT = np.array([0.0003, -0.0002, -0.012])
_MOMENTUM = np.array([0.14, 0.0, 0.10])  # times the sum of the last 5 returns
_REVERSION = np.array([0.0, -0.30, 0.0])  # times yesterday's return
_JUMP_PROBABILITY = np.array([0.0, 0.0, 0.3])
_JUMP_MEAN, _JUMP_SD = -0.06, 0.03
# log volume = regime level + reaction to the day's move + AR(1) noise.
_VOLUME_LEVEL = np.array([0.0, 0.45, 1.3])
_VOLUME_PER_SD = 0.18
_VOLUME_AR, _VOLUME_NOISE = 0.7, 0.15

#: Days of history the longest feature window needs before a day gets a row.
WARM_UP_DAYS = 120
_VOL_WINDOWS = (5, 20, 60)
_RETURN_WINDOWS = (1, 5, 20)
_DRAWDOWN_WINDOW = WARM_UP_DAYS
_VOLUME_WINDOW = 20

FEATURES = [
    "return_1d",
    "return_5d",
    "return_20d",
    "realised_vol_5d",
    "realised_vol_20d",
    "realised_vol_60d",
    "drawdown_120d",
    "volume_shock",
]
REGIME = "regime"
NEXT_RETURN = "next_return"
NEXT_UP = "next_up"


@dataclass(frozen=True)
class MarketSeries:
    """One simulated market: per day the regime index, log return, close and volume."""

    regime: np.ndarray  # int64, an index into REGIMES
    log_return: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.regime)


def _regime_path(days: int, rng: np.random.Generator) -> np.ndarray:
    """The hidden chain, drawn spell by spell: a spell's length is geometric in the regime's
    staying probability and the next regime follows the chain's exit probabilities. The loop
    is over spells (a few hundred in 20,000 days), not days."""
    stay = np.diag(TRANSITIONS)
    exits = TRANSITIONS / (1.0 - stay)[:, None]
    np.fill_diagonal(exits, 0.0)
    states: list[int] = []
    lengths: list[int] = []
    state, covered = CALM, 0
    while covered < days:
        length = int(rng.geometric(1.0 - stay[state]))
        states.append(state)
        lengths.append(length)
        covered += length
        state = int(rng.choice(len(REGIMES), p=exits[state]))
    return np.repeat(np.asarray(states, dtype=np.int64), lengths)[:days]


def generate_market(days: int = 20_000, seed: int = 7) -> MarketSeries:
    """``days`` of a simulated market; the same arguments give the same series."""
    if days < 2:
        raise ValueError("days must be >= 2")
    rng = np.random.default_rng([seed, 20_240_601])
    regime = _regime_path(days, rng)
    shocks = rng.standard_normal(days)
    jumps = np.where(
        rng.random(days) < _JUMP_PROBABILITY[regime],
        rng.normal(_JUMP_MEAN, _JUMP_SD, size=days),
        0.0,
    )
    # The one recursion that cannot be vectorised: today's variance needs yesterday's
    # innovation, and (in calm and volatile markets) today's mean needs recent returns. Plain
    # floats over lists: about 20 ms for 20,000 days.
    level, alpha, beta, omega = (p[regime].tolist() for p in (_LEVEL, _ALPHA, _BETA, _OMEGA))
    drift, momentum, reversion = (p[regime].tolist() for p in (_DRIFT, _MOMENTUM, _REVERSION))
    z, jump = shocks.tolist(), jumps.tolist()
    returns = [0.0] * days
    h, innovation, last5 = 1.0, 0.0, 0.0
    previous = 0.0
    for t in range(days):
        h = omega[t] + alpha[t] * innovation * innovation + beta[t] * h
        sd = level[t] * h**0.5
        mean = drift[t] + momentum[t] * last5 + reversion[t] * previous
        r = mean + sd * z[t] + jump[t]
        returns[t] = r
        innovation = (r - mean) / level[t]  # jumps feed the clustering too
        last5 += r - (returns[t - 5] if t >= 5 else 0.0)
        previous = r
    log_return = np.asarray(returns)

    standardised_move = np.abs(log_return - _DRIFT[regime]) / _LEVEL[regime]
    noise = lfilter([1.0], [1.0, -_VOLUME_AR], rng.normal(0.0, _VOLUME_NOISE, size=days))
    log_volume = 13.0 + _VOLUME_LEVEL[regime] + _VOLUME_PER_SD * standardised_move + noise
    return MarketSeries(
        regime=regime,
        log_return=log_return,
        close=100.0 * np.exp(np.cumsum(log_return)),
        volume=np.exp(log_volume).round(),
    )


def _trailing_sum(values: np.ndarray, window: int) -> np.ndarray:
    """Sum of the ``window`` values up to and including each day (NaN before a full window)."""
    total = np.cumsum(np.concatenate([[0.0], values]))
    out = np.full(len(values), np.nan)
    out[window - 1 :] = total[window:] - total[:-window]
    return out


def feature_rows(series: MarketSeries) -> pd.DataFrame:
    """One row per day that has :data:`WARM_UP_DAYS` of history and a next day: the
    :data:`FEATURES` known at its close, its regime and the next day's return and direction.
    The ``day`` column is the day's index in the series (rows are in time order)."""
    r = series.log_return
    columns: dict[str, np.ndarray] = {}
    for window in _RETURN_WINDOWS:
        columns[f"return_{window}d"] = _trailing_sum(r, window)
    for window in _VOL_WINDOWS:
        columns[f"realised_vol_{window}d"] = np.sqrt(_trailing_sum(r * r, window) / window)
    log_close = np.log(series.close)
    peak = np.full(len(r), np.nan)
    peak[_DRAWDOWN_WINDOW - 1 :] = sliding_window_view(log_close, _DRAWDOWN_WINDOW).max(axis=1)
    columns["drawdown_120d"] = log_close - peak
    log_volume = np.log(series.volume)
    before = np.full(len(r), np.nan)
    before[_VOLUME_WINDOW:] = _trailing_sum(log_volume, _VOLUME_WINDOW)[_VOLUME_WINDOW - 1 : -1]
    columns["volume_shock"] = log_volume - before / _VOLUME_WINDOW

    days = np.arange(WARM_UP_DAYS - 1, len(r) - 1)
    frame = pd.DataFrame({"day": days})
    for name in FEATURES:
        frame[name] = columns[name][days]
    frame[REGIME] = np.asarray(REGIMES, dtype=object)[series.regime[days]]
    frame[NEXT_RETURN] = r[days + 1]
    frame[NEXT_UP] = (r[days + 1] > 0.0).astype(np.int64)
    return frame


def market_frame(rows: int = 20_000, seed: int = 7) -> pd.DataFrame:
    """``rows`` feature rows of a market simulated long enough to give them."""
    if rows < 1:
        raise ValueError("rows must be >= 1")
    return feature_rows(generate_market(rows + WARM_UP_DAYS, seed))


def main(argv: list[str] | None = None) -> int:
    """``python -m models.market_regime.market --rows R --out FILE [--seed S]``."""
    parser = argparse.ArgumentParser(
        prog="python -m models.market_regime.market",
        description="Write feature rows of a synthetic market (features, regime, targets): "
        "current data for `sluice drift`.",
    )
    parser.add_argument("--rows", type=int, default=5000, metavar="R", help="rows (default 5000)")
    parser.add_argument(
        "--seed", type=int, default=11, help="seed (default 11; training uses 7, so this is a "
        "market the models did not learn from)",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help=".parquet, else CSV"
    )
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be >= 1")
    frame = market_frame(rows=args.rows, seed=args.seed)
    try:
        if args.out.suffix.lower() == ".parquet":
            frame.to_parquet(args.out, index=False)
        else:
            frame.to_csv(args.out, index=False)
    except OSError as exc:
        print(f"cannot write {args.out}: {exc.strerror}; give a writable --out", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
