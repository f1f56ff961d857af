"""How long a canary must run for the KPI judge to catch a given drop of a rate.

A 5 % canary sees one request in twenty, and a CTR of 4 % clicks on one of those in
twenty-five: catching half a point takes tens of thousands of requests, and a policy whose
canary steps last two minutes would pass any such regression as inconclusive. This module
computes the duration instead of guessing it, for the test the judge runs (pure, no I/O):

- The harm test's statistic at look k is the pooled two-proportion z, ``D_k / sd0_k``, with
  ``D_k`` the canary's drop; under the alternative ``D_k`` has mean ``delta`` and standard
  deviation ``sd1_k``. Both deviations shrink as one over the square root of the requests, so
  the looks are a Brownian motion in the information fraction ``t_k`` (requests counted at
  look k over those counted at the last), with drift ``theta = delta / sd1`` at the last look
  and boundaries ``rho z_k`` on the standardized scale, ``rho = sd0 / sd1`` and ``z_k`` the
  normal quantile of look k's nominal level (:func:`~controller.gates.judge.look_alphas`).
- The probability of crossing a boundary at some look is integrated numerically, look by look,
  over the density of the paths that have not crossed yet (Armitage, McPherson and Rowe's
  recursion, on a grid); ``theta`` is solved for the stated power. One look at ``alpha`` gives
  the textbook sample size ``(z_alpha sd0 + z_power sd1)^2 / delta^2`` exactly.
- Requests arrive at ``rps``, a share ``share`` to the canary; looks come every ``interval``
  seconds; a request counts ``outcomeDelay`` seconds after it was served, so look k counts
  ``rps (k interval - delay)`` requests, and a look where either revision has fewer than
  ``minSamples`` cannot decide. The interval is solved so that the last look reaches the power.
- Requests arrive as a Poisson process, so whether a look has ``minSamples`` is a probability,
  not a yes or no: the judge counts the requests that came, not the ones expected. Counts only
  grow, so the looks that decide are those from the first with ``minSamples`` in both
  revisions on, and the power is the crossing probability from each possible first look,
  weighted by the chance that it is the first. Deciding by the expected count instead put a
  plan whose last look expects exactly ``minSamples`` (5,000 canary requests at 1,000 rps for
  a 1-point drop) at its computed power of 0.97 when half of such canaries fall short of
  ``minSamples`` and cannot be judged at all: the solver stops where the power jumps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from controller.errors import InputError
from controller.gates.judge_statistics import Spending, look_alphas

__all__ = [
    "CanaryDuration",
    "canary_duration",
    "crossing_probability",
    "fixed_sample_total",
    "group_sequential_inflation",
    "look_boundaries",
]

#: Grid points per standard deviation of one look's increment.
_POINTS_PER_SD = 16
_MAX_GRID = 4000
#: The grid spans this many standard deviations below the paths' mean.
_TAIL_SDS = 8.0


@dataclass(frozen=True)
class CanaryDuration:
    """What detecting a drop takes: the look interval, the duration and the requests."""

    #: Seconds between looks; the last look comes at ``max_looks * interval_seconds``.
    interval_seconds: float
    duration_seconds: float
    #: Requests each revision has counted at the last look.
    canary_samples: int
    primary_samples: int
    #: Probability that the judge fails the canary by the last look, at this plan.
    power: float


def look_boundaries(alpha: float, max_looks: int, spending: Spending) -> tuple[float, ...]:
    """Each look's critical z of the one-sided harm test: the quantile of its nominal level."""
    from scipy import special

    return tuple(
        float(special.ndtri(1 - level)) for level in look_alphas(alpha, max_looks, spending)
    )


def _trapezoid_weights(points: int, step: float) -> np.ndarray:
    weights = np.full(points, step)
    weights[[0, -1]] = step / 2
    return weights


def crossing_probability(
    drift: float,
    boundaries: Sequence[float],
    fractions: Sequence[float],
    lower: Sequence[float] | None = None,
) -> float:
    """Probability that ``Z_k = W(t_k) / sqrt(t_k)`` reaches ``boundaries[k]`` at some look
    before it falls to ``lower[k]`` (a path that does stops: the judge passed the canary),
    ``W`` a Brownian motion with drift ``drift`` and ``t_k = fractions[k]`` increasing.

    Looks at a fraction of 0 or below, or with an infinite boundary, cannot decide and are
    passed over; ``lower`` unset, no path stops below.
    """
    from scipy import special

    floors = list(lower) if lower is not None else [-math.inf] * len(fractions)
    if not len(boundaries) == len(fractions) == len(floors):
        raise InputError(f"{len(boundaries)} boundaries for {len(fractions)} looks")
    crossed, previous = 0.0, 0.0
    grid: np.ndarray | None = None
    density = np.empty(0)
    for t, z, floor in zip(fractions, boundaries, floors, strict=True):
        if t <= previous or not math.isfinite(z):
            continue
        upper = z * math.sqrt(t)  # the boundary on the W scale
        step_sd = math.sqrt(t - previous)
        shift = drift * (t - previous)
        if grid is None:
            crossed += float(special.ndtr((shift - upper) / step_sd))
        else:
            weights = _trapezoid_weights(grid.size, float(grid[1] - grid[0])) * density
            tails = special.ndtr((grid + shift - upper) / step_sd)
            crossed += float(weights @ tails)
        bottom = max(drift * t - _TAIL_SDS * math.sqrt(t), floor * math.sqrt(t))
        if upper <= bottom:
            return crossed  # every remaining path has crossed or stopped below
        points = min(_MAX_GRID, max(64, int((upper - bottom) / step_sd * _POINTS_PER_SD)))
        new_grid = np.linspace(bottom, upper, points)
        if grid is None:
            density = np.exp(-0.5 * ((new_grid - shift) / step_sd) ** 2)
        else:
            weights = _trapezoid_weights(grid.size, float(grid[1] - grid[0])) * density
            kernel = np.exp(-0.5 * ((new_grid[:, None] - grid[None, :] - shift) / step_sd) ** 2)
            density = kernel @ weights
        density = density / (step_sd * math.sqrt(2 * math.pi))
        grid, previous = new_grid, t
    return min(crossed, 1.0)


def _solve_drift(power: float, boundaries: Sequence[float], fractions: Sequence[float]) -> float:
    from scipy import optimize

    def shortfall(theta: float) -> float:
        return crossing_probability(theta, boundaries, fractions) - power

    high = 4.0
    while shortfall(high) < 0:
        high *= 2
        if high > 1e3:
            raise InputError("no drift reaches that power with these looks")
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-6))


def group_sequential_inflation(
    alpha: float, power: float, max_looks: int, spending: Spending
) -> float:
    """Requests the judge needs with ``max_looks`` equally spaced looks over those one look
    at ``alpha`` needs, for the same power (the group-sequential inflation factor)."""
    from scipy import special

    fractions = [k / max_looks for k in range(1, max_looks + 1)]
    theta = _solve_drift(power, look_boundaries(alpha, max_looks, spending), fractions)
    fixed = float(special.ndtri(1 - alpha) + special.ndtri(power))
    return (theta / fixed) ** 2


def _unit_deviations(p: float, delta: float, share: float) -> tuple[float, float]:
    """sd0 (pooled, under "no drop") and sd1 (under the drop) of the canary's drop, for one
    request in all: the canary has ``share`` of it, its rate is ``p - delta``."""
    if not (0 < delta < p < 1 and 0 < share < 1):
        raise InputError(f"a drop of {delta} from a rate of {p} at share {share} is not a plan")
    canary, primary = p - delta, p
    pooled = share * canary + (1 - share) * primary
    sd0 = math.sqrt(pooled * (1 - pooled) * (1 / share + 1 / (1 - share)))
    sd1 = math.sqrt(canary * (1 - canary) / share + primary * (1 - primary) / (1 - share))
    return sd0, sd1


def fixed_sample_total(
    p: float, delta: float, *, share: float, alpha: float, power: float
) -> float:
    """Requests in all (canary and primary) one look at ``alpha`` needs to catch a drop of
    ``delta`` from ``p`` with probability ``power``: ``(z_alpha sd0 + z_power sd1)^2 / delta^2``."""
    from scipy import special

    sd0, sd1 = _unit_deviations(p, delta, share)
    z_alpha, z_power = float(special.ndtri(1 - alpha)), float(special.ndtri(power))
    return (z_alpha * sd0 + z_power * sd1) ** 2 / delta**2


def _look_plan(
    interval: float, *, rps: float, share: float, delay: float, max_looks: int, min_samples: int
) -> tuple[float, list[float], list[float]]:
    """Requests counted at the last look, each look's share of them, and the probability that
    each look has ``min_samples`` counted requests in both revisions (Poisson arrivals)."""
    from scipy import special

    counted = [rps * max(k * interval - delay, 0.0) for k in range(1, max_looks + 1)]
    ready = [
        float(special.pdtrc(min_samples - 1, total * share))
        * float(special.pdtrc(min_samples - 1, total * (1 - share)))
        for total in counted
    ]
    last = counted[-1]
    return last, [total / last if last > 0 else 0.0 for total in counted], ready


#: A first deciding look less likely than this adds nothing to the power worth integrating.
_NEGLIGIBLE = 1e-9


def canary_duration(
    p: float,
    delta: float,
    *,
    rps: float,
    share: float = 0.05,
    alpha: float = 0.05,
    power: float = 0.8,
    max_looks: int = 4,
    spending: Spending = "obrien-fleming",
    outcome_delay: float = 0.0,
    min_samples: int = 2,
    margin: float | None = None,
) -> CanaryDuration:
    """The look interval and duration a canary at ``share`` of ``rps`` needs for the judge
    to fail it, with probability ``power``, when its rate is ``delta`` below the primary's
    ``p`` (a drop in a higher-is-better rate; the same holds for a rise in a lower-is-better
    one), with requests counted ``outcome_delay`` seconds after they are served.

    With ``margin`` (the check's non-inferiority margin) a canary the judge passes at an
    earlier look stops there, as a rollout promotes it, and is not caught later: the pass
    test's variance is taken at the margin's rates, which Farrington-Manning's restricted
    estimate approaches."""
    from scipy import optimize

    if rps <= 0 or outcome_delay < 0 or min_samples < 1:
        raise InputError(f"rps {rps}, outcome delay {outcome_delay} is not a traffic plan")
    sd0, sd1 = _unit_deviations(p, delta, share)
    critical = look_boundaries(alpha, max_looks, spending)
    boundaries = [sd0 / sd1 * z for z in critical]
    sd_margin = math.nan
    if margin is not None:  # the drop's deviation with the canary at the margin's rate
        canary = max(p - margin, 0.0)
        sd_margin = math.sqrt(canary * (1 - canary) / share + p * (1 - p) / (1 - share))

    def looks(interval: float) -> tuple[float, list[float], list[float]]:
        return _look_plan(
            interval, rps=rps, share=share, delay=outcome_delay, max_looks=max_looks,
            min_samples=min_samples,
        )  # fmt: skip

    def reached(interval: float) -> float:
        total, fractions, ready = looks(interval)
        if total <= 0:
            return 0.0
        drift = delta * math.sqrt(total) / sd1
        floors: list[float] | None = None
        if margin is not None:
            # Pass at look k: the drop's estimate is below margin - z_k sd_margin_k; on the
            # scale of Z_k (the estimate over sd1_k) that is the floor below.
            at_margin = margin * math.sqrt(total) / sd1
            floors = [
                at_margin * math.sqrt(t) - z * sd_margin / sd1
                for t, z in zip(fractions, critical, strict=True)
            ]
        power, before = 0.0, 0.0
        for first, chance in enumerate(ready):  # the first look with minSamples is `first`
            weight, before = chance - before, max(chance, before)
            if weight < _NEGLIGIBLE:
                continue
            bounds = [b if k >= first else math.inf for k, b in enumerate(boundaries)]
            power += weight * crossing_probability(drift, bounds, fractions, floors)
        return power

    low = outcome_delay / max_looks
    high = max(2 * low, 1.0)
    while reached(high) < power:
        low, high = high, high * 2
        if high > 1e9:
            raise InputError(f"a drop of {delta} from {p} is not detectable at {rps} rps")
    interval = float(optimize.brentq(lambda i: reached(i) - power, low, high, xtol=1e-3))
    interval = math.ceil(interval * 1000) / 1000  # the power is met, not just missed
    total, _, _ = looks(interval)
    return CanaryDuration(
        interval_seconds=interval,
        duration_seconds=interval * max_looks,
        canary_samples=math.ceil(total * share),
        primary_samples=math.ceil(total * (1 - share)),
        power=reached(interval),
    )
