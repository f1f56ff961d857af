"""KPI checks as gates of a canary analysis: the requests each revision served, with their late
outcomes, turned into samples and judged.

The analysis hands :func:`judge_kpis` the prediction log (:class:`~controller.ports.ServedOutcomes`)
and the canary's and the primary's revisions since the step's commit (the same stretch of time
for both). What each check reads:

- a ``rate`` check needs per revision only how many requests count and how many had outcome
  1, so the store counts them in one aggregating query per outcome and ``outcomeDelay``
  (:meth:`~controller.ports.ServedOutcomes.outcome_counts`): a 2-hour step at 200 requests a
  second is 1.44 million rows the judge no longer reads into Python;
- a ``mean`` check needs the values (winsorized, :mod:`controller.gates.kpi_judge`): the store
  reads its outcome's rows once (:meth:`~controller.ports.ServedOutcomes.served_outcomes`), and
  a rate check of the same outcome counts those rows rather than asking again;
- a rate whose window holds a value it cannot count (a class name, a 2.5) reads the rows too,
  so that its error names the request, as it always did.

Each check keeps its outcome's requests, split by the revision that served them (the answer
the client got: a revision's share of the traffic is what it is judged on, never its load test,
which the router does not log), and is judged at the analysis's look
(:func:`~controller.gates.kpi_judge.judge_kpi`). An outcome that is a class name, not a number,
is the policy's mistake and an error, never a pass; a log that cannot be read is an error for
every check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from controller.analysis_types import GateResult, Verdict
from controller.errors import InputError, SluiceError
from controller.gates.judge_config import JudgeConfig
from controller.gates.kpi_judge import judge_kpi, kpi_gate
from controller.gates.kpi_policy import KpiCheck
from controller.gates.kpi_samples import rate_sample_of_counts, requests_by_revision, sample_of
from controller.ports import ServedOutcomes
from controller.predictions import OutcomeCounts, ServedOutcome

__all__ = ["evaluate_kpi", "evaluate_rate_counts", "judge_kpis", "unjudged_kpis"]


def unjudged_kpis(checks: Sequence[KpiCheck], verdict: Verdict, why: str) -> list[GateResult]:
    """Every check with the same verdict and reason: no prediction log to read (inconclusive),
    or one that could not be read (an error)."""
    return [GateResult(kpi_gate(check.name), verdict, f"{check.name}: {why}") for check in checks]


def judge_kpis(
    log: ServedOutcomes,
    checks: Sequence[KpiCheck],
    *,
    model: str,
    canary_revision: str,
    primary_revision: str,
    since: float,
    now: float,
    look: int,
    judge: JudgeConfig,
) -> list[GateResult]:
    """Each of ``checks`` judged at ``look`` on the requests ``model``'s canary and primary
    revisions answered from ``since`` (epoch seconds), as counted at ``now``: counts for a rate,
    rows for a mean (the module's docstring). A read that fails is every check's error."""
    pair = (canary_revision, primary_revision)
    row_outcomes = {check.outcome for check in checks if check.kind == "mean"}
    counted: dict[tuple[str, float], dict[str, OutcomeCounts]] = {}
    served: dict[str, list[ServedOutcome]] = {}
    try:
        for check in checks:
            key = (check.outcome, check.outcome_delay_seconds)
            if check.outcome in row_outcomes or key in counted:
                continue
            settled = now - check.outcome_delay_seconds
            counted[key] = log.outcome_counts(model, pair, check.outcome, since, settled)
            if any(counts.other for counts in counted[key].values()):
                row_outcomes.add(check.outcome)  # its rows name the value a rate cannot count
        for outcome in dict.fromkeys(check.outcome for check in checks):
            if outcome in row_outcomes:
                served[outcome] = log.served_outcomes(model, pair, outcome, since)
    except SluiceError as exc:  # the log could not be read: a tool error, never a pass
        return unjudged_kpis(checks, Verdict.ERROR, exc.message)
    situation = {"canary_revision": canary_revision, "primary_revision": primary_revision}
    return [
        evaluate_kpi(check, served[check.outcome], **situation, now=now, look=look, judge=judge)
        if check.outcome in served
        else evaluate_rate_counts(
            check, counted[check.outcome, check.outcome_delay_seconds], **situation, look=look,
            judge=judge,
        )
        for check in checks
    ]  # fmt: skip


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


def evaluate_rate_counts(
    check: KpiCheck,
    counts: Mapping[str, OutcomeCounts],
    *,
    canary_revision: str,
    primary_revision: str,
    look: int,
    judge: JudgeConfig,
) -> GateResult:
    """Rate ``check`` judged at ``look`` on the store's ``counts`` per revision (with the
    check's cut-off): the same result :func:`evaluate_kpi` gives on the rows they count."""
    try:
        canary = rate_sample_of_counts(counts.get(canary_revision), check=check)
        primary = rate_sample_of_counts(counts.get(primary_revision), check=check)
    except InputError as exc:
        return GateResult(kpi_gate(check.name), Verdict.ERROR, f"{check.name}: {exc.message}")
    return judge_kpi(check, canary, primary, look=look, judge=judge).gate_result()
