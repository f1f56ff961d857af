"""The shadow judge: may a challenger that answered mirrored traffic take client traffic?

A canary judge sees what clients saw (errors, latency); it cannot see a model that answers
fast and wrong. In shadow, the challenger answers copies of the champion's live requests, and
both answers are logged (:class:`~controller.ports.PredictionStore`), so it is judged on what it
predicts, before any client depends on it:

- **errors**: the share of copies the challenger failed to answer with a score;
- **score shift**: PSI (over the champion's score deciles) and the KS statistic between the
  two models' scores, with :mod:`controller.drift.statistics`. Both are effect sizes, not
  tests: the samples are paired, so a two-sample p-value would mean nothing;
- **agreement**: the share of requests both models decide alike at the serving threshold;
- **latency**: the challenger's latency percentile against the champion's, both timed by the
  router on the same requests (at a mirror percentage below 100 the challenger is less
  loaded than the champion, which flatters it);
- **task metric**, on requests whose label has arrived: PR AUC, or recall at the operating
  false-positive rate, of challenger minus champion, with a seeded, stratified paired
  bootstrap (:mod:`controller.shadow.statistics`). Non-inferiority: the one-sided
  ``1 - alpha`` lower bound must be above ``-nonInferiorityMargin``;
- **McNemar** on the labelled decisions at the threshold: a harm test, failing when the
  challenger is wrong significantly more often (one-sided exact binomial p <= alpha).

Its input, :class:`~controller.shadow.samples.ShadowSamples`, is read from the
prediction log's pairs or built from plain observations.

With ``classes`` set the judge is multiclass (:mod:`controller.shadow.class_judge`): each answer
is read as a decision among the classes, labels are class names, and it checks errors,
agreement, latency, macro-F1, each class's recall and McNemar. Unset, this binary judge runs
as it always has.

A check without enough data is inconclusive: every check below ``minSamples`` scored pairs,
the labelled checks below ``minLabelled`` labels or ``minPositives`` of either class. The
verdict is FAIL when any check fails, else INCONCLUSIVE when any is inconclusive, else PASS:
too few samples never pass (the errors check can fail early, since a challenger that answers
nothing has no scores to count).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from controller.analysis_types import GateResult, Verdict
from controller.drift.statistics import bin_counts, ks_2samp, psi, quantile_bin_edges
from controller.shadow.policy import ShadowPolicy
from controller.shadow.samples import ShadowSamples
from controller.shadow.statistics import mcnemar, paired_bootstrap
from controller.text.markdown_text import table_cell

__all__ = [
    "GATE_PREFIX",
    "PairedAnswers",
    "ShadowJudgement",
    "ShadowPolicy",
    "decide",
    "errors_check",
    "judge_shadow",
    "judgement_of",
    "latency_check",
    "mcnemar_check",
    "result_of",
    "shadow_report_markdown",
    "too_few",
]

GATE_PREFIX = "shadow"
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ShadowJudgement:
    """The verdict on a challenger, with one result per check."""

    verdict: Verdict
    reason: str
    results: tuple[GateResult, ...]
    samples: int
    labelled: int
    #: Markdown after the checks, for the commit body and the pull request (the multiclass
    #: judge's confusion matrices); empty for the binary judge.
    details: str = ""


class PairedAnswers(Protocol):
    """What the errors and latency checks read, the same for a binary and a multiclass judge."""

    @property
    def size(self) -> int: ...

    @property
    def shadow_failures(self) -> int: ...

    @property
    def primary_latency_ms(self) -> FloatArray: ...

    @property
    def shadow_latency_ms(self) -> FloatArray: ...


def result_of(check: str, verdict: Verdict, summary: str, **values: float) -> GateResult:
    """The result of one check, named ``shadow/CHECK``, its summary led by the name."""
    name = f"{GATE_PREFIX}/{check}"
    return GateResult(name, verdict, f"{name}: {summary} — {verdict}", values)


def decide(enough: bool, ok: bool) -> Verdict:
    """Inconclusive without ``enough`` data, else pass when ``ok``."""
    if not enough:
        return Verdict.INCONCLUSIVE
    return Verdict.PASS if ok else Verdict.FAIL


def errors_check(samples: PairedAnswers, policy: ShadowPolicy) -> GateResult:
    """The share of mirrored copies the challenger failed to answer."""
    total = samples.size + samples.shadow_failures
    rate = samples.shadow_failures / total if total else 0.0
    verdict = decide(total >= policy.min_samples, rate <= policy.max_error_rate)
    summary = (
        f"{rate:.2%} of copies failed ({samples.shadow_failures}/{total}, "
        f"max {policy.max_error_rate:.2%})"
    )
    return result_of("errors", verdict, summary, error_rate=rate, copies=float(total))


def too_few(samples: PairedAnswers, policy: ShadowPolicy) -> str:
    """``, n=… below minSamples …`` when there are too few pairs, else nothing."""
    n = samples.size
    return f", n={n} below minSamples {policy.min_samples}" if n < policy.min_samples else ""


def _score_shift(samples: ShadowSamples, policy: ShadowPolicy) -> GateResult:
    if samples.size == 0:
        return result_of("score-shift", Verdict.INCONCLUSIVE, "no scored pairs")
    edges = quantile_bin_edges(samples.primary, policy.psi_bins)
    index = psi(bin_counts(samples.primary, edges), bin_counts(samples.shadow, edges))
    with warnings.catch_warnings():  # scipy may fall back from its exact p-value, unused here
        warnings.simplefilter("ignore", RuntimeWarning)
        ks = ks_2samp(samples.primary, samples.shadow).statistic
    ok = index <= policy.max_score_psi and ks <= policy.max_score_ks
    summary = (
        f"PSI {index:.3f} (max {policy.max_score_psi:g}), KS {ks:.3f} "
        f"(max {policy.max_score_ks:g}){too_few(samples, policy)}"
    )
    verdict = decide(samples.size >= policy.min_samples, ok)
    return result_of("score-shift", verdict, summary, psi=index, ks=ks, n=float(samples.size))


def _agreement(samples: ShadowSamples, policy: ShadowPolicy) -> GateResult:
    if samples.size == 0:
        return result_of("agreement", Verdict.INCONCLUSIVE, "no scored pairs")
    primary, shadow = samples.primary >= policy.threshold, samples.shadow >= policy.threshold
    agreement = float(np.mean(primary == shadow))
    flagged_p, flagged_s = float(np.mean(primary)), float(np.mean(shadow))
    summary = (
        f"{agreement:.2%} of decisions agree at threshold {policy.threshold:g} "
        f"(min {policy.min_agreement:.0%}); flagged {flagged_s:.2%} vs {flagged_p:.2%}"
        f"{too_few(samples, policy)}"
    )
    verdict = decide(samples.size >= policy.min_samples, agreement >= policy.min_agreement)
    values = {"agreement": agreement, "shadow_flagged": flagged_s, "primary_flagged": flagged_p}
    return result_of("agreement", verdict, summary, **values)


def latency_check(samples: PairedAnswers, policy: ShadowPolicy) -> GateResult:
    """The challenger's latency percentile against the champion's on the same requests."""
    if samples.size == 0:
        return result_of("latency", Verdict.INCONCLUSIVE, "no scored pairs")
    q = policy.latency_percentile
    primary = float(np.percentile(samples.primary_latency_ms, q))
    shadow = float(np.percentile(samples.shadow_latency_ms, q))
    increase = shadow / primary - 1 if primary > 0 else (0.0 if shadow == 0 else math.inf)
    summary = (
        f"p{q:g} {shadow:.1f} ms vs {primary:.1f} ms ({increase:+.0%}, "
        f"max +{policy.max_latency_increase:.0%}){too_few(samples, policy)}"
    )
    verdict = decide(samples.size >= policy.min_samples, increase <= policy.max_latency_increase)
    values = {"shadow_ms": shadow, "primary_ms": primary, "increase": increase}
    return result_of("latency", verdict, summary, **values)


def _labelled(samples: ShadowSamples) -> tuple[FloatArray, FloatArray, FloatArray]:
    known = ~np.isnan(samples.labels)
    return samples.primary[known], samples.shadow[known], samples.labels[known]


def _label_shortfall(samples: ShadowSamples, policy: ShadowPolicy, labels: FloatArray) -> str:
    positives = int(labels.sum())
    negatives = labels.size - positives
    if samples.size < policy.min_samples:
        return f"n={samples.size} below minSamples {policy.min_samples}"
    if labels.size < policy.min_labelled:
        return f"{labels.size} labelled, below minLabelled {policy.min_labelled}"
    if min(positives, negatives) < policy.min_positives:
        return (
            f"{positives} positive and {negatives} negative labels, "
            f"below minPositives {policy.min_positives}"
        )
    return ""


def _task_metric(samples: ShadowSamples, policy: ShadowPolicy) -> GateResult:
    primary, shadow, labels = _labelled(samples)
    name = "PR AUC" if policy.task_metric == "pr_auc" else f"recall@{policy.operating_fpr:g} FPR"
    if shortfall := _label_shortfall(samples, policy, labels):
        return result_of("task-metric", Verdict.INCONCLUSIVE, f"{name}: {shortfall}")
    result = paired_bootstrap(
        primary, shadow, labels, metric=policy.task_metric,
        margin=policy.non_inferiority_margin, alpha=policy.alpha,
        resamples=policy.bootstrap_resamples, seed=policy.seed, max_fpr=policy.operating_fpr,
    )  # fmt: skip
    margin = policy.non_inferiority_margin
    ok = result.lower > -margin
    # A failure needs evidence: significantly worse (the upper bound below 0) and by more than
    # the margin. An interval merely wider than the margin is a lack of labels, not a verdict.
    worse = result.upper < 0 and result.difference <= -margin
    summary = (
        f"{name} {result.shadow:.3f} vs {result.primary:.3f} ({result.difference:+.3f}; "
        f"{1 - policy.alpha:.0%} lower bound {result.lower:+.3f} "
        f"{'>' if ok else '<='} -{margin:g} margin, "
        f"{result.resamples} paired resamples, seed {policy.seed}), "
        f"{labels.size} labelled ({int(labels.sum())} positive)"
    )
    if not ok and not worse:
        # Not shown worse, only not shown close enough: say what would settle it.
        summary += "; the interval is wider than the margin: more labels would narrow it"
    values = {
        "shadow": result.shadow, "primary": result.primary, "difference": result.difference,
        "lower_bound": result.lower, "upper_bound": result.upper,
        "p_inferior": result.p_inferior, "labelled": float(labels.size),
    }  # fmt: skip
    verdict = Verdict.PASS if ok else Verdict.FAIL if worse else Verdict.INCONCLUSIVE
    return result_of("task-metric", verdict, summary, **values)


def _mcnemar(samples: ShadowSamples, policy: ShadowPolicy) -> GateResult:
    primary, shadow, labels = _labelled(samples)
    if shortfall := _label_shortfall(samples, policy, labels):
        return result_of("mcnemar", Verdict.INCONCLUSIVE, shortfall)
    truth = labels == 1
    primary_right = (primary >= policy.threshold) == truth
    shadow_right = (shadow >= policy.threshold) == truth
    return mcnemar_check(primary_right, shadow_right, policy.alpha)


def mcnemar_check(
    primary_right: npt.NDArray[np.bool_], shadow_right: npt.NDArray[np.bool_], alpha: float
) -> GateResult:
    """McNemar's harm test on which model was right per labelled request: FAIL when the
    challenger errs significantly more often (one-sided ``p <= alpha``)."""
    test = mcnemar(
        int(np.sum(primary_right & ~shadow_right)), int(np.sum(~primary_right & shadow_right))
    )
    worse = test.p_worse <= alpha
    summary = (
        f"only the champion right on {test.b}, only the challenger on {test.c} "
        f"(p={test.p_worse:.2g} that the challenger errs more, alpha {alpha:g}; "
        f"two-sided p={test.pvalue:.2g}{', exact' if test.exact else ''})"
    )
    values = {"b": float(test.b), "c": float(test.c), "p_worse": test.p_worse, "p": test.pvalue}
    return result_of("mcnemar", Verdict.FAIL if worse else Verdict.PASS, summary, **values)


def judge_shadow(samples: ShadowSamples, policy: ShadowPolicy) -> ShadowJudgement:
    """Judge the challenger's answers against the champion's on the same requests."""
    checks = (errors_check, _score_shift, _agreement, latency_check, _task_metric, _mcnemar)
    results = tuple(check(samples, policy) for check in checks)
    labelled = int(np.count_nonzero(~np.isnan(samples.labels)))
    return judgement_of(results, samples.size, labelled)


def judgement_of(
    results: tuple[GateResult, ...], samples: int, labelled: int, details: str = ""
) -> ShadowJudgement:
    """FAIL when any check failed, else INCONCLUSIVE when any is, else PASS."""
    failed = [r.gate for r in results if r.verdict is Verdict.FAIL]
    pending = [r.gate for r in results if r.verdict is Verdict.INCONCLUSIVE]
    if failed:
        verdict, reason = Verdict.FAIL, f"failed: {', '.join(failed)}"
    elif pending:
        verdict, reason = Verdict.INCONCLUSIVE, f"not enough data for {', '.join(pending)}"
    else:
        verdict, reason = Verdict.PASS, "every check passed"
    return ShadowJudgement(verdict, reason, results, samples, labelled, details)


def shadow_report_markdown(
    judgement: ShadowJudgement, *, model: str, champion: str, challenger: str
) -> str:
    """A compact Markdown report for a pull request comment or a commit body."""
    lines = [
        f"### Shadow evaluation of {model}: {challenger} vs {champion} — "
        f"**{judgement.verdict.upper()}**",
        "",
        f"{judgement.samples} mirrored requests scored by both, {judgement.labelled} labelled; "
        f"{judgement.reason}.",
        "",
        "| check | verdict | measured |",
        "|---|---|---|",
    ]
    for result in judgement.results:
        check = result.gate.removeprefix(f"{GATE_PREFIX}/")
        measured = result.summary.split(": ", 1)[-1].rsplit(" — ", 1)[0]
        lines.append(f"| {check} | {result.verdict} | {table_cell(measured)} |")
    if judgement.details:
        lines += ["", judgement.details.rstrip()]
    return "\n".join(lines) + "\n"
