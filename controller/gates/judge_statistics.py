"""The judge's two-sample tests and its alpha spending: pure statistics over counts and
histograms, with the reasoning behind each choice in :mod:`controller.gates.judge`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from controller.analysis_types import LatencyHistogram
from controller.errors import InputError
from controller.gates.judge_config import Spending
from controller.gates.latency_buckets import bucket_counts

__all__ = [
    "ErrorRateComparison",
    "LatencyComparison",
    "Spending",
    "alpha_spent",
    "compare_error_rates",
    "compare_latency",
    "look_alphas",
]

#: Smallest expected cell count for which the normal approximation of the z-test is trusted.
_MIN_EXPECTED = 5.0


@dataclass(frozen=True)
class ErrorRateComparison:
    """Canary against primary error rates: harm and non-inferiority tests."""

    canary_rate: float
    primary_rate: float
    #: Pooled two-proportion z statistic (0 when no request or every request failed).
    z: float
    #: One-sided p-value of "the canary fails more often" (Fisher exact for sparse counts).
    p_worse: float
    #: True when Fisher's exact test gave ``p_worse`` (an expected count below 5).
    exact: bool
    #: Farrington-Manning p-value of "the canary is worse by the margin or more".
    p_inferior: float


@dataclass(frozen=True)
class LatencyComparison:
    """Grouped Mann-Whitney comparison of the canary's latencies with the primary's."""

    canary_n: int
    primary_n: int
    #: Mann-Whitney U of the canary: pairs where it is slower, ties counting half.
    u: float
    z: float
    #: One-sided p-value of "the canary is slower".
    p_slower: float
    #: U / (n1 n2): P(canary slower than primary), ties counting half.
    prob_slower: float
    #: p-value of "P(slower) >= 0.5 + margin" (DeLong variance).
    p_inferior: float


# scipy is imported where it is used: the policy's models import this module, and every
# command that reads an environment (propose, status, rollout) would pay scipy.special and
# scipy.stats (about 1 s of CPU) to parse a config.


def _ndtr(z: float) -> float:
    """The standard normal CDF at ``z``."""
    from scipy import special

    return float(special.ndtr(z))


def _norm_sf(z: float) -> float:
    return _ndtr(-z)


def _restricted_rates(e1: int, n1: int, e2: int, n2: int, margin: float) -> tuple[float, float]:
    """Farrington-Manning (1990) MLE of both rates under canary - primary = margin."""
    p1, p2, theta = e1 / n1, e2 / n2, n2 / n1
    a = 1 + theta
    b = -(1 + theta + p1 + theta * p2 + margin * (theta + 2))
    c = margin**2 + margin * (2 * p1 + theta + 1) + p1 + theta * p2
    d = -p1 * margin * (1 + margin)
    v = b**3 / (27 * a**3) - b * c / (6 * a**2) + d / (2 * a)
    u = math.copysign(math.sqrt(max(b**2 / (9 * a**2) - c / (3 * a), 0.0)), v)
    if u == 0:
        q1 = -b / (3 * a)
    else:
        w = (math.pi + math.acos(min(max(v / u**3, -1.0), 1.0))) / 3
        q1 = 2 * u * math.cos(w) - b / (3 * a)
    q1 = min(max(q1, margin), 1.0)
    return q1, q1 - margin


def compare_error_rates(
    canary_errors: int,
    canary_requests: int,
    primary_errors: int,
    primary_requests: int,
    *,
    margin: float,
) -> ErrorRateComparison:
    """Test whether the canary fails more often, and whether it is within ``margin`` (absolute)."""
    e1, n1, e2, n2 = canary_errors, canary_requests, primary_errors, primary_requests
    if min(n1, n2) < 1 or not (0 <= e1 <= n1 and 0 <= e2 <= n2):
        raise InputError(f"error counts {e1}/{n1} and {e2}/{n2} are not errors out of requests")
    p1, p2 = e1 / n1, e2 / n2
    pooled = (e1 + e2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    z = (p1 - p2) / math.sqrt(variance) if variance > 0 else 0.0
    expected = min(pooled, 1 - pooled) * min(n1, n2)
    exact = expected < _MIN_EXPECTED
    if exact:
        # P(X >= e1), X the canary's share of all errors under "same rate": hypergeometric.
        from scipy import stats as scipy_stats

        p_worse = float(scipy_stats.hypergeom.sf(e1 - 1, n1 + n2, e1 + e2, n1))
    else:
        p_worse = _norm_sf(z)
    q1, q2 = _restricted_rates(e1, n1, e2, n2, margin)
    se = math.sqrt(q1 * (1 - q1) / n1 + q2 * (1 - q2) / n2)
    z_inferior = (p1 - p2 - margin) / se
    return ErrorRateComparison(p1, p2, z, p_worse, exact, _ndtr(z_inferior))


def compare_latency(
    canary: LatencyHistogram, primary: LatencyHistogram, *, margin: float
) -> LatencyComparison:
    """Grouped Mann-Whitney test and P(slower) non-inferiority; both need the same bounds."""
    c, p = bucket_counts(canary), bucket_counts(primary)
    if canary.bounds != primary.bounds:
        raise InputError("latency histograms have different bounds; rebin them first")
    n1, n2 = float(c.sum()), float(p.sum())
    if min(n1, n2) < 2:
        raise InputError(f"latency needs two requests per revision, got {n1:.0f}/{n2:.0f}")
    n = n1 + n2
    primary_below = np.cumsum(p) - p
    canary_above = n1 - np.cumsum(c)
    # Placements: the share of the other revision each request beats, ties counting half.
    canary_beats = primary_below + 0.5 * p
    canary_place, primary_place = canary_beats / n2, (canary_above + 0.5 * c) / n1
    u = float(np.dot(c, canary_beats))
    ties = c + p
    tie_term = float(np.sum(ties**3 - ties))
    sd = math.sqrt(max(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))), 0.0))
    numerator = u - n1 * n2 / 2 - 0.5  # continuity correction, as scipy's default
    z = numerator / sd if sd > 0 else -math.inf
    theta = u / (n1 * n2)
    variance = float(
        np.dot(c, (canary_place - theta) ** 2) / ((n1 - 1) * n1)
        + np.dot(p, (primary_place - theta) ** 2) / ((n2 - 1) * n2)
    )
    distance = theta - (0.5 + margin)
    if variance > 0:
        z_inferior = distance / math.sqrt(variance)
    else:  # every request of each revision in one bucket: the buckets say it all
        z_inferior = math.copysign(math.inf, distance) if distance else 0.0
    return LatencyComparison(int(n1), int(n2), u, z, _norm_sf(z), theta, _ndtr(z_inferior))


def alpha_spent(fraction: float, *, alpha: float, spending: Spending) -> float:
    """Cumulative one-sided alpha the Lan-DeMets spending function allows at ``fraction``."""
    t = min(max(fraction, 0.0), 1.0)
    if t == 0:
        return 0.0
    if spending == "pocock":
        return alpha * math.log1p((math.e - 1) * t)
    from scipy import special

    z = float(special.ndtri(1 - alpha / 2))
    return 2 * _norm_sf(z / math.sqrt(t))


def look_alphas(alpha: float, max_looks: int, spending: Spending) -> tuple[float, ...]:
    """Nominal level of each look: the alpha spent between it and the look before."""
    if max_looks < 1 or not 0 < alpha < 1:
        raise InputError(f"alpha {alpha} over {max_looks} looks is not a spending plan")
    spent = [alpha_spent(k / max_looks, alpha=alpha, spending=spending) for k in range(max_looks)]
    spent.append(alpha)  # the last look spends exactly what is left
    return tuple(float(step) for step in np.diff(spent))
