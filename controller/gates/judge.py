"""The statistical judge of a canary analysis: is the canary worse than the primary, or not?

Thresholds ("error rate under 1%") cannot tell a bad canary from an unlucky minute, and a
rollout that looks at every analysis would, with a fixed significance level, cry wolf more
often the longer it runs. The judge compares the canary with the primary serving the same
traffic at the same time, and spends one error budget across a bounded number of looks.

**Errors.** Harm: one-sided pooled two-proportion z-test (H0: canary rate <= primary rate).
When an expected cell count is below 5 the normal approximation is anti-conservative for rare
errors (1 error in 1200 against 0 in 5400 gives z-p = 0.017, exact p = 0.18), so the one-sided
Fisher exact test (hypergeometric tail) gives the p-value instead. Non-inferiority:
Farrington-Manning score test of H0: canary - primary >= ``error_margin`` (absolute); its
variance comes from the maximum-likelihood rates restricted to the null, so it stays sound at
zero errors where a Wald test has no variance.

**Latency.** Histograms are grouped data: requests in one bucket are tied. Harm: one-sided
Mann-Whitney U on the buckets (canary as ``x``), normal approximation with tie correction and
continuity correction, identical to ``scipy.stats.mannwhitneyu(method="asymptotic",
alternative="greater")`` on the requests expanded to their bucket index. Non-inferiority on
the probability of superiority ``P(slower) = P(canary > primary) + P(tie) / 2 = U / (n1 n2)``,
H0: ``P(slower) >= 0.5 + latency_margin``, with DeLong's (placement) variance, which needs no
equal-distribution assumption. A relative margin ("20% slower at the median") is not used
because Prometheus buckets grow by factors of 2-2.5: a 20% shift happens inside one bucket,
and testing it would test an interpolation guess. ``P(slower)`` is exact on the buckets; for
log-normal latencies with log-sd s, a slowdown by factor f gives ``Phi(ln f / (s sqrt 2))``
(s = 0.5: 20% slower is about 0.60, so the default margin 0.1).

**Looks.** Lan-DeMets alpha spending over ``max_looks`` equally spaced looks (t = k / K);
O'Brien-Fleming-type by default: early looks, short windows full of cold caches, demand
overwhelming evidence, a gross regression still clears them, and nearly all of alpha is left
for the last look. Pocock-type spends more evenly for those who want faster decisions. Each
look's nominal level is its increment ``alpha(t_k) - alpha(t_k-1)``; by the union bound the
false-alarm rate over all looks is at most alpha whether the caller's windows are cumulative or
disjoint. The price is power with cumulative windows: exact group-sequential boundaries would
allow the last look about 0.041 where the increment gives 0.022 (alpha 0.05, 5 looks). The
harm tests share each increment (Bonferroni); the pass claim, an intersection of the
non-inferiority tests, uses all of it.

**Verdicts.** Inconclusive while either revision has fewer than ``min_samples`` requests;
else fail when a harm test rejects (a significant regression fails even inside the margin);
else pass when non-inferiority holds for errors and latency; else inconclusive. The last look
decides with the remaining alpha; if it does not, the verdict stays inconclusive (fail-safe:
the rollout's inconclusive limit applies), and so do looks beyond ``max_looks``. Missing
histograms skip the latency tests, which the summary says.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import special
from scipy import stats as scipy_stats

from controller.analysis_types import GateResult, LatencyHistogram, RevisionTraffic, Verdict
from controller.errors import InputError

__all__ = [
    "GATE_NAME",
    "ErrorRateComparison",
    "JudgeConfig",
    "LatencyComparison",
    "Spending",
    "alpha_spent",
    "compare_error_rates",
    "compare_latency",
    "histogram_from_cumulative",
    "judge",
    "look_alphas",
    "rebin",
]

GATE_NAME = "judge"
Spending = Literal["obrien-fleming", "pocock"]
FloatArray = npt.NDArray[np.float64]
#: Smallest expected cell count for which the normal approximation of the z-test is trusted.
_MIN_EXPECTED = 5.0


class JudgeConfig(BaseModel):
    """How sure the judge must be, and how long it may take, before it decides."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    alpha: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description="Overall one-sided error budget, spread over maxLooks by alpha spending.",
    )
    min_samples: int = Field(
        default=200,
        ge=2,
        alias="minSamples",
        description="Requests each revision needs before the judge may pass or fail.",
    )
    max_looks: int = Field(
        default=5,
        ge=1,
        le=100,
        alias="maxLooks",
        description="Analyses a step may take before the judge must decide; later looks stay "
        "inconclusive.",
    )
    error_margin: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        alias="errorMargin",
        description="Non-inferiority margin on the error rate, absolute: 0.01 lets the canary "
        "fail up to 1 percentage point more often than the primary.",
    )
    latency_margin: float = Field(
        default=0.1,
        gt=0,
        lt=0.5,
        alias="latencyMargin",
        description="Non-inferiority margin on P(canary slower than primary), ties counting "
        "half: the canary passes while that probability is shown below 0.5 + margin.",
    )
    spending: Spending = Field(
        default="obrien-fleming",
        description="Alpha-spending function (Lan-DeMets): obrien-fleming saves alpha for "
        "late looks, pocock spends it evenly.",
    )
    check_errors: bool = Field(
        default=True, alias="checkErrors", description="Compare error rates."
    )
    check_latency: bool = Field(
        default=True,
        alias="checkLatency",
        description="Compare latency histograms (skipped when a revision has none).",
    )

    @model_validator(mode="after")
    def _something_is_checked(self) -> JudgeConfig:
        if not (self.check_errors or self.check_latency):
            raise ValueError("checkErrors and checkLatency are both off: nothing to judge")
        return self


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


def _norm_sf(z: float) -> float:
    return float(special.ndtr(-z))


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
        p_worse = float(scipy_stats.hypergeom.sf(e1 - 1, n1 + n2, e1 + e2, n1))
    else:
        p_worse = _norm_sf(z)
    q1, q2 = _restricted_rates(e1, n1, e2, n2, margin)
    se = math.sqrt(q1 * (1 - q1) / n1 + q2 * (1 - q2) / n2)
    z_inferior = (p1 - p2 - margin) / se
    return ErrorRateComparison(p1, p2, z, p_worse, exact, float(special.ndtr(z_inferior)))


def _counts(histogram: LatencyHistogram) -> FloatArray:
    bounds = np.asarray(histogram.bounds, dtype=np.float64)
    counts = np.asarray(histogram.counts, dtype=np.float64)
    if bounds.ndim != 1 or bounds.size == 0 or bounds.shape != counts.shape:
        raise InputError(
            f"histogram has {len(histogram.bounds)} bounds and {len(histogram.counts)} counts"
        )
    if np.isnan(bounds).any() or np.any(np.diff(bounds) <= 0):
        raise InputError(f"histogram bounds {histogram.bounds} are not strictly increasing")
    if np.any(counts < 0):
        raise InputError(f"histogram counts {histogram.counts} include a negative count")
    return counts


def compare_latency(
    canary: LatencyHistogram, primary: LatencyHistogram, *, margin: float
) -> LatencyComparison:
    """Grouped Mann-Whitney test and P(slower) non-inferiority; both need the same bounds."""
    c, p = _counts(canary), _counts(primary)
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
    return LatencyComparison(
        int(n1), int(n2), u, z, _norm_sf(z), theta, float(special.ndtr(z_inferior))
    )


def alpha_spent(fraction: float, *, alpha: float, spending: Spending) -> float:
    """Cumulative one-sided alpha the Lan-DeMets spending function allows at ``fraction``."""
    t = min(max(fraction, 0.0), 1.0)
    if t == 0:
        return 0.0
    if spending == "pocock":
        return alpha * math.log1p((math.e - 1) * t)
    z = float(special.ndtri(1 - alpha / 2))
    return 2 * _norm_sf(z / math.sqrt(t))


def look_alphas(alpha: float, max_looks: int, spending: Spending) -> tuple[float, ...]:
    """Nominal level of each look: the alpha spent between it and the look before."""
    if max_looks < 1 or not 0 < alpha < 1:
        raise InputError(f"alpha {alpha} over {max_looks} looks is not a spending plan")
    spent = [alpha_spent(k / max_looks, alpha=alpha, spending=spending) for k in range(max_looks)]
    spent.append(alpha)  # the last look spends exactly what is left
    return tuple(float(step) for step in np.diff(spent))


def histogram_from_cumulative(
    bounds: Sequence[float], cumulative_counts: Sequence[float]
) -> LatencyHistogram:
    """Turn Prometheus ``le`` buckets (cumulative, maybe fractional) into a LatencyHistogram.

    ``increase()`` extrapolates each bucket on its own, so cumulative counts may dip; they are
    made monotonic as ``histogram_quantile`` does, then rounded to whole requests.
    """
    cumulative = np.asarray(cumulative_counts, dtype=np.float64)
    if cumulative.shape != (len(bounds),) or not np.all(np.isfinite(cumulative)):
        raise InputError(f"cumulative counts {list(cumulative_counts)} do not fit bounds")
    if np.any(cumulative < 0):
        raise InputError(f"cumulative counts {list(cumulative_counts)} include a negative")
    whole = np.rint(np.maximum.accumulate(cumulative)).astype(np.int64)
    counts = np.diff(whole, prepend=0)
    histogram = LatencyHistogram(tuple(float(b) for b in bounds), tuple(int(x) for x in counts))
    _counts(histogram)
    return histogram


def rebin(histogram: LatencyHistogram, bounds: Sequence[float]) -> LatencyHistogram:
    """Merge buckets into coarser ``bounds``, each one of the histogram's, the last the same."""
    counts = _counts(histogram)
    own = np.asarray(histogram.bounds, dtype=np.float64)
    target = np.asarray(bounds, dtype=np.float64)
    index = np.searchsorted(own, target)
    inside = index < own.size
    if (
        target.size == 0
        or not np.all(inside)
        or not np.array_equal(own[index[inside]], target)
        or target[-1] != own[-1]
    ):
        raise InputError(f"cannot rebin bounds {histogram.bounds} onto {tuple(bounds)}")
    merged = np.diff(np.cumsum(counts)[index], prepend=0.0)
    result = LatencyHistogram(tuple(float(b) for b in target), tuple(int(x) for x in merged))
    _counts(result)  # rejects unsorted target bounds
    return result


def _aligned(
    canary: LatencyHistogram, primary: LatencyHistogram
) -> tuple[LatencyHistogram, LatencyHistogram]:
    if canary.bounds == primary.bounds:
        return canary, primary
    common = sorted(set(canary.bounds) & set(primary.bounds))
    return rebin(canary, common), rebin(primary, common)


def _check_traffic(traffic: RevisionTraffic) -> None:
    if not 0 <= traffic.errors <= traffic.requests:
        raise InputError(
            f"{traffic.revision}: {traffic.errors} errors out of {traffic.requests} requests"
        )


@dataclass(frozen=True)
class _Evidence:
    errors: ErrorRateComparison | None
    latency: LatencyComparison | None
    #: Why latency was not compared ("latency off"...), "" when it was.
    latency_note: str
    #: Latency takes no part in the verdict: checkLatency is off or a histogram is missing.
    latency_skipped: bool
    canary_n: int
    primary_n: int


def _gather(canary: RevisionTraffic, primary: RevisionTraffic, config: JudgeConfig) -> _Evidence:
    _check_traffic(canary)
    _check_traffic(primary)
    errors = None
    if config.check_errors and min(canary.requests, primary.requests) > 0:
        errors = compare_error_rates(
            canary.errors,
            canary.requests,
            primary.errors,
            primary.requests,
            margin=config.error_margin,
        )
    latency, note = None, ""
    if not config.check_latency:
        note = "latency off"
    elif canary.latency is None or primary.latency is None:
        note = "latency skipped (no histogram)"
    else:
        c, p = _aligned(canary.latency, primary.latency)
        if min(c.total, p.total) >= 2:
            latency = compare_latency(c, p, margin=config.latency_margin)
        if min(c.total, p.total) < config.min_samples:
            note = f"latency n={c.total}/{p.total} below minSamples"
    skipped = note.startswith(("latency off", "latency skipped"))
    return _Evidence(errors, latency, note, skipped, canary.requests, primary.requests)


def _decide(evidence: _Evidence, look: int, config: JudgeConfig) -> tuple[Verdict, str]:
    if min(evidence.canary_n, evidence.primary_n) < config.min_samples:
        return Verdict.INCONCLUSIVE, f"fewer than minSamples {config.min_samples} requests"
    if look > config.max_looks:
        return Verdict.INCONCLUSIVE, f"all {config.max_looks} looks spent"
    level = look_alphas(config.alpha, config.max_looks, config.spending)[look - 1]
    harm_level = level / (int(config.check_errors) + int(config.check_latency))
    errors, latency = evidence.errors, evidence.latency
    if latency is not None and min(latency.canary_n, latency.primary_n) < config.min_samples:
        latency = None  # too few timed requests: neither fails nor passes
    # A failure needs practical as well as statistical significance (Kayenta's effect size):
    # with thousands of requests, a difference far inside the margin is significant too, and
    # failing on it would roll back healthy versions on a busy machine's noise.
    if (
        errors is not None
        and errors.p_worse <= harm_level
        and errors.canary_rate - errors.primary_rate > config.error_margin
    ):
        return Verdict.FAIL, f"errors worse (p={errors.p_worse:.2g} <= {harm_level:.2g})"
    if (
        latency is not None
        and latency.p_slower <= harm_level
        and latency.prob_slower > 0.5 + config.latency_margin
    ):
        return Verdict.FAIL, f"latency slower (p={latency.p_slower:.2g} <= {harm_level:.2g})"
    errors_ok = not config.check_errors or (errors is not None and errors.p_inferior <= level)
    latency_ok = evidence.latency_skipped or (latency is not None and latency.p_inferior <= level)
    if errors_ok and latency_ok and (errors is not None or latency is not None):
        return Verdict.PASS, f"no worse than primary within margins at alpha={level:.2g}"
    last = " at the last look" if look == config.max_looks else ""
    return Verdict.INCONCLUSIVE, f"no decision{last} at alpha={level:.2g}"


def _describe(evidence: _Evidence) -> tuple[str, dict[str, float]]:
    parts: list[str] = []
    values: dict[str, float] = {
        "canary_n": float(evidence.canary_n),
        "primary_n": float(evidence.primary_n),
    }
    if (errors := evidence.errors) is not None:
        parts.append(
            f"errors {errors.canary_rate:.2%} vs {errors.primary_rate:.2%} (p={errors.p_worse:.2g})"
        )
        values |= {
            "canary_error_rate": errors.canary_rate,
            "primary_error_rate": errors.primary_rate,
            "error_p_value": errors.p_worse,
            "error_noninferiority_p_value": errors.p_inferior,
        }
    if (latency := evidence.latency) is not None:
        parts.append(f"latency P(slower)={latency.prob_slower:.2f} (p={latency.p_slower:.2g})")
        values |= {
            "latency_p_value": latency.p_slower,
            "latency_noninferiority_p_value": latency.p_inferior,
            "prob_slower": latency.prob_slower,
            "canary_latency_n": float(latency.canary_n),
            "primary_latency_n": float(latency.primary_n),
        }
    if evidence.latency_note:
        parts.append(evidence.latency_note)
    parts.append(f"n={evidence.canary_n}/{evidence.primary_n}")
    return ", ".join(parts), values


def judge(
    canary: RevisionTraffic, primary: RevisionTraffic, *, look: int, config: JudgeConfig
) -> GateResult:
    """Judge the canary against the primary at analysis ``look`` (1-based) of a step.

    Raises :class:`InputError` for impossible counts (errors above requests, negative bucket
    counts) and for histograms whose buckets share no common last bound.
    """
    if look < 1:
        raise InputError(f"look {look} is not a 1-based analysis number")
    evidence = _gather(canary, primary, config)
    verdict, reason = _decide(evidence, look, config)
    described, values = _describe(evidence)
    values["look"] = float(look)
    summary = f"{GATE_NAME} look {look}/{config.max_looks}: {described} — {verdict}: {reason}"
    return GateResult(gate=GATE_NAME, verdict=verdict, summary=summary, values=values)
