"""The KPI judge: is the canary worse than the primary on a business outcome, or not?

Each :class:`~controller.gates.kpi_policy.KpiCheck` is judged on the requests each revision
served, with their outcomes joined by request id (:mod:`controller.gates.kpi_samples`), as the
canary judge (:mod:`controller.gates.judge`) is on errors: two one-sided tests at each look,
with one error budget spent across the looks.

**Looks.** Lan-DeMets alpha spending over ``maxLooks`` looks (:func:`look_alphas`: each look's
nominal level is its increment of the spending function, so by the union bound the canary is
rolled back falsely with probability at most alpha over all looks). O'Brien-Fleming-type by
default.

**Tests.** Let *worse* mean lower for ``direction: higher`` and higher for ``lower``.

- Harm: the canary is significantly worse than the primary (beyond zero) at the look's level:
  fail. Unlike the canary judge's errors, no practical-size condition is added: a drop in
  clicks that the data show is a loss, however small, and the margin is for passing.
- Non-inferiority: the canary is shown to be worse by less than ``margin``: pass.
- Neither: inconclusive, at the last look too (the rollout's ``inconclusiveLimit`` decides),
  and so beyond ``maxLooks``. Fewer than ``minSamples`` counted requests in either revision:
  inconclusive, naming the counts; too few never pass.

**Rates** (CTR, catch rate) reuse the canary judge's two-proportion tests on the *worse*
events (no click for a higher-is-better rate): pooled z (Fisher's exact test when an expected
count is below 5) for harm, Farrington-Manning's score test with rates restricted to the null
for non-inferiority, ``margin`` an absolute difference of rates.

**Means** (revenue per request) are heavy-tailed: most requests earn 0, a few earn a lot, and a
5 % canary's mean is then skewed to the right. A z-test on raw values is anti-conservative in
exactly the direction that matters: the canary's mean is usually below the population's, with
an occasional large order pulling it up, so "canary lower" is claimed too often at equal
revenue. The judge winsorizes: values are capped at the 0.5th and 99.5th percentiles of both
revisions' values pooled (the same caps for both, so at equal distributions the capped means
are equal too), which bounds them and lets the central limit theorem hold at a few thousand
requests, then applies Welch's z-test (unequal variances: the canary's sample is far smaller),
with one change: the canary's variance is the larger of its own and the primary's. Capping
alone does not suffice: with 3 % of requests buying, a canary that drew few buyers has both a
low mean and a low variance, so its own variance makes a low mean look significant too often.
At equal distributions the primary's variance, estimated from twenty times the requests, is
the canary's too, and the larger of the two keeps Welch's protection where the canary's spread
really is larger. Winsorizing rather than Yuen's trimmed means, because the KPI is the mean:
with 97 % of requests at 0 a 20 % trimmed mean is 0, and trimming less still drops the large
orders a bad canary might lose, while a cap at the 99.5th percentile keeps them, counted at
the cap. Non-inferiority is on the ratio: H0
``mean_canary <= (1 - margin) mean_primary`` (higher is better), tested by
``(m_c - (1 - margin) m_p) / sqrt(v_c + (1 - margin)^2 v_p)``. ``benchmarks/kpi_gate_power.py``
measures its false rollbacks on log-normal and Pareto revenue.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from controller.analysis_types import GateResult, Verdict
from controller.errors import InputError
from controller.gates.judge_config import JudgeConfig
from controller.gates.judge_statistics import compare_error_rates, look_alphas
from controller.gates.kpi_policy import KpiCheck
from controller.gates.kpi_samples import MeanSample, RateSample

__all__ = [
    "GATE_PREFIX",
    "WINSOR_PERCENTILE",
    "KpiComparison",
    "KpiJudgement",
    "compare_means",
    "compare_rates",
    "judge_kpi",
    "kpi_gate",
]

GATE_PREFIX = "kpi"
#: Values of a mean are capped at this percentile of both revisions' values pooled (and at
#: 100 minus it from below).
WINSOR_PERCENTILE = 99.5


def kpi_gate(name: str) -> str:
    """The gate name of the KPI check ``name`` in results and commit bodies: ``kpi/NAME``."""
    return f"{GATE_PREFIX}/{name}"


@dataclass(frozen=True)
class KpiComparison:
    """Canary against primary on one KPI: the two one-sided tests' p-values."""

    canary_value: float
    primary_value: float
    #: Canary minus primary: absolute for a rate, relative to the primary's mean for a mean.
    difference: float
    #: One-sided p-value of "the canary is worse than the primary".
    p_worse: float
    #: One-sided p-value of "the canary is worse by the margin or more".
    p_beyond_margin: float
    #: A mean's winsorizing caps (low, high); None for a rate.
    caps: tuple[float, float] | None = None


@dataclass(frozen=True)
class KpiJudgement:
    """One KPI check's verdict at one look, with the numbers behind it."""

    name: str
    verdict: Verdict
    #: One line for a commit body: "ctr canary 4.10% vs primary 4.60% (n=2,310/41,880): ...".
    summary: str
    look: int
    canary_n: int
    primary_n: int
    #: None when either revision has too few requests to compare.
    comparison: KpiComparison | None
    #: The look's nominal level; None when the look cannot decide (too few samples, past
    #: maxLooks).
    level: float | None

    def gate_result(self) -> GateResult:
        """As a gate's result (gate ``kpi/NAME``), its numbers JSON-safe."""
        values = {
            "look": float(self.look),
            "canary_n": float(self.canary_n),
            "primary_n": float(self.primary_n),
        }
        if self.level is not None:
            values["look_alpha"] = self.level
        if (c := self.comparison) is not None:
            values |= {
                "canary_value": c.canary_value,
                "primary_value": c.primary_value,
                "p_worse": c.p_worse,
                "p_beyond_margin": c.p_beyond_margin,
            }
            if math.isfinite(c.difference):
                values["difference"] = c.difference
        return GateResult(kpi_gate(self.name), self.verdict, self.summary, values)


def _norm_sf(z: float) -> float:
    from scipy import special

    return float(special.ndtr(-z))


def compare_rates(
    canary: RateSample, primary: RateSample, *, margin: float, higher_is_better: bool
) -> KpiComparison:
    """Harm and non-inferiority tests of two rates (both samples need a request)."""
    if min(canary.n, primary.n) < 1:
        raise InputError(f"rates need a request per revision, got {canary.n}/{primary.n}")
    if higher_is_better:  # worse = more requests without the outcome
        worse = compare_error_rates(
            canary.n - canary.successes,
            canary.n,
            primary.n - primary.successes,
            primary.n,
            margin=margin,
        )
    else:
        worse = compare_error_rates(
            canary.successes, canary.n, primary.successes, primary.n, margin=margin
        )
    return KpiComparison(
        canary.rate,
        primary.rate,
        canary.rate - primary.rate,
        worse.p_worse,
        worse.p_inferior,
    )


def _z(numerator: float, variance: float) -> float:
    if variance > 0:
        return numerator / math.sqrt(variance)
    return math.copysign(math.inf, numerator) if numerator else 0.0


def compare_means(
    canary: Sequence[float], primary: Sequence[float], *, margin: float, higher_is_better: bool
) -> KpiComparison:
    """Welch's z-tests of harm and of non-inferiority (``margin`` relative to the primary's
    mean) on values winsorized at the pooled 0.5th and 99.5th percentiles, the canary's
    variance at least the primary's."""
    c, p = np.asarray(canary, dtype=float), np.asarray(primary, dtype=float)
    if min(c.size, p.size) < 2:
        raise InputError(f"means need two requests per revision, got {c.size}/{p.size}")
    if not (np.isfinite(c).all() and np.isfinite(p).all()):
        raise InputError("a mean's values must be finite numbers")
    low, high = np.percentile(np.concatenate([c, p]), [100 - WINSOR_PERCENTILE, WINSOR_PERCENTILE])
    c, p = np.clip(c, low, high), np.clip(p, low, high)
    mean_c, mean_p = float(c.mean()), float(p.mean())
    spread_c, spread_p = float(c.var(ddof=1)), float(p.var(ddof=1))
    # The canary's own variance falls with its mean (fewer large orders: a lower mean and a
    # smaller spread), which would make "lower" look significant too often; at least the
    # primary's variance breaks that link (module docstring).
    var_c, var_p = max(spread_c, spread_p) / c.size, spread_p / p.size
    sign = 1.0 if higher_is_better else -1.0
    bound = 1 - sign * margin  # the primary's mean times this is the margin's edge
    p_worse = _norm_sf(_z(sign * (mean_p - mean_c), var_c + var_p))
    p_beyond = _norm_sf(_z(sign * (mean_c - bound * mean_p), var_c + bound**2 * var_p))
    if mean_p:
        difference = (mean_c - mean_p) / abs(mean_p)
    else:
        difference = 0.0 if mean_c == mean_p else math.copysign(math.inf, mean_c)
    return KpiComparison(mean_c, mean_p, difference, p_worse, p_beyond, (float(low), float(high)))


def _compare(
    check: KpiCheck, canary: RateSample | MeanSample, primary: RateSample | MeanSample
) -> KpiComparison | None:
    higher = check.direction == "higher"
    if isinstance(canary, RateSample) and isinstance(primary, RateSample):
        if check.kind != "rate":
            raise InputError(f"KPI {check.name} is a mean: give it values, not counts")
        if min(canary.n, primary.n) < 1:
            return None
        return compare_rates(canary, primary, margin=check.margin, higher_is_better=higher)
    if isinstance(canary, MeanSample) and isinstance(primary, MeanSample):
        if check.kind != "mean":
            raise InputError(f"KPI {check.name} is a rate: give it counts, not values")
        if min(canary.n, primary.n) < 2:
            return None
        return compare_means(
            canary.values, primary.values, margin=check.margin, higher_is_better=higher
        )
    raise InputError(f"KPI {check.name}: the canary's and the primary's samples differ in kind")


def _describe(check: KpiCheck, comparison: KpiComparison | None, n: tuple[int, int]) -> str:
    counts = f"n={n[0]:,}/{n[1]:,}"
    if comparison is None:
        return f"{check.name} ({counts})"
    c = comparison
    worse_sign = "-" if check.direction == "higher" else "+"
    if check.kind == "rate":
        values = f"canary {c.canary_value:.2%} vs primary {c.primary_value:.2%} ({counts})"
        gap = f"{c.difference * 100:+.2f} pts, margin {worse_sign}{check.margin * 100:.2f} pts"
    else:
        capped = f"winsorized at {c.caps[1]:.4g}, " if c.caps is not None else ""
        values = f"canary {c.canary_value:.4g} vs primary {c.primary_value:.4g} ({capped}{counts})"
        gap = f"{c.difference:+.1%}, margin {worse_sign}{check.margin:.1%}"
    return f"{check.name} {values}: {gap}"


def judge_kpi(
    check: KpiCheck,
    canary: RateSample | MeanSample,
    primary: RateSample | MeanSample,
    *,
    look: int,
    judge: JudgeConfig | None = None,
) -> KpiJudgement:
    """Judge ``check`` at analysis ``look`` (1-based) of a step, on each revision's sample.

    ``judge`` gives the alpha, looks and spending a check does not set (default: the canary
    judge's defaults). Raises :class:`InputError` for a look below 1 or samples of the wrong
    kind (counts for a mean, values for a rate).
    """
    if look < 1:
        raise InputError(f"look {look} is not a 1-based analysis number")
    plan = check.plan(judge if judge is not None else JudgeConfig())
    comparison = _compare(check, canary, primary)
    described = _describe(check, comparison, (canary.n, primary.n))
    at_look = f"at look {look}/{plan.max_looks}"
    level: float | None = None
    if min(canary.n, primary.n) < check.min_samples or comparison is None:
        verdict = Verdict.INCONCLUSIVE
        reason = (
            f"too few samples: canary {canary.n:,}, primary {primary.n:,} "
            f"(minSamples {check.min_samples:,})"
        )
    elif look > plan.max_looks:
        verdict, reason = Verdict.INCONCLUSIVE, f"all {plan.max_looks} looks spent"
    else:
        level = look_alphas(plan.alpha, plan.max_looks, plan.spending)[look - 1]
        worse, beyond = comparison.p_worse, comparison.p_beyond_margin
        if worse <= level:
            verdict, reason = Verdict.FAIL, f"worse p={worse:.2g}"
        elif beyond <= level:
            verdict, reason = Verdict.PASS, f"within margin p={beyond:.2g}"
        else:
            verdict = Verdict.INCONCLUSIVE
            reason = f"worse p={worse:.2g}, within margin p={beyond:.2g}"
        reason = f"{reason} {at_look} (alpha {level:.2g})"
    summary = f"{described}, {reason} → {verdict}"
    return KpiJudgement(
        name=check.name,
        verdict=verdict,
        summary=summary,
        look=look,
        canary_n=canary.n,
        primary_n=primary.n,
        comparison=comparison,
        level=level,
    )
