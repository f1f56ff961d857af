"""A KPI check's value per revision over a stretch of requests: what the KPI series show.

The canary judge compares two revisions at a look; a dashboard asks something plainer: what is
each serving revision's click-through rate (or revenue per request) now? This module answers it
with the judge's own arithmetic (:func:`~controller.gates.kpi_samples.sample_of`: requests
younger than ``outcomeDelay`` left out, those without an outcome counted as 0 or skipped as the
check says), so the series and the gate never disagree about what a KPI is.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from controller.gates.kpi_policy import KpiCheck
from controller.gates.kpi_samples import (
    RateSample,
    rate_sample_of_counts,
    requests_by_revision,
    sample_of,
)
from controller.predictions import OutcomeCounts, ServedOutcome

__all__ = ["RevisionKpi", "kpi_by_revision", "rate_by_revision"]


@dataclass(frozen=True)
class RevisionKpi:
    """One revision's value of one KPI check, and how many requests it counted."""

    revision: str
    #: The rate or mean; None when no request was counted yet.
    value: float | None
    requests: int


def kpi_by_revision(
    check: KpiCheck, served: Sequence[ServedOutcome], *, now: float
) -> list[RevisionKpi]:
    """``check``'s value for each revision in ``served`` (its outcome's rows), counted at
    ``now`` (epoch seconds), in the order the revisions first appear. A class-name outcome is
    the policy's mistake: :class:`~controller.errors.InputError` naming the request."""
    found = []
    for revision, requests in requests_by_revision(check, served).items():
        sample = sample_of(requests, now=now, check=check)
        if isinstance(sample, RateSample):
            value = sample.rate if sample.n else None
        else:
            value = statistics.fmean(sample.values) if sample.n else None
        found.append(RevisionKpi(revision, value, sample.n))
    return found


def rate_by_revision(
    check: KpiCheck, counts: Mapping[str, OutcomeCounts], revisions: Sequence[str]
) -> list[RevisionKpi]:
    """Rate ``check``'s value for each of ``revisions`` that answered, from the store's counts
    with the check's cut-off (:meth:`~controller.ports.ServedOutcomes.outcome_counts`): what
    :func:`kpi_by_revision` gives on the rows they count. Counts holding a value a rate cannot
    count are :class:`~controller.errors.InputError` (read the rows to name the request)."""
    found = []
    for revision in revisions:
        if revision in counts:
            sample = rate_sample_of_counts(counts[revision], check=check)
            found.append(RevisionKpi(revision, sample.rate if sample.n else None, sample.n))
    return found
