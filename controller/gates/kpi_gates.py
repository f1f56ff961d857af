"""KPI checks as gates of a canary analysis: the requests each revision served, with their late
outcomes, turned into samples and judged.

The analysis reads the prediction log (:class:`~controller.ports.ServedOutcomes`) once per
outcome the checks name, for the canary and the primary revision since the step's commit, and
hands the rows here. Each check keeps the rows of its outcome, splits them by the revision that
served them (the answer the client got: a revision's share of the traffic is what it is judged
on, never its load test, which the router does not log), and judges them at the analysis's look
(:func:`~controller.gates.kpi_judge.judge_kpi`). An outcome that is a class name, not a number,
is the policy's mistake and an error, never a pass.
"""

from __future__ import annotations

from collections.abc import Sequence

from controller.analysis_types import GateResult, Verdict
from controller.errors import InputError
from controller.gates.judge_config import JudgeConfig
from controller.gates.kpi_judge import judge_kpi, kpi_gate
from controller.gates.kpi_policy import KpiCheck
from controller.gates.kpi_samples import requests_by_revision, sample_of
from controller.predictions import ServedOutcome

__all__ = ["evaluate_kpi", "unjudged_kpis"]


def unjudged_kpis(checks: Sequence[KpiCheck], verdict: Verdict, why: str) -> list[GateResult]:
    """Every check with the same verdict and reason: no prediction log to read (inconclusive),
    or one that could not be read (an error)."""
    return [GateResult(kpi_gate(check.name), verdict, f"{check.name}: {why}") for check in checks]


def evaluate_kpi(
    check: KpiCheck,
    served: Sequence[ServedOutcome],
    *,
    canary_revision: str,
    primary_revision: str,
    now: float,
    look: int,
    judge: JudgeConfig,
) -> GateResult:
    """``check`` judged at ``look`` on ``served`` (its outcome's rows, any revisions): the
    canary's requests against the primary's, as counted at ``now`` (epoch seconds)."""
    pair = (canary_revision, primary_revision)
    try:
        by_revision = requests_by_revision(check, (row for row in served if row.revision in pair))
        canary = sample_of(by_revision.get(canary_revision, ()), now=now, check=check)
        primary = sample_of(by_revision.get(primary_revision, ()), now=now, check=check)
    except InputError as exc:
        return GateResult(kpi_gate(check.name), Verdict.ERROR, f"{check.name}: {exc.message}")
    return judge_kpi(check, canary, primary, look=look, judge=judge).gate_result()
