"""The sequential watch of a canary between analyses: Wald's SPRT on its error rate.

An analysis comes every ``interval``; a canary that fails a fifth of its requests should not
keep failing clients until then. Between analyses the rollout reads the canary revision's own
request counters (and the primary's, for its error rate) every ``watch.period`` and asks one
question of them: is the canary's error rate p at most p0, or at least p1?

- p0 = the primary's error rate over the same window + the watch's ``errorMargin`` (0.01 by
  default, the judge's default non-inferiority margin, but the watch's own: an environment
  that loosens its judge's margin for a noisy laptop does not slow its watch down);
- p1 = p0 + ``minDetectableErrorRate`` (0.19 by default, so 1 % against 20 % next to an
  error-free primary): the error rate worth stopping for. The watch is for faults that show
  at once; a canary a few points worse is the analyses' to find, with more data;
- with n canary requests and e errors since the step's commit, the log-likelihood ratio is
  ``LLR = e ln(p1/p0) + (n - e) ln((1 - p1)/(1 - p0))``;
- H1 ("the canary is worse") is accepted once ``LLR >= ln((1 - beta)/alpha)`` (Wald's upper
  boundary), with at least ``minSamples`` requests and one error behind it: the watch then
  fails the canary, which is rolled back and quarantined as after a failed analysis.

Wald's approximation bounds the false alarm rate by about ``alpha`` and the missed-detection
rate by about ``beta`` (both 0.01 by default); to tell 1 % from 20 % errors at those levels
takes about 11 requests on average, ~3 s at 4 canary requests per second: two errors in the
first eight requests conclude, or three in 23. The lower boundary
``ln(beta/(1 - alpha))`` accepts H0, but the watch never promotes: only analyses move a step
forward, so accepting H0 only means "nothing to stop for yet" and the watch goes on. The counts
are cumulative from the step's commit, so a good canary's LLR drifts down and a fault that
appears late in a long step is the next analysis's to find; the watch is for what shows from
the start (a broken build, a wrong artefact), at the speed the evidence allows.

Pure: counts in, verdict out. The rollout reads the counts (:mod:`controller.rollout.analysis`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from controller.analysis_types import GateResult, Verdict

__all__ = [
    "GATE",
    "SprtBounds",
    "WatchConfig",
    "WatchCounts",
    "bounds",
    "hypotheses",
    "log_likelihood_ratio",
    "watch_verdict",
]

#: The gate's name in results and commit bodies.
GATE = "watch"
#: p0 is kept inside (0, 1 - minDetectableErrorRate) so that both hypotheses are probabilities
#: and the likelihood ratio is finite (an error-free primary with a zero margin means p0 0.1 %).
_P_MIN, _P_MAX = 0.001, 0.999


class WatchConfig(BaseModel):
    """``rollout.watch``: the sequential test of the canary's error rate between analyses."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    enabled: bool = Field(
        default=True,
        description="Watch the canary's own request counters between analyses and roll back "
        "as soon as the SPRT shows its error rate is worse (never promotes).",
    )
    period_seconds: float = Field(
        default=1.0,
        alias="period",
        gt=0,
        le=3600,
        description="Seconds between two looks of the watch.",
    )
    error_margin: float = Field(
        default=0.01,
        alias="errorMargin",
        ge=0,
        lt=0.5,
        description="p0 - the primary's error rate: how much more often than the primary the "
        "canary may fail and still be acceptable to the watch (absolute).",
    )
    min_detectable_error_rate: float = Field(
        default=0.19,
        alias="minDetectableErrorRate",
        gt=0,
        le=0.9,
        description="p1 - p0: how much worse than acceptable (the primary's error rate plus "
        "errorMargin) an error rate must be for the watch to stop the canary.",
    )
    alpha: float = Field(
        default=0.01,
        gt=0,
        lt=0.5,
        description="Probability of stopping a canary whose error rate is acceptable (p0).",
    )
    beta: float = Field(
        default=0.01,
        gt=0,
        lt=0.5,
        description="Probability of not stopping a canary at p1 (Wald's lower boundary).",
    )
    min_samples: int = Field(
        default=5,
        alias="minSamples",
        ge=1,
        description="Canary requests since the step's commit before the watch may conclude.",
    )


@dataclass(frozen=True)
class WatchCounts:
    """Requests and 5xx answers of each revision since the step's commit."""

    canary_requests: int
    canary_errors: int
    primary_requests: int = 0
    primary_errors: int = 0


@dataclass(frozen=True)
class SprtBounds:
    """The hypotheses and Wald's boundaries of one look."""

    p0: float
    p1: float
    upper: float
    lower: float


def hypotheses(counts: WatchCounts, *, margin: float, min_detectable: float) -> tuple[float, float]:
    """(p0, p1): the primary's observed error rate plus ``margin``, and ``min_detectable`` more."""
    requests = max(counts.primary_requests, 0)
    errors = min(max(counts.primary_errors, 0), requests)
    primary = errors / requests if requests else 0.0
    p0 = min(max(primary + margin, _P_MIN), _P_MAX - min_detectable)
    return p0, p0 + min_detectable


def bounds(p0: float, p1: float, *, alpha: float, beta: float) -> SprtBounds:
    """Wald's boundaries: accept H1 at ``ln((1-beta)/alpha)``, H0 at ``ln(beta/(1-alpha))``."""
    return SprtBounds(p0, p1, math.log((1 - beta) / alpha), math.log(beta / (1 - alpha)))


def log_likelihood_ratio(requests: int, errors: int, p0: float, p1: float) -> float:
    """log P(data | p1) - log P(data | p0) for ``errors`` of ``requests`` Bernoulli trials."""
    if not 0 < p0 < p1 < 1:
        raise ValueError(f"need 0 < p0 < p1 < 1, not p0={p0}, p1={p1}")
    errors = min(max(errors, 0), requests)
    return errors * math.log(p1 / p0) + (requests - errors) * math.log((1 - p1) / (1 - p0))


def watch_verdict(counts: WatchCounts, config: WatchConfig) -> GateResult:
    """FAIL once the evidence that the canary is worse is conclusive; otherwise INCONCLUSIVE
    (too few requests, or not conclusive yet) or PASS (H0 accepted so far: nothing to stop
    for). The watch never promotes: a PASS here only means "keep serving until the analysis".
    """
    n, e = max(counts.canary_requests, 0), max(counts.canary_errors, 0)
    e = min(e, n)
    p0, p1 = hypotheses(
        counts, margin=config.error_margin, min_detectable=config.min_detectable_error_rate
    )
    sprt = bounds(p0, p1, alpha=config.alpha, beta=config.beta)
    llr = log_likelihood_ratio(n, e, p0, p1)
    primary_n = max(counts.primary_requests, 0)
    primary_e = min(max(counts.primary_errors, 0), primary_n)
    primary = (
        f"primary {_pct(primary_e / primary_n)} of {primary_n:,}"
        if primary_n
        else "no primary requests"
    )
    seen = f"canary {e:,} errors in {n:,} requests since the step ({_pct(e / n if n else 0.0)})"
    test = (
        f"SPRT p0 {_pct(p0)} vs p1 {_pct(p1)} ({primary}): LLR {llr:.2f}, "
        f"boundary {sprt.upper:.2f} (alpha {config.alpha:g}, beta {config.beta:g})"
    )
    values = {
        "requests": float(n),
        "errors": float(e),
        "llr": llr,
        "upper": sprt.upper,
        "lower": sprt.lower,
        "p0": p0,
        "p1": p1,
    }
    if n < config.min_samples:
        summary = f"{GATE}: {seen}, fewer than the {config.min_samples} needed; {test}"
        return GateResult(GATE, Verdict.INCONCLUSIVE, summary, values)
    if e > 0 and llr >= sprt.upper:
        summary = f"{GATE}: {seen}; {test}: the canary's error rate is above {_pct(p0)}"
        return GateResult(GATE, Verdict.FAIL, summary, values)
    if llr <= sprt.lower:
        return GateResult(GATE, Verdict.PASS, f"{GATE}: {seen}; {test}: no evidence", values)
    return GateResult(GATE, Verdict.INCONCLUSIVE, f"{GATE}: {seen}; {test}", values)


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.3g}%"
