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

from dataclasses import dataclass

from controller.analysis_types import GateResult, RevisionTraffic, Verdict
from controller.errors import InputError
from controller.gates.judge_config import JudgeConfig, Spending
from controller.gates.judge_statistics import (
    ErrorRateComparison,
    LatencyComparison,
    alpha_spent,
    compare_error_rates,
    compare_latency,
    look_alphas,
)
from controller.gates.latency_buckets import aligned, histogram_from_cumulative, rebin

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
        c, p = aligned(canary.latency, primary.latency)
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
