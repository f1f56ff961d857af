"""The downstream check of a challenger classifier that routes a graph: are the graph's answers
as good when the challenger's decisions route its requests as when the champion's do?

A regime classifier is judged on its own decisions by the multiclass judge
(:mod:`controller.shadow.class_judge`). What its clients get, though, is the answer of the
specialist its decision routed the request to. With ``rollout.shadow.judge.downstream`` set,
the shadow phase replays each mirrored request twice through the graph's router (its deployed
spec and its live members): once with the classifier's steps answering what the champion
answered, once with what the challenger answered
(:class:`~controller.ports.GraphReplay`). Both answers are then scored on the named outcome
that arrived late for the request (``up``: did the next day's return rise), as the
specialists' task metric: directional accuracy, the answer's score at or above ``threshold``
against an outcome of 1.

Per request this gives two rights and wrongs on the same inputs, so the comparison is paired:

- ``shadow/downstream``: the challenger-routed accuracy minus the champion-routed one, with
  the one-sided ``1 - alpha`` bound of a paired difference of proportions (the discordant
  pairs' normal interval, Newcombe's simple form). Non-inferiority, as macro-F1: passes when
  the lower bound is above ``-nonInferiorityMargin``, fails when the challenger is
  significantly worse (upper bound below 0) by at least the margin, else inconclusive.
- ``shadow/downstream/REGIME``: the same accuracies on the requests whose true regime (the
  judge's own label) is ``REGIME``: a challenger that routes black swans worse is named. A
  regime fails when its accuracy drops by more than the margin *and* McNemar's test on its
  requests says the challenger-routed answers err more (``p <= alpha / regimes``).

Requests the champion-routed graph did not answer with a score are left out (the client got
no answer either); requests the challenger-routed graph failed count as wrong: a decision that
breaks the graph is harm. Every check needs ``minLabelled`` requests with the outcome (each
regime ``minPositives`` of them), else it is inconclusive, which never passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from controller.analysis_types import GateResult, Verdict
from controller.errors import InputError
from controller.outcome_scores import number_field
from controller.predictions import Label
from controller.shadow.class_judge import _gate_part
from controller.shadow.downstream_policy import DownstreamPolicy
from controller.shadow.judge import result_of
from controller.shadow.samples import score_of
from controller.shadow.statistics import paired_drop

__all__ = [
    "DOWNSTREAM_CHECK",
    "DownstreamSamples",
    "Routed",
    "judge_downstream",
]

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
#: The check's name under ``shadow/``.
DOWNSTREAM_CHECK = "downstream"
#: Where a request's regime label has not arrived.
_NO_REGIME = -1


@dataclass(frozen=True)
class Routed:
    """What the graph answered one request when a classifier's answer routed it."""

    status: int
    output: object


@dataclass(frozen=True)
class DownstreamSamples:
    """Per request with the outcome: whether the graph's answer was right, routed by the
    champion and by the challenger, and the request's true regime (an index into
    ``regimes``, -1 where its label has not arrived)."""

    regimes: tuple[str, ...]
    primary_right: BoolArray
    shadow_right: BoolArray
    regime: IntArray
    #: Requests the champion-routed graph did not answer with a score: left out.
    primary_unanswered: int = 0
    #: Requests the challenger-routed graph did not answer with a score: counted wrong.
    shadow_unanswered: int = 0

    @classmethod
    def from_routed(
        cls,
        regimes: Sequence[str],
        rows: Sequence[tuple[str, Label, str | None, Routed, Routed]],
        policy: DownstreamPolicy,
    ) -> DownstreamSamples:
        """From ``(request_id, outcome, regime or None, champion-routed, challenger-routed)``
        rows; an outcome that is not 0 or 1 is an :class:`InputError` naming the request."""
        names = tuple(regimes)
        index = {name: i for i, name in enumerate(names)}
        kept: list[tuple[bool, bool, int]] = []
        primary_unanswered = shadow_unanswered = 0
        for request_id, outcome, regime, champion, challenger in rows:
            truth = _binary(outcome)
            if truth is None:
                raise InputError(
                    f"request {request_id} has the outcome {policy.outcome}={outcome!r}, not "
                    f"0 or 1: send it again as 0 or 1 (the latest value wins)"
                )
            primary = _score(champion, policy)
            if primary is None:
                primary_unanswered += 1
                continue
            shadow = _score(challenger, policy)
            shadow_right = shadow is not None and (shadow >= policy.threshold) == truth
            shadow_unanswered += shadow is None
            where = index.get(regime, _NO_REGIME) if regime is not None else _NO_REGIME
            kept.append(((primary >= policy.threshold) == truth, shadow_right, where))
        table = np.array(kept, dtype=np.int64).reshape(-1, 3)
        return cls(
            names,
            table[:, 0].astype(np.bool_),
            table[:, 1].astype(np.bool_),
            np.ascontiguousarray(table[:, 2]),
            primary_unanswered,
            shadow_unanswered,
        )

    @property
    def size(self) -> int:
        """Requests scored both ways."""
        return int(self.primary_right.size)


def _binary(value: Label) -> bool | None:
    if isinstance(value, str) or not math.isfinite(value) or value not in (0.0, 1.0):
        return None
    return value == 1.0


def _score(routed: Routed, policy: DownstreamPolicy) -> float | None:
    if not 200 <= routed.status < 300:
        return None
    if policy.score_field is None:
        return score_of(routed.output)
    return number_field(routed.output, policy.score_field)


def _interval(primary: BoolArray, shadow: BoolArray, alpha: float) -> tuple[float, float, float]:
    """The paired accuracy difference (challenger minus champion) and its one-sided
    ``1 - alpha`` lower and upper bounds."""
    n = primary.size
    b = int(np.sum(primary & ~shadow))
    c = int(np.sum(~primary & shadow))
    difference = (c - b) / n
    variance = max((b + c) / n - difference**2, 0.0) / n
    z = NormalDist().inv_cdf(1 - alpha)
    spread = z * math.sqrt(variance)
    return difference, difference - spread, difference + spread


def _shortfall(n: int, needed: int, what: str) -> str:
    return f"{n} {what} with the outcome, below {needed}" if n < needed else ""


def _overall(
    samples: DownstreamSamples, policy: DownstreamPolicy, alpha: float, min_labelled: int
) -> GateResult:
    n = samples.size
    failed = (
        f"; the challenger-routed graph gave no score on {samples.shadow_unanswered}"
        if samples.shadow_unanswered
        else ""
    )
    if shortfall := _shortfall(n, min_labelled, "requests"):
        return result_of(
            DOWNSTREAM_CHECK, Verdict.INCONCLUSIVE, f"{shortfall} (minLabelled){failed}"
        )
    difference, lower, upper = _interval(samples.primary_right, samples.shadow_right, alpha)
    margin = policy.non_inferiority_margin
    ok = lower > -margin
    worse = upper < 0 and difference <= -margin
    shadow_acc = float(samples.shadow_right.mean())
    primary_acc = float(samples.primary_right.mean())
    summary = (
        f"graph accuracy on {policy.outcome} {shadow_acc:.3f} routed by the challenger vs "
        f"{primary_acc:.3f} by the champion ({difference:+.3f}; {1 - alpha:.0%} lower bound "
        f"{lower:+.3f} {'>' if ok else '<='} -{margin:g} margin) on {n} requests{failed}"
    )
    values = {
        "shadow": shadow_acc, "primary": primary_acc, "difference": difference,
        "lower_bound": lower, "upper_bound": upper, "requests": float(n),
        "shadow_unanswered": float(samples.shadow_unanswered),
    }  # fmt: skip
    verdict = Verdict.PASS if ok else Verdict.FAIL if worse else Verdict.INCONCLUSIVE
    return result_of(DOWNSTREAM_CHECK, verdict, summary, **values)


def _per_regime(
    samples: DownstreamSamples, policy: DownstreamPolicy, alpha: float, min_positives: int
) -> list[GateResult]:
    level = alpha / max(len(samples.regimes), 1)
    results = []
    for k, name in enumerate(samples.regimes):
        check = f"{DOWNSTREAM_CHECK}/{_gate_part(name)}"
        rows = samples.regime == k
        n = int(rows.sum())
        if shortfall := _shortfall(n, min_positives, f"labelled {name} requests"):
            results.append(result_of(check, Verdict.INCONCLUSIVE, f"{shortfall} (minPositives)"))
            continue
        drop = paired_drop(
            samples.primary_right[rows], samples.shadow_right[rows],
            margin=policy.non_inferiority_margin, alpha=level,
        )  # fmt: skip
        acc_p, acc_s, test, worse = drop.primary, drop.shadow, drop.test, drop.worse
        summary = (
            f"graph accuracy {acc_s:.3f} routed by the challenger vs {acc_p:.3f} by the "
            f"champion on {n} {name} requests ({acc_s - acc_p:+.3f}, max drop "
            f"{policy.non_inferiority_margin:g}); only the champion's routing right on "
            f"{test.b}, only the challenger's on {test.c} (p={test.p_worse:.2g} that the "
            f"challenger's routes err more, alpha {level:.2g}): "
            f"{'worse' if worse else 'not shown worse'}"
        )
        values = {
            "shadow": acc_s, "primary": acc_p, "requests": float(n),
            "b": float(test.b), "c": float(test.c), "p_worse": test.p_worse,
        }  # fmt: skip
        results.append(result_of(check, Verdict.FAIL if worse else Verdict.PASS, summary, **values))
    return results


def judge_downstream(
    samples: DownstreamSamples,
    policy: DownstreamPolicy,
    *,
    alpha: float,
    min_labelled: int,
    min_positives: int,
) -> tuple[GateResult, ...]:
    """The downstream checks: over all requests with the outcome, then per regime."""
    return (
        _overall(samples, policy, alpha, min_labelled),
        *_per_regime(samples, policy, alpha, min_positives),
    )
