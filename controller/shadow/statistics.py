"""Paired comparisons of two models' answers to the same requests, as pure numpy and scipy.

A shadow evaluation has what a holdout comparison lacks, the same live requests answered by
both models, and what a canary lacks, every request answered twice. The tests exploit the
pairing:

- **Task metric, paired bootstrap.** Each resample draws requests (not scores), so both
  models are scored on the same resampled requests and the difference keeps their
  correlation; its spread is far narrower than two independent intervals would suggest.
  Resampling is stratified by label (positives and negatives are each drawn with
  replacement to their own count): fraud is rare, and an unstratified resample without a
  positive has no PR AUC. A resample is a vector of multiplicities over the requests, so
  every metric is computed for a whole block of resamples at once from one sort of the
  scores: cumulative weighted true and false positives at the end of each run of tied scores
  (the thresholds sklearn uses). With unit weights the metrics equal sklearn's
  ``average_precision_score`` and :func:`controller.quality.classification_metrics.recall_at_fpr`,
  the one public recall at an FPR bound (these block kernels are private to the bootstrap).
- **Macro-F1, paired bootstrap**, for a classifier: the same resamples, stratified by the
  true class, each scoring both models' decisions by the mean over the classes of F1 from
  weighted confusion counts (equal to sklearn's ``f1_score(average="macro")`` over all the
  classes with unit weights).
- **McNemar's test** on the decisions at the serving threshold (a classifier's decisions):
  only requests where exactly one model is right carry information. Exact (binomial) below
  25 discordant pairs, else the chi-square statistic with continuity correction (Edwards), as
  commonly taught.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from controller.errors import InputError
from controller.shadow.policy import TaskMetric

__all__ = [
    "MCNEMAR_EXACT_BELOW",
    "McNemarResult",
    "PairedBootstrap",
    "TaskMetric",
    "average_precision",
    "macro_f1",
    "mcnemar",
    "paired_bootstrap",
    "paired_bootstrap_macro_f1",
    "stratified_resample_counts",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
#: Below this many discordant pairs McNemar's test is exact (binomial).
MCNEMAR_EXACT_BELOW = 25
#: Resamples times requests computed at once: bounds the bootstrap's memory (about six arrays
#: of this many float64 at a time, ~25 MB) whatever the number of requests.
_BLOCK_CELLS = 500_000


def _cumulative(
    scores: FloatArray, labels: FloatArray, weights: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Weighted true and false positives at each distinct threshold, highest score first.

    ``weights`` is (resamples, n); both results are (resamples, distinct scores).
    """
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    ends = np.flatnonzero(np.diff(ordered, append=-np.inf))  # last index of each tie run
    w = weights[:, order]
    true_positives = np.cumsum(w * labels[order], axis=1)[:, ends]
    false_positives = np.cumsum(w * (1.0 - labels[order]), axis=1)[:, ends]
    return true_positives, false_positives


def _average_precision(scores: FloatArray, labels: FloatArray, weights: FloatArray) -> FloatArray:
    tp, fp = _cumulative(scores, labels, weights)
    positives = tp[:, -1]
    gained = np.diff(tp, axis=1, prepend=0.0)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        result: FloatArray = np.sum(gained * precision, axis=1) / positives
    return result


def _recall_at_fpr(
    scores: FloatArray, labels: FloatArray, weights: FloatArray, max_fpr: float
) -> FloatArray:
    tp, fp = _cumulative(scores, labels, weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        fpr = fp / fp[:, -1:]
        tpr = tp / tp[:, -1:]
    result: FloatArray = np.max(np.where(fpr <= max_fpr, tpr, 0.0), axis=1, initial=0.0)
    return result


def _metric(
    metric: TaskMetric, scores: FloatArray, labels: FloatArray, weights: FloatArray, max_fpr: float
) -> FloatArray:
    if metric == "pr_auc":
        return _average_precision(scores, labels, weights)
    return _recall_at_fpr(scores, labels, weights, max_fpr)


def _checked(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if s.ndim != 1 or s.shape != y.shape:
        raise InputError(f"scores {s.shape} and labels {y.shape} must be 1-D of equal length")
    if not np.all(np.isfinite(s)):
        raise InputError("scores must be finite numbers")
    if not np.all((y == 0) | (y == 1)):
        raise InputError("labels must be 0 or 1")
    if y.min(initial=1) == y.max(initial=0):
        raise InputError("the metric needs both a positive and a negative label")
    return s, y


def _weights(weights: npt.ArrayLike | None, size: int) -> FloatArray:
    if weights is None:
        return np.ones((1, size))
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (size,) or np.any(w < 0) or not np.all(np.isfinite(w)):
        raise InputError(f"weights must be {size} finite, non-negative numbers")
    return w[None, :]


def average_precision(
    scores: npt.ArrayLike, labels: npt.ArrayLike, weights: npt.ArrayLike | None = None
) -> float:
    """PR AUC as average precision, equal to ``sklearn.metrics.average_precision_score``
    (with ``sample_weight=weights``)."""
    s, y = _checked(scores, labels)
    return float(_average_precision(s, y, _weights(weights, s.size))[0])


def stratified_resample_counts(
    labels: npt.ArrayLike, resamples: int, rng: np.random.Generator
) -> FloatArray:
    """Multiplicities (resamples, n) of bootstrap resamples drawn within each label (0 and 1,
    or each class), in ascending order of the labels."""
    y = np.asarray(labels)
    counts = np.zeros((resamples, y.size), dtype=np.float64)
    rows = np.arange(resamples)[:, None] * y.size
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        drawn = members[rng.integers(0, members.size, size=(resamples, members.size))]
        counts += np.bincount((drawn + rows).ravel(), minlength=resamples * y.size).reshape(
            resamples, y.size
        )
    return counts


@dataclass(frozen=True)
class PairedBootstrap:
    """The shadow's metric minus the primary's, with a paired bootstrap's view of it."""

    metric: TaskMetric | Literal["macro_f1"]
    primary: float
    shadow: float
    #: shadow - primary on the labelled requests as they are.
    difference: float
    #: One-sided lower confidence bound (the alpha quantile of the resampled differences).
    lower: float
    #: One-sided upper confidence bound (the 1 - alpha quantile).
    upper: float
    #: Share of resamples where the shadow is worse by the margin or more (a bootstrap p-value
    #: of "the shadow is inferior").
    p_inferior: float
    resamples: int


def paired_bootstrap(
    primary: npt.ArrayLike,
    shadow: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    metric: TaskMetric,
    margin: float,
    alpha: float,
    resamples: int,
    seed: int,
    max_fpr: float = 0.01,
) -> PairedBootstrap:
    """Compare two models' scores for the same labelled requests; deterministic for a seed."""
    p, y = _checked(primary, labels)
    s, _ = _checked(shadow, labels)
    if p.shape != s.shape:
        raise InputError(f"primary {p.shape} and shadow {s.shape} scores differ in length")
    if resamples < 1 or not 0 < alpha < 1:
        raise InputError(f"{resamples} resamples at alpha {alpha} is not a bootstrap")
    ones = np.ones((1, p.size))
    primary_value = float(_metric(metric, p, y, ones, max_fpr)[0])
    shadow_value = float(_metric(metric, s, y, ones, max_fpr)[0])
    d = _resampled_differences(
        y,
        resamples,
        seed,
        lambda w: _metric(metric, s, y, w, max_fpr) - _metric(metric, p, y, w, max_fpr),
    )
    return PairedBootstrap(
        metric=metric,
        primary=primary_value,
        shadow=shadow_value,
        difference=shadow_value - primary_value,
        lower=float(np.quantile(d, alpha)),
        upper=float(np.quantile(d, 1 - alpha)),
        p_inferior=float(np.mean(d <= -margin)),
        resamples=resamples,
    )


def _resampled_differences(
    labels: npt.NDArray[np.generic],
    resamples: int,
    seed: int,
    difference: Callable[[FloatArray], FloatArray],
) -> FloatArray:
    """``difference`` of each of ``resamples`` stratified resamples' weights, in blocks."""
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // labels.size)
    differences = []
    for start in range(0, resamples, block):
        weights = stratified_resample_counts(labels, min(block, resamples - start), rng)
        differences.append(difference(weights))
    return np.concatenate(differences)


def _macro_f1(
    predicted: IntArray, labels: IntArray, classes: int, weights: FloatArray
) -> FloatArray:
    """Macro-F1 over ``classes`` classes (0 to classes - 1) for each row of ``weights``; a
    class nobody decided and nobody is counts 0, as sklearn's ``zero_division=0``."""
    total = np.zeros(weights.shape[0])
    for k in range(classes):
        decided, actual = predicted == k, labels == k
        hits = weights @ (decided & actual).astype(np.float64)
        both = weights @ decided.astype(np.float64) + weights @ actual.astype(np.float64)
        total += np.divide(2 * hits, both, out=np.zeros_like(hits), where=both > 0)
    result: FloatArray = total / classes
    return result


def _checked_classes(
    predicted: npt.ArrayLike, labels: npt.ArrayLike, classes: int
) -> tuple[IntArray, IntArray]:
    d = np.asarray(predicted)
    y = np.asarray(labels)
    if d.ndim != 1 or d.shape != y.shape or y.size == 0:
        raise InputError(f"decisions {d.shape} and labels {y.shape} must be 1-D of equal length")
    if classes < 2 or not all(
        np.issubdtype(a.dtype, np.integer) and np.all((a >= 0) & (a < classes)) for a in (d, y)
    ):
        raise InputError(f"decisions and labels must be class indices 0 to {classes - 1}")
    return d.astype(np.int64), y.astype(np.int64)


def macro_f1(predicted: npt.ArrayLike, labels: npt.ArrayLike, classes: int) -> float:
    """Macro-F1 of class indices ``predicted`` against ``labels`` over ``classes`` classes,
    equal to ``sklearn.metrics.f1_score(labels, predicted, average="macro",
    labels=range(classes), zero_division=0)``."""
    d, y = _checked_classes(predicted, labels, classes)
    return float(_macro_f1(d, y, classes, np.ones((1, d.size)))[0])


def paired_bootstrap_macro_f1(
    primary: npt.ArrayLike,
    shadow: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    classes: int,
    margin: float,
    alpha: float,
    resamples: int,
    seed: int,
) -> PairedBootstrap:
    """Compare two classifiers' decisions (class indices) for the same labelled requests by
    macro-F1, resampling requests within each true class; deterministic for a seed."""
    p, y = _checked_classes(primary, labels, classes)
    s, _ = _checked_classes(shadow, labels, classes)
    if resamples < 1 or not 0 < alpha < 1:
        raise InputError(f"{resamples} resamples at alpha {alpha} is not a bootstrap")
    ones = np.ones((1, p.size))
    primary_value = float(_macro_f1(p, y, classes, ones)[0])
    shadow_value = float(_macro_f1(s, y, classes, ones)[0])
    d = _resampled_differences(
        y,
        resamples,
        seed,
        lambda w: _macro_f1(s, y, classes, w) - _macro_f1(p, y, classes, w),
    )
    return PairedBootstrap(
        metric="macro_f1",
        primary=primary_value,
        shadow=shadow_value,
        difference=shadow_value - primary_value,
        lower=float(np.quantile(d, alpha)),
        upper=float(np.quantile(d, 1 - alpha)),
        p_inferior=float(np.mean(d <= -margin)),
        resamples=resamples,
    )


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on paired decisions: ``b`` only the primary right, ``c`` only the shadow."""

    b: int
    c: int
    #: Chi-square with continuity correction, or the smaller count when exact.
    statistic: float
    #: Two-sided p-value of "both models are right equally often".
    pvalue: float
    #: One-sided p-value of "the shadow is wrong more often" (exact binomial tail).
    p_worse: float
    exact: bool


def mcnemar(b: int, c: int, *, exact: bool | None = None) -> McNemarResult:
    """McNemar's test of ``b`` requests only the primary got right against ``c`` only the
    shadow did; exact (binomial) below :data:`MCNEMAR_EXACT_BELOW` discordant pairs."""
    if b < 0 or c < 0:
        raise InputError(f"discordant counts {b} and {c} cannot be negative")
    n = b + c
    use_exact = n < MCNEMAR_EXACT_BELOW if exact is None else exact
    from scipy import stats as scipy_stats  # on use: importing scipy.stats costs ~0.6 s

    p_worse = float(scipy_stats.binom.sf(b - 1, n, 0.5)) if n else 1.0
    if n == 0:
        return McNemarResult(b, c, 0.0, 1.0, 1.0, use_exact)
    if use_exact:
        pvalue = min(1.0, 2.0 * float(scipy_stats.binom.cdf(min(b, c), n, 0.5)))
        return McNemarResult(b, c, float(min(b, c)), pvalue, p_worse, True)
    statistic = max(abs(b - c) - 1.0, 0.0) ** 2 / n
    pvalue = float(scipy_stats.chi2.sf(statistic, 1))
    return McNemarResult(b, c, statistic, pvalue, p_worse, False)


@dataclass(frozen=True)
class PairedDrop:
    """How much less often the shadow is right than the primary on the same requests, and
    whether that is harm: a drop beyond the margin that McNemar's test confirms."""

    primary: float
    shadow: float
    test: McNemarResult
    worse: bool


def paired_drop(
    primary_right: npt.NDArray[np.bool_],
    shadow_right: npt.NDArray[np.bool_],
    *,
    margin: float,
    alpha: float,
) -> PairedDrop:
    """The two shares right, McNemar's test on the discordant requests, and ``worse``: the
    shadow's share is lower by more than ``margin`` and ``p_worse <= alpha``."""
    primary, shadow = float(primary_right.mean()), float(shadow_right.mean())
    test = mcnemar(
        int(np.sum(primary_right & ~shadow_right)), int(np.sum(~primary_right & shadow_right))
    )
    return PairedDrop(primary, shadow, test, primary - shadow > margin and test.p_worse <= alpha)
