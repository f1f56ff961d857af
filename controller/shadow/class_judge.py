"""The multiclass shadow judge: may a challenger classifier take client traffic?

With ``rollout.shadow.judge.classes`` set, the judge reads each answer as a decision among the
classes (:mod:`controller.shadow.class_samples`) and labels as class names, and checks:

- **errors**, **latency**: as the binary judge (:mod:`controller.shadow.judge`);
- **agreement**: the share of requests both decide alike (``minAgreement``);
- **macro-F1**, on labelled requests: the challenger's minus the champion's, with the seeded
  paired bootstrap stratified by the true class. Non-inferiority, as the binary task metric:
  passes when the one-sided ``1 - alpha`` lower bound is above ``-nonInferiorityMargin``,
  fails only when the challenger is significantly worse (upper bound below 0) by at least
  the margin, else inconclusive;
- **recall of each class** (``shadow/recall/CLASS``): the share of the class's labelled
  requests each model recognised. It fails when the challenger's recall is lower by more than
  ``nonInferiorityMargin`` *and* McNemar's test on that class's requests says it errs more
  (p <= alpha / the number of classes: Bonferroni, since any one class failing fails);
- **McNemar** on right and wrong over all labelled requests: the harm test.

Every labelled check needs ``minLabelled`` labels and ``minPositives`` of *each* class; below
that it is inconclusive, which never passes. The macro-F1 result also carries both confusion
matrices (rows the true class, columns the decided one), in its summary compactly and in the
judgement's ``details`` as Markdown tables for the commit body and the pull request. The
score shift has no meaning without scores and is not checked.
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

from controller.analysis_types import GateResult, Verdict
from controller.shadow.class_samples import ClassSamples
from controller.shadow.judge import (
    ShadowJudgement,
    ShadowPolicy,
    decide,
    errors_check,
    judgement_of,
    latency_check,
    mcnemar_check,
    result_of,
    too_few,
)
from controller.shadow.statistics import paired_bootstrap_macro_f1, paired_drop

__all__ = ["confusion_markdown", "confusion_matrix", "judge_classes"]

IntArray = npt.NDArray[np.int64]


def confusion_matrix(decided: IntArray, labels: IntArray, classes: int) -> IntArray:
    """Counts (classes, classes): row the true class, column the decided one."""
    cells = np.bincount(labels * classes + decided, minlength=classes * classes)
    matrix: IntArray = cells.reshape(classes, classes).astype(np.int64)
    return matrix


def _compact(matrix: IntArray) -> str:
    return "[" + "; ".join(" ".join(str(int(n)) for n in row) for row in matrix) + "]"


def confusion_markdown(
    classes: tuple[str, ...], matrices: dict[str, IntArray], labelled: int
) -> str:
    """Each model's confusion matrix as a small Markdown table."""
    lines = [
        f"Confusion matrices on the {labelled} labelled requests (rows: the true class; "
        "columns: the class decided):",
    ]
    for model, matrix in matrices.items():
        lines += [
            "",
            f"| {model} | " + " | ".join(classes) + " |",
            "|---" * (len(classes) + 1) + "|",
        ]
        lines += [
            f"| **{name}** | " + " | ".join(str(int(n)) for n in row) + " |"
            for name, row in zip(classes, matrix, strict=True)
        ]
    return "\n".join(lines) + "\n"


def _labelled(samples: ClassSamples) -> tuple[IntArray, IntArray, IntArray]:
    known = samples.labelled
    return samples.primary[known], samples.shadow[known], samples.labels[known]


def _label_shortfall(samples: ClassSamples, policy: ShadowPolicy, labels: IntArray) -> str:
    per_class = np.bincount(labels, minlength=len(samples.classes))
    if samples.size < policy.min_samples:
        return f"n={samples.size} below minSamples {policy.min_samples}"
    if labels.size < policy.min_labelled:
        return f"{labels.size} labelled, below minLabelled {policy.min_labelled}"
    short = [
        f"{name} {int(n)}"
        for name, n in zip(samples.classes, per_class, strict=True)
        if n < policy.min_positives
    ]
    if short:
        return f"{', '.join(short)} labelled, below minPositives {policy.min_positives} per class"
    return ""


def _agreement(samples: ClassSamples, policy: ShadowPolicy) -> GateResult:
    if samples.size == 0:
        return result_of("agreement", Verdict.INCONCLUSIVE, "no decided pairs")
    agreement = float(np.mean(samples.primary == samples.shadow))
    summary = (
        f"{agreement:.2%} of decisions agree (min {policy.min_agreement:.0%})"
        f"{too_few(samples, policy)}"
    )
    verdict = decide(samples.size >= policy.min_samples, agreement >= policy.min_agreement)
    return result_of("agreement", verdict, summary, agreement=agreement)


def _macro_f1(samples: ClassSamples, policy: ShadowPolicy) -> GateResult:
    primary, shadow, labels = _labelled(samples)
    k = len(samples.classes)
    if shortfall := _label_shortfall(samples, policy, labels):
        return result_of("macro-f1", Verdict.INCONCLUSIVE, f"macro-F1: {shortfall}")
    result = paired_bootstrap_macro_f1(
        primary, shadow, labels, classes=k, margin=policy.non_inferiority_margin,
        alpha=policy.alpha, resamples=policy.bootstrap_resamples, seed=policy.seed,
    )  # fmt: skip
    margin = policy.non_inferiority_margin
    ok = result.lower > -margin
    worse = result.upper < 0 and result.difference <= -margin
    champion = confusion_matrix(primary, labels, k)
    challenger = confusion_matrix(shadow, labels, k)
    summary = (
        f"macro-F1 {result.shadow:.3f} vs {result.primary:.3f} ({result.difference:+.3f}; "
        f"{1 - policy.alpha:.0%} lower bound {result.lower:+.3f} "
        f"{'>' if ok else '<='} -{margin:g} margin, "
        f"{result.resamples} paired resamples, seed {policy.seed}), {labels.size} labelled"
    )
    if not ok and not worse:
        summary += "; the interval is wider than the margin: more labels would narrow it"
    summary += (
        f"; confusion (rows true, columns decided: {'/'.join(samples.classes)}) "
        f"challenger {_compact(challenger)}, champion {_compact(champion)}"
    )
    values = {
        "shadow": result.shadow, "primary": result.primary, "difference": result.difference,
        "lower_bound": result.lower, "upper_bound": result.upper,
        "p_inferior": result.p_inferior, "labelled": float(labels.size),
    }  # fmt: skip
    for model, matrix in (("shadow", challenger), ("primary", champion)):
        for i, truth in enumerate(samples.classes):
            for j, decided in enumerate(samples.classes):
                values[f"{model}_confusion_{truth}_as_{decided}"] = float(matrix[i, j])
    verdict = Verdict.PASS if ok else Verdict.FAIL if worse else Verdict.INCONCLUSIVE
    return result_of("macro-f1", verdict, summary, **values)


def _gate_part(name: str) -> str:
    """A class name as part of a gate's name (letters, digits, ``._-``; others become ``-``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)


def _recalls(samples: ClassSamples, policy: ShadowPolicy) -> list[GateResult]:
    primary, shadow, labels = _labelled(samples)
    shortfall = _label_shortfall(samples, policy, labels)
    level = policy.alpha / len(samples.classes)
    results = []
    for k, name in enumerate(samples.classes):
        check = f"recall/{_gate_part(name)}"
        rows = labels == k
        n = int(rows.sum())
        if shortfall:
            results.append(result_of(check, Verdict.INCONCLUSIVE, f"{n} labelled; {shortfall}"))
            continue
        drop = paired_drop(
            primary[rows] == k, shadow[rows] == k,
            margin=policy.non_inferiority_margin, alpha=level,
        )  # fmt: skip
        recall_p, recall_s, test, worse = drop.primary, drop.shadow, drop.test, drop.worse
        summary = (
            f"recall {recall_s:.3f} vs {recall_p:.3f} ({recall_s - recall_p:+.3f}, max drop "
            f"{policy.non_inferiority_margin:g}) on {n} labelled {name}; only the champion "
            f"right on {test.b}, only the challenger on {test.c} (p={test.p_worse:.2g} that "
            f"the challenger misses more, alpha {level:.2g} = {policy.alpha:g}/"
            f"{len(samples.classes)} classes)"
        )
        values = {
            "shadow": recall_s, "primary": recall_p, "labelled": float(n),
            "b": float(test.b), "c": float(test.c), "p_worse": test.p_worse,
        }  # fmt: skip
        results.append(result_of(check, Verdict.FAIL if worse else Verdict.PASS, summary, **values))
    return results


def _mcnemar(samples: ClassSamples, policy: ShadowPolicy) -> GateResult:
    primary, shadow, labels = _labelled(samples)
    if shortfall := _label_shortfall(samples, policy, labels):
        return result_of("mcnemar", Verdict.INCONCLUSIVE, shortfall)
    return mcnemar_check(primary == labels, shadow == labels, policy.alpha)


def judge_classes(
    samples: ClassSamples, policy: ShadowPolicy, downstream: tuple[GateResult, ...] = ()
) -> ShadowJudgement:
    """Judge the challenger classifier's decisions against the champion's on the same requests,
    with the ``downstream`` checks of the graph it routes
    (:mod:`controller.shadow.downstream`), when it routes one."""
    results = (
        errors_check(samples, policy),
        _agreement(samples, policy),
        latency_check(samples, policy),
        _macro_f1(samples, policy),
        *_recalls(samples, policy),
        _mcnemar(samples, policy),
        *downstream,
    )
    primary, shadow, labels = _labelled(samples)
    k = len(samples.classes)
    details = ""
    if labels.size:
        matrices = {
            "challenger": confusion_matrix(shadow, labels, k),
            "champion": confusion_matrix(primary, labels, k),
        }
        details = confusion_markdown(samples.classes, matrices, int(labels.size))
    return judgement_of(results, samples.size, int(labels.size), details)
